"""Methods = balancer + optional aggregator, built by name (DESIGN §1-2).

Names:
  * a balancer alone: ``ew``, ``si`` (= ``log``), ``gls``, ``rlw``, ``uw``, ``dwa``, ``imtl_l``, ``igbv1``,
    ``stl``
    -> one backward of ``Σ_t ℓ_t``, no task-gradient matrix;
  * an aggregator alone: e.g. ``max_norm`` -> EW losses (no log) + that aggregator;
  * ``<balancer>+<aggregator>``: e.g. ``log+max_norm``, ``igbv1+max_norm``;
  * aliases: ``db_mtl`` = ``log+max_norm`` (DB-MTL paper Table 5 "both"), whose ablations are ``si``
    ("log only") and ``max_norm`` ("max-norm only").

Keyword arguments are routed to whichever part accepts them; a name both accept must be written
``balancer.<name>`` or ``aggregator.<name>``. Unknown names and keyword arguments raise a
:class:`~mtl.errors.ConfigError` listing the valid ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from mtl.aggregators import AGGREGATORS, Aggregator
from mtl.balancers import BALANCERS, Balancer
from mtl.errors import ConfigError, UnknownNameError
from mtl.step_hooks import StepProbe

METHOD_ALIASES: dict[str, str] = {
    "db_mtl": "log+max_norm",
    "dbmtl": "log+max_norm",
    "db-mtl": "log+max_norm",
    "imtl": "imtl_l+imtl_g",
}


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name."""

    name: str
    balancer: str
    aggregator: str | None


def valid_method_names() -> list[str]:
    """Every single-part method name, plus the aliases (any ``<balancer>+<aggregator>`` is valid too)."""
    return sorted(set(BALANCERS.names()) | set(AGGREGATORS.names()) | set(METHOD_ALIASES))


