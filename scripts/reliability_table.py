"""Runs every fault and bad input of docs/reliability.md through the real CLI and prints the table's rows.

    python scripts/reliability_table.py > /tmp/table.md     # ~3 minutes on 2 cores

Each row: what was tried, the command, its exit code, what the user saw (stderr's last line, or the row's
status) and whether a result row was written. Everything runs in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

WORK = Path(tempfile.mkdtemp(prefix="rsbench_faults_"))
DATA = ["--dataset-options", "size=32", "n=16", f"root={WORK / 'data'}"]
TINY = ["--backbone-options", "img_size=32", "patch_size=8", "depth=2"]
BUDGET = ["--budget", "max_iters=4", "batch_size=2", "warmup_iters=0"]


def rsbench(*args: str, run: str | None = None, signal_after: float | None = None,
            env: dict | None = None) -> tuple[int, str, str]:  # fmt: skip
    cmd = [sys.executable, "-m", "benchmark.cli", *args]
    if run:
        cmd += ["--run-dir", str(WORK / run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000", "PYTHONPATH": str(WORK), **(env or {})}
    proc = subprocess.Popen(cmd, cwd=WORK, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if signal_after is not None:
        time.sleep(signal_after)
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=900)
    return proc.returncode, out, err


def rows_of(run: str) -> str:
    from benchmark.running.store import ResultStore

    store = ResultStore(WORK / run)
    if not store.exists():
        return "none"
    frame = store.load()
    dup = int(frame.duplicated(["config_hash", "metric"]).sum())
    n_train = ", ".join(str(int(n)) for n in sorted(set(frame["n_train"].dropna())))
    return (f"{frame['config_hash'].nunique()} cell(s): " + ", ".join(sorted(set(frame["status"])))[:120]
            + (f" (n_train {n_train})" if n_train else "") + (f"; {dup} duplicated rows" if dup else ""))  # fmt: skip


def shown(cmd_args) -> str:
    text = " ".join(shlex.quote(a) for a in cmd_args).replace(str(WORK), "$TMP")
    return f"`rsbench {text}`"


#: What marks the line a user reads first; the last line otherwise (a table's border says nothing).
TELLING = ("error", "bad ", "failed", "sigterm", "stopped", "results:")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    telling = [line for line in lines if any(word in line.lower() for word in TELLING)]
    line = telling[0] if telling else (lines[-1] if lines else "")
    return line.replace(str(WORK), "$TMP").replace("|", "\\|")[:240]


def checkpoints() -> dict[str, Path]:
    import backbones

    model = backbones.build("random_init_vit_t16", ("rgb", "dsm"), img_size=32, patch_size=8, depth=2)
    good = backbones.save_encoder_checkpoint(model, WORK / "good.pth", img_size=32, patch_size=8, depth=2)
    blob = torch.load(good, weights_only=False)
    out = {"missing": WORK / "missing.pth", "random bytes": WORK / "random.pth", "truncated": WORK / "truncated.pth",
           "wrong keys": WORK / "wrong_keys.pth", "wrong shapes": WORK / "wrong_shapes.pth"}  # fmt: skip
    out["random bytes"].write_bytes(os.urandom(4096))
    out["truncated"].write_bytes(good.read_bytes()[:1000])
    torch.save({**blob, "state_dict": {f"other.{k}": v for k, v in blob["state_dict"].items()}}, out["wrong keys"])
    key = next(k for k in blob["state_dict"] if k.endswith("qkv.weight"))
    torch.save({**blob, "state_dict": {**blob["state_dict"], key: torch.zeros(7, 7)}}, out["wrong shapes"])
    return out


STUCK_PLUGIN = """
import threading
from tasks import engine

_hook = engine.FiniteLossHook.after_train_iter


def _wait_for_ever_in_the_first_cell(self, runner, batch_idx, data_batch=None, outputs=None):
    if runner.iter == 1 and not getattr(engine, "_stuck_once", False):
        engine._stuck_once = True
        threading.Event().wait()
    return _hook(self, runner, batch_idx, data_batch, outputs)


