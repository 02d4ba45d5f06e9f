"""The aggregator registry (names -> classes). Library-supplied context: num_tasks, task_names, seed."""

from __future__ import annotations

from mtl.registry import Registry

AGGREGATORS: Registry = Registry("aggregator", context=("num_tasks", "task_names", "seed"))