def parse_method(name: str) -> MethodSpec:
    """Resolve a method name to its balancer and aggregator (see the module docstring)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"method must be a non-empty string, got {name!r}")
    key = name.strip().lower()
    key = METHOD_ALIASES.get(key, key)
    parts = [p.strip() for p in key.split("+")]
    if len(parts) == 1:
        (part,) = parts
        if part in BALANCERS:
            return MethodSpec(name, BALANCERS.canonical(part), None)
        if part in AGGREGATORS:
            return MethodSpec(name, "ew", AGGREGATORS.canonical(part))
        raise UnknownNameError(
            f"unknown method '{name}'; valid: {', '.join(valid_method_names())}, "
            f"or '<balancer>+<aggregator>' with balancers {', '.join(BALANCERS.names())} "
            f"and aggregators {', '.join(AGGREGATORS.names())}"
        )
    if len(parts) == 2:
        balancer = BALANCERS.canonical(parts[0])
        aggregator = AGGREGATORS.canonical(parts[1])
        if balancer == "stl":
            raise ConfigError("stl trains a single task and cannot be combined with an aggregator")
        return MethodSpec(name, balancer, aggregator)
    raise ConfigError(f"method '{name}' has more than one '+'; use '<balancer>+<aggregator>'")


def canonical_method_name(name: str) -> str:
    """The one name of a method, whatever spelling or alias it was given by.

    The name follows from the method's (balancer, aggregator) as :func:`parse_method` resolves them, so
    every spelling of one method gets the same name: a balancer alone is its registered name (``log`` ->
    ``si``); EW with an aggregator is the aggregator's name (``ew+max_norm`` -> ``max_norm``); a pair that
    :data:`METHOD_ALIASES` names gets the first alias that names it (``log+max_norm``, ``db-mtl``,
    ``si+maxnorm`` -> ``db_mtl``); any other pair is ``<balancer>+<aggregator>``.
    ``parse_method(canonical_method_name(x))`` has the balancer and aggregator of ``parse_method(x)``.
    """
    spec = parse_method(name)
    if spec.aggregator is None:
        return spec.balancer
    for alias, target in METHOD_ALIASES.items():
        named = parse_method(target)
        if (named.balancer, named.aggregator) == (spec.balancer, spec.aggregator):
            return alias
    if spec.balancer == "ew":
        return spec.aggregator
    return f"{spec.balancer}+{spec.aggregator}"


def _mapping_kwargs(spec: MethodSpec) -> dict[str, str]:
    """``{parameter: part}`` for the parameters of the method's parts that map task names to values
    (a part lists them in its class attribute ``mapping_kwargs``, e.g. ``static``'s ``weight``)."""
    parts = [(BALANCERS, spec.balancer, "balancer")]
    if spec.aggregator:
        parts.append((AGGREGATORS, spec.aggregator, "aggregator"))
    return {
        key: part
        for registry, name, part in parts
        for key in getattr(registry.factory(name), "mapping_kwargs", ())
    }


def fold_mapping_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with per-task keys ``<parameter>.<task>`` (``weight.t0=2``, as a CLI ``-m`` or a searched
    hyperparameter is written) folded into the mapping parameter ``<parameter>`` of the method's part that
    declares it (``{"weight": {"t0": 2}}``); any other key is returned unchanged. The task names are checked
    by the part when it is built."""
    mappings = _mapping_kwargs(parse_method(name))
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        head, _, task = key.partition(".")
        if task and head in mappings:
            if head in kwargs and not isinstance(kwargs[head], dict):
                raise ConfigError(f"'{key}' and '{head}' both given; give one")
            out.setdefault(head, {})
            if not isinstance(out[head], dict):
                raise ConfigError(f"'{key}' and '{head}' both given; give one")
            out[head] = {**out[head], task: value}
        elif head in mappings and not task and isinstance(value, dict):
            out[head] = {**value, **out.get(head, {})}
        else:
            out[key] = value
    return out


def _route_kwargs(spec: MethodSpec, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    kwargs = fold_mapping_kwargs(spec.name, kwargs)
    b_valid = set(BALANCERS.parameters(spec.balancer))
    a_valid = set(AGGREGATORS.parameters(spec.aggregator)) if spec.aggregator else set()
    b_kwargs: dict[str, Any] = {}
    a_kwargs: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key.startswith("balancer."):
            b_kwargs[key.removeprefix("balancer.")] = value
        elif key.startswith("aggregator."):
            if spec.aggregator is None:
                raise ConfigError(f"method '{spec.name}' has no aggregator, but got '{key}'")
            a_kwargs[key.removeprefix("aggregator.")] = value
        elif key in b_valid and key in a_valid:
            raise ConfigError(
                f"keyword argument '{key}' of method '{spec.name}' is accepted by both its balancer and its "
                f"aggregator; write 'balancer.{key}' or 'aggregator.{key}'"
            )
        elif key in a_valid:
            a_kwargs[key] = value
        elif key in b_valid:
            b_kwargs[key] = value
        else:
            valid = ", ".join(sorted(b_valid | a_valid)) or "none"
            raise ConfigError(f"unknown keyword argument '{key}' for method '{spec.name}'; valid: {valid}")
    return b_kwargs, a_kwargs


def method_parameters(name: str) -> dict[str, Any]:
    """User-settable keyword arguments of a method with their defaults (for docs and search spaces)."""
    spec = parse_method(name)
    params = {k: p.default for k, p in BALANCERS.parameters(spec.balancer).items()}
    if spec.aggregator:
        params.update({k: p.default for k, p in AGGREGATORS.parameters(spec.aggregator).items()})
    return params


def step_cost(name: str, num_tasks: int) -> float:
    """A method's declared per-step cost class, in backward passes of EW's step: ``num_tasks`` for a method
    that needs every task's gradient (an aggregator: T vector-Jacobian products in the ``exact`` mode), 1
    otherwise, plus 1 for a method with step hooks (FAMO's extra forward, Auto-Lambda's meta step). The study
    hands out the trials of costlier groups first (:class:`study.searcher.StudySearcher`), so that the
    study's last wave is not one expensive group alone."""
    spec = parse_method(name)
    cost = float(num_tasks) if spec.aggregator is not None else 1.0
    parts = [BALANCERS.factory(spec.balancer)]
    if spec.aggregator is not None:
        parts.append(AGGREGATORS.factory(spec.aggregator))
    if any(_overrides_hook(part) for part in parts):
        cost += 1.0
    return cost


def _overrides_hook(cls: type) -> bool:
    from mtl.aggregators.base import Aggregator as AggregatorBase
    from mtl.balancers.base import Balancer as BalancerBase

    base = AggregatorBase if issubclass(cls, AggregatorBase) else BalancerBase
    return bool(getattr(cls, "needs_validation_batch", False)) or any(
        getattr(cls, hook) is not getattr(base, hook) for hook in ("before_step", "after_step")
    )


class Method(nn.Module):
    """A balancer and an optional aggregator. Its ``state_dict()`` holds both parts' whole state."""

    def __init__(self, spec: MethodSpec, balancer: Balancer, aggregator: Aggregator | None) -> None:
        super().__init__()
        self.spec = spec
        self.balancer = balancer
        self.aggregator = aggregator

    @property
    def needs_task_gradients(self) -> bool:
        return self.aggregator is not None

    def _parts(self) -> list[nn.Module]:
        return [self.balancer] if self.aggregator is None else [self.balancer, self.aggregator]

    @property
    def has_step_hooks(self) -> bool:
        """True when a part overrides :meth:`before_step`/:meth:`after_step` or wants a validation batch
        (DESIGN §8); otherwise the trainer builds no :class:`~mtl.step_hooks.StepProbe` at all."""
        bases = (Balancer, Aggregator)
        return any(
            part.needs_validation_batch
            or any(
                getattr(type(part), hook) is not getattr(base, hook) for hook in ("before_step", "after_step")
            )
            for part, base in zip(self._parts(), bases)
        )

    @property
    def needs_validation_batch(self) -> bool:
        return any(part.needs_validation_batch for part in self._parts())

    def before_step(self, probe: StepProbe) -> None:
        """Both parts' ``before_step`` (balancer first): after ``zero_grad``, before the step's forward."""
        for part in self._parts():
            part.before_step(probe)

    def after_step(self, probe: StepProbe) -> None:
        """Both parts' ``after_step`` (balancer first): after ``optimizer.step()``."""
        for part in self._parts():
            part.after_step(probe)

    def extra_parameters(self) -> Iterator[nn.Parameter]:
        """Learnable parameters of the method itself (UW's log-variances, IMTL-L's scales)."""
        return self.parameters()

    def extra_repr(self) -> str:
        return f"name={self.spec.name!r}"


def build_method(name: str, task_names: list[str], seed: int = 0, **kwargs: Any) -> Method:
    """Build a method for the given tasks. ``seed`` seeds stochastic methods (RLW, IGBv2)."""
    spec = parse_method(name)
    b_kwargs, a_kwargs = _route_kwargs(spec, kwargs)
    context = {"num_tasks": len(task_names), "task_names": list(task_names), "seed": int(seed)}
    balancer = BALANCERS.build(spec.balancer, context=context, **b_kwargs)
    aggregator = AGGREGATORS.build(spec.aggregator, context=context, **a_kwargs) if spec.aggregator else None
    return Method(spec, balancer, aggregator)