engine.FiniteLossHook.after_train_iter = _wait_for_ever_in_the_first_cell
"""


def _tiny_spec(name: str, **extra) -> Path:
    fields = dict(name=name, tasks=["segmentation"], fractions=[0.5, 1.0],
                  backbones=[dict(name="random_init_vit_t16", checkpoint=None,
                                  kwargs=dict(img_size=32, patch_size=8, depth=2))],
                  dataset=dict(name="synthetic", root=str(WORK / "data"), size=32, n=16),
                  budgets=dict(segmentation=dict(max_iters=4, batch_size=2, warmup_iters=0)), **extra)  # fmt: skip
    path = WORK / f"{name}.py"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in fields.items()))
    return path


def _stuck_spec() -> Path:
    (WORK / "stuck_plugin.py").write_text(STUCK_PLUGIN)
    return _tiny_spec("stuck", stall_timeout_s=5.0)


def _two_sweeps_at_once() -> tuple:
    """Two `rsbench sweep` of one spec into one run directory at the same time: each cell once, no duplicate."""
    spec = _tiny_spec("shared", train_seeds=[0, 1, 2, 3])
    args = ["sweep", str(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000"}
    cmd = [sys.executable, "-m", "benchmark.cli", *args, "--run-dir", str(WORK / "shared_run")]
    procs = [subprocess.Popen(cmd, cwd=WORK, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=900) for p in procs]
    codes = "/".join(str(p.returncode) for p in procs)
    seen = " / ".join(last_line(err + "\n" + out) for out, err in outs)
    return ("two sweeps of one spec into one store at once", shown(args) + " twice, concurrently", codes, seen,
            rows_of("shared_run"))  # fmt: skip


def _flat_resources() -> tuple:
    """Files, threads and memory of one sweep process over many cells (perf/sweep_scale.py)."""
    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / "perf" / "sweep_scale.py"), "--cells", "200",
           "--window", "50"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = proc.stdout.strip().splitlines()
    seen = next((line for line in lines if line.startswith("sweep process")), proc.stderr[-200:]).replace("|", "\\|")
    return ("200 cells in one sweep process: open files and memory", "`python perf/sweep_scale.py --cells 200 "
            "--window 50`", proc.returncode, seen, "200 cells: ok (a temporary store)")


def main() -> None:
    cases = []

    def case(what: str, args: list[str], run: str | None = "run", **kw) -> None:
        import shutil

        shutil.rmtree(WORK / run, ignore_errors=True) if run else None
        code, out, err = rsbench(*args, run=run, **kw)
        seen = last_line(err + "\n" + out) if what != "list the datasets" else (
            f"a table of {sum(line.startswith('│') for line in out.splitlines())} datasets")
        cases.append((what, shown(args), code, seen, rows_of(run) if run else "-"))

    finetune = ["finetune", "--task", "segmentation", "--backbone", "random_init_vit_t16", *DATA, *TINY, *BUDGET]
    case("unknown dataset option", [*finetune, "--dataset-options", "sizee=32"])
    case("unknown task option", [*finetune, "--task-options", "head_channelz=16"])
    case("unknown budget key", [*finetune[:-4], "--budget", "max_iter=4"])
    case("fraction outside (0, 1]", [*finetune, "--fraction", "1.5"])
    case("fraction not a number", [*finetune, "--fraction", "abc"])
    case("unknown backbone (close match)", ["finetune", "--task", "segmentation", "--backbone", "random_init_vit_t61",
                                            *DATA, *TINY, *BUDGET])  # fmt: skip
    case("unknown task (close match)", ["finetune", "--task", "segmentaton", "--backbone", "random_init_vit_t16",
                                        *DATA, *TINY, *BUDGET])  # fmt: skip
    case("unknown dataset (close match)", [*finetune, "--dataset", "synthetc"])
    for kind, path in checkpoints().items():
        case(f"checkpoint: {kind}", ["finetune", "--task", "segmentation", "--backbone",
                                     f"random_init_vit_t16:{path}", *DATA, *TINY, *BUDGET])  # fmt: skip
    spec = WORK / "broken.py"
    spec.write_text('name = "x"\ntasks = ["segmentation"\n')
    case("sweep spec with a syntax error", ["sweep", str(spec)])
    unknown = WORK / "unknown_key.py"
    unknown.write_text('name = "x"\ntasks = ["segmentation"]\nbackbones = []\ndataset = dict(name="synthetic")\n'
                       'fractons = [0.5]\n')  # fmt: skip
    case("sweep spec with an unknown key", ["sweep", str(unknown)])
    (WORK / "empty").mkdir(exist_ok=True)
    case("empty dataset folder", ["data", "check", str(WORK / "empty"), "--dataset", "potsdam"], run=None)
    case("missing dataset folder", ["data", "check", str(WORK / "nowhere"), "--dataset", "potsdam"], run=None)
    (WORK / "corrupt").mkdir(exist_ok=True)
    (WORK / "corrupt" / "results.parquet").write_bytes(b"PAR1 not a parquet file")
    case("corrupt results store", ["report", str(WORK / "corrupt")], run=None)
    case("divergence (lr=1e12)", [*finetune[:-4], "--budget", "max_iters=20", "batch_size=2", "warmup_iters=0",
                                  "lr=1e12"])  # fmt: skip
    case("tiny classification fraction", ["finetune", "--task", "classification", "--backbone", "random_init_vit_t16",
                                          "--fraction", "0.0001", "--dataset-options", "size=32", "n=60",
                                          f"root={WORK / 'data'}", *TINY, *BUDGET])  # fmt: skip
    case("list the datasets", ["data", "list"], run=None)
    slow = [*finetune[:-4], "--budget", "max_iters=400", "batch_size=2", "warmup_iters=0"]
    case("SIGTERM during a cell", slow, signal_after=25.0)
    stuck = _stuck_spec()
    case("a cell that stops making progress (waits for ever at iteration 2)", ["sweep", str(stuck)],
         env={"RSBENCH_PLUGINS": "stuck_plugin"})  # fmt: skip
    cases.append(_two_sweeps_at_once())
    cases.append(_flat_resources())
    print("| fault or bad input | command | exit | what the user sees | result rows |")
    print("|---|---|---|---|---|")
    for what, cmd, code, seen, rows in cases:
        print(f"| {what} | {cmd} | {code} | {seen} | {rows} |")
    print(f"\n<!-- made by scripts/reliability_table.py in {json.dumps(str(WORK))} -->")


if __name__ == "__main__":
    main()
