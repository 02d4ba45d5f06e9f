"""``grad_mode: auto``: pick the fastest exact per-task gradient mode by a short probe at trial start.

Which of the exact modes (:data:`mtl.gradients.EXACT_MODES`: the per-task loop ``exact``, the batched
``exact_vmap``) is faster depends on the model and the device (on the 2-core CPU the loop is 2.7× faster for
the QM9 MPNN and ties on ResNet-18; on a GPU the batched call can win). The probe times full training steps
(:meth:`mtl.train.Trainer.train_step`) of each mode on the trial's first training batch: ``warmup`` untimed
rounds, then ``rounds`` timed ones, the modes interleaved in a rotated order each round (so a change in
machine load hits all alike), every step starting from the same state. The median seconds per step of each
mode go to :func:`mtl.gradients.choose_grad_mode` (deterministic tie-break: the earlier mode unless a later
one is more than 2 % faster).

The probe does not change training: the trainer's whole state (model, optimiser, scheduler, method, RNGs,
step counters: the same state a checkpoint holds) is copied before and restored after, so a run with
``auto`` is bit for bit the run with the mode it chose. Methods that never compute per-task gradients in a
training step (no aggregator: EW, UW, ...) are not probed; they get ``exact``.
"""

from __future__ import annotations

import copy
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from mtl.errors import ConfigError
from mtl.gradients import EXACT_MODES, choose_grad_mode

if TYPE_CHECKING:
    from mtl.train import Trainer

PROBE_WARMUP = 1
PROBE_ROUNDS = 3
_ATEN_OP = re.compile(r"aten::\w+(?:\.\w+)?")


class GradModeError(ConfigError):
    """A gradient mode that cannot run on this model and device (e.g. an operator vmap cannot batch)."""


def mode_failure(mode: str, exc: BaseException) -> str:
    """Why ``mode`` failed, naming the operator when the error names one: ``exact_vmap:
    aten::_cudnn_rnn_backward cannot be batched by vmap (Batching rule not implemented for ...)``."""
    text = str(exc).strip()
    first = text.splitlines()[0][:240] if text else type(exc).__name__
    op = _ATEN_OP.search(text)
    if op is not None:
        return f"{mode}: {op.group(0)} cannot be batched by vmap ({first})"
    return f"{mode}: {type(exc).__name__}: {first}"


@dataclass
class ProbeResult:
    """The chosen mode, the median seconds per step of each probed mode (NaN: the mode failed on this
    model), every timed step, the probe's total wall seconds, and why each failed mode was rejected
    (:func:`mode_failure`)."""

    chosen: str
    times: dict[str, float]
    steps: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    rejected: dict[str, str] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe_grad_modes(
    trainer: Trainer,
    candidates: Sequence[str] = EXACT_MODES,
    rounds: int = PROBE_ROUNDS,
    warmup: int = PROBE_WARMUP,
) -> ProbeResult:
    """Time ``candidates`` on ``trainer``'s first training batch of its current epoch and choose one; the
    trainer's state is restored afterwards (see the module docstring)."""
    bad = [m for m in candidates if m not in EXACT_MODES]
    if bad or not candidates:
        raise ValueError(
            f"probe candidates must be exact modes ({', '.join(EXACT_MODES)}), got {list(candidates)}"
        )
    if rounds < 1 or warmup < 0:
        raise ValueError("rounds must be >= 1 and warmup >= 0")
    start = time.perf_counter()
    if not trainer.method.needs_task_gradients:
        return ProbeResult(chosen=EXACT_MODES[0], times={}, seconds=time.perf_counter() - start)
    cfg, device = trainer.config, trainer.device
    snapshot = copy.deepcopy(trainer.state_dict())
    inputs, targets = next(
        iter(trainer.loader("train", cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=trainer.epoch))
    )
    inputs, targets = trainer.dataset.to_device(inputs, device), trainer.dataset.to_device(targets, device)
    steps = trainer.steps_per_epoch()
    timed: dict[str, list[float]] = {m: [] for m in candidates}
    failed: dict[str, str] = {}
    was_training = trainer.model.training
    trainer.model.train()
    try:
        for r in range(warmup + rounds):
            shift = r % len(candidates)
            for mode in [*candidates[shift:], *candidates[:shift]]:
                if mode in failed:
                    continue
                trainer.load_state_dict(copy.deepcopy(snapshot))
                _sync(device)
                t0 = time.perf_counter()
                try:
                    trainer.train_step(inputs, targets, 0, steps, mode)
                    _sync(device)
                except (RuntimeError, NotImplementedError) as exc:  # e.g. an op vmap cannot batch
                    if mode == EXACT_MODES[0]:
                        raise  # the per-task loop must work on every model
                    failed[mode] = mode_failure(mode, exc)
                    continue
                if r >= warmup:
                    timed[mode].append(time.perf_counter() - t0)
    finally:
        trainer.load_state_dict(snapshot)
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.model.train(was_training)
    times = {m: (float("nan") if m in failed else statistics.median(timed[m])) for m in candidates}
    return ProbeResult(choose_grad_mode(times), times, timed, time.perf_counter() - start, dict(failed))
