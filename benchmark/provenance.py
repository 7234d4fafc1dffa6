"""Where a number came from: code version, hardware, stable hashes of configs."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from functools import cache
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


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


#: The code that computes a number: a change here changes results, so it changes every cell's hash.
#: Docs, tests, reports and the CLI are left out, so such commits keep a store valid.
RESULT_CODE = ("backbones", "tasks", "rsdatasets", "benchmark/sweep.py", "benchmark/splits.py")


@cache
def code_fingerprint() -> str:
    """Hash of the source files in ``RESULT_CODE`` (content, not git state: uncommitted edits count)."""
    digest = hashlib.sha256()
    for entry in RESULT_CODE:
        path = REPO_ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            digest.update(str(f.relative_to(REPO_ROOT)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


@cache
def hardware() -> str:
    """A short description of the compute device a cell ran on."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def config_hash(config: dict, length: int = 16) -> str:
    """Stable hash of a JSON-able config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
