"""The Ray Tune trainable: one trial = one ``mtl`` training run of one configuration and seed.

Per epoch (the one epoch loop, :func:`mtl.train.train_to_end`, with this module's reporter) it (1) trains
and evaluates with :class:`mtl.train.Trainer`, (2) checks that every metric is finite, (3) writes the
epoch's Parquet row and the trial's ``trials/`` row (atomically, see :mod:`results_store.writer`), (4) saves
the
full trainer state (:class:`StateStore`) and (5) ``tune.report``\\s the metrics with a checkpoint that
points at that state. A retried trial (``FailureConfig``) or a resumed study continues from the newest
saved state and rewrites the rows of the epochs it re-runs, so no row is
duplicated or lost.

Which saved state: the one of the epoch Ray Tune's checkpoint of the trial points at, when it has one
(:func:`resume_epoch`) -- not a newer one. Tune saves its experiment (the trials' checkpoints and, through
the study's searcher, ASHA's rungs) every ~10 s; after the driver was killed, Tune and ASHA know the trial
only up to that snapshot, so the trial continues from there and reports again what followed (the same
epochs, bit for bit: the state holds every generator), and ASHA takes the same decisions as in an
uninterrupted study. The work lost is at most one snapshot period. Without a Tune checkpoint the trial
starts afresh; the newest saved state serves only where the checkpoint's own state is gone.

Non-finite metrics never reach ASHA or Optuna: the trial records ``status=failed`` with the reason in
``trials/`` and raises :class:`NonFiniteMetricError`. Divergence is deterministic, so a retry of such a
trial fails at once with the recorded reason instead of re-training.

Fault injection for tests lives in :mod:`study.faults` (inactive unless ``MTL_STUDY_FAULTS`` is set).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import math
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow.fs as pafs
from ray import tune

from mtl.best_epoch import SCORE, best_record
from results_store.identity import TrialInfo
from results_store.location import resolve_storage
from results_store.writer import ResultsWriter, ended_attempt, trial_attempts
from study.faults import (
    FaultyStorage,
    InjectedFault,
    applies,
    load_faults,
    pause_for_kill,
    specs_for,
)
from study.layout import DEFAULT_KEY
from study.space import apply_hparams, destination

NONFINITE_PREFIX = "non-finite metric"
TRIAL_INDEX = "__trial_index__"
STATE_DIR = "state"
POINTER_FILE = "state.json"
REPORTED = ("val_delta_p", "test_delta_p", "val_delta_m", "test_delta_m", "time_epoch", "lr")
LOGGED_PREFIXES = ("val/", "test/", "train_loss/")  # per-task columns also reported to Tune
# record fields that are NaN by design when not measured
_MAY_BE_NAN = ("grad_norm/", "grad_cos", "probe_time/")  # NaN unless measured


class NonFiniteMetricError(FloatingPointError):
    """A trial produced a NaN or infinite metric (or loss); it is failed instead of reported."""


@dataclass
class TrialSetup:
    """What every trial of one (dataset, method) group runs with besides its sampled hyperparameters: the
    study's ``train:`` block (``train``, :class:`study.schema.TrainSettings` as a dict), seeds, searched names
    and resources (picklable; passed via ``tune.with_parameters``)."""

    study: str
    storage: str
    dataset: str
    method: str
    train: dict[str, Any]
    seeds: list[int]
    hp_names: list[str]
    hp_types: dict[str, str]
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    cpus: float | None = None  # the trial's resources, recorded in its trials/ row
    gpus: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trial_seed(config: Mapping[str, Any], seeds: list[int]) -> int:
    """The seed of a trial: a ``seed`` grid value, or the Repeater's index into the study's seeds."""
    if "seed" in config:
        return int(config["seed"])
    return int(seeds[int(config.get(TRIAL_INDEX, 0))])


def build_train_config(settings: TrialSetup, hparams: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The ``mtl`` TrainConfig dict of a trial: fixed settings, then the sampled hyperparameters.

    A searched LR scheduler argument (``scheduler_kwargs.<k>``) of the dataset's paper-default scheduler,
    with ``train`` giving neither a scheduler nor its arguments, starts from the dataset's paper arguments
    (QM9: plateau factor 0.7, patience 5, min_lr 1e-5): only ``<k>`` changes, as a search means.
    """
    base = {
        **settings.train,
        "dataset": settings.dataset,
        "method": settings.method,
        "seed": seed,
        "dataset_kwargs": dict(settings.dataset_kwargs),
        "method_kwargs": dict(settings.method_kwargs),
    }
    searched_args = any(destination(name)[0] == "scheduler_kwargs" for name in hparams)
    if searched_args and base.get("scheduler_kwargs") is None:
        from mtl.data import DATASETS

        paper = DATASETS.factory(settings.dataset).defaults
        chosen = hparams.get("scheduler", base.get("scheduler"))
        if chosen is None or chosen == paper.scheduler:
            base["scheduler"] = paper.scheduler
            base["scheduler_kwargs"] = dict(paper.scheduler_kwargs)
    return apply_hparams(base, hparams)


