"""Building (or restoring) the one Ray Tune experiment of a whole study.

A study is one pool: the trials of all its (dataset, method) groups run concurrently in one experiment,
``<storage>/<study>/tune/study``, packed onto the cluster by Ray (CPUs and fractional GPUs).

* search: :class:`study.searcher.StudySearcher` dispatches each new trial to one group's own search (Optuna
  TPE with every configuration repeated once per seed, random, grid, or the seeds alone when nothing is
  searched) and tags its config with the group (:data:`GROUP_KEY`). ``resources.max_concurrent_trials`` caps
  the whole study and ``resources.max_concurrent_per_group`` each group, whatever the search.
* scheduler: :class:`study.scheduler.StudyScheduler` keeps one ASHA (on ``val_delta_p``, mode max, time in
  epochs ``epochs_done``) or FIFO per group, so ASHA compares only trials of the same dataset and method;
  the ASHA is :class:`study.asha.ConfigASHA` (a configuration's seeds promoted or stopped together, on
  their mean), its state saved with the searcher's.
* trainable: ``run_trial`` with the settings of every group attached (``tune.with_parameters``); each trial
  picks its group's by the config's group key.
* run config: ``FailureConfig(max_failures)``, every checkpoint kept (tiny pointers to the trial's own saved
  state, :class:`study.trial.StateStore`), the study callback (live progress table, final ``trials/``
  statuses, orphan rows, state pruning), Ray's own console output off (``study`` prints its own).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import FIFOScheduler

from results_store.compaction import compact_ended_trial
from results_store.identity import TrialInfo
from results_store.location import storage_uri
from results_store.writer import ResultsWriter, ended_attempt, trial_attempts
from study.asha import ConfigASHA
from study.layout import EXPERIMENT, experiment_path, tune_root
from study.loggers import logger_callbacks
from study.progress import ProgressPrinter, StudyProgress, fmt_delta
from study.scheduler import StudyScheduler
from study.schema import Group, Study
from study.searcher import DEFAULT_KEY, GROUP_KEY, GroupSearch, StudySearcher, config_key
from study.trial import StateStore, TrialSetup, run_trial, trial_seed

TIME_ATTR = "epochs_done"
PROGRESS_ENV = "MTL_STUDY_PROGRESS"  # "epochs": also one line per trial and epoch (default: the table only)
# Ray's own console output is replaced by the study's: no boxed tables, no TensorBoard hint (public Ray
# Tune switch; its legacy reporter prints nothing at verbose=0)
RAY_QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0"}


def quiet_ray() -> None:
    """Silence Ray Tune's console output that ``study`` replaces (set before Tune runs)."""
    for key, value in RAY_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # its "Resume experiment with: Tuner.restore(...)" hint contradicts `study resume`; the result grid
    # it builds at the end (unused: results are in Parquet) warns about trials that never reported
    logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # "ERROR tune_controller.py ... Trial task failed" and its traceback on every crash or lost node: the
    # study prints its own line per failure (the trial's error) and records it; Ray's stays in its logs
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)


def trial_setup(study: Study, group: Group) -> TrialSetup:
    """The :class:`~study.trial.TrialSetup` of ``group``'s trials."""
    train = study.train.model_dump()
    return TrialSetup(
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
        cpus=float(study.resources.cpus_per_trial),
        gpus=float(study.resources.gpus_per_trial),
    )


def run_study_trial(config: dict[str, Any], groups: dict[str, dict[str, Any]]) -> None:
    """The trainable: ``run_trial`` with the settings of the trial's group."""
    run_trial(config, groups[config[GROUP_KEY]])


def make_trainable(study: Study) -> Any:
    """``run_study_trial`` with every group's settings and the per-trial resources attached."""
    settings = {g.name: trial_setup(study, g).to_dict() for g in study.groups()}
    trainable = tune.with_parameters(run_study_trial, groups=settings)
    resources = {"cpu": study.resources.cpus_per_trial, "gpu": study.resources.gpus_per_trial}
    return tune.with_resources(trainable, resources)


