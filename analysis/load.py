"""Read a study's Parquet results and choose the configuration each table reports (DESIGN §4, §6).

**The selection rule.** Within a study a method may run many hyperparameter configurations (the values of
its ``hp/*`` columns), each with several seeds. For every (dataset, method) the tables report *one*
configuration, chosen on validation only, as the papers do:

1. eligible trials are those with status ``completed`` or ``running`` and a finite ``best_val_delta_p``;
   if a (dataset, method) has none, its ``stopped`` trials (ended early by ASHA) are used instead and the
   row is flagged; ``failed`` trials never count;
2. trials are grouped into configurations by their ``hp/*`` values (nulls are "not searched");
3. the configuration with the highest *mean over its seeds* of ``best_val_delta_p`` wins (ties: the one
   with more seeds, then the first in sorted order);
4. its trials' test results — taken at each trial's own best validation epoch, as stored in ``trials/`` —
   are then averaged over seeds (mean ± sample std, ``ddof=1``).

The same rule, restricted to subsets (e.g. one value of β), gives the hyperparameter figures.

Which epochs a trial's ``best_val_delta_p`` and test values come from is the *selection protocol*
(:mod:`analysis.selection`: ``best_val``, as above, or ``last_k``, the mean of the last k epochs, with the
validation score averaged over the same epochs); :func:`load_study` applies it once to the ``trials`` table,
so every rule above reads the protocol's values unchanged.

A configuration is identified by the study's ``config_id`` column where the trial rows carry one (same
across the seeds of one configuration), else by its ``hp/*`` values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.identity import with_identity
from analysis.metrics import stored_directions
from analysis.selection import Protocol
from study.results import hp_columns, read_epochs, read_trials

ELIGIBLE = ("completed", "running")
FALLBACK = ("stopped",)
CONFIG = "config"  # column added by :func:`with_config`: the configuration's label


class Study:
    """A study's two tables: ``trials`` (one row per trial) and ``epochs`` (one row per trial and epoch).

    ``epochs`` is read on first use when not given (tables built from ``trials`` alone, such as the
    leaderboard, never read the epoch rows).
    """

    def __init__(
        self,
        path: str,
        trials: pd.DataFrame,
        epochs: pd.DataFrame | None = None,
        notes: list[str] | None = None,
    ) -> None:
        self.path = path
        self.trials = trials
        self._epochs = epochs
        self.notes = list(notes or [])
        self.reference_labels: dict[str, str] = {}
        """dataset -> what its Δp/Δm are measured against, in words (set by :func:`load_study`)."""
        self.protocol = Protocol()
        """The selection protocol its ``trials`` values follow (:mod:`analysis.selection`)."""

    def reference_label(self, dataset: str) -> str:
        """What ``dataset``'s Δp/Δm are measured against (every table says it)."""
        from analysis.reference import paper_label

        return self.reference_labels.get(dataset, paper_label(dataset))

    @property
    def epochs(self) -> pd.DataFrame:
        if self._epochs is None:
            self._epochs = prepare(read_epochs(self.path)) if self.path else pd.DataFrame()
        return self._epochs

    @property
    def name(self) -> str:
        frames = (self.trials,) if not self.trials.empty else (self.trials, self.epochs)
        for frame in frames:
            if "study" in frame.columns and frame["study"].notna().any():
                return str(frame["study"].dropna().iloc[0])
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def datasets(self) -> list[str]:
        values = set()
        for frame in (self.trials,) if not self.trials.empty else (self.trials, self.epochs):
            if "dataset" in frame.columns:
                values |= set(frame["dataset"].dropna())
        return sorted(values)

    def methods(self, dataset: str | None = None) -> list[str]:
        frame = self.trials if dataset is None else self.trials[self.trials["dataset"] == dataset]
        return sorted(set(frame["method"].dropna())) if "method" in frame.columns else []

    def directions(self, dataset: str) -> dict[tuple[str, str], bool]:
        """The metric directions the study stored for ``dataset`` (empty for a schema-1 study)."""
        frame = self.trials[self.trials["dataset"] == dataset] if "dataset" in self.trials else self.trials
        return stored_directions(frame)


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """A table as analysis uses it: identity columns filled (:func:`analysis.identity.with_identity`) and
    the :data:`CONFIG` label added."""
    return with_config(with_identity(frame))


