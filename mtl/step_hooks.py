"""Step hooks (DESIGN §8): what a method may look at before and after one optimisation step.

The contract of DESIGN §2 (losses -> balancer -> aggregator -> one optimiser step) gains, once and for every
method, two hooks on each part (:class:`mtl.balancers.Balancer`, :class:`mtl.aggregators.Aggregator`):

* ``before_step(probe)``: after ``optimizer.zero_grad`` and before the step's forward (Auto-Lambda updates
  its task weights here from a virtual step and a validation batch);
* ``after_step(probe)``: after ``optimizer.step()`` (FAMO updates its task logits here from the same batch's
  losses after the step).

Both are no-ops by default; a method whose parts override neither (EW, DB-MTL, ...) builds no probe and runs
no extra forward (:attr:`mtl.methods.Method.has_step_hooks`). The trainer builds one :class:`StepProbe` per
step. ``validation_batch`` draws from a :class:`BatchStream`: a cycling, seeded stream of one split whose
position is part of the trainer's state, so a resumed run draws the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtl.context import StepContext

# the stream's shuffling seed is the run's seed plus this offset, so a stream of the training split does not
# replay the training order (Auto-Lambda's reference draws its meta batches from a second, differently
# shuffled copy of the training loader)
STREAM_SEED_OFFSET = 104_729


@dataclass
class StepProbe:
    """The view of one training step that a step hook gets.

    Attributes:
        ctx: the step's context (epoch, global step, ...).
        inputs, targets: the step's batch, on the device.
        losses: the step's raw per-task losses [T], detached (None in ``before_step``: no forward yet).
        model: the model being trained (its parameters as they are at the time of the call).
        optimizer: the model's optimiser (read its learning rate, momentum, weight decay; never step it).
        compute_losses: ``(inputs, targets) -> Tensor[T]``: forward and per-task losses with the model as it
            is now; the caller decides ``no_grad`` or not.
        validation_batch: ``(split="val") -> (inputs, targets)`` on the device: the next batch of that
            split's cycling, seeded stream; None unless a part of the method sets ``needs_validation_batch``.
    """

    ctx: StepContext
    inputs: Any
    targets: Any
    losses: Tensor | None
    model: nn.Module
    optimizer: torch.optim.Optimizer
    compute_losses: Callable[[Any, Any], Tensor]
    validation_batch: Callable[..., tuple[Any, Any]] | None = None

    @property
    def lr(self) -> float:
        """The optimiser's current learning rate (its first parameter group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The model's parameters that require gradients, in ``model.parameters()`` order."""
        return [p for p in self.model.parameters() if p.requires_grad]


Loader = Callable[..., Iterable[Any]]


class BatchStream:
    """An endless stream of one split's batches: pass ``c`` is the split shuffled by ``loader(split,
    batch_size, shuffle=True, seed=seed + STREAM_SEED_OFFSET, epoch=c)``, passes follow one another.

    Its position ``(pass, index)`` is all its state (:meth:`state_dict`), so the stream is a pure function of
    (seed, position): a restored stream re-creates the pass and skips ``index`` batches.
    """

    def __init__(self, loader: Loader, split: str, batch_size: int, seed: int) -> None:
        self.loader = loader
        self.split = split
        self.batch_size = int(batch_size)
        self.seed = int(seed) + STREAM_SEED_OFFSET
        self.cycle = 0
        self.index = 0
        self._iterator: Iterator[Any] | None = None

    def _open(self) -> Iterator[Any]:
        batches = iter(
            self.loader(self.split, self.batch_size, shuffle=True, seed=self.seed, epoch=self.cycle)
        )
        for _ in range(self.index):
            next(batches)
        return batches

    def next(self) -> Any:
        """The next batch (on the host, as the loader gives it)."""
        for _ in range(2):
            if self._iterator is None:
                self._iterator = self._open()
            try:
                batch = next(self._iterator)
            except StopIteration:
                if self.index == 0:
                    break
                self.cycle, self.index, self._iterator = self.cycle + 1, 0, None
                continue
            self.index += 1
            return batch
        raise ValueError(f"split '{self.split}' produced no batches")

    def state_dict(self) -> dict[str, int]:
        return {"cycle": self.cycle, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.cycle, self.index = int(state["cycle"]), int(state["index"])
        self._iterator = None
