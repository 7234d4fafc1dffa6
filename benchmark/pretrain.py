"""``rsbench pretrain CONFIG``: a registered mmengine runner that also exports the encoder."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.dist import master_only
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

import backbones.cmid.hooks  # noqa: F401  (registers CMID's local teacher temperature hook)
import backbones.cmid.model  # noqa: F401
import backbones.hooks  # noqa: F401  (registers the pretraining hooks)
import backbones.mae.model  # noqa: F401  (registers the pretraining methods)
import backbones.mssdf.model  # noqa: F401
import backbones.optim  # noqa: F401  (registers the optimiser constructor)
from backbones import save_encoder_checkpoint
from tasks.engine import QuietConsoleMixin, init_distributed

from .data import pretrain_pool  # noqa: F401  (registers PretrainPool)
from .provenance import REPO_ROOT, code_version
from .registry import RUNNERS


@RUNNERS.register_module()
class PretrainRunner(Runner):
    """mmengine's Runner (hooks, EMA, schedulers, DDP, resume) plus an encoder-only export at the end."""

    def resume(self, filename, *args, **kwargs) -> None:
        # torch >= 2.6 loads weights only by default, but mmengine's own checkpoints hold the
        # message hub and optimiser state; they are files this project wrote, so trust them.
        previous = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        try:
            super().resume(filename, *args, **kwargs)
        finally:
            if previous is None:
                os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
            else:
                os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = previous

    def train(self):
        start = time.perf_counter()
        model = super().train()
        # Wall time of this call: a resumed run reports its last segment (the log has the earlier ones).
        self.export_encoder(wall_time_s=round(time.perf_counter() - start, 1))
        return model

    @master_only
    def export_encoder(self, path: str | Path | None = None, **extra_meta) -> Path:
        """Write ``<work_dir>/encoder.pth``, the checkpoint ``backbones.build(..., checkpoint=)`` reads."""
        model = self.model.module if is_model_wrapper(self.model) else self.model
        encoder = model.export_encoder()
        dataset = self.train_dataloader.dataset
        data = getattr(dataset, "metainfo", None) or {}  # PretrainPool: dataset, split, modalities
        extra_meta.update(train_data="/".join(str(data[k]) for k in ("dataset", "split") if k in data),
                          train_samples=len(dataset), batch_size=self.train_dataloader.batch_size)  # fmt: skip
        path = Path(path or Path(self.work_dir) / "encoder.pth")
        save_encoder_checkpoint(
            encoder, path, method=type(model).__name__.lower(), arch=getattr(model, "arch", ""),
            **encoder.checkpoint_geometry(), epochs=self.epoch, iters=self.iter, config=self.cfg.filename,
            code_version=code_version(), **extra_meta,
        )  # fmt: skip
        self.logger.info(f"encoder checkpoint written to {path}")
        return path


def build_runner(
    config: str | Path,
    work_dir: str | Path | None = None,
    resume: bool = False,
    launcher: str = "none",
    cfg_options: dict | None = None,
    quiet: bool = False,
) -> Runner:
    """The runner a pretraining config asks for (``runner_type``), as mmengine's tools/train.py does."""
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"pretraining config {config} does not exist; see configs/pretrain/")
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    cfg.work_dir = str(work_dir or cfg.get("work_dir") or REPO_ROOT / "results" / "pretrain" / config.stem)
    cfg.resume = resume
    # mmengine names a run "<config name>_<second>" and keys its registry scope on that name: a second
    # runner in the same process and second (a sweep's pretraining stages, tests) would reuse the first's.
    cfg.experiment_name = f"{config.stem}_{uuid.uuid4().hex[:8]}"
    if launcher == "pytorch" and not torch.cuda.is_available():
        _cpu_distributed(cfg)
    # Look the runner class up in the project's registry directly: RUNNERS.build would resolve it in
    # whatever scope an earlier runner in this process left current (e.g. a fine-tuning runner's).
    runner_cls = RUNNERS.get(cfg.runner_type) if "runner_type" in cfg else Runner
    if runner_cls is None:
        raise KeyError(f"runner_type {cfg.runner_type!r} is not registered; known: {sorted(RUNNERS.module_dict)}")
    if quiet:  # inside a sweep: a progress bar shows the run, the log file has everything
        runner_cls = type(f"Quiet{runner_cls.__name__}", (QuietConsoleMixin, runner_cls), {})
    return runner_cls.from_cfg(cfg)


def _cpu_distributed(cfg: Config) -> None:
    """DDP on CPU (gloo): see ``tasks.engine.init_distributed``."""
    for key, value in init_distributed("pytorch").items():
        cfg[key] = {**cfg.get(key, {}), **value} if key == "env_cfg" else value
