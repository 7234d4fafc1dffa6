"""What a cell's adaptation costs in compute: the FLOPs of one training step, counted without touching the run.

torch's ``FlopCounterMode`` counts the matmul and convolution FLOPs of one forward + backward (the same count
``perf/pretrain_step.py`` gives for pretraining steps); a cell's training FLOPs are that times its iterations
(every iteration draws a full batch). The step is counted on a copy of the model, with every random number
generator put back afterwards, so counting changes no number of the cell: the copy's forward may update
batch-norm statistics or draw dropout masks, the original never sees it. Validation and test passes are
evaluation, not training, and are not counted; under the frozen protocol the step is the probe's on cached
features (the encoder's one feature pass per split is shared by every cell of the checkpoint).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


@contextmanager
def random_state_kept() -> Iterator[None]:
    """Run a block and put back torch's (CPU and CUDA), numpy's and Python's random states afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def step_flops(model: nn.Module, batch: dict) -> float:
    """Matmul/conv FLOPs of one training step (forward, loss, backward) of an mmengine ``BaseModel`` on ``batch``
    (what the task's ``collate`` returns), counted on a copy: ``model`` and every random state are left as they were."""
    from torch.utils.flop_counter import FlopCounterMode

    with random_state_kept():
        twin = copy.deepcopy(model)
        twin.train()
        with FlopCounterMode(display=False) as counter:
            data = twin.data_preprocessor(batch, True)
            loss, _ = twin.parse_losses(twin._run_forward(data, mode="loss"))
            loss.backward()
        del twin
    return float(counter.get_total_flops())
