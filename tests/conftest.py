import os

import pytest
import torch

# Two cores: keep torch from oversubscribing them when pytest and torch both spawn threads.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A synthetic benchmark cache shared by the tests of one session (generated on first use)."""
    return tmp_path_factory.mktemp("synthetic")