def load_study(path: str, reference: str = "paper", selection: Protocol | None = None) -> Study:
    """Read the study at ``path`` — its folder ``<storage>/<study>`` (local or a pyarrow URI such as
    ``s3://bucket/studies/demo``). Adds the :data:`CONFIG` label column to both tables; the epoch rows are
    read when first used.

    ``reference``: ``"paper"`` keeps the stored Δp/Δm (against the published STL rows); ``"study"``
    rescores every trial against the study's own ``stl`` trials (:mod:`analysis.reference`).
    ``selection``: the protocol the trial values follow (:mod:`analysis.selection`; default ``best_val``).

    Raises :class:`FileNotFoundError` if the folder has neither ``trials/`` nor ``epochs/`` rows, and
    :class:`ValueError` for an unknown ``reference`` or a study without the STL runs it needs.
    """
    check_reference(reference)  # before anything is read
    trials = read_trials(path)
    study = Study(path=path, trials=prepare(trials))
    if trials.empty:
        if study.epochs.empty:
            raise FileNotFoundError(
                f"no study results under '{path}' (expected '<storage>/<study>' with trials/ and epochs/ "
                "folders)"
            )
        study.notes.append("no trials/ rows yet: tables are empty, only the epoch plots can be drawn")
    return with_selection(with_reference(study, reference), selection or Protocol())


def with_selection(study: Study, chosen: Protocol) -> Study:
    """``study`` with its trial values taken under the protocol ``chosen`` (:func:`analysis.selection.apply`,
    from the study's epoch rows); ``study`` itself when it already follows it. Apply it to a study as read
    (best_val) or as rescored by :func:`with_reference`."""
    from analysis.selection import BEST_VAL, apply

    if chosen == study.protocol:
        return study
    if study.protocol.name != BEST_VAL:
        raise ValueError(
            "with_selection: apply a protocol to a study as read (best_val), not on top of another"
        )
    out = Study(path=study.path, trials=apply(study.trials, study.epochs, chosen), epochs=study._epochs)
    out.notes, out.reference_labels, out.protocol = list(study.notes), dict(study.reference_labels), chosen
    return out


def check_reference(reference: str) -> None:
    """Raise :class:`ValueError` unless ``reference`` is one of :data:`analysis.reference.CHOICES`."""
    from analysis.reference import CHOICES

    if reference not in CHOICES:
        raise ValueError(f"unknown reference {reference!r}; valid: {', '.join(CHOICES)}")


def with_reference(study: Study, reference: str) -> Study:
    """``study`` (as read, its stored Δp/Δm against the published rows) scored against ``reference``:
    itself for ``"paper"``; for ``"study"`` a new :class:`Study` whose trials are rescored against the
    study's own ``stl`` trials (:mod:`analysis.reference`). ``study`` is left as it is."""
    from analysis.reference import STUDY, rescore, study_reference

    check_reference(reference)
    if reference != STUDY or study.trials.empty:
        return study
    refs = {d: study_reference(study.trials, study.epochs, d) for d in study.datasets}
    new_trials, new_epochs = rescore(study.trials, study.epochs, refs)
    rescored = Study(path=study.path, trials=new_trials, epochs=new_epochs)
    rescored.reference_labels = {d: r.label() for d, r in refs.items()}
    # rescore takes every trial's values at its new best validation epoch: apply the protocol again
    return with_selection(rescored, study.protocol)