def flat_directions(higher_is_better: Mapping[str, Mapping[str, bool]]) -> dict[str, bool]:
    """``task -> metric -> flag`` (``mtl.data``'s shape) as ``{"<task>/<metric>": flag}`` (the rows')."""
    return {
        f"{task}/{metric}": bool(flag)
        for task, metrics in higher_is_better.items()
        for metric, flag in metrics.items()
    }


def trial_info(
    settings: TrialSetup,
    trial_id: str,
    seed: int,
    hparams: Mapping[str, Any],
    higher_is_better: Mapping[str, Mapping[str, bool]] | None = None,
    paper_default: bool = False,
) -> TrialInfo:
    """A trial's row identity: the group's method (canonical since validation, :mod:`study.schema`) with
    its balancer and aggregator (``mtl.methods.parse_method``) and, once the dataset is built, each
    metric's direction (``higher_is_better`` as ``mtl.data`` declares it, ``task -> metric -> flag``)."""
    from mtl.methods import parse_method

    spec = parse_method(settings.method)
    return TrialInfo(
        settings.study,
        settings.dataset,
        settings.method,
        trial_id,
        seed,
        dict(hparams),
        settings.hp_types,
        balancer=spec.balancer,
        aggregator=spec.aggregator,
        directions=flat_directions(higher_is_better or {}),
        paper_default=bool(paper_default),
        cpus=settings.cpus,
        gpus=settings.gpus,
    )


def nonfinite_fields(record: Mapping[str, Any]) -> list[str]:
    """Numeric fields of an epoch record that are NaN or infinite (ignoring diagnostics that may be NaN)."""
    bad = []
    for key, value in record.items():
        if key.startswith(_MAY_BE_NAN) or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            bad.append(f"{key}={value}")
    return bad


def _device_name(device: Any) -> str:
    name = str(device)
    if getattr(device, "type", "") == "cuda":
        import torch

        name += f" ({torch.cuda.get_device_name(device)})"
    return name


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # pragma: no cover - outside Ray
        return None


