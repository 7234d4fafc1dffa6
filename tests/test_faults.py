"""Fault injection: no stale, lost or silently wrong result under faults, interruptions and bad input.

Each test drives the real CLI (``benchmark.cli.main``, in process unless a signal or a second process is the
point) and asserts what the user sees: one error line and an exit code, a ``failed: ...`` row, or a store
that is still whole. docs/reliability.md lists the same faults with their messages.
"""

import errno
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from benchmark.cli import main
from benchmark.running.store import ResultStore

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["--backbone-options", "img_size=32", "patch_size=8", "depth=2"]


def _data(tmp_path):
    return ["--dataset-options", "size=32", "n=8", f"root={tmp_path / 'data'}"]


def _finetune(tmp_path, *extra, task="segmentation", backbone="random_init_vit_t16"):
    return ["finetune", "--task", task, "--backbone", backbone, "--run-dir", str(tmp_path / "run"),
            *_data(tmp_path), *TINY, "--budget", "max_iters=2", "batch_size=2", "warmup_iters=0", *extra]  # fmt: skip


def _one_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ---- bad input: one line, exit 2, no row ----


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--dataset-options", "sizee=32"], ["unknown option(s) ['sizee'] for dataset 'synthetic'", "it takes"]),
        (["--task-options", "head_channelz=16"], ["unknown option(s) ['head_channelz'] for task 'segmentation'"]),
        (["--budget", "max_iter=2"], ["unknown budget keys ['max_iter']"]),
        (["--fraction", "1.5"], ["outside (0, 1]"]),
    ],
)
def test_unknown_options_and_bad_fractions(tmp_path, capsys, extra, needles):
    assert main(_finetune(tmp_path, *extra)) == 2
    _one_line(capsys, *needles)
    assert not (tmp_path / "run" / "results.parquet").exists()


def test_a_fraction_that_is_not_a_number(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(_finetune(tmp_path, "--fraction", "abc"))
    assert info.value.code == 2 and "invalid float value: 'abc'" in capsys.readouterr().err


@pytest.mark.parametrize("kind, name, needle", [
    ("backbone", "random_init_vit_t61", "Did you mean random_init_vit_t16"),
    ("task", "segmentaton", "Did you mean segmentation"),
    ("dataset", "synthetc", "Did you mean synthetic"),
])  # fmt: skip
def test_unknown_names_get_close_matches(tmp_path, capsys, kind, name, needle):
    argv = _finetune(tmp_path) + ["--dataset", "synthetic"]
    argv[argv.index(f"--{kind}") + 1] = name
    assert main(argv) == 2
    _one_line(capsys, needle)


def _checkpoint(tmp_path, kind: str):
    import backbones

    path = tmp_path / f"{kind}.pth"
    if kind == "missing":
        return path
    if kind == "random":
        path.write_bytes(os.urandom(4096))
        return path
    model = backbones.build("random_init_vit_t16", ("rgb", "dsm"), img_size=32, patch_size=8, depth=2)
    backbones.save_encoder_checkpoint(model, path, img_size=32, patch_size=8, depth=2)
    blob = torch.load(path, weights_only=False)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "wrong_keys":
        blob["state_dict"] = {f"other.{k}": v for k, v in blob["state_dict"].items()}
        torch.save(blob, path)
    elif kind == "wrong_shapes":
        key = next(k for k in blob["state_dict"] if k.endswith("qkv.weight"))
        blob["state_dict"][key] = torch.zeros(7, 7)
        torch.save(blob, path)
    return path


@pytest.mark.parametrize("kind, needle", [
    ("missing", "does not exist"), ("random", "could not be read"), ("truncated", "could not be read"),
    ("wrong_keys", "missing"), ("wrong_shapes", "shape"),
])  # fmt: skip
def test_a_checkpoint_that_does_not_load_is_exit_2_and_no_row(tmp_path, capsys, kind, needle):
    path = _checkpoint(tmp_path, kind)
    assert main(_finetune(tmp_path, backbone=f"random_init_vit_t16:{path}")) == 2
    _one_line(capsys, needle)
    assert not (tmp_path / "run" / "results.parquet").exists()


def test_modality_shapes_that_disagree():
    import backbones

    model = backbones.build("random_init_vit_t16", ("rgb", "dsm"), img_size=32, patch_size=8, depth=2)
    with pytest.raises(ValueError, match=r"modality shapes disagree \(rgb 32x32, dsm 16x16\)"):
        model({"rgb": torch.rand(1, 3, 32, 32), "dsm": torch.rand(1, 1, 16, 16)})


def test_a_sweep_spec_with_a_syntax_error_names_the_file_and_line(tmp_path, capsys):
    spec = tmp_path / "broken.py"
    spec.write_text('name = "x"\ntasks = ["segmentation"\nbackbones = []\n')
    assert main(["sweep", str(spec), "--run-dir", str(tmp_path / "run")]) == 2
    err = _one_line(capsys, "syntax error in the sweep spec", str(spec))
    assert f"{spec}:2" in err or f"{spec}:3" in err


def test_an_empty_or_missing_dataset_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "empty", tmp_path / "nowhere"):
        assert main(["data", "check", str(root), "--dataset", "potsdam"]) in (1, 2)
        err = capsys.readouterr()
        assert "potsdam" in (err.err + err.out) and "Traceback" not in err.err