def make_searcher(study: Study) -> StudySearcher:
    """One search per group behind one dispatching Tune searcher (checks the search settings too, before
    anything starts: a bad seed fails here)."""
    groups = {
        g.name: GroupSearch(
            g.name,
            g.space,
            study.seeds,
            study.search.algorithm,
            g.samples or study.search.samples,
            study.search.seed,
            study_name=f"{study.name}.{g.name}",  # DESIGN §7: unique per study
            defaults=g.defaults,
            unique=study.tune is not None,  # equal budgets count distinct configurations
        )
        for g in study.groups()
    }
    return StudySearcher(
        groups,
        study.scheduler.metric,  # the study's objective, declared once (study.schema.SchedulerSettings)
        study.scheduler.mode,
        max_concurrent=study.resources.max_concurrent_trials,
        max_per_group=study.resources.max_concurrent_per_group,
        costs=group_costs(study),
    )


def group_costs(study: Study) -> dict[str, float]:
    """Each group's per-trial cost class: its method's declared per-step cost in backward passes
    (:func:`mtl.methods.step_cost`, with the dataset's number of tasks) times the epochs a trial may
    run."""
    from mtl.data.catalog import dataset_task_names
    from mtl.methods import step_cost

    costs = {}
    for g in study.groups():
        try:
            tasks = len(dataset_task_names(g.dataset, g.dataset_kwargs))
        except Exception:  # a dataset whose task list needs its files
            tasks = 0
        tasks = tasks or 3  # unknown without the files (Office's domains): the class of a few tasks
        costs[g.name] = step_cost(g.method, tasks) * float(study.train.epochs)
    return costs


def make_scheduler(study: Study) -> StudyScheduler:
    """One scheduler per group: :class:`study.asha.ConfigASHA` (the seeds of a configuration promoted or
    stopped together, on their mean) or FIFO."""
    sched = study.scheduler

    def make(_group: str) -> Any:
        if sched.type == "none":
            return FIFOScheduler()
        return ConfigASHA(
            time_attr=TIME_ATTR,
            metric=sched.metric,
            mode=sched.mode,
            max_t=study.max_t,
            grace_period=sched.grace_period,
            reduction_factor=sched.reduction_factor,
            seeds_per_config=len(study.seeds),
            config_key=lambda trial: config_key(trial.config),
        )

    return StudyScheduler(
        make,
        [g.name for g in study.groups()],
        max_running=study.resources.max_concurrent_trials,
        max_running_per_group=study.resources.max_concurrent_per_group,
    )


def _pending_limit(searcher: StudySearcher) -> None:
    """Tune gives a custom searcher one pending trial at a time unless told otherwise (its public
    ``TUNE_MAX_PENDING_TRIALS_PG``): let the pool fill at once, up to the study's cap."""
    cap = min(searcher.total, searcher.max_concurrent or searcher.total, 256)
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(1, cap)))


