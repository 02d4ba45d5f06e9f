"""The study file's checks against the registries (methods, datasets, models, training settings): every
name, type and range, fixed or searched (each probe value), without loading data or building a model;
and the canonical method names. Called by :class:`study.schema.Study` when ``check_registry`` is on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mtl.errors import ConfigError
from mtl.registry import did_you_mean
from study.space import RESERVED_HPARAMS, TRAIN_HPARAMS, apply_hparams, destination

if TYPE_CHECKING:
    from study.schema import MethodEntry, Study
    from study.search import Param, Space


def canonicalise_methods(study: Study) -> list[str]:
    """Give every method its one canonical name (``mtl.methods.canonical_method_name``: ``db-mtl`` and
    ``log+max_norm`` become ``db_mtl``), which the group, the Tune trials and the results partition
    use; two spellings of one method are a duplicate, named both."""
    from mtl.methods import canonical_method_name, parse_method

    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, m in enumerate(study.methods):
        try:
            canonical = canonical_method_name(m.name)
        except ConfigError:  # reported by registry_problems
            continue
        first = seen.setdefault(canonical, i)
        if first != i and study.methods[first].name != m.name:  # same spelling: reported above
            spec = parse_method(m.name)
            parts = spec.balancer + (f"+{spec.aggregator}" if spec.aggregator else "")
            problems.append(
                f"methods[{i}].name: '{m.name}' is the same method as methods[{first}] "
                f"'{study.methods[first].name}' (both are '{canonical}' = {parts}); list it once"
            )
    if not problems:
        for m in study.methods:
            try:
                m.name = canonical_method_name(m.name)
            except ConfigError:
                continue
    return problems


def check_stl_task(study: Study, i: int, m: MethodEntry, space: Space) -> list[str]:
    """``stl`` trains one task: it must be given (fixed or searched) and be a task of every dataset."""
    from mtl.data import dataset_task_names

    if "task" in m.kwargs:
        where, values = f"methods[{i}].kwargs.task", [m.kwargs["task"]]
    elif "task" in space:
        where = study.where_searched(i, m, "task")
        if not space["task"].discrete:
            return [f"{where}: stl's task is a name: use {{grid: [...]}} or {{choice: [...]}}"]
        values = space["task"].values
    else:
        return [
            f"methods[{i}]: stl trains one task: give kwargs {{task: NAME}} or space "
            "{task: {grid: [...]}} (one trial per task and seed)"
        ]
    problems = []
    for d in study.datasets:
        try:
            names = dataset_task_names(d.name, d.kwargs)
        except ConfigError:  # the dataset's own problem, reported by check_datasets_and_models
            continue
        unknown = [v for v in values if v not in names]
        if unknown:
            problems.append(f"{where}: {unknown} not a task of {d.name}; tasks: {', '.join(names)}")
    return problems


def registry_problems(study: Study) -> list[str]:
    from mtl.methods import build_method, method_parameters, parse_method

    problems = check_datasets_and_models(study)
    base = study.train.model_dump()
    for i, m in enumerate(study.methods):
        try:
            spec = parse_method(m.name)
        except ConfigError as exc:
            problems.append(f"methods[{i}].name: {exc}")
            continue
        space = study.group_space(m)
        if spec.balancer == "stl":
            problems += check_stl_task(study, i, m, space)
        method_hps = {k: p for k, p in space.items() if destination(k)[0] == "method_kwargs"}
        probes: list[tuple[str, dict[str, Any]]] = [(f"methods[{i}].kwargs", {})]
        method_args = sorted(method_parameters(m.name))
        for name, p in method_hps.items():
            where = study.where_searched(i, m, name)
            if name in RESERVED_HPARAMS:  # reported by _check_spaces
                continue
            per_task = "." in name and name.split(".", 1)[0] in method_args  # static's weight.<task>
            if name not in method_args and not per_task and not name.startswith(("balancer.", "aggregator.")):
                if not any(x.startswith(f"{where}: unknown hyperparameter") for x in problems):
                    problems.append(f"{where}: {unknown_hparam(study, name, m.name, method_args)}")
                continue
            probes += [(where, {name: v}) for v in p.probe_values()]
        failed: set[str] = set()
        for where, override in probes:
            if where in failed or f"methods[{i}].kwargs" in failed:
                continue
            kwargs = {**m.kwargs, **override}
            if spec.balancer == "stl":  # its `task` depends on the dataset: check names only
                kwargs.pop("task", None)
            for tasks in probe_task_names(study, kwargs, method_args):
                try:
                    build_method(m.name, tasks, seed=0, **kwargs)
                except (ConfigError, TypeError, ValueError) as exc:
                    problems.append(f"{where}: {exc}")
                    failed.add(where)
                    break
        for name, p in space.items():
            field, key = destination(name)
            where = study.where_searched(i, m, name)
            if field in TRAIN_HPARAMS:
                problems += probe_train(where, base, name, p)
            if field in ("dataset_kwargs", "model_kwargs", "architecture"):
                problems += probe_dataset(study, where, field, key, p)
            if field == "scheduler_kwargs":
                problems += probe_lr_scheduler(study, where, space, str(key), p)
    return sorted(set(problems), key=problems.index)


def probe_task_names(study: Study, kwargs: dict[str, Any], method_args: list[str]) -> list[list[str]]:
    """The task names a method is built with to check ``kwargs``: placeholder names, or each dataset's own
    when a per-task argument (``weight.<task>``, a mapping keyword of the method) is given."""
    from mtl.data import dataset_task_names

    if not any("." in k and k.split(".", 1)[0] in method_args for k in kwargs):
        return [["t0", "t1", "t2"]]
    out = []
    for d in study.datasets:
        try:
            out.append(dataset_task_names(d.name, d.kwargs))
        except ConfigError:  # the dataset's own problem, reported by check_datasets_and_models
            continue
    return out


def unknown_hparam(study: Study, name: str, method: str, method_args: list[str]) -> str:
    """Why a searched name is nothing: it is not a training setting, has no ``model.``/``dataset.``/
    ``scheduler.`` prefix and is not an argument of the method; the closest of all of them is offered."""
    from mtl.data import DATASETS

    prefixed = [
        f"{prefix}{arg}"
        for d in study.datasets
        if d.name in DATASETS
        for prefix, args in (
            ("model.", DATASETS.factory(d.name).model_arguments),
            ("dataset.", DATASETS.parameters(d.name)),
        )
        for arg in args
    ]
    candidates = [*TRAIN_HPARAMS, *method_args, *prefixed]
    return (
        f"unknown hyperparameter '{name}' for method '{method}'{did_you_mean(name, candidates)}; valid: "
        f"{', '.join(method_args) or 'none'} (arguments of '{method}'), a training setting "
        f"({', '.join(TRAIN_HPARAMS)}), or model.<arg>, dataset.<arg>, scheduler.<arg>"
    )


def check_datasets_and_models(study: Study) -> list[str]:
    """Each dataset's name and fixed arguments, and the fixed architecture and model arguments for it
    (names, types, ranges), without loading any data or building a model."""
    from mtl.data import check_dataset, check_model

    problems = []
    for i, d in enumerate(study.datasets):
        try:
            check_dataset(d.name, d.kwargs)
        except ConfigError as exc:
            problems.append(f"datasets[{i}]: {exc}")
            continue
        for where, kwargs in (
            ("train.architecture", {}),
            ("train.model_kwargs", study.train.model_kwargs),
        ):
            try:
                check_model(d.name, study.train.architecture, kwargs)
            except ConfigError as exc:
                problems.append(f"{where}: {exc}")
                break
    return problems


def probe_dataset(study: Study, where: str, field: str, key: str | None, p: Param) -> list[str]:
    """A searched dataset argument, model argument or architecture, every probe value against every
    dataset of the study."""
    from mtl.data import DATASETS, check_dataset, check_model

    for d in study.datasets:
        if d.name not in DATASETS:
            continue
        for value in p.probe_values():
            try:
                if field == "dataset_kwargs":
                    check_dataset(d.name, {**d.kwargs, str(key): value})
                elif field == "model_kwargs":
                    check_model(
                        d.name, study.train.architecture, {**study.train.model_kwargs, str(key): value}
                    )
                else:
                    check_model(d.name, str(value), {})
            except ConfigError as exc:
                return [f"{where}: {exc}"]
    return []


def probe_train(where: str, base: dict[str, Any], name: str, p: Param) -> list[str]:
    from mtl.config import TrainConfig

    for value in p.probe_values():
        try:
            TrainConfig.from_dict(apply_hparams(base, {name: value}))
        except ConfigError as exc:
            return [f"{where}: {exc}"]
    return []


def lr_schedulers_in_use(study: Study, space: Space) -> list[tuple[str, str]]:
    """``(scheduler, why it is in use)`` for every LR scheduler a group's trials may train with: each
    searched ``scheduler`` value, else ``train.scheduler``, else each dataset's paper default."""
    from mtl.data import DATASETS

    if "scheduler" in space and space["scheduler"].discrete:
        return [(str(v), "a value of the searched scheduler") for v in space["scheduler"].values]
    if study.train.scheduler is not None:
        return [(study.train.scheduler, "train.scheduler")]
    out = []
    for d in study.datasets:
        if d.name in DATASETS:
            default = DATASETS.factory(d.name).defaults.scheduler
            out.append((default, f"{d.name}'s paper default"))
    return sorted(set(out), key=out.index)