def test_a_corrupt_results_store_is_one_line(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.parquet").write_bytes(b"PAR1 not really a parquet file")
    assert main(["report", str(tmp_path / "run")]) == 2
    _one_line(capsys, "is corrupt", "move it away")


def test_a_full_disk_mid_write_leaves_the_store_whole(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.append([dict(config_hash="a", metric="m", value=1.0, status="ok")])
    store.consolidate()
    real_csv, real_parquet = pd.DataFrame.to_csv, pd.DataFrame.to_parquet

    def full_disk(real):
        def write(self, path, *args, **kwargs):  # half the file is written, then the disk runs out of space
            real(self.head(1), path, *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")

        return write

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk(real_parquet))  # an append: its part file
    with pytest.raises(OSError, match="No space left"):
        store.append([dict(config_hash="b", metric="m", value=2.0, status="ok")])
    monkeypatch.undo()
    assert store.load()["config_hash"].tolist() == ["a"] and not list(tmp_path.rglob("*.tmp"))
    store.append([dict(config_hash="b", metric="m", value=2.0, status="ok")])
    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk(real_csv))  # a consolidation: parquet written, CSV not
    with pytest.raises(OSError, match="No space left"):
        store.consolidate()
    monkeypatch.undo()
    assert store.load()["config_hash"].tolist() == ["a", "b"]  # the old table, whole, and the part still applies
    assert not list(tmp_path.rglob("*.tmp")) and len(pd.read_csv(store.csv)) == 1
    assert store.consolidate() and len(pd.read_csv(store.csv)) == 2


def test_data_list_names_the_registered_datasets(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "potsdam" in out and "levir_cd" in out


# ---- a tiny fraction keeps one sample per class ----


@pytest.mark.slow  # over 2 s on 2 cores; `make test` runs it
def test_a_tiny_classification_fraction_keeps_every_class(tmp_path):
    argv = ["finetune", "--task", "classification", "--backbone", "random_init_vit_t16", "--fraction", "0.0001",
            "--run-dir", str(tmp_path / "run"), "--dataset-options", "size=32", "n=60", f"root={tmp_path / 'data'}",
            *TINY, "--budget", "max_iters=2", "batch_size=2", "warmup_iters=0", "val_checks=0"]  # fmt: skip
    assert main(argv) == 0
    rows = ResultStore(tmp_path / "run").load()
    classes = 6
    from rsdatasets.synthetic import SyntheticBenchmark

    present = len(set(SyntheticBenchmark(tmp_path / "data", "train", size=32, n=60).scene_labels().tolist()))
    assert present <= classes and set(rows["n_train"]) == {present}  # one per class present, not 1 of 60


# ---- divergence ----


def test_divergence_fails_the_cell_writes_no_metric_and_exits_1(tmp_path, capsys):
    assert main(_finetune(tmp_path, "--budget", "max_iters=20", "batch_size=2", "warmup_iters=0", "lr=1e12")) == 1
    rows = ResultStore(tmp_path / "run").load()
    assert len(rows) == 1 and rows["value"].isna().all()
    assert rows["status"].item().startswith("failed: non-finite loss at iter ")
    assert "non-finite loss" in (tmp_path / "run" / "report.md").read_text()  # the report lists it


# ---- stale results ----


def _spec(tmp_path):
    path = tmp_path / "spec.py"
    path.write_text(f"""name = "stale"
dataset = dict(name="synthetic", root={str(tmp_path / 'data')!r}, size=32, n=8)
tasks = ["segmentation"]
backbones = [dict(name="random_init_vit_t16", checkpoint=None, kwargs=dict(img_size=32, patch_size=8, depth=2))]
fractions = [1.0]
budgets = dict(segmentation=dict(max_iters=2, batch_size=2, warmup_iters=0))
task_kwargs = dict(segmentation=dict(head_channels=16))
""")
    return path


@pytest.mark.slow  # over 2 s on 2 cores; `make test` runs it
def test_rows_of_other_code_are_recomputed_unless_accepted(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["sweep", str(_spec(tmp_path)), "--run-dir", str(run)]) == 0
    before = ResultStore(run).load()
    monkeypatch.setattr("benchmark.running.cells.code_fingerprint", lambda: "changed-code")
    assert main(["sweep", str(_spec(tmp_path)), "--run-dir", str(run), "--accept-stale"]) == 0
    out = capsys.readouterr().out
    assert "1 cell(s) have results from other code" in out and "kept (--accept-stale)" in out
    assert ResultStore(run).load()["config_hash"].tolist() == before["config_hash"].tolist()
    assert main(["results", "verify", str(run)]) == 1  # the kept row is stale under this code
    assert "stale" in capsys.readouterr().out
    assert main(["sweep", str(_spec(tmp_path)), "--run-dir", str(run)]) == 0
    after = ResultStore(run).load()
    assert set(after["code_fingerprint"]) == {"changed-code"}  # recomputed; the old version replaced, not mixed
    assert len(after) == len(before)
    assert main(["results", "verify", str(run)]) == 0


def test_a_report_that_mixes_code_versions_says_so(tmp_path):
    from benchmark.analysis.summary import report_run

    rows = [dict(method="random_init", backbone="random_init_vit_t16", task="segmentation", dataset="synthetic",
                 fraction=1.0, n_train=4, split_seed=0, train_seed=s, metric="mIoU", value=50.0 + s, status="ok",
                 config_hash=f"h{s}", code_fingerprint=f"v{s}") for s in (0, 1)]  # fmt: skip
    ResultStore(tmp_path).append(rows)
    report_run(tmp_path, tmp_path, formats=["md"])
    assert "WARNING: these results come from 2 versions of the result code" in (tmp_path / "report.md").read_text()


# ---- verify ----


@pytest.mark.slow  # over 2 s on 2 cores; `make test` runs it
def test_verify_finds_duplicates_missing_cells_non_finite_values_and_csv_drift(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["sweep", str(_spec(tmp_path)), "--run-dir", str(run)]) == 0
    assert main(["results", "verify", str(run)]) == 0
    capsys.readouterr()
    store = ResultStore(run)
    frame = store.load()
    broken = pd.concat([frame, frame.iloc[:1]], ignore_index=True)  # a duplicate row
    broken.loc[1, "value"] = float("inf")
    broken.to_parquet(store.parquet, index=False)  # and the CSV no longer agrees
    import json

    spec = json.loads((run / "sweep_spec.json").read_text())
    spec["fractions"] = [0.5, 1.0]  # a cell the store lacks
    (run / "sweep_spec.json").write_text(json.dumps(spec))
    assert main(["results", "verify", str(run)]) == 1
    out = capsys.readouterr().out
    for check in ("duplicates", "non-finite", "csv", "missing"):
        line = next(x for x in out.splitlines() if x.startswith(check))
        assert "problem" in line, (check, out)


# ---- pre-emption ----


def _rsbench(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "benchmark.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _pretrain_config(tmp_path):
    from conftest import write_tiny_pretrain_config

    model = dict(type="MAE", arch="vit_t16", img_size=32, patch_size=8, encoder_kwargs=dict(depth=2), decoder_dim=32,
                 decoder_depth=1, decoder_heads=2, data_preprocessor=dict(type="BaseDataPreprocessor"))  # fmt: skip
    cfg = write_tiny_pretrain_config(tmp_path, "mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", model, epochs=6)
    cfg.write_text(cfg.read_text().replace("n=8", "n=32").replace("custom_hooks", "_x") +
                   "custom_hooks = []\n")  # fmt: skip
    return cfg


@pytest.mark.slow
def test_sigterm_during_pretraining_then_resume_gives_the_uninterrupted_encoder(tmp_path):
    cfg = _pretrain_config(tmp_path)
    full = _rsbench("pretrain", str(cfg), "--work-dir", str(tmp_path / "full"), cwd=tmp_path)
    assert full.wait(timeout=600) == 0, full.stderr.read()[-3000:]
    cut = _rsbench("pretrain", str(cfg), "--work-dir", str(tmp_path / "cut"), cwd=tmp_path)
    work = tmp_path / "cut"
    deadline = time.time() + 300
    while not list(work.glob("epoch_2.pth")) and time.time() < deadline:  # let two epochs finish, then stop it
        time.sleep(0.2)
    cut.send_signal(signal.SIGTERM)
    cut.send_signal(signal.SIGTERM)  # a second SIGTERM while it stops changes nothing
    assert cut.wait(timeout=300) == 75, cut.stderr.read()[-3000:]
    assert not (work / "encoder.pth").exists() and not list(work.glob("*.part"))
    resumed = _rsbench("pretrain", str(cfg), "--work-dir", str(work), "--resume", cwd=tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    a = torch.load(tmp_path / "full" / "encoder.pth", weights_only=True)["state_dict"]
    b = torch.load(work / "encoder.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit on CPU


def test_resume_skips_a_latest_checkpoint_that_was_cut_short(tmp_path):
    from benchmark.running.pretrain import readable_latest_checkpoint

    good, bad = tmp_path / "epoch_1.pth", tmp_path / "epoch_2.pth"
    torch.save({"meta": {}, "state_dict": {}}, good)
    bad.write_bytes(good.read_bytes()[:20])  # killed during the write (without the rename it would be here)
    os.utime(bad, (time.time() + 5, time.time() + 5))
    (tmp_path / "last_checkpoint").write_text(str(bad))
    assert readable_latest_checkpoint(tmp_path) == good
    (tmp_path / "last_checkpoint").write_text("")  # killed while writing the pointer
    assert readable_latest_checkpoint(tmp_path) == good


@pytest.mark.slow
def test_sigterm_during_a_sweep_loses_no_row_and_the_rerun_matches(tmp_path):
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text().replace("fractions = [1.0]", "fractions = [0.25, 0.5, 0.75, 1.0]").replace(
        "max_iters=2", "max_iters=60"))  # fmt: skip
    reference = _rsbench("sweep", str(spec), "--run-dir", str(tmp_path / "ref"), cwd=tmp_path)
    assert reference.wait(timeout=600) == 0
    cut = _rsbench("sweep", str(spec), "--run-dir", str(tmp_path / "cut"), cwd=tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline:  # stop it in the middle of a cell after the first one finished
        frame = ResultStore(tmp_path / "cut").load() if ResultStore(tmp_path / "cut").exists() else None
        if frame is not None and frame["config_hash"].nunique() >= 1:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    cut.send_signal(signal.SIGTERM)
    assert cut.wait(timeout=300) == 75, cut.stderr.read()[-2000:]
    partial = ResultStore(tmp_path / "cut").load()
    assert (partial["status"] == "ok").all() and partial["config_hash"].nunique() < 4  # no failed row for the cut cell
    rerun = _rsbench("sweep", str(spec), "--run-dir", str(tmp_path / "cut"), cwd=tmp_path)
    assert rerun.wait(timeout=600) == 0
    ref = ResultStore(tmp_path / "ref").load().set_index(["config_hash", "metric"])["value"].sort_index()
    got = ResultStore(tmp_path / "cut").load().set_index(["config_hash", "metric"])["value"].sort_index()
    pd.testing.assert_series_equal(ref, got)


# ---- determinism ----


@pytest.mark.slow
def test_same_seeds_same_subset_and_numbers_across_processes(tmp_path):
    spec = _spec(tmp_path)
    for name in ("a", "b"):
        proc = _rsbench("sweep", str(spec), "--run-dir", str(tmp_path / name), cwd=tmp_path)
        assert proc.wait(timeout=600) == 0
    a = ResultStore(tmp_path / "a").load().set_index(["config_hash", "metric"])["value"].sort_index()
    b = ResultStore(tmp_path / "b").load().set_index(["config_hash", "metric"])["value"].sort_index()
    pd.testing.assert_series_equal(a, b)


def test_the_same_seeds_give_the_same_label_subset_bit_for_bit():
    import numpy as np

    from benchmark.running.splits import carve_validation, nested_label_subsets

    strata = np.random.default_rng(0).integers(0, 6, 400)
    first = nested_label_subsets(strata, [0.01, 0.05, 0.25, 1.0], 3, every_stratum=True)
    again = nested_label_subsets(strata, [0.01, 0.05, 0.25, 1.0], 3, every_stratum=True)
    assert all(np.array_equal(first[f], again[f]) for f in first)
    assert set(first[0.01]) <= set(first[0.05]) <= set(first[0.25])  # nested, with every class at 1 %
    assert set(strata[first[0.01]]) == set(range(6))
    fit, val = carve_validation(strata[first[0.25]], 20, 3)
    assert np.array_equal(fit, carve_validation(strata[first[0.25]], 20, 3)[0])