def build_tuner(study: Study, searcher: StudySearcher | None = None) -> tune.Tuner:
    """A fresh Tuner for the whole study."""
    quiet_ray()
    searcher = searcher or make_searcher(study)
    _pending_limit(searcher)
    scheduler = make_scheduler(study)
    searcher.companion = scheduler  # Tune saves the searcher only: it carries the scheduler's rungs
    tune_config = tune.TuneConfig(
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=searcher.total,
        reuse_actors=True,
    )
    run_config = tune.RunConfig(
        name=EXPERIMENT,
        storage_path=tune_root(study),
        failure_config=tune.FailureConfig(max_failures=study.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # tiny pointers; see trial.StateStore
        callbacks=[
            StudyCallback(study, {name: g.total for name, g in searcher.groups.items()}),
            *logger_callbacks(study),
        ],
        verbose=0,
    )
    return tune.Tuner(make_trainable(study), tune_config=tune_config, run_config=run_config)


def restore_tuner(
    study: Study, searcher: StudySearcher | None = None, retry_errored: bool = False
) -> tune.Tuner:
    """The study's Tuner restored from its experiment folder: every group's search continues where it was,
    unfinished trials resume from their last checkpoint; errored trials too with ``retry_errored``.
    ``searcher`` (the study's, fresh) only sizes the pending-trial limit: Tune restores its own."""
    quiet_ray()
    _pending_limit(searcher or make_searcher(study))
    return tune.Tuner.restore(
        experiment_path(study),
        trainable=make_trainable(study),
        resume_unfinished=True,
        resume_errored=retry_errored,
    )


# -- the driver-side callback -------------------------------------------------------------------------------
def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class StudyCallback(tune.Callback):
    """Keeps the live progress table of the whole study (:mod:`study.progress`), prints a line per finished
    trial, writes each trial's final status to ``trials/``, prunes a finished trial's saved states to the
    last one, and at the end of the experiment deletes orphan rows (trials an interrupted run started but
    whose Tune state was never saved, so they will never finish). A trial's group comes from its config."""

    def __init__(self, study: Study, totals: dict[str, int]) -> None:
        self.study = study
        self.totals = dict(totals)
        self.groups = {g.name: g for g in study.groups()}
        self.storage = storage_uri(study.storage)
        self._printer: ProgressPrinter | None = None
        self._seen: set[str] = set()
        self._beat_at = 0.0  # monotonic time of the driver's last heartbeat (study.heartbeat)
        self._paused: set[str] = set()  # trials seen PAUSED (by ASHA, at a rung) and not resumed since

    def __getstate__(self) -> dict[str, Any]:  # pickled with the Tuner: no stream, no live state
        return {**self.__dict__, "_printer": None, "_seen": set(), "_beat_at": 0.0, "_paused": set()}

    def _heartbeat(self) -> None:
        """Say the driver is alive (``<study>/driver.json``, every :data:`study.heartbeat.BEAT_S` s)."""
        import time

        from study import heartbeat

        if time.monotonic() - self._beat_at >= heartbeat.BEAT_S:
            self._beat_at = time.monotonic()
            try:
                heartbeat.beat(f"{self.storage.rstrip('/')}/{self.study.name}")
            except OSError:
                pass  # a storage hiccup must not stop the study; the next beat tries again

    # -- progress --------------------------------------------------------------------------------------
    @property
    def printer(self) -> ProgressPrinter:
        if self._printer is None:
            totals = {self.groups[name].label: n for name, n in self.totals.items()}
            self._printer = ProgressPrinter(StudyProgress(totals, self.study.train.epochs), sys.stdout)
        return self._printer

    def _label(self, trial: Any) -> str:
        return self._group(trial).label

    def _group(self, trial: Any) -> Group:
        return self.groups[trial.config[GROUP_KEY]]

    def _line(self, trial: Any, text: str) -> None:
        self.printer.line(f"[{self._label(trial)}] {trial.trial_id} {text}")

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._heartbeat()
        progress = self.printer.progress
        for trial in trials:  # trials of an earlier run (restored) and trials not seen yet
            if trial.trial_id in self._seen or GROUP_KEY not in trial.config:
                continue
            self._seen.add(trial.trial_id)
            result = trial.last_result or {}
            done = int(result.get(TIME_ATTR) or 0)
            if trial.status == "TERMINATED":
                progress.ended(
                    self._label(trial), trial.trial_id, "done", done, result.get("best_val_delta_p")
                )
            elif trial.status == "ERROR":
                progress.ended(self._label(trial), trial.trial_id, "failed")
        for trial in trials:  # paused by ASHA at a rung, waiting for its configuration's other seeds
            if trial.status == "PAUSED" and trial.trial_id not in self._paused:
                self._paused.add(trial.trial_id)
                self._on_pause(trial)
        self.printer.draw()

    def _on_pause(self, trial: Any) -> None:
        """A trial ASHA paused at a rung: it holds no slot (counted as pending) and its row records the pause
        as an attempt (so its resumption is not taken for a lost one, and ``study status`` shows it)."""
        self.printer.progress.waiting(self._label(trial), trial.trial_id)
        done = int((trial.last_result or {}).get(TIME_ATTR) or 0)
        self._line(trial, f"paused at epoch {done} (ASHA rung): waiting for its configuration's other seeds")
        group = self._group(trial)
        writer = self._writer()
        row = writer.read_trial_row(group.dataset, group.method, trial.trial_id)
        if row is None or row.get("status") != "running":
            return
        reason = f"paused at epoch {done} (an ASHA rung) for its configuration's other seeds"
        pause = ended_attempt(row, _dt.datetime.now(_dt.UTC), reason, paused=True)
        row["attempts"] = json.dumps([*trial_attempts(row), pause], default=str)
        self._rewrite(writer, group, row, "running")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._paused.discard(trial.trial_id)  # a paused trial resumed

        self._seen.add(trial.trial_id)
        done = int((trial.last_result or {}).get(TIME_ATTR) or 0)
        self.printer.progress.started(self._label(trial), trial.trial_id, done)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        done = int(result.get(TIME_ATTR) or 0)
        self.printer.progress.result(self._label(trial), trial.trial_id, done, result.get("best_val_delta_p"))
        if os.environ.get(PROGRESS_ENV) == "epochs":
            hp = " ".join(f"{k}={_short(v)}" for k, v in self._hparams(trial).items())
            self._line(
                trial,
                f"seed {result.get('seed')} epoch {done}/{self.study.train.epochs}  "
                f"val Δp {fmt_delta(result.get('val_delta_p'), nan='nan')} "
                f"(best {fmt_delta(result.get('best_val_delta_p'), nan='nan')})  "
                f"test Δp {fmt_delta(result.get('test_delta_p'), nan='nan')}  "
                f"{result.get('time_epoch', 0):.1f}s  {hp}".rstrip(),
            )

    # -- final statuses --------------------------------------------------------------------------------
    def _writer(self) -> ResultsWriter:
        return ResultsWriter(self.storage, self.study.name)

    def _hparams(self, trial: Any) -> dict[str, Any]:
        space = self._group(trial).space
        return {k: v for k, v in trial.config.items() if k in space}

    def _finalize(self, trial: Any, failed: bool, error: str | None = None) -> None:
        group = self._group(trial)
        writer = self._writer()
        row = writer.read_trial_row(group.dataset, group.method, trial.trial_id)
        if row is None:  # it failed before writing anything (e.g. a bad model argument)
            from mtl.methods import parse_method

            spec = parse_method(group.method)  # canonical since validation
            info = TrialInfo(  # no metric was measured: no directions to store
                self.study.name,
                group.dataset,
                group.method,
                trial.trial_id,
                trial_seed(trial.config, list(self.study.seeds)),
                self._hparams(trial),
                self.study.hp_types(),
                balancer=spec.balancer,
                aggregator=spec.aggregator,
                paper_default=bool(trial.config.get(DEFAULT_KEY)),
                cpus=float(self.study.resources.cpus_per_trial),
                gpus=float(self.study.resources.gpus_per_trial),
            )
            writer.write_trial(
                info,
                status="failed" if failed else "stopped",
                error=error,
                max_epochs=self.study.train.epochs,
            )
            return
        status = row["status"]
        if failed:
            if status != "failed":
                status, row["error"] = "failed", error
        elif status in ("running", "failed"):
            status = (
                "completed"
                if (row.get("epochs_done") or 0) >= (row.get("max_epochs") or self.study.train.epochs)
                else "stopped"
            )
            row["error"] = None
        if status == row["status"] and (not failed or row.get("error")):
            return
        self._rewrite(writer, group, row, status)

    def _rewrite(self, writer: ResultsWriter, group: Group, row: dict[str, Any], status: str) -> None:
        hparams = {k.removeprefix("hp/"): v for k, v in row.items() if k.startswith("hp/") and v is not None}
        info = TrialInfo(
            self.study.name,
            group.dataset,
            group.method,
            row["trial_id"],
            int(row["seed"]),
            hparams,
            self.study.hp_types(),
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
            "attempts",
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
            attempts=trial_attempts(row),
        )

    def _compact(self, trial: Any) -> None:
        """Fold the ended trial's epoch rows into one file
        (:func:`results_store.compaction.compact_trial`)."""
        group = self._group(trial)
        problem = compact_ended_trial(
            self.storage, self.study.name, group.dataset, group.method, trial.trial_id
        )
        if problem:
            self._line(trial, problem)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        group = self._group(trial)
        self._finalize(trial, failed=False)
        self._compact(trial)
        # a finished trial keeps only its final state (the model at its last epoch)
        StateStore(self.storage, self.study.name, group.dataset, group.method, trial.trial_id).prune(1)
        result = trial.last_result or {}
        done = int(result.get(TIME_ATTR) or 0)
        best = result.get("best_val_delta_p")
        self.printer.progress.ended(group.label, trial.trial_id, "done", done, best)
        how = "completed" if done >= self.study.train.epochs else "stopped early by ASHA"
        self._line(
            trial,
            f"seed {result.get('seed')} {how} at epoch {done}/{self.study.train.epochs}; "
            f"best val Δp {fmt_delta(best, nan='nan')}",
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _error_text(trial)
        self._finalize(trial, failed=True, error=error)
        self._compact(trial)
        self.printer.progress.ended(self._label(trial), trial.trial_id, "failed")
        self._line(trial, f"FAILED: {error}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune's public Trial.checkpoint: the last one the trial reported (None before its first epoch)
        where = (
            "its last checkpoint"
            if getattr(trial, "checkpoint", None) is not None
            else "epoch 1 (no checkpoint yet)"
        )
        self.printer.progress.waiting(self._label(trial), trial.trial_id)
        self._line(trial, f"crashed; retrying from {where}: {_error_text(trial)}")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        from study import heartbeat

        heartbeat.stop(f"{self.storage.rstrip('/')}/{self.study.name}")
        writer = self._writer()
        known = {t.trial_id for t in trials}
        for group in self.groups.values():
            for orphan in sorted(writer.trial_ids(group.dataset, group.method) - known):
                writer.delete_trial(group.dataset, group.method, orphan)
                StateStore(self.storage, self.study.name, group.dataset, group.method, orphan).clear()
                self.printer.line(
                    f"[{group.label}] removed rows of orphan trial {orphan} "
                    "(started by an interrupted run, never recorded by Tune)"
                )
        self.printer.close()


def _last_failure(text: str) -> str:
    """The last failure of a Tune error file (it appends one block per failure)."""
    blocks = text.split("Failure # ")
    if len(blocks) == 1:
        return text
    return blocks[-1].split("\n", 1)[1] if "\n" in blocks[-1] else ""  # without its "N (occurred at ...)"


def _error_text(trial: Any) -> str:
    """The trial's error message (the exception's last line, e.g. ``mtl.errors.ConfigError: unknown model
    argument(s) ...``), read from the error file Tune writes locally when the trial fails (the copy in
    the experiment's storage may not be there yet), else from storage; a reason is given even when Ray
    has no message (the trial's process was killed)."""
    text = ""
    try:
        local = trial.error_file
        if local and Path(local).is_file():
            text = _last_failure(Path(local).read_text(errors="replace"))
        if not text.strip():
            error = trial.get_error()
            text = _last_failure(str(error)) if error is not None else ""
    except Exception:  # pragma: no cover - best effort, a reason is always given below
        text = text or ""
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
