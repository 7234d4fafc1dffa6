import math
import os

import pandas as pd
import pytest

from benchmark.analysis.tables import failed_cells, seed_table, summary_table
from benchmark.running.store import ResultStore


def _rows(chash, seed, value, fraction=0.1, status="ok"):
    return [
        dict(method="random_init", backbone="b", task="segmentation", dataset="synthetic", fraction=fraction,
             n_train=10, split_seed=0, train_seed=seed, metric=m, value=v, status=status, config_hash=chash)
        for m, v in (("mIoU", value), ("OA", value + 10))
    ]  # fmt: skip


def test_append_round_trips_through_parts_then_one_parquet_and_csv(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_rows("a", 0, 50.0))
    store.append(_rows("b", 1, 60.0))
    assert not (tmp_path / "results.parquet").exists() and len(list(tmp_path.glob("results.parts/*/*.parquet"))) == 2
    frame = store.load()
    assert len(frame) == 4 and frame["config_hash"].tolist() == ["a", "a", "b", "b"]  # in the order appended
    assert store.consolidate() is True and store.consolidate() is False
    assert not list(tmp_path.glob("results.parts/*/*"))
    assert len(pd.read_csv(tmp_path / "results.csv")) == 4
    assert store.load().equals(frame)
    assert not list(tmp_path.rglob("*.tmp"))


def test_parts_apply_on_top_of_the_consolidated_table(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_rows("a", 0, 50.0) + _rows("b", 1, 60.0))
    store.consolidate()
    store.append(_rows("a", 0, 55.0))  # a re-run of a consolidated cell
    store.append(_rows("c", 2, 70.0))
    frame = store.load()
    assert frame["config_hash"].tolist() == ["b", "b", "a", "a", "c", "c"]
    assert frame.loc[(frame["config_hash"] == "a") & (frame["metric"] == "mIoU"), "value"].item() == 55.0
    assert store.cell_status("a") == "ok" and store.cell_status("b") == "ok" and store.cell_status("z") is None
    store.consolidate()
    assert store.load().equals(frame)


def test_a_cell_computed_by_other_code_is_replaced_by_its_cell_key(tmp_path):
    store = ResultStore(tmp_path)
    old = [dict(r, cell_key="k1") for r in _rows("old-code", 0, 50.0)]
    store.append(old)
    store.consolidate()
    assert store.cell_status("new-code", "k1") is None  # the cell's rows are another code's
    store.append([dict(r, cell_key="k1") for r in _rows("new-code", 0, 52.0)])
    assert set(store.load()["config_hash"]) == {"new-code"} and store.cell_status("new-code", "k1") == "ok"


def test_a_store_of_the_single_file_kind_reads_as_it_is(tmp_path):
    legacy = pd.DataFrame(_rows("a", 0, 50.0))
    legacy.to_parquet(tmp_path / "results.parquet", index=False)
    legacy.to_csv(tmp_path / "results.csv", index=False)
    store = ResultStore(tmp_path)
    assert store.exists() and store.load()["config_hash"].tolist() == ["a", "a"] and store.cell_status("a") == "ok"
    store.append(_rows("b", 0, 60.0))
    assert store.consolidate() and len(pd.read_parquet(tmp_path / "results.parquet")) == 4


def test_rerun_of_a_cell_replaces_its_rows(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_rows("a", 0, 50.0))
    store.append(_rows("a", 0, 55.0))
    frame = store.load()
    assert len(frame) == 2
    assert frame.loc[frame["metric"] == "mIoU", "value"].item() == 55.0


def test_done_hashes_only_count_ok_cells(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_rows("a", 0, 50.0))
    store.append(_rows("b", 0, math.nan, status="failed: RuntimeError: boom"))
    assert store.done_config_hashes() == {"a"}
    assert failed_cells(store.load())["status"].str.startswith("failed").all()


def test_rows_without_required_columns_are_refused(tmp_path):
    with pytest.raises(ValueError, match="config_hash"):
        ResultStore(tmp_path).append([dict(metric="mIoU", value=1.0, status="ok")])
    assert not ResultStore(tmp_path).exists()


def test_tables_average_over_seeds(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_rows("a", 0, 50.0) + _rows("b", 1, 60.0))
    per_seed = seed_table(store.load(), "mIoU")
    assert list(per_seed.columns) == ["seed 0", "seed 1", "mean", "std"]
    assert per_seed.index.names == ["backbone", "fraction", "n_train"]
    assert per_seed["mean"].item() == 55.0
    assert per_seed["std"].item() == pytest.approx(7.07, abs=0.01)
    summary = summary_table(store.load(), "mIoU")
    assert summary.loc[("segmentation", "b"), 0.1] == "55.00 ± 7.07"


def test_a_forced_rerun_replaces_every_row_of_the_cell(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_rows("a", 0, 50.0))
    store.append(_rows("a", 0, math.nan, status="failed: RuntimeError: boom")[:1])  # a failed cell has one row
    frame = store.load()
    assert len(frame) == 1 and frame["status"].item().startswith("failed")
    assert store.done_config_hashes() == set()  # no stale "ok" row of the old run keeps the cell "done"


def test_leftovers_of_a_killed_writer_are_ignored_or_removed_and_csv_resynced(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_rows("a", 0, 50.0))
    store.consolidate()
    (tmp_path / "results.parquet.tmp").write_bytes(b"half a file")  # a consolidation killed mid-write
    (tmp_path / "results.parts" / "b").mkdir(parents=True)
    (tmp_path / "results.parts" / "b" / ".123-4.parquet.tmp").write_bytes(b"half a part")  # an append killed
    assert len(store.load()) == 2
    store.append(_rows("b", 1, 60.0))
    store.consolidate()
    assert not list(tmp_path.glob("*.tmp"))
    # A consolidation killed between its two renames leaves the new parquet and the old CSV.
    old_csv = (tmp_path / "results.csv").read_bytes()
    store.append(_rows("c", 2, 70.0))
    store.consolidate()
    (tmp_path / "results.csv").write_bytes(old_csv)
    os.utime(tmp_path / "results.csv", ns=(0, 0))
    assert store.sync_csv() is True
    assert len(pd.read_csv(tmp_path / "results.csv")) == len(store.load()) == 6
    assert store.sync_csv() is False  # already in step: nothing rewritten
