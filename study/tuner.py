"""Building (or restoring) the Ray Tune experiment of one (dataset, method) group.

* search: ``optuna`` -> :class:`OptunaSearch` (TPE, seeded, a unique Optuna study name per study and
  group), wrapped in a Repeater when there are several seeds (each configuration runs once per seed,
  Optuna sees their mean); ``random`` -> :class:`BasicVariantGenerator` (seeded) with the seed as a grid
  dimension; ``grid`` -> the same with every ``choice`` as a grid. A group with nothing to search runs
  each seed once. ``resources.max_concurrent_trials`` caps concurrency (a ConcurrencyLimiter for searchers).
* scheduler: ASHA on ``val_delta_p`` (mode max), time in epochs (``epochs_done``), or FIFO.
* run config: experiment ``<storage>/<study>/tune/<group>``, ``FailureConfig(max_failures)``, every
  checkpoint kept (tiny pointers to the trial's own saved state, :class:`study.trial.StateStore`), the
  study callback (progress lines, final ``trials/`` statuses, orphan rows).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator, Repeater

from study.results import ResultsWriter, TrialInfo, storage_uri
from study.schema import Group, Study
from study.space import to_optuna, to_tune
from study.trial import StateStore, TrialSettings, run_trial, trial_seed

METRIC = "val_delta_p"
MODE = "max"
TIME_ATTR = "epochs_done"


def tune_root(study: Study) -> str:
    """Where Ray Tune keeps the study's experiments (one per group)."""
    return f"{storage_uri(study.storage).rstrip('/')}/{study.name}/tune"


def experiment_path(study: Study, group: Group) -> str:
    return f"{tune_root(study)}/{group.name}"


def trial_settings(study: Study, group: Group) -> TrialSettings:
    train = study.train.model_dump()
    return TrialSettings(
        study=study.name,
        storage=storage_uri(study.storage),
        dataset=group.dataset,
        method=group.method,
        train=train,
        seeds=list(study.seeds),
        hp_names=sorted(group.space),
        hp_types=study.hp_types(),
        dataset_kwargs=dict(group.dataset_kwargs),
        method_kwargs=dict(group.method_kwargs),
        threads=max(1, int(study.resources.cpus_per_trial)),
    )


def make_trainable(study: Study, group: Group) -> Any:
    """``run_trial`` with the group's settings and per-trial resources attached."""
    trainable = tune.with_parameters(run_trial, settings=trial_settings(study, group).to_dict())
    resources = {"cpu": study.resources.cpus_per_trial, "gpu": study.resources.gpus_per_trial}
    return tune.with_resources(trainable, resources)


