"""Submit-to-row latency of ``rsbench sweep --executor slurm`` on a real one-node Slurm cluster.

Starts the cluster of tests/slurm_localhost.py (Debian's slurm-wlm, slurmdbd, munge, mariadb-server; run as root)
in a temporary folder and runs a sweep of ``--cells`` tiny segmentation cells as one job array, one job at a time
(``--slurm array_parallelism=1``: jobs do not compete for the cores, and each cell's times are its own). Per cell:

* ``queued``: sacct's Start - Submit; from the second cell on it is mostly the cells before it;
* ``gap``: from the previous job's End to this job's Start (the scheduler starting the next task of the array);
* ``launch``: from sacct's Start to the job's Python process logging its start (slurmd, slurmstepd, the sbatch
  script, srun, and Python with submitit);
* ``startup``: from there to the start of the cell: unpickling the job (which imports torch, mmengine, mmseg and
  the harness) and building the sweep runner; the last line gives the time of ``import benchmark.running.sweep`` in a
  fresh process, measured just before, to compare with;
* ``cell``: the cell's own time (``cell_time_s`` of its rows: data, model, training, test);
* ``to row``: start of the job (sacct's Start) to its rows in the store (polled every 0.1 s): launch + startup +
  cell + the store write;
* ``after``: from the rows to sacct's End (the log, submitit's result pickle, process exit).

The cell starts at (row time - ``cell_time_s``); sacct's times have one-second resolution, so ``gap``, ``launch``
and ``after`` are +-1 s. Last line: the first cell's submit-to-row latency, and the medians of the harness's share.

    python perf/slurm_latency.py            # ~2 minutes on 2 cores (as root)
    python perf/slurm_latency.py --cells 8
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from slurm_localhost import LocalSlurm  # noqa: E402

from benchmark.running.store import ResultStore  # noqa: E402

SPEC = """name = "slurm_latency"
dataset = dict(name="synthetic", root={root!r}, seed=0, size=32, n=16)
tasks = ["segmentation"]
backbones = [dict(name="random_init_vit_t16", checkpoint=None, kwargs=dict(img_size=32, patch_size=8, depth=1))]
fractions = [1.0]
train_seeds = list(range({cells}))
budgets = dict(segmentation=dict(max_iters=2, batch_size=4, warmup_iters=0, eval_batch_size=16, val_checks=0))
task_kwargs = dict(segmentation=dict(head_channels=16))
"""


def _sacct_times(cluster: LocalSlurm, array_id: str) -> dict[str, dict[str, float]]:
    out = cluster.run("sacct", "-n", "-X", "-P", "-o", "JobID,Submit,Start,End", "-j", array_id).stdout
    times = {}
    for line in out.splitlines():
        job, *stamps = line.split("|")
        times[job] = {k: datetime.fromisoformat(v).timestamp() for k, v in zip(("submit", "start", "end"), stamps)}
    return times


def _python_started(run_dir: Path, job: str) -> float:
    """When the job's Python process was up: submitit's first log line ("Starting with JobEnvironment...")."""
    logs = "".join(p.read_text() for p in (run_dir / "submitit" / job).glob("*_log.*"))  # .out or .err
    stamp = re.search(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\) - Starting with", logs)[1]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _jobs_of_cells(run_dir: Path) -> dict[str, str]:
    """config hash -> Slurm job id, from the ``slurm job:`` line of each cell log (named ..._<hash>.log)."""
    jobs = {}
    for log in (run_dir / "logs").glob("*.log"):
        found = re.search(r"^slurm job: (\S+)$", log.read_text(errors="replace"), re.M)
        if found:
            jobs[log.stem.rsplit("_", 1)[1]] = found.group(1)
    return jobs


def measure(cells: int, work: Path) -> list[dict]:
    with LocalSlurm(work / "slurm") as cluster:
        spec = work / "spec.py"
        spec.write_text(SPEC.format(root=str(work / "data"), cells=cells))
        run_dir = work / "run"
        argv = [sys.executable, "-m", "benchmark.cli", "sweep", str(spec), "--run-dir", str(run_dir),
                "--executor", "slurm", "--slurm", "time_min=5", "cpus=1", "array_parallelism=1"]  # fmt: skip
        env = {**cluster.env, "OMP_NUM_THREADS": "1"}
        # The data exist before the clock starts: the first job would otherwise generate them.
        subprocess.run([sys.executable, "-m", "benchmark.cli", "data", "synth", "--root", str(work / "data"),
                        "--size", "32", "--n", "16", "--splits", "train", "test"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        started = time.perf_counter()  # how long imports take on this machine now, to read ``startup`` against
        subprocess.run([sys.executable, "-c", "import benchmark.running.sweep"], env=env, check=True)
        import_s = time.perf_counter() - started
        seen: dict[str, float] = {}
        with open(work / "sweep.out", "w") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=work)
            while proc.poll() is None:
                try:
                    frame = ResultStore(run_dir).load()
                except Exception:  # not written yet
                    frame = None
                now = time.time()
                if frame is not None and not frame.empty:
                    for chash in set(frame["config_hash"]) - set(seen):
                        seen[chash] = now
                time.sleep(0.1)
        if proc.returncode != 0:
            raise SystemExit(f"the sweep failed ({proc.returncode}):\n{(work / 'sweep.out').read_text()[-3000:]}")
        frame = ResultStore(run_dir).load()
        cell_time = frame.groupby("config_hash")["cell_time_s"].first()
        jobs = _jobs_of_cells(run_dir)
        sacct = _sacct_times(cluster, next(iter(jobs.values())).split("_")[0])
        rows, previous_end = [], None
        for chash, job in sorted(jobs.items(), key=lambda kv: int(kv[1].split("_")[1])):
            t, python, row = sacct[job], _python_started(run_dir, job), seen[chash]
            cell = float(cell_time[chash])
            gap, previous_end = (t["start"] - previous_end if previous_end else float("nan")), t["end"]
            rows.append({"job": job, "queued": t["start"] - t["submit"], "gap": gap, "launch": python - t["start"],
                         "startup": row - cell - python, "cell": cell, "to row": row - t["start"],
                         "after": t["end"] - row, "submit to row": row - t["submit"], "import": import_s})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rsbench-slurm-") as tmp:
        rows = measure(args.cells, Path(tmp))
    cols = ("queued", "gap", "launch", "startup", "cell", "to row", "after")
    print(f"{'job':>6s} " + " ".join(f"{c:>8s}" for c in cols) + "   (seconds)")
    for row in rows:
        print(f"{row['job']:>6s} " + " ".join(f"{row[c]:8.1f}" for c in cols))
    med = {c: statistics.median(r[c] for r in rows if r[c] == r[c]) for c in cols if len(rows) > 1 or c != "gap"}
    first = rows[0]
    print(f"first cell: submit to row {first['submit to row']:.1f} s for a {first['cell']:.1f} s cell; median per "
          f"cell: job start to row {med['to row']:.1f} s = launch {med['launch']:.1f} s + startup {med['startup']:.1f}"
          f" s + cell {med['cell']:.1f} s; after the row {med['after']:.1f} s; between jobs "
          f"{med.get('gap', float('nan')):.1f} s; `import benchmark.running.sweep` in a fresh "
          f"process {first['import']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
