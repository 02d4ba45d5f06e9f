"""The balancer registry (names -> classes). Library-supplied context: num_tasks, task_names, seed."""

from __future__ import annotations

from mtl.registry import Registry

BALANCERS: Registry = Registry("balancer", context=("num_tasks", "task_names", "seed"))
