"""A sweep at scale: thousands of trivial cells through the real sweep path, and whether its per-cell cost grows.

A plugin task (one training iteration of a linear head on a one-block ViT at 32 px) and a plugin dataset
of 12 tiles make each cell as small as a cell can be, so what is measured is the harness: planning and
the resume check, the store, the progress display, logs, the runner's set-up and release, the report at
the end. Each cell's harness overhead is its slot (start of this cell to start of the next) minus the time
inside its training and test loops (``wall_time_s`` of its rows). The last line is the ratio of the median
overhead over the last 100 cells to that over the first 100 (target: at most 1.5x).

    python perf/sweep_scale.py                # 2000 cells (about 15 minutes on 2 cores)
    python perf/sweep_scale.py --cells 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from rich.console import Console  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from benchmark.running import sweep as launch  # noqa: E402
from benchmark.running.spec import SweepSpec  # noqa: E402
from benchmark.running.store import ResultStore  # noqa: E402
from rsdatasets import register_dataset  # noqa: E402
from tasks import MetricInfo, Task, TiledMetric, register_task  # noqa: E402
from tasks.preprocess import ModalityPreprocessor  # noqa: E402


@register_dataset("scale_tiles")
class ScaleTiles(Dataset):
    """12 random 32-px tiles whose target is their mean brightness."""

    metainfo: dict = {}

    def __init__(self, split: str = "train", n: int = 12) -> None:
        g = torch.Generator().manual_seed({"train": 1, "val": 2, "test": 3}[split])
        self.rgb = torch.rand(n, 3, 32, 32, generator=g)

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, i: int) -> dict:
        return {"rgb": self.rgb[i], "brightness": self.rgb[i].mean()}

    def label_summary(self, kind):
        return None


class _Head(BaseModel):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__(data_preprocessor=ModalityPreprocessor())
        self.backbone, self.head = backbone, nn.Linear(backbone.out_channels[-1], 1)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        pred = self.head(self.backbone(inputs)[-1].mean((2, 3)))[:, 0]
        if mode == "loss":
            return {"loss_l1": F.l1_loss(pred, data_samples["brightness"])}
        return [{"pred": p, "gt": g} for p, g in zip(pred, data_samples["brightness"])]


class _AbsErr(TiledMetric):
    primary = "ABSERR"

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(abs(float(s["pred"]) - float(s["gt"])) for s in data_samples)

    def metrics_from(self, results) -> dict:
        return {"ABSERR": float(np.mean(results))}

    def tile_stats(self, results) -> dict:
        return {"err": np.asarray(results, dtype=float)}

    @staticmethod
    def resample(stats, weights):
        return weights @ stats["err"] / weights.sum(1)


@register_task("scale_probe")
class ScaleProbe(Task):
    primary_metric = "ABSERR"
    metrics = (MetricInfo("ABSERR", higher_is_better=False),)
    target_keys = ("brightness",)

    def strata(self, dataset):
        return np.zeros(len(dataset), dtype=np.int64)

    def build_model(self, backbone, modalities):
        return _Head(backbone)

    def build_metric(self):
        return _AbsErr()


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--window", type=int, default=100, help="cells averaged at the start and at the end")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = SweepSpec(
        name="scale", backbones=[dict(name="random_init_vit_t16", checkpoint=None,
                                      kwargs=dict(img_size=32, patch_size=8, depth=1))],
        tasks=["scale_probe"], dataset=dict(name="scale_tiles"), modalities=["rgb"], fractions=[1.0],
        train_seeds=list(range(args.cells)), protocols=["finetune"],
        budgets=dict(scale_probe=dict(max_iters=1, batch_size=4, warmup_iters=0, val_checks=0, log_interval=1)),
    )  # fmt: skip
    starts: list[float] = []
    rss: list[float] = []  # MiB after each cell
    files: list[int] = []
    real = launch.run_logged

    def timed(*a, **kw):
        starts.append(time.perf_counter())
        out = real(*a, **kw)
        rss.append(_rss_mib())
        files.append(len(os.listdir("/proc/self/fd")))
        return out

    launch.run_logged = timed
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        with open(os.devnull, "w") as null:
            launch.run_sweep(spec, run_dir, console=Console(file=null, width=120, force_terminal=True))
        total = time.perf_counter() - start
        end_of_cells = starts[-1] + (total - (starts[-1] - start)) if starts else start
        frame = ResultStore(run_dir).load()
    ok = frame[frame["status"] == "ok"].drop_duplicates("config_hash")
    if len(ok) != args.cells:
        raise SystemExit(f"only {len(ok)} of {args.cells} cells are ok: {frame['status'].value_counts().to_dict()}")
    train = ok.sort_values("train_seed")["wall_time_s"].to_numpy()
    slots = np.diff(np.asarray(starts + [end_of_cells]))[:-1]  # the last slot also holds the report: left out
    overhead = slots - train[: len(slots)]
    w = min(args.window, len(overhead) // 2)
    first, last = statistics.median(overhead[:w]), statistics.median(overhead[-w:])
    print(f"{args.cells} cells in {total:.0f} s ({total / args.cells * 1e3:.0f} ms per cell); training and test "
          f"loops: median {1e3 * statistics.median(train):.0f} ms per cell")
    print(f"harness overhead per cell: median {1e3 * first:.0f} ms over the first {w} cells, "
          f"{1e3 * last:.0f} ms over the last {w}")
    slope = np.polyfit(np.arange(len(rss) - w), np.asarray(rss[w:]), 1)[0] if len(rss) > 2 * w else float("nan")
    print(f"sweep process: RSS {rss[0]:.0f} MiB after cell 1, {rss[w]:.0f} after cell {w + 1}, {rss[-1]:.0f} after "
          f"cell {len(rss)} ({1024 * slope:+.1f} KiB per cell after cell {w + 1}); open files {files[0]} after cell 1, "
          f"{files[-1]} after the last")
    print(f"overhead last {w} / first {w}: {last / first:.2f}x")


if __name__ == "__main__":
    main()
