"""``rsbench pretrain CONFIG``: the pretraining runner (a registered mmengine runner that also exports the
encoder), its kNN probe hook, and ``build_runner``.

The runner and the hook register into ``rsbench.registry`` (``RUNNERS``, ``HOOKS``) when this module is
imported, which ``build_runner`` (the only way the harness builds one) guarantees; the pretraining methods,
hooks and pools a config names register through the registries' discovery: this module imports
``backbones`` and ``rsdatasets``, whose packages are scanned on the first lookup. So nothing below this layer
names this module.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.dist import get_world_size, is_main_process, master_only
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

import rsdatasets  # noqa: F401  (declares the pretraining pools' package to the registries)
from backbones import save_encoder_checkpoint
from rsbench.registry import HOOKS, RUNNERS, registered
from tasks.runtime import QuietConsoleMixin, init_distributed

from .preemption import PreemptionHook
from .provenance import REPO_ROOT, code_version


@HOOKS.register_module()
class KNNProbeHook(Hook):
    """Logs whether pretraining has left its initialisation: k-nearest-neighbour probes of the encoder.

    Before the first epoch and every ``interval`` epochs, the student encodes a labelled probe split
    (default: the synthetic benchmark's ``val`` split, disjoint from the pool and from the downstream
    train/test splits; its labels serve the monitoring only, nothing trains on them):

    With ``dataset=None`` the probe split is the ``val`` split of the pool's own dataset (same root,
    size and seed).

    * ``probe_knn_scene``: leave-one-out kNN (cosine) of each tile's scene class from its pooled tokens;
    * ``probe_knn_token``: kNN of each token's dominant segmentation class, tokens of the first half of
      the tiles as neighbours for those of the second half. Content, not scene colour statistics: a
      random encoder already separates the synthetic scene classes well (about 83 % at init), so the
      token probe is the one that tells whether pretraining learned local content.

    A probe that rises over pretraining shows the encoder learned something; one that stays at its
    epoch-0 value shows it did not. ``decompose=True`` also logs, beside these lines, the token
    decomposition of ``benchmark.running.diagnose`` on the same tiles (position / tile / rest, kNN per stream).
    """

    priority = "LOW"

    def __init__(self, dataset: dict | None = None, interval: int = 1, k: int = 10, max_samples: int = 100,
                 decompose: bool = True) -> None:  # fmt: skip
        self.decompose = decompose
        self.dataset_cfg = dict(dataset) if dataset else None
        self.interval, self.k, self.max_samples = interval, k, max_samples
        self.history: list[dict] = []

    def before_train(self, runner) -> None:
        from rsdatasets import build_dataset

        if self.dataset_cfg is None:
            pool_cfg = getattr(runner.train_dataloader.dataset, "source_cfg", None) or dict(name="synthetic", size=64)
            self.dataset_cfg = {**pool_cfg, "split": "val"}
            self.dataset_cfg.pop("n", None)
        cfg = dict(self.dataset_cfg)
        self._data = build_dataset(cfg.pop("name"), cfg.pop("split"), **cfg)
        # A resumed run has its history back from the checkpoint (below), so it does not probe again; a
        # checkpoint without one (older code) gets a probe labelled with the epoch it resumes at.
        if not self.history:
            self._log(runner, runner.epoch)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["probe_knn"] = list(self.history)  # the history must survive a resume, as the weights do

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("probe_knn", []))

    def after_train_epoch(self, runner) -> None:
        done = runner.epoch + 1  # mmengine counts the finished epoch after this hook
        if done % self.interval == 0 or done == runner.max_epochs:
            self._log(runner, done)

    def _knn(self, fit_x, fit_y, query_x, query_y, exclude_self: bool) -> float:
        sim = query_x @ fit_x.T
        if exclude_self:
            sim.fill_diagonal_(-2.0)
        nearest = sim.topk(min(self.k, len(fit_y) - int(exclude_self)), dim=1).indices
        n_cls = int(max(fit_y.max(), query_y.max())) + 1
        votes = torch.nn.functional.one_hot(fit_y[nearest], n_cls).sum(1)
        return 100.0 * float((votes.argmax(1) == query_y).float().mean())

    def _log(self, runner, epoch: int) -> None:
        start = time.perf_counter()
        self._probe(runner, epoch)
        # Seconds spent probing (evaluation, not harness): the encoder metadata keeps them for perf/harness.py.
        runner.probe_time_s = getattr(runner, "probe_time_s", 0.0) + time.perf_counter() - start

    @torch.no_grad()
    def _probe(self, runner, epoch: int) -> None:
        from backbones.normalize import normalize_modalities
        from tasks.features import frozen_parts

        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        encoder = model.export_encoder()
        was_training = encoder.training
        encoder.eval()
        encode = frozen_parts(encoder)[0]
        pooled, scene, tokens, token_labels, tile_of = [], [], [], [], []
        n = min(len(self._data), self.max_samples)
        keys = (*encoder.modalities, *(f"{m}_valid" for m in encoder.modalities))
        for start in range(0, n, 25):  # batches: a probe needs no batch-independent bits
            samples = [self._data[i] for i in range(start, min(start + 25, n))]
            inputs = {k: torch.stack([s[k] for s in samples]) for k in keys if k in samples[0]}
            lasts = encode(normalize_modalities(inputs))[-1]  # B x C x h x w, the final tokens
            for j, (sample, last) in enumerate(zip(samples, lasts)):
                c, h, w = last.shape
                pooled.append(last.mean((1, 2)))
                scene.append(int(sample["label"]))
                mask = sample["mask"].long()
                ph, pw = mask.shape[0] // h, mask.shape[1] // w
                onehot = torch.nn.functional.one_hot(mask[: h * ph, : w * pw].reshape(h, ph, w, pw), 256)
                token_labels.append(onehot.sum((1, 3)).argmax(-1).reshape(-1))
                tokens.append(last.reshape(c, -1).T)
                tile_of.append(torch.full((h * w,), start + j))
        encoder.train(was_training)
        norm = torch.nn.functional.normalize
        x, y = norm(torch.stack(pooled), dim=1), torch.tensor(scene)
        scene_acc = self._knn(x, y, x, y, exclude_self=True)
        tok, lab, tile = norm(torch.cat(tokens), dim=1), torch.cat(token_labels), torch.cat(tile_of)
        first = tile < n // 2
        token_acc = self._knn(tok[first], lab[first], tok[~first], lab[~first], exclude_self=False)
        self.history.append(dict(epoch=epoch, scene=round(scene_acc, 2), token=round(token_acc, 2)))
        runner.message_hub.update_scalar("train/probe_knn_scene", scene_acc)
        runner.message_hub.update_scalar("train/probe_knn_token", token_acc)
        runner.probe_history = list(self.history)
        runner.logger.info(f"kNN probes (k={self.k}, {n} {self.dataset_cfg.get('split')} tiles) after epoch {epoch}: "
                           f"scene {scene_acc:.1f} %, token class {token_acc:.1f} %")  # fmt: skip
        if self.decompose:
            from .diagnose import log_decomposition

            fused = (torch.stack(tokens), torch.stack(token_labels))  # this probe's own tokens, read once
            log_decomposition(runner, encoder, self._data, n, self.k, epoch, fused)


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

    def load_or_resume(self) -> None:
        # mmengine print()s "Did not find last_checkpoint to be resumed." to the console when resume=True
        # finds nothing; a sweep's pretraining stage always asks to resume, so say it in the log instead.
        if self._resume and self._load_from is None:
            latest = readable_latest_checkpoint(Path(self.work_dir))
            if latest is None:
                self.logger.info(f"no checkpoint in {self.work_dir} to resume from: starting from scratch")
                self._resume = False
            else:
                self._load_from = str(latest)  # mmengine then resumes from exactly this file
        super().load_or_resume()

    def save_checkpoint(self, out_dir, filename, *args, **kwargs):
        # Written under a temporary name and renamed: a kill during the write leaves the previous checkpoint,
        # never half of this one (mmengine writes the file in place).
        # Only rank 0 writes (mmengine's save is master-only), so only rank 0 renames.
        part = f"{filename}.part"
        super().save_checkpoint(out_dir, part, *args, **kwargs)
        if is_main_process():
            os.replace(Path(out_dir) / part, Path(out_dir) / filename)

    def train(self):
        start = time.perf_counter()
        model = super().train()
        # Wall time of this call: a resumed run reports its last segment (the log has the earlier ones).
        # step_time_s: the seconds inside iterations (mmengine's iteration timer), for the harness share.
        timer = self.message_hub.log_scalars.get("train/time")
        # Stored unrounded: on a fast machine two tiny iterations sum to under 0.05 s, which rounded to 0.0.
        steps = float(sum(timer.data[0])) if timer is not None else None
        wall = time.perf_counter() - start
        self.export_encoder(wall_time_s=wall, step_time_s=steps, **(self.compute() if is_main_process() else {}))
        return model

    def compute(self) -> dict:
        """What the pretraining cost, for the encoder's metadata: ``step_flops`` (matmul/conv FLOPs of one training
        step of one process, torch's FlopCounterMode on a copy of the model and one batch, as perf/pretrain_step.py
        counts them), ``world_size`` and ``flops`` = step FLOPs x iterations x processes. Counted once, at export;
        {} where the step cannot be counted (the report then says "unknown", never free)."""
        from tasks.compute import step_flops

        model = self.model.module if is_model_wrapper(self.model) else self.model
        interval = getattr(model, "diagnostic_interval", None)
        try:
            if interval is not None:
                model.diagnostic_interval = 0  # a diagnostic every 10th step is measurement, not the method's step
            flops = step_flops(model, next(iter(self.train_dataloader)))
        except Exception as exc:  # compute is reported where countable; a failed count must not lose the encoder
            self.logger.warning(f"pretraining step FLOPs not counted: {exc.__class__.__name__}: {exc}")
            return {}
        finally:
            if interval is not None:
                model.diagnostic_interval = interval
        world = get_world_size()
        return {"step_flops": flops, "world_size": world, "flops": flops * self.iter * world}

    @master_only
    def export_encoder(self, path: str | Path | None = None, **extra_meta) -> Path:
        """Write ``<work_dir>/encoder.pth``, the checkpoint ``backbones.build(..., checkpoint=)`` reads."""
        model = self.model.module if is_model_wrapper(self.model) else self.model
        encoder = model.export_encoder()
        dataset = self.train_dataloader.dataset
        data = getattr(dataset, "metainfo", None) or {}  # PretrainPool: dataset, split, modalities
        extra_meta.update(train_data="/".join(str(data[k]) for k in ("dataset", "split") if k in data),
                          train_samples=len(dataset), batch_size=self.train_dataloader.batch_size)  # fmt: skip
        if getattr(self, "probe_history", None):
            extra_meta["probe_knn"] = self.probe_history
        if getattr(self, "probe_time_s", None):
            extra_meta["probe_time_s"] = self.probe_time_s
        if getattr(self, "teacher_momentum", None):
            extra_meta["teacher_momentum"] = self.teacher_momentum
        if data.get("augment"):
            extra_meta["augment"] = data["augment"]
        path = Path(path or Path(self.work_dir) / "encoder.pth")
        save_encoder_checkpoint(
            encoder, path, method=method_name(model), arch=getattr(model, "arch", ""),
            **encoder.checkpoint_geometry(), epochs=self.epoch, iters=self.iter, config=self.cfg.filename,
            code_version=code_version(), **extra_meta,
        )  # fmt: skip
        self.logger.info(f"encoder checkpoint written to {path}")
        return path


def method_name(model) -> str:
    """The method an encoder checkpoint records: the model's ``method`` (the same name the backbone registry
    gives its encoders, so checkpoint and rows agree), else its class name in lower case (plugins)."""
    return getattr(model, "method", None) or type(model).__name__.lower()


def readable_latest_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint ``last_checkpoint`` names if it loads, else the newest epoch/iter checkpoint that does.

    A ``last_checkpoint`` left empty, or naming a file cut short by a kill, falls back instead of failing.
    """
    candidates = []
    pointer = work_dir / "last_checkpoint"
    if pointer.is_file() and pointer.read_text().strip():
        candidates.append(Path(pointer.read_text().strip()))
    candidates += sorted(work_dir.glob("*.pth"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        if path.name == "encoder.pth" or not path.is_file():
            continue
        try:
            torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except Exception:
            continue
        return path
    return None


def build_runner(
    config: str | Path,
    work_dir: str | Path | None = None,
    resume: bool = False,
    ddp: str = "none",
    cfg_options: dict | None = None,
    quiet: bool = False,
) -> Runner:
    """The runner a pretraining config asks for (``runner_type``), as mmengine's tools/train.py does.

    ``ddp``: how this job's ranks were launched (``none``, ``pytorch`` under torchrun, ``slurm`` under srun).
    """
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"pretraining config {config} does not exist; see configs/pretrain/")
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = ddp
    cfg.work_dir = str(work_dir or cfg.get("work_dir") or REPO_ROOT / "results" / "pretrain" / config.stem)
    cfg.resume = resume
    # mmengine names a run "<config name>_<second>" and keys its registry scope on that name: a second
    # runner in the same process and second (a sweep's pretraining stages, tests) would reuse the first's.
    cfg.experiment_name = f"{config.stem}_{uuid.uuid4().hex[:8]}"
    if ddp == "pytorch" and not torch.cuda.is_available():
        _cpu_distributed(cfg)
    # Look the runner class up in the project's registry directly: RUNNERS.build would resolve it in
    # whatever scope an earlier runner in this process left current (e.g. a fine-tuning runner's).
    runner_cls = RUNNERS.get(cfg.runner_type) if "runner_type" in cfg else Runner
    if runner_cls is None:
        raise KeyError(f"runner_type {cfg.runner_type!r} is not registered; known: {sorted(registered(RUNNERS))}")
    if quiet:  # inside a sweep: a progress bar shows the run, the log file has everything
        runner_cls = type(f"Quiet{runner_cls.__name__}", (QuietConsoleMixin, runner_cls), {})
    runner = runner_cls.from_cfg(cfg)
    runner.register_hook(PreemptionHook(), priority="LOWEST")  # RNG states in checkpoints; stop on SIGTERM
    return runner


def _cpu_distributed(cfg: Config) -> None:
    """DDP on CPU (gloo): see ``tasks.runtime.init_distributed``."""
    for key, value in init_distributed("pytorch").items():
        cfg[key] = {**cfg.get(key, {}), **value} if key == "env_cfg" else value
