"""What identifies a cell, and what does not: pinned cell keys, statistics outside the code fingerprint, and
configs that share their bases without changing what they resolve to (pins taken before issue 24's refactor: at
ed97481, and for the pretraining configs that gained a LossGradientHook since, at main 5d2832f)."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from mmengine.config import Config

from benchmark.running.cell_runner import CellRunner
from benchmark.running.cells import cell_config, cell_key, expand_cells
from benchmark.running.provenance import RESULT_CODE, code_fingerprint
from benchmark.running.spec import SweepSpec

REPO = Path(__file__).resolve().parents[1]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _tiny() -> SweepSpec:
    return SweepSpec(name="pin", backbones=[dict(name="random_init_vit_t16", checkpoint=None,
                                                 kwargs=dict(img_size=32, patch_size=8, depth=1))],
                     tasks=["segmentation"], dataset=dict(name="synthetic", seed=0, size=32, n=16), fractions=[0.5],
                     budgets=dict(segmentation=dict(max_iters=2, batch_size=4)),
                     task_kwargs=dict(segmentation=dict(head_channels=16)))  # fmt: skip


def test_the_cell_key_of_a_fixed_cell_is_pinned():
    """A store's rows keep matching their cells under new code (``--accept-stale``) only while the cell key holds."""
    cell = expand_cells(_tiny())[0]
    assert cell.cell_key == cell_key(cell_config(_tiny(), cell)) == "60a28591f14dbfbe"


@pytest.mark.parametrize("preset, digest", [
    ("demo", "a4b6328613e6f3e0"), ("study_synthetic", "6f389444a6c4a462"),
    ("study_finetune_synthetic", "daea9e228d7bfaa3"),  # the cells of docs/results/study_finetune_synthetic (f481f00)
])
def test_presets_on_a_shared_base_keep_their_cells(preset, digest):
    spec = SweepSpec.from_file(REPO / "configs" / "sweeps" / f"{preset}.py").with_pretrained("/tmp/rd")
    assert _digest([c.cell_key for c in expand_cells(spec)]) == digest


def test_the_study_without_its_robustness_block_and_equal_compute_line_keeps_its_cells():
    """Issue 22 added corruptions and a labelled second MAE to the study: without them, every cell is as before."""
    from dataclasses import replace

    spec = SweepSpec.from_file(REPO / "configs" / "sweeps" / "study_synthetic.py").with_pretrained("/tmp/rd")
    assert spec.corruptions and any("label" in b for b in spec.backbones)
    before = replace(spec, corruptions=[], backbones=[b for b in spec.backbones if "label" not in b])
    assert _digest([c.cell_key for c in expand_cells(before)]) == "c465998aa0d5106b"  # the pin before issue 22


@pytest.mark.parametrize("config, digest", [
    ("cmid_resnet50_rgb-dsm_1xb32-2e_synthetic64.py", "231a1271200542d7"),
    ("cmid_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", "d3312e7e1c24e43b"),
    ("mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", "7cd491b70379aea6"),
    ("mssdf_vit-b16_rgb-dsm_16xb32-500e_hr-pairs.py", "371c21f73591d09a"),
    ("mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", "596a74615fcf32a4"),
    ("supervised_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", "6f4dd3056d69d6d2"),
])  # fmt: skip
def test_pretraining_configs_resolve_as_before_and_inherit_the_cpu_base_not_mssdf(config, digest):
    path = REPO / "configs" / "pretrain" / config
    assert _digest(Config.fromfile(str(path)).to_dict()) == digest
    if not config.startswith("mssdf") and "vit-t8" in config:
        assert "_base_/cpu_vit-t8" in path.read_text() and "mssdf" not in path.read_text().split("_base_ =")[1][:80]


def test_changing_the_interval_code_leaves_every_stored_cell_fresh(tmp_path):
    """Intervals are computed when a run is read: a new resample count is a report change, never a stale cell."""
    copy = tmp_path / "repo"
    for entry in (*RESULT_CODE, "benchmark/analysis"):
        src = REPO / entry
        if src.is_dir():
            shutil.copytree(src, copy / entry, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (copy / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, copy / entry)
    before = code_fingerprint(copy)
    intervals = copy / "benchmark" / "analysis" / "intervals.py"
    text = intervals.read_text()
    assert "N_RESAMPLES = 2000" in text
    intervals.write_text(text.replace("N_RESAMPLES = 2000", "N_RESAMPLES = 500").replace("CONFIDENCE = 0.95",
                                                                                          "CONFIDENCE = 0.9"))
    code_fingerprint.cache_clear()  # it is computed once per process; here the files changed on purpose
    assert code_fingerprint(copy) == before
    splits = copy / "benchmark" / "running" / "splits.py"
    splits.write_text(splits.read_text() + "\n# a change to code that decides numbers\n")
    code_fingerprint.cache_clear()
    assert code_fingerprint(copy) != before  # the control: result code does count

    # and so a store's cells stay done: their config hashes do not move
    spec = _tiny()
    cells = expand_cells(spec)
    runner = CellRunner(spec, tmp_path / "run")
    runner.store.append([{"config_hash": c.config_hash, "cell_key": c.cell_key, "metric": "mIoU", "value": 1.0,
                          "status": "ok"} for c in cells])  # fmt: skip
    from benchmark.analysis import intervals as live

    live.N_RESAMPLES = 500
    try:
        again = expand_cells(spec)
        assert runner.pending(again) == [] and runner.stale(again) == []
    finally:
        live.N_RESAMPLES = 2000


def test_checkpoints_and_rows_name_a_method_alike():
    """The supervised control's encoder.pth said ``supervisedpretrain`` while its rows said ``supervised``."""
    import backbones
    from backbones.cmid.model import CMID
    from backbones.mae.model import MAE
    from backbones.mssdf.model import MSSDF
    from backbones.supervised.model import SupervisedPretrain
    from benchmark.running.pretrain import method_name

    for model, backbone in ((SupervisedPretrain, "supervised_vit_t16"), (MSSDF, "mssdf_vit_t16"),
                            (MAE, "mae_vit_t16"), (CMID, "cmid_vit_t16")):  # fmt: skip
        assert method_name(model) == backbones.get_entry(backbone).method
