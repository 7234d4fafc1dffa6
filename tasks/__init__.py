"""Downstream tasks: each a model builder, a batch adapter and a metric, trained by ``tasks.engine.finetune``.

May import ``rsdatasets`` (the sample protocol), ``backbones`` and ``rsbench``; never ``benchmark``. Every module
of this package registers what it defines on the first lookup in ``rsbench.registry.TASKS`` (the registries'
one discovery rule), so a new task is one file here, or a plugin named in ``$RSBENCH_PLUGINS``.
"""

from rsbench.registry import TASKS, scan_package

from .base import PROTOCOLS, MetricInfo, Task, TiledMetric, TrainBudget, get_task, list_tasks, register_task, task_class
from .engine import FinetunePlan, FinetuneResult, PassResult, finetune

scan_package(__name__, TASKS)

__all__ = ["PROTOCOLS", "FinetunePlan", "FinetuneResult", "MetricInfo", "PassResult", "Task", "TiledMetric",
           "TrainBudget", "finetune", "get_task", "list_tasks", "register_task", "task_class"]  # fmt: skip