def probe_lr_scheduler(study: Study, where: str, space: Space, key: str, p: Param) -> list[str]:
    """A searched LR scheduler argument: an argument of every scheduler in use, each probe value accepted
    by it (:func:`mtl.training.lr_schedulers.build_lr_scheduler` on a one-parameter optimizer)."""
    import torch

    from mtl.training.lr_schedulers import LR_SCHEDULERS, build_lr_scheduler

    for scheduler, why in lr_schedulers_in_use(study, space):
        schedule = LR_SCHEDULERS.get(scheduler)
        allowed = schedule.arguments() if schedule is not None else []
        if key not in allowed:
            torch_name = schedule.torch_class if schedule is not None else None
            what = f"torch's {torch_name}" if torch_name else "no LR scheduler"
            return [
                f"{where}: '{key}' is not an argument of the LR scheduler '{scheduler}' ({what}; {why})"
                f"{did_you_mean(key, allowed)}; its arguments: {', '.join(allowed) or 'none'}"
            ]
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        for value in p.probe_values():
            try:
                build_lr_scheduler(scheduler, {key: value}, optimizer, epochs=study.train.epochs)
            except (ConfigError, TypeError, ValueError) as exc:
                return [f"{where}: {key}={value!r} rejected by the LR scheduler '{scheduler}': {exc}"]
    return []
