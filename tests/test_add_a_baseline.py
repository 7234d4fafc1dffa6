"""docs/add_a_baseline.md works as written: its minimal module, dropped into a plugin folder and named in
$RSBENCH_PLUGINS, is listed, trained by a task, run by the harness and saved/loaded, with no other change."""

import math
import re
import sys
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import isolate_registry
from rich.console import Console
from torch.utils.data import Subset

import backbones
from benchmark import cli
from benchmark.running.spec import SweepSpec
from rsbench.registry import BACKBONES
from tasks import FinetunePlan, TrainBudget, finetune, get_task

DOC = Path(__file__).resolve().parents[1] / "docs" / "add_a_baseline.md"
NAME = "my_convnext_atto"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, busy 2-core machine


def doc_block(first_line: str) -> str:
    """The ```python block of the page that starts with ``first_line``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    matches = [b for b in blocks if b.startswith(first_line)]
    assert len(matches) == 1, f"docs/add_a_baseline.md should have one python block starting {first_line!r}"
    return matches[0]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The page's module as a plugin; registry, environment and import state are restored afterwards."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "my_baseline.py").write_text(doc_block("# my_baseline.py"))
    isolate_registry(monkeypatch, BACKBONES)  # the plugin's entries vanish after
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("RSBENCH_PLUGINS", "my_baseline")
    yield
    sys.modules.pop("my_baseline", None)


def test_listed_by_rsbench_backbones(plugin, capsys, monkeypatch):
    monkeypatch.setattr(cli, "console", Console(width=200))  # no wrapping of the table's cells
    assert cli.main(["backbones", "my_*"]) == 0
    out = capsys.readouterr().out
    assert NAME in out and "my_method" in out and "convnext_atto" in out and "random_init" not in out
    spec = backbones.get_spec(NAME)
    assert (spec.method, spec.arch, spec.default_cfg) == ("my_method", "convnext_atto", {"img_size": 64})


def test_trained_by_a_task_at_batch_sizes_4_and_1(plugin, data, tmp_path):
    train, test = data
    model = backbones.build(NAME, ("rgb", "dsm"))
    feats = model({"rgb": torch.rand(1, 3, 32, 32), "dsm": torch.rand(1, 1, 32, 32)})
    assert [f.shape[-1] for f in feats] == [8, 4, 2, 1] and [f.shape[1] for f in feats] == model.out_channels
    build = partial(backbones.build, NAME, ("rgb", "dsm"))
    for batch, norm in ((4, "BN"), (1, "GN")):
        task = get_task("segmentation", head_channels=16, norm=norm)
        budget = TrainBudget(max_iters=3, batch_size=batch, eval_batch_size=batch, lr=1e-3, warmup_iters=0)
        result = finetune(FinetunePlan(
            task, build, Subset(train, range(8)), Subset(test, range(4)), ("rgb", "dsm"), budget, 0,
            tmp_path / str(batch)
        ))  # fmt: skip
        assert len(result.loss_history) == 3 and all(math.isfinite(v) for v in result.loss_history)
        assert 0 <= result.metrics["mIoU"] <= 100


@pytest.mark.slow  # over 2 s on 2 cores; `make test` runs it
def test_run_by_the_harness_and_loaded_from_a_checkpoint(plugin, tmp_path):
    run = tmp_path / "run"
    args = ["finetune", "--task", "segmentation", "--backbone", NAME, "--fraction", "0.5", "--run-dir", str(run),
            "--dataset-options", "size=32", "n=8", f"root={tmp_path / 'data'}", "--task-options", "head_channels=16",
            "--budget", "max_iters=2", "batch_size=4", "warmup_iters=0"]  # fmt: skip
    assert cli.main(args) == 0
    rows = pd.read_parquet(run / "results.parquet")
    assert set(rows["backbone"]) == {NAME} and set(rows["method"]) == {"my_method"}
    assert (rows["status"] == "ok").all() and (rows["n_train"] == 4).all()

    model = backbones.build(NAME, ("rgb", "dsm"))
    path = backbones.save_encoder_checkpoint(model, tmp_path / "enc.pth", method="my_method")
    again = backbones.build(NAME, ("rgb", "dsm"), checkpoint=path)
    assert again.load_report.missing == [] and again.load_report.unexpected == []
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_the_sweep_config_of_the_page_validates(plugin, tmp_path):
    path = tmp_path / "my_method_synthetic.py"
    path.write_text(doc_block('name = "my_method_synthetic"'))
    spec = SweepSpec.from_file(path)  # checks backbone and task names, fractions and budgets
    assert [b["name"] for b in spec.backbones] == [NAME, "random_init_vit_t16"]


def test_a_file_dropped_under_backbones_registers_itself(monkeypatch, capsys):
    """The page's other route: the same module saved as backbones/<name>.py, no variable, no import line."""
    monkeypatch.delenv("RSBENCH_PLUGINS", raising=False)
    isolate_registry(monkeypatch, BACKBONES, rescan=True)  # the next lookup scans backbones/ again, the new file too
    path = Path(backbones.__file__).parent / "zz_doc_baseline_test.py"
    path.write_text(doc_block("# my_baseline.py"))
    try:
        assert cli.main(["backbones", "my_*"]) == 0
        assert NAME in capsys.readouterr().out
    finally:
        path.unlink()
        sys.modules.pop("backbones.zz_doc_baseline_test", None)
