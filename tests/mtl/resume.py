"""The one bit-identical-resume harness of the trainer, shared by the state tests of the trainer, the
aggregators and IGBv2: train straight to ``epochs``; separately stop after ``stop_after`` through
:func:`mtl.train.fit`'s reporter, serialise the checkpoint to bytes, resume a fresh trainer from it (with the
global RNG reseeded, so nothing may come from it) and train to ``epochs``; every record (timings aside), the
model's and the method's parameters must be identical."""

from __future__ import annotations

import io
import math
from typing import Any

import torch

from mtl.config import TrainConfig
from mtl.train import StopTraining, Trainer, fit

TIME_KEYS = frozenset({"time_train", "time_eval", "time_epoch", "time_diag"})


def same_value(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def assert_resume_is_bit_identical(
    config: TrainConfig, *, epochs: int, stop_after: int = 1, global_seed: int = 1234
) -> tuple[Trainer, Trainer]:
    """Check the resume described in the module docstring; returns (straight, resumed) for more checks."""
    straight = Trainer(config)
    while straight.epoch < epochs:
        straight.run_epoch()

    saved: dict[str, bytes] = {}

    def reporter(record: dict[str, Any], checkpoint: Any) -> None:
        if record["epoch"] == stop_after:
            buffer = io.BytesIO()
            torch.save(checkpoint(), buffer)
            saved["state"] = buffer.getvalue()
            raise StopTraining

    first = fit(config, reporter)
    assert len(first) == stop_after + 1
    torch.manual_seed(global_seed)  # the resumed run must not depend on the global RNG at start
    resumed = Trainer(config)
    resumed.load_state_dict(torch.load(io.BytesIO(saved["state"]), weights_only=False))
    while resumed.epoch < epochs:
        resumed.run_epoch()

    assert len(straight.records) == len(resumed.records) == epochs
    for ra, rb in zip(straight.records, resumed.records, strict=True):
        assert ra.keys() == rb.keys()
        for key in ra.keys() - TIME_KEYS:
            assert same_value(ra[key], rb[key]), (key, ra[key], rb[key])
    for (name, pa), pb in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    for pa, pb in zip(straight.method.parameters(), resumed.method.parameters(), strict=True):
        assert torch.equal(pa, pb)
    return straight, resumed