class SeedRepeater(Repeater):
    """Tune's Repeater, except that a group whose repeats all failed reaches the searcher as a *failed*
    trial (not as a NaN score, which Optuna cannot digest), and NaN scores are ignored in the mean."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, **kwargs: Any) -> None:
        group = self._trial_id_to_group.get(trial_id)
        if group is None:
            return
        score = (result or {}).get(self.searcher.metric)
        finite = score is not None and math.isfinite(score)
        group.report(trial_id, float(score) if finite else np.nan)
        if group.finished_reporting():
            scores = [s for s in group.scores() if s is not None and math.isfinite(s)]
            if scores:
                self.searcher.on_trial_complete(
                    group.primary_trial_id, result={self.searcher.metric: float(np.mean(scores))}
                )
            else:
                self.searcher.on_trial_complete(group.primary_trial_id, result=None, error=True)


def _search(study: Study, group: Group) -> tuple[Any, dict[str, Any] | None, int]:
    """(search algorithm, param_space, num_samples) of a group."""
    seeds = list(study.seeds)
    algorithm = study.search.algorithm
    samples = study.search.samples
    if not group.space:
        return BasicVariantGenerator(), {"seed": tune.grid_search(seeds)}, 1
    if algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        space = {name: to_optuna(p) for name, p in sorted(group.space.items())}
        searcher = OptunaSearch(
            space=space,
            metric=METRIC,
            mode=MODE,
            seed=study.search.seed,
            study_name=f"{study.name}.{group.name}",  # DESIGN §7: unique per study
        )
        if len(seeds) > 1:
            return SeedRepeater(searcher, repeat=len(seeds), set_index=True), None, samples * len(seeds)
        return searcher, None, samples
    as_grid = algorithm == "grid"
    param_space: dict[str, Any] = {
        name: to_tune(p, as_grid=as_grid) for name, p in sorted(group.space.items())
    }
    param_space["seed"] = tune.grid_search(seeds)
    return BasicVariantGenerator(random_state=study.search.seed), param_space, samples


def _scheduler(study: Study) -> Any:
    sched = study.scheduler
    if sched.type == "none":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        metric=METRIC,
        mode=MODE,
        max_t=study.max_t,
        grace_period=sched.grace_period,
        reduction_factor=sched.reduction_factor,
    )


def build_tuner(study: Study, group: Group, printer: Callable[[str], None] | None = None) -> tune.Tuner:
    """A fresh Tuner for ``group``."""
    search_alg, param_space, num_samples = _search(study, group)
    tune_config = tune.TuneConfig(
        search_alg=search_alg,
        scheduler=_scheduler(study),
        num_samples=num_samples,
        max_concurrent_trials=study.resources.max_concurrent_trials,
        reuse_actors=True,
    )
    run_config = tune.RunConfig(
        name=group.name,
        storage_path=tune_root(study),
        failure_config=tune.FailureConfig(max_failures=study.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # tiny pointers; see trial.StateStore
        callbacks=[
            StudyCallback(
                study.name,
                storage_uri(study.storage),
                group,
                study.hp_types(),
                study.train.epochs,
                list(study.seeds),
            )
        ],
        verbose=0,
    )
    return tune.Tuner(
        make_trainable(study, group), param_space=param_space, tune_config=tune_config, run_config=run_config
    )


def restore_tuner(study: Study, group: Group, retry_errored: bool = False) -> tune.Tuner:
    """The group's Tuner restored from its experiment folder: unfinished trials resume from their last
    checkpoint; errored trials too with ``retry_errored``."""
    return tune.Tuner.restore(
        experiment_path(study, group),
        trainable=make_trainable(study, group),
        resume_unfinished=True,
        resume_errored=retry_errored,
    )


# -- the driver-side callback -------------------------------------------------------------------------------
def _fmt(x: Any) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.2f}%"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class StudyCallback(tune.Callback):
    """Prints a line per epoch and per finished trial, writes each trial's final status to ``trials/``,
    and at the end of the experiment deletes orphan rows (trials an interrupted run started but whose
    Tune state was never saved, so they will never finish)."""

    def __init__(
        self, study: str, storage: str, group: Group, hp_types: dict[str, str], epochs: int, seeds: list[int]
    ) -> None:
        self.seeds = list(seeds)
        self.study = study
        self.storage = storage
        self.group = group
        self.hp_types = hp_types
        self.epochs = epochs

    def _print(self, text: str) -> None:
        print(f"[{self.group.label}] {text}", file=sys.stdout, flush=True)

    def _writer(self) -> ResultsWriter:
        return ResultsWriter(self.storage, self.study)

    def _hparams(self, trial: Any) -> dict[str, Any]:
        return {k: v for k, v in trial.config.items() if k in self.group.space}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        hp = " ".join(f"{k}={_short(v)}" for k, v in self._hparams(trial).items())
        self._print(
            f"{trial.trial_id} seed {result.get('seed')} epoch {result.get('epochs_done')}/{self.epochs}  "
            f"val Δp {_fmt(result.get('val_delta_p'))} (best {_fmt(result.get('best_val_delta_p'))})  "
            f"test Δp {_fmt(result.get('test_delta_p'))}  {result.get('time_epoch', 0):.1f}s  {hp}".rstrip()
        )

    def _finalize(self, trial: Any, failed: bool, error: str | None = None) -> None:
        writer = self._writer()
        row = writer.read_trial_row(self.group.dataset, self.group.method, trial.trial_id)
        if row is None:  # it failed before writing anything (e.g. a bad model argument)
            info = TrialInfo(
                self.study,
                self.group.dataset,
                self.group.method,
                trial.trial_id,
                trial_seed(trial.config, self.seeds),
                self._hparams(trial),
                self.hp_types,
            )
            writer.write_trial(
                info, status="failed" if failed else "stopped", error=error, max_epochs=self.epochs
            )
            return
        status = row["status"]
        if failed:
            if status != "failed":
                status, row["error"] = "failed", error
        elif status in ("running", "failed"):
            status = (
                "completed"
                if (row.get("epochs_done") or 0) >= (row.get("max_epochs") or self.epochs)
                else "stopped"
            )
            row["error"] = None
        if status == row["status"] and (not failed or row.get("error")):
            return
        self._rewrite(writer, row, status)

    def _rewrite(self, writer: ResultsWriter, row: dict[str, Any], status: str) -> None:
        hparams = {k.removeprefix("hp/"): v for k, v in row.items() if k.startswith("hp/") and v is not None}
        info = TrialInfo(
            self.study,
            self.group.dataset,
            self.group.method,
            row["trial_id"],
            int(row["seed"]),
            hparams,
            self.hp_types,
        )
        fixed = {
            "schema_version",
            "study",
            "trial_id",
            "seed",
            "dataset",
            "method",
            "status",
            "error",
            "max_epochs",
            "wall_time",
            "restarts",
            "host",
            "device",
            "node_id",
            "started_at",
            "updated_at",
            "train_config",
        }
        summary = {k: v for k, v in row.items() if k not in fixed and not k.startswith("hp/")}
        writer.write_trial(
            info,
            status=status,
            summary=summary,
            error=row.get("error"),
            max_epochs=row.get("max_epochs"),
            wall_time=row.get("wall_time"),
            restarts=row.get("restarts") or 0,
            host=row.get("host"),
            device=row.get("device"),
            node_id=row.get("node_id"),
            started_at=row.get("started_at"),
            train_config=json.loads(row["train_config"]) if row.get("train_config") else None,
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finalize(trial, failed=False)
        # a finished trial keeps only its final state (the model at its last epoch)
        StateStore(self.storage, self.study, self.group.dataset, self.group.method, trial.trial_id).prune(1)
        result = trial.last_result or {}
        done = result.get("epochs_done", 0)
        how = "completed" if done >= self.epochs else "stopped early by the scheduler"
        self._print(
            f"{trial.trial_id} {how} after {done} epochs; best val Δp {_fmt(result.get('best_val_delta_p'))}"
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _error_text(trial)
        self._finalize(trial, failed=True, error=error)
        self._print(f"{trial.trial_id} FAILED: {error}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"{trial.trial_id} crashed; retrying from its last checkpoint: {_error_text(trial)}")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        writer = self._writer()
        known = {t.trial_id for t in trials}
        for orphan in sorted(writer.trial_ids(self.group.dataset, self.group.method) - known):
            writer.delete_trial(self.group.dataset, self.group.method, orphan)
            StateStore(self.storage, self.study, self.group.dataset, self.group.method, orphan).clear()
            self._print(
                f"removed rows of orphan trial {orphan} "
                "(started by an interrupted run, never recorded by Tune)"
            )


def _error_text(trial: Any) -> str:
    """The last line of a trial's error (the exception message), best effort."""
    try:
        error = trial.get_error()
    except Exception:  # pragma: no cover - depends on Ray internals
        error = None
    text = str(error) if error is not None else ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line or "Fault" in line:
            return line[:2000]
    if not lines:
        # Ray gives no message when the trial's process itself is gone (SIGKILL, OOM kill, lost node)
        return (
            "the trial's worker process died without an error message "
            "(killed by a signal, out of memory, or its node was lost)"
        )
    return lines[-1][:2000]