class StateStore:
    """The trial's own copies of its full trainer state, one file per epoch:
    ``<storage>/<study>/state/<dataset>/<method>/<trial_id>/epoch_<k>.pt`` (any pyarrow filesystem). Kept:
    the newest ``keep``, and every one younger than ``recent_s`` (longer than Tune's snapshot period), so
    the state Tune's last saved checkpoint points at is still here when the study resumes from it.

    Ray Tune's checkpoints only point here (a pointer file with the epoch and this path).
    """

    def __init__(
        self,
        storage: str,
        study: str,
        dataset: str,
        method: str,
        trial_id: str,
        keep: int = 2,
        recent_s: float = 120.0,
    ) -> None:
        self.fs, base = resolve_storage(storage)
        parts = [quote(p, safe="") for p in (dataset, method, trial_id)]
        self.dir = "/".join([base.rstrip("/"), study, STATE_DIR, *parts])
        self.keep = keep
        self.recent_s = recent_s

    def epochs(self) -> list[int]:
        selector = pafs.FileSelector(self.dir, allow_not_found=True)
        found = []
        for f in self.fs.get_file_info(selector):
            m = re.match(r"^epoch_(\d+)\.pt$", f.base_name)
            if m and f.type == pafs.FileType.File:
                found.append(int(m.group(1)))
        return sorted(found)

    def path(self, epoch: int) -> str:
        return f"{self.dir}/epoch_{epoch:05d}.pt"

    def save(self, epoch: int, payload: dict[str, Any]) -> str:
        import torch

        buffer = io.BytesIO()
        torch.save(payload, buffer)
        self.fs.create_dir(self.dir, recursive=True)
        final = self.path(epoch)
        tmp = f"{self.dir}/.epoch_{epoch:05d}.{uuid.uuid4().hex}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(buffer.getvalue())
        self.fs.move(tmp, final)
        self.prune(self.keep, spare_recent=True)
        return final

    def prune(self, keep: int, spare_recent: bool = False) -> None:
        """Delete all but the newest ``keep`` states (with ``spare_recent``, also keep those younger than
        ``recent_s``)."""
        old = self.epochs()[:-keep] if keep > 0 else self.epochs()
        if spare_recent and old:
            cutoff = _dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=self.recent_s)
            infos = self.fs.get_file_info([self.path(e) for e in old])
            old = [e for e, info in zip(old, infos, strict=True) if info.mtime is None or info.mtime < cutoff]
        for epoch in old:
            self.fs.delete_file(self.path(epoch))

    def drop_after(self, epoch: int) -> None:
        """Delete the states of epochs after ``epoch`` (they will be trained again)."""
        for later in self.epochs():
            if later > epoch:
                self.fs.delete_file(self.path(later))

    def load(self, epoch: int, map_location: Any = None) -> dict[str, Any]:
        import torch

        with self.fs.open_input_stream(self.path(epoch)) as f:
            data = f.read()
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)

    def clear(self) -> None:
        if self.fs.get_file_info(self.dir).type == pafs.FileType.Directory:
            self.fs.delete_dir(self.dir)


def resume_epoch(store: StateStore) -> int | None:
    """The saved epoch to resume from: the one Ray Tune's checkpoint of this trial points at (what Tune and
    ASHA have seen), if its state is still stored; else the newest stored one when Tune has a checkpoint
    (its state rotated away: rare, see :class:`StateStore`); ``None`` (start afresh) without a checkpoint."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    saved = store.epochs()
    with checkpoint.as_directory() as where:
        pointer = Path(where) / POINTER_FILE
        epoch = json.loads(pointer.read_text())["epoch"] if pointer.exists() else None
    if epoch is not None and epoch in saved:
        return int(epoch)
    return saved[-1] if saved else None


def fingerprint(train_config: Mapping[str, Any]) -> str:
    """What must match for a saved state to belong to this trial (a trial id reused by Tune after an
    interrupted run may carry a different configuration)."""
    return json.dumps(train_config, sort_keys=True, default=str)


def earlier_attempts(prior: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The attempts a trial made before this one, from its stored row: those it recorded, plus the attempt
    that wrote the row if it did not finish the trial (its row still says ``running``: its process or node
    was lost, or the driver died; ``failed``: retried with ``--retry-errored``). Empty for a first attempt
    and for a trial whose row already says it completed."""
    if not prior:
        return []
    attempts = trial_attempts(prior)
    epochs = int(prior.get("epochs_done") or 0)
    if attempts and attempts[-1].get("paused") and int(attempts[-1].get("epochs") or 0) == epochs:
        return attempts  # paused at a rung by ASHA (recorded by the driver), not lost: resumed now
    if prior.get("status") in ("running", "failed", "stopped"):
        reason = (
            prior.get("error")
            or (
                f"no result after epoch {epochs} (0-based {epochs - 1})"
                if epochs
                else "no result before its first epoch ended"
            )
            + ": its process, its node or the driver was lost"
        )
        attempts.append(ended_attempt(prior, prior.get("updated_at"), reason))
    return attempts


