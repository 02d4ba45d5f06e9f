"""Argument checks shared by balancers and aggregators: one message format for every method."""

from __future__ import annotations

from collections.abc import Sequence

from mtl.errors import ConfigError


def check_architecture(dataset: str, architecture: str, valid: Sequence[str]) -> str:
    """``architecture`` normalised (case, ``-`` as ``_``) if ``dataset`` supports it (one of ``valid``)."""
    arch = str(architecture).strip().lower().replace("-", "_")
    if arch not in valid:
        raise ConfigError(f"{dataset} supports architectures: {', '.join(valid)}; got '{architecture}'")
    return arch


def check_choice(method: str, key: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{method} {key} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_range(
    method: str, key: str, value: float, low: float, high: float, *, high_open: bool = False
) -> float:
    value = float(value)
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise ConfigError(f"{method} {key} must be in [{low}, {high}{bracket}, got {value}")
    return value


def task_index(method: str, task: str | int, task_names: Sequence[str]) -> int:
    """Resolve a task given by name or index."""
    if isinstance(task, bool):
        raise ConfigError(f"{method} task must be a task name or index, got {task!r}")
    if isinstance(task, int):
        if not 0 <= task < len(task_names):
            raise ConfigError(f"{method} task index {task} out of range [0, {len(task_names)})")
        return task
    if task in task_names:
        return list(task_names).index(task)
    raise ConfigError(f"{method} task '{task}' is not a task of this dataset; valid: {', '.join(task_names)}")
