"""A one-cell sweep on each generic reader through its template (configs/sweeps/your_*.py), bad input stopping a
sweep before any row, and experiment tracking read back from TensorBoard's event files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_data_generic import _save, make_change_pairs, make_image_folder, make_mmseg, make_voc, voc_xml

from benchmark.cli import main
from benchmark.running.store import ResultStore

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
TINY_VIT = ["backbones.0.kwargs.patch_size=8", "backbones.0.kwargs.depth=1", "fractions=[1.0]", "train_seeds=[0]",
            "protocols=[finetune]"]  # fmt: skip
BUDGET = dict(max_iters=4, min_iters=4, batch_size=4, warmup_iters=0, eval_batch_size=8)


@pytest.fixture(autouse=True)
def _scan_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RSBENCH_DATA", str(tmp_path / "cache"))


def _sweep(template: str, root: Path, run_dir: Path, task: str, px: int, *extra: str, track: str | None = None) -> int:
    """``rsbench sweep configs/sweeps/your_<template>.py`` shrunk to one tiny cell with --cfg-options."""
    budget = [f"budgets.{task}.{k}={v}" for k, v in BUDGET.items()]
    args = ["sweep", str(REPO / "configs" / "sweeps" / f"your_{template}.py"), "--run-dir", str(run_dir),
            "--cfg-options", f"dataset.root={root}", f"backbones.0.kwargs.img_size={px}", *TINY_VIT, *budget, *extra]
    return main(args + (["--track", track] if track else []))  # fmt: skip


def _rows(run_dir: Path) -> pd.DataFrame:
    frame = ResultStore(run_dir).load()
    assert len(frame) and (frame["status"] == "ok").all(), frame[["metric", "status"]]
    return frame


@pytest.mark.slow
def test_one_cell_sweep_on_each_generic_reader(tmp_path):
    scenes = make_image_folder(tmp_path / "scenes")
    assert _sweep("image_folder", scenes, tmp_path / "run_if", "classification", 32, "dataset.size=32") == 0
    rows = _rows(tmp_path / "run_if")
    assert set(rows["dataset"]) == {"image_folder"} and rows["n_train"].iloc[0] == 12
    assert "acc.forest" in set(rows["metric"])  # the class names came from the folders
    assert rows["data_split"].iloc[0].startswith("seeded split stratified by class")

    seg = make_mmseg(tmp_path / "seg")
    assert _sweep("mmseg_segmentation", seg, tmp_path / "run_seg", "segmentation", 32, "modalities=[rgb,dsm]",
                  "task_kwargs.segmentation.head_channels=16") == 0  # fmt: skip
    rows = _rows(tmp_path / "run_seg")
    assert set(rows["modalities"]) == {"rgb+dsm"} and {"IoU.roof", "mIoU"} <= set(rows["metric"])

    pairs = make_change_pairs(tmp_path / "cd", px=64)
    assert _sweep("change_pairs", pairs, tmp_path / "run_cd", "change_detection", 32, "dataset.crop=32") == 0
    rows = _rows(tmp_path / "run_cd")
    assert rows["n_train"].iloc[0] == 4 * 8  # 8 training pairs, 4 tiles each

    voc = make_voc(tmp_path / "voc")
    assert _sweep("voc_detection", voc, tmp_path / "run_voc", "detection", 64,
                  "task_kwargs.detection.neck_channels=16") == 0  # fmt: skip
    rows = _rows(tmp_path / "run_voc")
    assert rows["n_train"].iloc[0] == 7 and "AP50.ship" in set(rows["metric"])


def _empty_class(root: Path) -> None:
    (root / "desert").mkdir()


def _undeclared(root: Path) -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[1, 1] = 9
    _save(root / "ann_dir" / "train" / "tile_0.png", mask)


def _ab_mismatch(root: Path) -> None:
    _save(root / "B" / "pair_1.png", np.zeros((20, 32, 3), np.uint8))


def _box_outside(root: Path) -> None:
    (root / "Annotations" / "00000.xml").write_text(voc_xml([("ship", (-5, 0, 10, 10))]))


def _no_ann_dir(root: Path) -> None:
    import shutil

    shutil.rmtree(root / "ann_dir")


BAD = {
    "a class folder with no images": ("image_folder", make_image_folder, _empty_class, "classification", "desert"),
    "a mask with an undeclared value": ("mmseg_segmentation", make_mmseg, _undeclared, "segmentation", "tile_0.png"),
    "an A/B size mismatch": ("change_pairs", make_change_pairs, _ab_mismatch, "change_detection", "pair_1.png"),
    "an XML box outside its image": ("voc_detection", make_voc, _box_outside, "detection", "00000.xml"),
    "a missing ann_dir": ("mmseg_segmentation", make_mmseg, _no_ann_dir, "segmentation", "ann_dir/"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_stops_the_sweep_with_one_line_and_no_rows(tmp_path, capsys, case):
    template, make, spoil, task, named = BAD[case]
    root = make(tmp_path / "data")
    spoil(root)
    crop = ["dataset.crop=16"] if template == "change_pairs" else []  # the template tiles 256 px; these are 32 px
    assert _sweep(template, root, tmp_path / "run", task, 32, *crop) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rsbench: error:") and named in err[0], err
    assert not (tmp_path / "run" / "results.parquet").exists() and not (tmp_path / "run" / "cells").exists()


@pytest.mark.slow
def test_tensorboard_tracking_writes_tagged_curves_and_changes_no_number(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scenes = make_image_folder(tmp_path / "scenes")
    common = ("image_folder", scenes)
    assert _sweep(*common, tmp_path / "plain", "classification", 32, "dataset.size=32") == 0
    assert _sweep(*common, tmp_path / "tracked", "classification", 32, "dataset.size=32", track="tensorboard") == 0
    plain, tracked = _rows(tmp_path / "plain"), _rows(tmp_path / "tracked")
    key = ["config_hash", "metric"]
    assert plain[key].values.tolist() == tracked[key].values.tolist()  # same cells: tracking is not in the hash
    assert np.array_equal(plain["value"].to_numpy(), tracked["value"].to_numpy())  # and no number moved
    assert not (tmp_path / "plain" / "tracking").exists()

    runs = list((tmp_path / "tracked" / "tracking" / "tensorboard").iterdir())
    assert len(runs) == 1 and "classification_image_folder_random_init_vit_s16_finetune_f1_s0-0" in runs[0].name
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] and np.isfinite([e.value for e in events.Scalars("loss")]).all()
    assert [e.step for e in events.Scalars("OA")] == [1, 2, 3, 4]  # validation at every iteration it ran
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    for tag in ("backbone='random_init_vit_s16'", "task='classification'", "fraction=1.0", "split_seed=0",
                "train_seed=0", f"config_hash='{tracked['config_hash'].iloc[0]}'"):  # fmt: skip
        assert tag in text, text


def test_tracking_settings_are_checked_before_any_cell(tmp_path, capsys):
    from tasks.tracking import parse_tracking

    assert parse_tracking("tensorboard") == {"backends": ["tensorboard"], "project": "rsbench"}
    assert parse_tracking(None) is None
    with pytest.raises(ValueError, match="unknown tracking backend"):
        parse_tracking("tensorbored")
    with pytest.raises(ValueError, match="unknown tracking keys"):
        parse_tracking({"backends": ["tensorboard"], "entity": "me"})
    scenes = make_image_folder(tmp_path / "scenes")
    assert _sweep("image_folder", scenes, tmp_path / "run", "classification", 32, track="neptune") == 2
    assert "unknown tracking backend(s) ['neptune']" in capsys.readouterr().err


def test_wandb_and_mlflow_backends_are_offline_or_local_and_tagged(tmp_path):
    """Their packages are not dependencies (not installed here): the backends are built, not started."""
    from mmengine.registry import VISBACKENDS

    from tasks.tracking import Tracking

    tags = dict(backbone="mae_vit_b16", checkpoint="x.pth", task="segmentation", dataset="mmseg_segmentation",
                protocol="frozen", fraction=0.05, split_seed=1, train_seed=2, config_hash="0123456789abcdef")
    settings = {"backends": ["tensorboard", "wandb", "mlflow"], "project": "rsbench"}
    config = Tracking(settings, tmp_path / "tracking", tags).visualizer()
    # the Runner's Visualizer gives a backend without save_dir its log folder; so does this
    local, board, wandb, mlflow = (VISBACKENDS.build({"save_dir": str(tmp_path / "log"), **b})
                                   for b in config["vis_backends"])  # fmt: skip
    name = "segmentation_mmseg_segmentation_mae_vit_b16_frozen_f0.05_s1-2_01234567"
    assert type(local).__name__ == "LocalVisBackend" and board._save_dir.endswith(f"tensorboard/{name}")
    assert wandb._init_kwargs["mode"] == "offline" and wandb._init_kwargs["name"] == name
    assert "fraction:0.05" in wandb._init_kwargs["tags"] and wandb._init_kwargs["config"]["train_seed"] == 2
    assert mlflow._tracking_uri == f"file://{(tmp_path / 'tracking' / 'mlflow' / 'mlruns').resolve()}"
    assert mlflow._tags["split_seed"] == "1" and mlflow._run_name == name and mlflow._exp_name == "rsbench"
