import os

import pytest
import torch

# Two cores: keep torch from oversubscribing them when pytest and torch both spawn threads.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models: on a busy 2-core machine every OpenMP barrier of a
    2-thread team spin-waits (measured 10x slower in detection); one thread is as fast when idle.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A synthetic benchmark cache shared by the tests of one session (generated on first use)."""
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="session")
def data(synth_root):
    """Tiny 32-px synthetic train (32 tiles) and test (16 tiles) splits shared by the task tests."""
    from rsdatasets.synthetic import SyntheticBenchmark

    return (
        SyntheticBenchmark(synth_root, "train", seed=0, size=32, n=32),
        SyntheticBenchmark(synth_root, "test", seed=0, size=32, n=16),
    )


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def write_tiny_pretrain_config(tmp_path, base: str, model: dict, epochs: int = 1) -> "object":
    """A config that inherits a real pretraining config and shrinks model, data and schedule to seconds."""
    path = tmp_path / f"tiny_{base}"
    path.write_text(
        f"_base_ = [{str(REPO / 'configs' / 'pretrain' / base)!r}]\n"
        f"model = dict(**{model!r})\n"
        f"train_dataloader = dict(batch_size=4, dataset=dict(size=32, n=8, root={str(tmp_path / 'data')!r}))\n"
        f"train_cfg = dict(max_epochs={epochs})\n"
        "param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]\n"
    )
    return path


def run_two_ranks(*cli_args: str) -> None:
    """``rsbench CLI_ARGS`` as two gloo ranks under torchrun on CPU (one thread each); fails with its output."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           "--master_addr=127.0.0.1", "-m", "benchmark.cli", *cli_args]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def isolate_registry(monkeypatch, registry, rescan: bool = False) -> None:
    """Let a test add entries to a project registry (a plugin, a dropped file) and have them vanish afterwards.

    Discovery runs first, so the copy holds every built-in entry (an imported module is not imported again, so
    entries lost with a copy would never come back); ``rescan`` scans the registry's packages again on the next
    lookup (a file added to a package after its first scan)."""
    from rsbench.registry import registered

    registered(registry)
    monkeypatch.setattr(registry, "_module_dict", dict(registry._module_dict))
    if rescan:
        monkeypatch.setattr(registry, "_scanned", set())
