"""Exceptions raised by the `mtl` library.

Every error a user can cause by a bad input derives from :class:`MTLError` and carries a message that
names the offending value and, where there is a closed set, the valid choices.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class MTLError(Exception):
    """Base class of all errors raised on purpose by `mtl`."""


class ConfigError(MTLError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


class UnknownNameError(ConfigError, KeyError):
    """A name (method, balancer, aggregator, dataset, ...) is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class NonFiniteLossError(MTLError, FloatingPointError):
    """A task's training loss became NaN or infinite."""

    def __init__(self, task: str, value: float, epoch: int, step: int) -> None:
        self.task = task
        self.value = value
        self.epoch = epoch
        self.step = step
        super().__init__(
            f"loss of task '{task}' is {value} at epoch {epoch}, step {step}: training diverged "
            f"(try a lower learning rate, or check the targets of task '{task}')"
        )


class DatasetError(MTLError, FileNotFoundError):
    """A dataset folder or file is missing or malformed."""


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command-line action the way every console script of the project does: an :class:`MTLError`
    prints ``error: <message>`` on stderr and exits 2; Ctrl+C prints ``interrupted`` and exits 130."""
    try:
        return func(args)
    except MTLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
