"""Published numbers next to ours: ``results/reference/*.csv`` matched by method, task, dataset, fraction, metric."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.running.provenance import REPO_ROOT

#: Reference metric names that mean one of ours under a different name, per task. From
#: shared/docs/paper-numbers.md: detection papers report VOC-style mAP at IoU 0.5 as "mAP"; our "mAP" is COCO's.
REFERENCE_METRIC_ALIASES = {("detection", "mAP"): "mAP50"}
REFERENCE_DIR = REPO_ROOT / "results" / "reference"

REFERENCE_DIR = REPO_ROOT / "results" / "reference"


def load_reference(directory: str | Path = REFERENCE_DIR) -> pd.DataFrame:
    """All published numbers under ``results/reference/*.csv`` (an empty frame when there are none)."""
    files = sorted(Path(directory).glob("*.csv"))
    if not files:
        return pd.DataFrame(columns=["source", "method", "backbone", "task", "dataset", "label_fraction", "metric",
                                     "value"])  # fmt: skip
    return pd.concat([pd.read_csv(f).assign(reference_file=f.name) for f in files], ignore_index=True)


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def published_vs_ours(stats: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Published rows next to our mean over seeds, matched by method, task, dataset, label fraction and metric.

    Datasets match when our registry name (e.g. ``potsdam``) is part of the published one (``ISPRS Potsdam``),
    ignoring case and punctuation; metrics match by name or through ``REFERENCE_METRIC_ALIASES``. The
    published backbone is shown, not matched: our runs use small ViTs where papers use ViT-B/ResNet-50.
    """
    columns = ["method", "task", "dataset", "fraction", "metric", "published", "published_backbone", "source",
               "ours", "ours_std", "n_seeds", "backbone", "delta"]  # fmt: skip
    records = []
    datasets = stats["dataset"].astype(str).map(_squash)
    for ref in reference.itertuples(index=False):
        same_dataset = np.array([d != "" and d in _squash(ref.dataset) for d in datasets], dtype=bool)
        metric = REFERENCE_METRIC_ALIASES.get((ref.task, ref.metric), ref.metric)
        ours = stats[
            (stats["method"] == ref.method) & (stats["task"] == ref.task) & (stats["metric"] == metric)
            & np.isclose(stats["fraction"].astype(float), float(ref.label_fraction))
            & same_dataset
        ]  # fmt: skip
        for row in ours.itertuples(index=False):
            records.append({
                "method": ref.method, "task": ref.task, "dataset": ref.dataset, "fraction": float(ref.label_fraction),
                "metric": ref.metric if metric == ref.metric else f"{ref.metric} (ours: {metric})",
                "published": float(ref.value), "published_backbone": ref.backbone, "source": ref.source,
                "ours": row.mean, "ours_std": row.std, "n_seeds": row.n_seeds, "backbone": row.backbone,
                "delta": row.mean - float(ref.value),
            })  # fmt: skip
    return pd.DataFrame.from_records(records, columns=columns)


