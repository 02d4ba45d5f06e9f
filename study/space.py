"""Search spaces: the YAML distributions, where a sampled value goes in the trial config, and their
conversion to Ray Tune and Optuna distributions.

A parameter of a search space is written as exactly one of::

    beta:          {choice: [0.1, 0.5, 0.9]}      # categorical (sampled; a grid under `search: grid`)
    alpha_strategy: {grid: [max, mean]}           # every value (random and grid search only)
    sac_lr:        {loguniform: [1.0e-4, 1.0e-3]}
    beta:          {uniform: [0.1, 0.9]}
    buffer_size:   {int: [1000, 100000], log: true}   # bounds inclusive

Where a sampled value goes (:func:`apply_hparams`):

* ``lr``, ``batch_size``, ``weight_decay``, ``optimizer``, ``scheduler``, ``grad_mode``, ``architecture``,
  ``max_steps_per_epoch`` -> the training setting of that name;
* ``model.<k>`` / ``dataset.<k>`` / ``scheduler.<k>`` (or ``scheduler_kwargs.<k>``) -> ``model_kwargs`` /
  ``dataset_kwargs`` / ``scheduler_kwargs`` key ``<k>`` (a scheduler argument must be one of the LR
  scheduler in use, checked when the study is validated: :mod:`study.schema_registry`);
* anything else -> a keyword argument of the method (``beta``, ``alpha_strategy``, ``sac_lr``, ...,
  or ``balancer.<k>`` / ``aggregator.<k>`` where both parts accept ``<k>``).

Ray is imported lazily (only :func:`to_tune` and :func:`to_optuna` need it).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mtl.config import searchable_settings

if TYPE_CHECKING:
    from study.schema import Param

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


def to_tune(param: Param, as_grid: bool = False) -> Any:
    """A YAML parameter as a Ray Tune search-space entry (``choice`` becomes a grid with ``as_grid``)."""
    from ray import tune

    if param.kind == "grid" or (param.kind == "choice" and as_grid):
        return tune.grid_search(list(param.values))
    if param.kind == "choice":
        return tune.choice(list(param.values))
    lo, hi = param.bounds
    if param.kind == "uniform":
        return tune.uniform(lo, hi)
    if param.kind == "loguniform":
        return tune.loguniform(lo, hi)
    # int: Tune's upper bound is exclusive, ours inclusive
    return tune.lograndint(int(lo), int(hi) + 1) if param.log else tune.randint(int(lo), int(hi) + 1)


def to_optuna(param: Param) -> Any:
    """A YAML parameter as an Optuna distribution (``grid`` is rejected when the study is validated)."""
    import optuna

    if param.kind in ("choice", "grid"):
        return optuna.distributions.CategoricalDistribution(list(param.values))
    lo, hi = param.bounds
    if param.kind == "uniform":
        return optuna.distributions.FloatDistribution(lo, hi)
    if param.kind == "loguniform":
        return optuna.distributions.FloatDistribution(lo, hi, log=True)
    return optuna.distributions.IntDistribution(int(lo), int(hi), log=param.log)
