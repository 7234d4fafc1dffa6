"""The paper presets equal the released recipes table (configs/sweeps/released_recipes.csv), and docs/finetune.md
shows that table: neither can drift from the other."""

import ast
import importlib.util
import inspect
import math
import re

import pytest
from mmengine.config import Config

from benchmark.running.spec import SweepSpec
from rsdatasets import dataset_class
from tasks import TrainBudget, task_class
from tasks.base import RECIPE_FIELDS

_spec = importlib.util.spec_from_file_location("released_recipes", "scripts/released_recipes.py")
released = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(released)

ROWS = released.load()
PRESETS = sorted({r["preset"] for r in ROWS})


def _preset(name: str) -> SweepSpec:
    """The preset as the sweep reads it, without ``validate`` (its checkpoints and data are not here)."""
    cfg = Config.fromfile(str(released.REPO / "configs" / "sweeps" / f"{name}.py")).to_dict()
    return SweepSpec(**{k: v for k, v in cfg.items() if not k.startswith("_")})


def _default(cls, name: str):
    return inspect.signature(cls.__init__).parameters[name].default


def _actual(spec: SweepSpec, row: dict, dataset: str):
    task, option = row["task"], row["option"]
    if row["kind"] == "budget":
        return getattr(TrainBudget(**spec.budget(task, dataset)), option)
    if row["kind"] == "task":
        return spec.task_options(task, dataset).get(option, _default(task_class(task), option))
    if row["kind"] == "dataset":
        entry = spec.entry(task, dataset)
        return entry[option] if option in entry else _default(dataset_class(dataset), option)
    if row["kind"] == "protocol":
        return spec.protocols_of(task, dataset)
    raise AssertionError(f"unknown kind {row['kind']!r}")


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_equal_the_released_recipes_table(preset):
    spec = _preset(preset)
    checked = 0
    for row in (r for r in ROWS if r["preset"] == preset and r["kind"] != "none"):
        assert row["task"] in spec.tasks, row
        names = [row["dataset"]] if row["dataset"] else [e["name"] for e in spec.entries(row["task"])]
        expected = ast.literal_eval(row["preset_value"])
        for dataset in names:
            actual = _actual(spec, row, dataset)
            where = f"{preset} {row['task']}/{dataset} {row['option']}"
            assert _same(actual, expected), f"{where}: {actual!r} != {expected!r}"
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("preset", PRESETS)
def test_every_recipe_option_a_preset_sets_is_in_the_table(preset):
    spec = _preset(preset)
    listed = {(r["task"], r["option"]) for r in ROWS if r["preset"] == preset}
    for task in spec.tasks:
        for entry in spec.entries(task):
            changed = TrainBudget(**spec.budget(task, entry["name"])).recipe_changes()
            missing = sorted(k for k in changed if (task, k) not in listed)
            assert not missing, f"{preset} {task}: recipe options set but not in released_recipes.csv: {missing}"


def test_every_released_value_cites_its_file_and_line():
    cite = re.compile(r"^(MSSDF|CMID):[\w./-]+\.\w+:\d+([-,]\d+)*$")
    for row in ROWS:
        if row["released"] == "not released":
            assert not row["source"] and row["kind"] != "none"
            continue
        assert cite.match(row["source"]), row
        assert row["kind"] == "none" or row["option"] in RECIPE_FIELDS or row["kind"] != "budget" or row[
            "option"] in TrainBudget.__dataclass_fields__, row  # fmt: skip
        if row["kind"] == "none":
            assert row["note"], f"a released setting rsbench does not offer needs its reason: {row}"


def test_the_document_shows_the_table():
    assert released.table_in() == released.markdown(ROWS), "run: python scripts/released_recipes.py --write"
