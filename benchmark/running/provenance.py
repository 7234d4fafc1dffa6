"""Where a number came from: code version, hardware, stable hashes of configs."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from functools import cache
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


@cache
def code_version() -> str:
    """``git describe`` of the checkout (with -dirty), or the package version outside git."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=10"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"rsbench-{version('rsbench')}"
        except PackageNotFoundError:
            return "unknown"


#: The code that computes a number a row stores: a change here changes results, so it changes every cell's hash.
#: Docs, tests, the CLI and the whole analysis (intervals, paired differences, savings, ranks, tables,
#: reports: all computed when a run is read, from what the cells stored) are left out, so such commits keep a
#: store valid.
RESULT_CODE = ("backbones", "tasks", "rsdatasets", "benchmark/running/spec.py", "benchmark/running/cells.py",
               "benchmark/running/cell_runner.py", "benchmark/running/rows.py",
               "benchmark/running/splits.py")  # fmt: skip


@cache
def code_fingerprint(root: Path = REPO_ROOT) -> str:
    """Hash of the source files in ``RESULT_CODE`` under ``root`` (content, not git state: uncommitted edits
    count)."""
    digest = hashlib.sha256()
    for entry in RESULT_CODE:
        path = root / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            digest.update(str(f.relative_to(root)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


@cache
def hardware() -> str:
    """A short description of the compute device a cell ran on."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


#: Libraries whose versions decide the numbers (distribution names as pip knows them).
LIBRARIES = ("torch", "torchvision", "mmengine", "mmcv", "mmsegmentation", "mmdet", "mmpretrain", "timm", "numpy",
             "pandas", "scipy")  # fmt: skip


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries in ``LIBRARIES`` (and Python)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@cache
def environment() -> dict[str, str]:
    """mmengine's ``collect_env`` (platform, Python, CUDA, GCC, PyTorch, TorchVision, OpenCV, MMEngine), once per
    process; the long compile-details text and the per-run seed are left out."""
    from mmengine.utils.dl_utils import collect_env

    skip = ("PyTorch compiling details", "numpy_random_seed")
    return {k: str(v) for k, v in collect_env().items() if k not in skip}


def cell_provenance(config: dict, **extra) -> dict:
    """What a cell ran with, written as JSON when it starts: its config, code, environment, libraries, machine
    (``extra``: more of what it runs, e.g. its corrupted test passes and the corruptions it skips)."""
    from datetime import datetime, timezone

    return {
        "config": config, "code_version": code_version(), "code_fingerprint": code_fingerprint(),
        "hardware": hardware(), "host": platform.node(), "torch_threads": torch.get_num_threads(),
        "environment": environment(), "libraries": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra,
    }  # fmt: skip


def write_provenance(path: str | Path, config: dict, **extra) -> Path:
    """The cell's provenance (``RunDir.provenance(config_hash)``), written atomically."""
    from .rundir import write_json_atomic

    return write_json_atomic(path, cell_provenance(config, **extra))


def config_hash(config: dict, length: int = 16) -> str:
    """Stable hash of a JSON-able config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
