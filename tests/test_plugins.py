"""A toy task, a toy dataset and a toy pretraining method, each a plugin file in a temporary folder, work end to
end through the CLI with no edit to any project file (only ``$RSBENCH_PLUGINS`` names them)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from conftest import isolate_registry

DATASET = '''
import torch
from torch.utils.data import Dataset
from rsdatasets import register_dataset


@register_dataset("toy_data")
class ToyData(Dataset):
    """Tiles whose target is their mean brightness."""

    metainfo = {}

    def __init__(self, split="train", n=24, size=32, seed=0):
        g = torch.Generator().manual_seed({"train": 1, "val": 2, "test": 3, "pool": 4}[split] + 10 * seed)
        self.rgb = torch.rand(n, 3, size, size, generator=g)
        self.dsm = torch.rand(n, 1, size, size, generator=g)

    def __len__(self):
        return len(self.rgb)

    def __getitem__(self, i):
        return {"rgb": self.rgb[i], "dsm": self.dsm[i], "dsm_valid": torch.ones_like(self.dsm[i], dtype=torch.bool),
                "brightness": self.rgb[i].mean()}

    def label_summary(self, kind):
        return None

    def plot(self, sample):
        return None
'''

TASK = '''
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn
from tasks import MetricInfo, Task, TiledMetric, register_task
from tasks.preprocess import ModalityPreprocessor


class BrightnessModel(BaseModel):
    def __init__(self, backbone):
        super().__init__(data_preprocessor=ModalityPreprocessor())
        self.backbone, self.head = backbone, nn.Linear(backbone.out_channels[-1], 1)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        pred = self.head(self.backbone(inputs)[-1].mean((2, 3)))[:, 0]
        if mode == "loss":
            return {"loss_l1": F.l1_loss(pred, data_samples["brightness"])}
        return [{"pred": p, "gt": g} for p, g in zip(pred, data_samples["brightness"])]


class AbsErr(TiledMetric):
    primary = "ABSERR"

    def process(self, data_batch, data_samples):
        self.results.extend(abs(float(s["pred"]) - float(s["gt"])) for s in data_samples)

    def metrics_from(self, results):
        return {"ABSERR": float(np.mean(results))}

    def tile_stats(self, results):
        return {"err": np.asarray(results, dtype=float)}

    @staticmethod
    def resample(stats, weights):
        return weights @ stats["err"] / weights.sum(1)


@register_task("toy_task")
class ToyTask(Task):
    primary_metric = "ABSERR"
    metrics = (MetricInfo("ABSERR", higher_is_better=False),)
    target_keys = ("brightness",)

    def strata(self, dataset):
        return np.zeros(len(dataset), dtype=np.int64)

    def build_model(self, backbone, modalities):
        return BrightnessModel(backbone)

    def build_metric(self):
        return AbsErr()
'''

METHOD = '''
import torch
from mmengine.model import BaseModel
from backbones.normalize import normalize_modalities
from backbones.vit import MultiModalViT
from rsbench.registry import MODELS


@MODELS.register_module()
class ToyPretrain(BaseModel):
    """Pretrains the shared ViT to predict each tile's DSM mean from RGB + DSM (a toy pretext task)."""

    def __init__(self, img_size=32, patch_size=8, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.student = MultiModalViT("vit_tiny_patch16_224", ("rgb", "dsm"), img_size, patch_size, depth=2)
        self.arch = "vit_t16"
        self.head = torch.nn.Linear(self.student.embed_dim, 1)

    def export_encoder(self):
        return self.student

    def forward(self, inputs, data_samples=None, mode="loss"):
        x = normalize_modalities(inputs)
        pred = self.head(self.student.encode_inputs(x)[-1].mean((2, 3)))[:, 0]
        return {"loss_toy": (pred - inputs["dsm"].mean((1, 2, 3))).abs().mean()}
'''

CONFIG = '''
_base_ = ["{base}"]
model = dict(_delete_=True, type="ToyPretrain", img_size=32, patch_size=8,
             data_preprocessor=dict(type="BaseDataPreprocessor"))
train_dataloader = dict(batch_size=4, dataset=dict(_delete_=True, type="PretrainPool", dataset="toy_data",
                                                   split="pool", n=8))
train_cfg = dict(by_epoch=True, max_epochs=1)
param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False)]
custom_hooks = []
'''


def _python(tmp_path, *args):
    """``python ARGS`` in ``tmp_path`` with the plugin files importable and named in ``$RSBENCH_PLUGINS``."""
    env = {**os.environ, "RSBENCH_PLUGINS": "toy_dataset,toy_task,toy_method", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600,
                          cwd=tmp_path)  # fmt: skip


def _rsbench(tmp_path, *args):
    return _python(tmp_path, "-m", "benchmark.cli", *args)


#: Each cell's interval, computed when the run is read (from the tile statistics the cell saved).
READ_INTERVAL = """
import pandas as pd
from benchmark.analysis import cell_intervals
rows = cell_intervals(pd.read_parquet("run/results.parquet"), "run")
row = rows[rows["metric"] == "ABSERR"].iloc[0]
print(row["ci_low"], row["value"], row["ci_high"])
"""


@pytest.mark.slow
def test_a_plugin_task_dataset_and_method_run_end_to_end(tmp_path):
    from benchmark.running.provenance import REPO_ROOT

    for name, source in (("toy_dataset", DATASET), ("toy_task", TASK), ("toy_method", METHOD)):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    base = REPO_ROOT / "configs" / "pretrain" / "mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"
    (tmp_path / "toy_pretrain.py").write_text(CONFIG.format(base=base))

    listed = _rsbench(tmp_path, "data", "list")
    assert listed.returncode == 0 and "toy_data" in listed.stdout, listed.stderr[-2000:]
    done = _rsbench(tmp_path, "pretrain", "toy_pretrain.py", "--work-dir", "pt")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert (tmp_path / "pt" / "encoder.pth").is_file()
    run = _rsbench(tmp_path, "finetune", "--task", "toy_task", "--dataset", "toy_data", "--backbone",
                   "random_init_vit_t16:pt/encoder.pth", "--backbone-options", "img_size=32", "patch_size=8",
                   "depth=2", "--budget", "max_iters=4", "batch_size=4", "warmup_iters=0", "--modalities", "rgb",
                   "dsm", "--run-dir", "run")  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    rows = pd.read_parquet(tmp_path / "run" / "results.parquet")
    row = rows[rows["metric"] == "ABSERR"].iloc[0]
    assert row["status"] == "ok" and row["higher_is_better"] == False  # noqa: E712  (numpy bool)
    assert "ci_low" not in rows  # a row stores what was measured; its interval is computed when read
    read = _python(tmp_path, "-c", READ_INTERVAL)
    low, value, high = map(float, read.stdout.split())
    assert 0 <= value < 1 and low <= value <= high, read.stderr[-2000:]
    # the report ranks the plugin's lower-is-better metric with the arrow its task declared
    assert "toy_task ABSERR ↓" in (tmp_path / "run" / "report.md").read_text()


def test_a_file_dropped_into_a_package_registers_itself(monkeypatch):
    """The other route of the one registry rule: a module file inside ``rsdatasets/`` or ``tasks/`` is found when
    the package is scanned (the first lookup), with no import line and no location list anywhere."""
    import rsdatasets
    import tasks
    from rsbench.registry import BENCHMARK_DATASETS, TASKS

    dropped = {rsdatasets: ("zz_dropped_dataset", DATASET.replace('"toy_data"', '"dropped_data"')),
               tasks: ("zz_dropped_task", TASK.replace('"toy_task"', '"dropped_task"'))}  # fmt: skip
    for registry in (BENCHMARK_DATASETS, TASKS):
        isolate_registry(monkeypatch, registry, rescan=True)  # the next lookup scans again, the new files too
    paths = []
    try:
        for package, (name, source) in dropped.items():
            path = Path(package.__file__).parent / f"{name}.py"
            path.write_text(textwrap.dedent(source))
            paths.append((path, f"{package.__name__}.{name}"))
        assert "dropped_data" in rsdatasets.list_datasets()
        assert "dropped_task" in tasks.list_tasks()
    finally:
        for path, module in paths:
            path.unlink(missing_ok=True)
            sys.modules.pop(module, None)
