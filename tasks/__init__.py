"""Downstream tasks: each a model builder, a batch adapter and a metric, trained by ``tasks.engine.finetune``."""

from .base import PROTOCOLS, MetricInfo, Task, TiledMetric, TrainBudget, get_task, list_tasks, register_task, task_class
from .engine import FinetuneResult, finetune

__all__ = ["PROTOCOLS", "FinetuneResult", "MetricInfo", "Task", "TiledMetric", "TrainBudget", "finetune", "get_task",
           "list_tasks", "register_task", "task_class"]
