"""Where a sampled value goes in the trial config (:func:`apply_hparams`); the distributions themselves are
:mod:`study.search.params`.

* ``lr``, ``batch_size``, ``weight_decay``, ``optimizer``, ``scheduler``, ``grad_mode``, ``architecture``,
  ``max_steps_per_epoch`` -> the training setting of that name;
* ``model.<k>`` / ``dataset.<k>`` / ``scheduler.<k>`` (or ``scheduler_kwargs.<k>``) -> ``model_kwargs`` /
  ``dataset_kwargs`` / ``scheduler_kwargs`` key ``<k>`` (a scheduler argument must be one of the LR
  scheduler in use, checked when the study is validated: :mod:`study.schema_registry`);
* anything else -> a keyword argument of the method (``beta``, ``alpha_strategy``, ``sac_lr``, ...,
  or ``balancer.<k>`` / ``aggregator.<k>`` where both parts accept ``<k>``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from mtl.config import searchable_settings

TRAIN_HPARAMS = searchable_settings()
"""The training settings a study may search, as :class:`mtl.config.TrainConfig` declares them."""
KWARG_PREFIXES = {
    "model.": "model_kwargs",
    "dataset.": "dataset_kwargs",
    "scheduler.": "scheduler_kwargs",
    "scheduler_kwargs.": "scheduler_kwargs",
}
RESERVED_HPARAMS = ("seed", "epochs", "dataset", "method", "device", "reference")


def destination(name: str) -> tuple[str, str | None]:
    """Where hyperparameter ``name`` goes: ``(TrainConfig field, key in it or None)``.

    >>> destination("lr"), destination("model.hidden"), destination("beta")
    (('lr', None), ('model_kwargs', 'hidden'), ('method_kwargs', 'beta'))
    """
    if name in TRAIN_HPARAMS:
        return name, None
    for prefix, target in KWARG_PREFIXES.items():
        if name.startswith(prefix):
            return target, name.removeprefix(prefix)
    return "method_kwargs", name


def apply_hparams(config: Mapping[str, Any], hparams: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the ``mtl`` TrainConfig dict ``config`` with the sampled ``hparams`` put in place."""
    out = copy.deepcopy(dict(config))
    for name, value in hparams.items():
        field, key = destination(name)
        if key is None:
            out[field] = value
        else:
            out[field] = dict(out.get(field) or {})
            out[field][key] = value
    return out
