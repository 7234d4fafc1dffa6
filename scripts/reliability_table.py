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

import pandas as pd
import torch

WORK = Path(tempfile.mkdtemp(prefix="rsbench_faults_"))
DATA = ["--dataset-options", "size=32", "n=16", f"root={WORK / 'data'}"]
TINY = ["--backbone-options", "img_size=32", "patch_size=8", "depth=2"]
BUDGET = ["--budget", "max_iters=4", "batch_size=2", "warmup_iters=0"]


def rsbench(*args: str, run: str | None = None, signal_after: float | None = None) -> tuple[int, str, str]:
    cmd = [sys.executable, "-m", "benchmark.cli", *args]
    if run:
        cmd += ["--run-dir", str(WORK / run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000"}  # rich must not wrap the line shown
    proc = subprocess.Popen(cmd, cwd=WORK, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if signal_after is not None:
        time.sleep(signal_after)
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=900)
    return proc.returncode, out, err


def rows_of(run: str) -> str:
    path = WORK / run / "results.parquet"
    if not path.is_file():
        return "none"
    frame = pd.read_parquet(path)
    n_train = ", ".join(str(int(n)) for n in sorted(set(frame["n_train"].dropna())))
    return (f"{frame['config_hash'].nunique()} cell(s): " + ", ".join(sorted(set(frame["status"])))[:120]
            + (f" (n_train {n_train})" if n_train else ""))  # fmt: skip


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
    print("| fault or bad input | command | exit | what the user sees | result rows |")
    print("|---|---|---|---|---|")
    for what, cmd, code, seen, rows in cases:
        print(f"| {what} | {cmd} | {code} | {seen} | {rows} |")
    print(f"\n<!-- made by scripts/reliability_table.py in {json.dumps(str(WORK))} -->")


if __name__ == "__main__":
    main()
