"""Read a study's Parquet results for analysis (DESIGN §4, §6).

:func:`load_study` reads a study folder or URI into a :class:`Study` (its ``trials`` and ``epochs`` tables,
labelled by configuration, :mod:`results_store.labels`), scored against a reference
(:mod:`analysis.reference`)
and under a selection protocol. Which configuration each table reports, and which epochs a trial's
numbers come from, is the one selection rule of :mod:`results_store.selection` (best configuration over seeds
on validation; ``best_val`` or ``last_k``); :func:`load_study` applies the protocol once to the
``trials`` table, so every table reads the protocol's values unchanged.
"""

from __future__ import annotations

import pandas as pd

from analysis.identity import with_identity
from analysis.metrics import stored_directions
from results_store.labels import with_config
from results_store.reader import read_epochs, read_trials
from results_store.selection import BEST_VAL, Protocol, Selection, apply, select


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
        """The selection protocol its ``trials`` values follow (:mod:`results_store.selection`)."""

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
    the :data:`results_store.labels.CONFIG` label added."""
    return with_config(with_identity(frame))


def load_study(path: str, reference: str = "paper", selection: Protocol | None = None) -> Study:
    """Read the study at ``path`` — its folder ``<storage>/<study>`` (local or a pyarrow URI such as
    ``s3://bucket/studies/demo``). Adds the :data:`results_store.labels.CONFIG` label column to both tables;
    the
    epoch rows are read when first used.

    ``reference``: ``"paper"`` keeps the stored Δp/Δm (against the published STL rows); ``"study"``
    rescores every trial against the study's own ``stl`` trials (:mod:`analysis.reference`).
    ``selection``: the protocol the trial values follow (:mod:`results_store.selection`; default
    ``best_val``).

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
    """``study`` with its trial values taken under the protocol ``chosen``
    (:func:`results_store.selection.apply`,
    from the study's epoch rows); ``study`` itself when it already follows it. Apply it to a study as read
    (best_val) or as rescored by :func:`with_reference`."""
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