def _format_value(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def config_label(row: pd.Series, columns: Sequence[str]) -> str:
    """``beta=0.5, beta_sigma=0, alpha_strategy=max`` from a row's non-null ``hp/*`` values (``default`` if
    none)."""
    parts = []
    for column in columns:
        value = row[column]
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            continue
        parts.append(f"{column.removeprefix('hp/')}={_format_value(value)}")
    return ", ".join(parts) or "default"


CONFIG_ID = "config_id"
"""The study's own configuration identity (same across the seeds of one configuration), where stored."""


def with_config(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a :data:`CONFIG` column labelling each row's hyperparameter configuration
    (``hp/seed``, if a study searches it, is not part of the configuration). Labels are made once per
    distinct configuration, not per row.

    Where rows carry :data:`CONFIG_ID`, it identifies the configuration: rows of one ``config_id`` share a
    label, and two ``config_id`` with the same ``hp/*`` values (of one dataset and method) get the id
    appended (``lr=0.001 [c3]``), so they stay apart; rows without one are grouped by their ``hp/*``
    values."""
    if frame.empty:
        return frame
    columns = [c for c in hp_columns(frame) if c != "hp/seed"]
    frame = frame.copy()
    if not columns:
        frame[CONFIG] = "default"
    else:
        keys = frame[columns].astype(object).where(frame[columns].notna(), None)
        as_tuples = pd.Series(list(keys.itertuples(index=False, name=None)), index=frame.index)
        labels = {v: config_label(pd.Series(v, index=columns), columns) for v in set(as_tuples)}
        frame[CONFIG] = [labels[values] for values in as_tuples]
    if CONFIG_ID in frame.columns and frame[CONFIG_ID].notna().any():
        scope_columns = [c for c in ("dataset", "method") if c in frame.columns]
        scopes = list(frame[scope_columns].astype(str).itertuples(index=False, name=None))
        ids = [None if pd.isna(v) else str(v) for v in frame[CONFIG_ID]]
        first: dict[tuple, str] = {}  # (scope, config_id) -> the hp label of its first row
        for scope, cid, label in zip(scopes, ids, frame[CONFIG]):
            if cid is not None:
                first.setdefault((scope, cid), label)
        count: dict[tuple, int] = {}
        for (scope, _), label in first.items():
            count[(scope, label)] = count.get((scope, label), 0) + 1
        labels = []
        for scope, cid, label in zip(scopes, ids, frame[CONFIG]):
            if cid is not None:
                label = first[(scope, cid)]
                label = f"{label} [{cid}]" if count[(scope, label)] > 1 else label
            labels.append(label)
        frame[CONFIG] = labels
    return frame


def eligible_trials(trials: pd.DataFrame, statuses: Sequence[str] = ELIGIBLE) -> pd.DataFrame:
    """Trials with one of ``statuses`` and a finite ``best_val_delta_p``."""
    if trials.empty or "best_val_delta_p" not in trials.columns:
        return trials.iloc[0:0]
    ok = trials["status"].isin(list(statuses)) & np.isfinite(trials["best_val_delta_p"].astype(float))
    return trials[ok]


def best_config(trials: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """The trials of the best configuration in each group of ``by`` (module docstring, rule 3).

    ``trials`` must already be eligible (:func:`eligible_trials`) and carry :data:`CONFIG`. Returns those
    trials, with an added ``selected_val`` column (the configuration's mean ``best_val_delta_p``).
    """
    if trials.empty:
        return trials.assign(selected_val=pd.Series(dtype=float))
    keys = list(by)
    stats = (
        trials.groupby([*keys, CONFIG], dropna=False, sort=True)["best_val_delta_p"]
        .agg(["mean", "count"])
        .reset_index()
    )
    stats = stats.sort_values(
        [*keys, "mean", "count", CONFIG], ascending=[True] * len(keys) + [False, False, True]
    )
    chosen = stats.groupby(keys, dropna=False, sort=False).head(1) if keys else stats.head(1)
    chosen = chosen[[*keys, CONFIG, "mean"]].rename(columns={"mean": "selected_val"})
    return trials.merge(chosen, on=[*keys, CONFIG], how="inner")


@dataclass
class Selection:
    """The trials a table reports for one (dataset, method), and why (module docstring)."""

    dataset: str
    method: str
    config: str
    trials: pd.DataFrame
    fallback_stopped: bool = False

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.trials["seed"])

    @property
    def running(self) -> bool:
        return bool((self.trials["status"] == "running").any())


def select(
    trials: pd.DataFrame,
    dataset: str,
    method: str,
    restrict: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> Selection | None:
    """The best configuration of ``method`` on ``dataset`` and its trials, or None if it has no eligible
    trial (not even a stopped one). ``restrict``: a row mask over the method's trials to choose among (e.g.
    its paper-default rows, :func:`analysis.fair.select_default`)."""
    if trials.empty:
        return None
    mine = trials[(trials["dataset"] == dataset) & (trials["method"] == method)]
    if restrict is not None:
        mine = mine[restrict(mine)]
    if CONFIG not in mine.columns:
        mine = with_config(mine)
    pool, fallback = eligible_trials(mine), False
    if pool.empty:
        pool, fallback = eligible_trials(mine, FALLBACK), True
    if pool.empty:
        return None
    chosen = best_config(pool)
    return Selection(dataset, method, str(chosen[CONFIG].iloc[0]), chosen, fallback)


def selections(study: Study, dataset: str) -> dict[str, Selection]:
    """:func:`select` for every method of ``dataset`` that has eligible trials, by method name."""
    out = {}
    for method in study.methods(dataset):
        chosen = select(study.trials, dataset, method)
        if chosen is not None:
            out[method] = chosen
    return out


def selected_epochs(study: Study, selection: Selection) -> pd.DataFrame:
    """The epoch rows of a selection's trials."""
    if study.epochs.empty:
        return study.epochs
    e = study.epochs
    mask = (e["dataset"] == selection.dataset) & (e["method"] == selection.method)
    return e[mask & e["trial_id"].isin(set(selection.trials["trial_id"]))]


def device_kind(devices: pd.Series) -> str:
    """``GPU`` when every known device is CUDA (``cuda:0 (NVIDIA H100 ...)``), ``CPU`` when none is,
    ``device`` when mixed or unknown."""
    known = [str(d) for d in devices.dropna()]
    if not known:
        return "device"
    cuda = [d.startswith("cuda") for d in known]
    return "GPU" if all(cuda) else "CPU" if not any(cuda) else "device"