def _ended_before(prior: Mapping[str, Any] | None, seed: int, hparams: Mapping[str, Any]) -> bool:
    """Whether this trial already ended as ``stopped`` (its row says so, for this seed and configuration).

    Tune runs such a trial again after a resume when ASHA stopped it while it was paused at a rung: Ray 2.60
    sets a paused trial TERMINATED without saving that status (``TuneController.stop_trial`` of a trial with
    no actor), so the saved experiment still holds it PAUSED. The trial then reports its stored result once
    and returns: nothing to train, its row and epochs stay as they are, and Tune records it TERMINATED."""
    if not prior or prior.get("status") != "stopped" or prior.get("seed") != seed:
        return False
    return all(prior.get(f"hp/{name}") == value for name, value in hparams.items())


def best_val_delta_p(records: list[Mapping[str, Any]]) -> float:
    """The trial's best validation Δp so far (:func:`mtl.best_epoch.best_record`; NaN when none is finite),
    as reported to Ray Tune."""
    best = best_record(records)
    return math.nan if best is None else float(best[SCORE])


def run_trial(config: dict[str, Any], settings: dict[str, Any]) -> None:
    """The function trainable (wrapped with ``tune.with_parameters(run_trial, settings=...)``)."""
    import torch

    from mtl.config import TrainConfig
    from mtl.errors import NonFiniteLossError
    from mtl.train import Trainer, train_to_end

    t_start = time.monotonic()
    entered_at = _dt.datetime.now(_dt.UTC)  # the slot is busy from here: set-up (dataset, model) included
    s = TrialSetup(**settings)
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # one line per checkpoint
    torch.set_num_threads(max(1, s.threads))
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    seed = trial_seed(config, s.seeds)
    hparams = {name: config[name] for name in s.hp_names if name in config}
    writer = ResultsWriter(s.storage, s.study)
    host, node_id = socket.gethostname(), _node_id()
    faults = load_faults()
    down = [str(spec["flag"]) for spec in specs_for(faults, "storage_down", seed)]
    if down:  # test-only: writes fail while a flag file exists
        writer.fs = pafs.PyFileSystem(FaultyStorage(writer.fs, down, f"{seed} {trial_id}"))

    prior = writer.read_trial_row(s.dataset, s.method, trial_id)
    if (
        prior
        and prior.get("status") == "failed"
        and str(prior.get("error") or "").startswith(NONFINITE_PREFIX)
    ):
        raise NonFiniteMetricError(f"{prior['error']} (recorded by an earlier attempt; not retried)")

    if _ended_before(prior, seed, hparams):
        # stopped by ASHA while paused at a rung; Tune's saved state missed it (see _ended_before). Tune
        # requires the study's metric in a trial's final result: report the stored one (its best val Δp;
        # its configuration is cut, so ASHA stops it at once) and train nothing
        done = int(prior.get("epochs_done") or 0)
        best = prior.get("best_val_delta_p")
        tune.report(
            {
                "val_delta_p": best,
                "best_val_delta_p": best,
                "epochs_done": done,
                "epoch": done - 1,
                "seed": seed,
            }
        )
        return
    attempts = earlier_attempts(prior)  # a retried or resumed trial keeps the trace of each attempt
    config_dict = build_train_config(s, hparams, seed)
    trainer = Trainer(TrainConfig.from_dict(config_dict))
    info = trial_info(s, trial_id, seed, hparams, trainer.higher_is_better, bool(config.get(DEFAULT_KEY)))
    device = _device_name(trainer.device)
    store = StateStore(s.storage, s.study, s.dataset, s.method, trial_id)
    if down:
        store.fs = pafs.PyFileSystem(FaultyStorage(store.fs, down, f"{seed} {trial_id}"))
    meta: dict[str, Any] = {
        "started_at": entered_at.isoformat(),
        "wall_before": 0.0,
        "restarts": 0,
    }
    resume_from = resume_epoch(store)
    if resume_from is None:
        store.clear()  # Tune has no checkpoint of it: it starts afresh, as Tune and ASHA see it
    else:
        store.drop_after(resume_from)
        payload = store.load(resume_from, map_location=trainer.device)
        if payload.get("fingerprint") == fingerprint(config_dict):
            trainer.load_state_dict(payload["trainer"])
            meta = {**payload["meta"], "restarts": int(payload["meta"]["restarts"]) + 1}
        else:  # state of another configuration under a reused trial id: start afresh
            store.clear()
    # rows of epochs beyond the resumed state come from an attempt that will be redone: drop them
    writer.delete_epochs(s.dataset, s.method, trial_id, from_epoch=trainer.epoch)
    started_at = _dt.datetime.fromisoformat(meta["started_at"])
    if attempts:  # the trial started with its first attempt, wherever that one ran
        started_at = min(started_at, _dt.datetime.fromisoformat(str(attempts[0]["started_at"])))
    meta["restarts"] = sum(1 for a in attempts if not a.get("paused"))  # a pause at a rung is no restart
    max_epochs = int(trainer.config.epochs)
    resolved = trainer.config.to_dict()

    def wall() -> float:
        return float(meta["wall_before"]) + time.monotonic() - t_start

    def write_trial(status: str, error: str | None = None) -> None:
        writer.write_trial(
            info,
            status=status,
            records=trainer.records,
            error=error,
            max_epochs=max_epochs,
            wall_time=wall(),
            restarts=meta["restarts"],
            host=host,
            device=device,
            node_id=node_id,
            started_at=started_at,
            train_config=resolved,
            attempts=attempts,
        )

    def fail_nonfinite(reason: str) -> None:
        message = f"{NONFINITE_PREFIX}: {reason}"
        write_trial("failed", message)
        raise NonFiniteMetricError(message)

    def report(record: Mapping[str, Any], state_path: str) -> None:
        epoch = int(record["epoch"])
        metrics = {key: record[key] for key in REPORTED if key in record}
        # per-task metrics too, for the study's loggers (TensorBoard, MLflow: study.loggers)
        metrics.update({k: v for k, v in record.items() if k.startswith(LOGGED_PREFIXES)})
        metrics.update(
            epoch=epoch,
            epochs_done=trainer.epoch,
            seed=seed,
            best_val_delta_p=best_val_delta_p(trainer.records),
        )
        with tempfile.TemporaryDirectory(prefix="mtl-study-") as tmp:
            (Path(tmp) / POINTER_FILE).write_text(json.dumps({"epoch": epoch, "state": state_path}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    reported = False

    def on_epoch(record: dict[str, Any], state: Any) -> None:
        """The trial's reporter for :func:`mtl.train.train_to_end`: check, write, save, report."""
        nonlocal reported
        epoch = int(record["epoch"])
        if applies(faults.get("nan"), epoch, seed):
            record["val_delta_p"] = float("nan")
        bad = nonfinite_fields(record)
        if bad:
            writer.write_epoch(info, record, status="nonfinite", host=host, device=device, node_id=node_id)
            hint = ""
            if any(b.startswith("val_delta_p") for b in bad) and trainer.reference is None:
                hint = f" (dataset '{s.dataset}' has no STL reference: set train.reference in the study)"
            fail_nonfinite(f"epoch {epoch}: {', '.join(bad[:6])}{' ...' if len(bad) > 6 else ''}{hint}")
        writer.write_epoch(info, record, host=host, device=device, node_id=node_id)
        write_trial("completed" if trainer.epoch >= max_epochs else "running")
        crash = faults.get("crash_once")
        if applies(crash, epoch, seed):
            marker = Path(crash["marker_dir"]) / f"{trial_id}.crashed"
            if not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(str(epoch))
                raise InjectedFault(f"injected crash after epoch {epoch} of trial {trial_id}")
        for spec in specs_for(faults, "pause", seed):
            if int(spec["epoch"]) == epoch:
                pause_for_kill(spec, trial_id)
        state_path = store.save(
            epoch,
            {
                "trainer": state(),
                "meta": {**meta, "wall_before": wall()},
                "fingerprint": fingerprint(config_dict),
            },
        )
        report(record, state_path)
        reported = True

    write_trial("completed" if trainer.epoch >= max_epochs else "running")
    try:
        train_to_end(trainer, on_epoch)
    except NonFiniteLossError as exc:
        fail_nonfinite(str(exc))
    if not reported and trainer.records:
        # Resumed from a state that had already run every epoch (the study was interrupted between the
        # last save and Tune recording that result): report the last result again, so Tune and the
        # searcher get the metric instead of an empty final result.
        last = trainer.records[-1]
        report(last, store.path(int(last["epoch"])))
