"""Reading a study's rows: one consistent scan of a table folder, whatever compaction is doing (DESIGN §6).

**The reader rule** (:func:`read_epochs`): all files are read in one ``pyarrow.dataset`` scan, and for
each (dataset, method, trial, epoch) a compacted row wins over a per-epoch row
(:mod:`results_store.compaction`).
So each (trial, epoch) is seen exactly once at every moment, never both copies, never neither. Files that
vanish between the scan's listing and its reads (a compaction running at the same moment) make the scan
start again. Unreadable files raise :class:`CorruptResultsError`, naming them (``study repair`` moves
them to :data:`QUARANTINE_DIR`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mtl.errors import MTLError
from results_store.columns import (
    COMPACTED,
    CONFIG_ID,
    EPOCH_KEY,
    EPOCHS_DIR,
    HP_PREFIX,
    PAPER_DEFAULT,
    PARTITIONS,
    TRIALS_DIR,
    config_id,
)
from results_store.location import join, resolve_storage

READ_ATTEMPTS = 5  # scans restarted when files vanish under them (a compaction running meanwhile)
QUARANTINE_DIR = "quarantine"
"""Where ``study repair`` moves unreadable files, under the study's folder."""


def _vanished(exc: OSError) -> bool:
    """Whether a scan failed because a listed file disappeared (local: FileNotFoundError; object stores
    word it differently)."""
    text = str(exc).lower()
    return isinstance(exc, FileNotFoundError) or "no such file" in text or "does not exist" in text


def _scan(fs: pafs.FileSystem, path: str, columns: Sequence[str] | None = None) -> pa.Table | None:
    keys = pa.schema([pa.field(key, pa.string()) for key in PARTITIONS])
    partitioning = ds.HivePartitioning(keys, segment_encoding="uri")
    options = ds.FileSystemFactoryOptions(partition_base_dir=path, partitioning=partitioning)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    factory = ds.FileSystemDatasetFactory(fs, selector, ds.ParquetFileFormat(), options)
    schema = factory.inspect(promote_options="permissive", fragments=None)
    if len(schema) == 0:
        return None
    if columns is not None:  # a projection: only these columns are read from the files
        return factory.finish(schema).to_table(columns=[c for c in columns if c in schema.names])
    return factory.finish(schema).to_table()


def _scan_consistent(fs: pafs.FileSystem, path: str, columns: Sequence[str] | None = None) -> pa.Table | None:
    """One dataset scan of a table folder, started again if files vanished while it ran."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return _scan(fs, path, columns)
        except OSError as exc:
            if attempt == READ_ATTEMPTS - 1 or not _vanished(exc):
                raise
    return None  # pragma: no cover


def _one_row_per_epoch(frame: pd.DataFrame) -> pd.DataFrame:
    """The reader rule: per (dataset, method, trial, epoch) a compacted row wins over a per-epoch copy."""
    if COMPACTED not in frame.columns:
        return frame
    flag = frame[COMPACTED].fillna(False).astype(bool)
    frame = frame.drop(columns=[COMPACTED])
    if flag.any() and all(k in frame.columns for k in EPOCH_KEY):
        frame = frame.assign(_rank=(~flag).astype(int)).sort_values([*EPOCH_KEY, "_rank"], kind="stable")
        frame = frame.drop_duplicates(list(EPOCH_KEY), keep="first").drop(columns=["_rank"])
    return frame


class CorruptResultsError(MTLError, ValueError):
    """A study's Parquet results hold files that cannot be read; the message names them and what to do."""

    def __init__(self, location: str, table: str, bad: Mapping[str, str]) -> None:
        self.files = dict(bad)
        listed = "; ".join(f"{f}: {reason}" for f, reason in sorted(bad.items())[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        super().__init__(
            f"{len(bad)} unreadable Parquet file(s) in {location}/{table}/: {listed}{more}. The other rows "
            f"are intact: `study repair {location}` moves the unreadable files to "
            f"{location}/{QUARANTINE_DIR}/ and rebuilds what the remaining rows allow (then `study resume` "
            "reruns what was lost)"
        )


def unreadable_files(fs: pafs.FileSystem, path: str) -> dict[str, str]:
    """Every ``.parquet`` file under ``path`` that cannot be opened as Parquet, with the reason."""
    bad: dict[str, str] = {}
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    for info in infos:
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        try:
            with fs.open_input_file(info.path) as f:
                pq.read_metadata(f)
        except (OSError, pa.ArrowInvalid) as exc:
            bad[info.path] = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return bad


def _read_table(
    location: str, table: str, filesystem: pafs.FileSystem | None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    fs, path = resolve_storage(location, filesystem)
    if path.rstrip("/").rsplit("/", 1)[-1] != table:
        path = join(path, table)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return pd.DataFrame()
    try:
        wanted = None if columns is None else list(dict.fromkeys([*columns, *EPOCH_KEY, COMPACTED]))
        scanned = _scan_consistent(fs, path, wanted)
    except (OSError, pa.ArrowInvalid) as exc:
        bad = unreadable_files(fs, path)
        if not bad:
            raise
        raise CorruptResultsError(location.rstrip("/").removesuffix(f"/{table}"), table, bad) from exc
    if scanned is None:
        return pd.DataFrame()
    frame = _one_row_per_epoch(scanned.to_pandas())
    if columns is None:  # a projection reads only what it asked for
        frame = _fill_fair_columns(frame)
    order = ["study", "trial_id", *PARTITIONS]
    sort = [c for c in ("dataset", "method", "trial_id", "epoch") if c in frame.columns]
    frame = frame[[c for c in order if c in frame.columns] + [c for c in frame.columns if c not in order]]
    return frame.sort_values(sort, kind="stable").reset_index(drop=True) if sort else frame


def _fill_fair_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows written before ``paper_default``/``config_id`` existed: false, and derived from ``hp/``."""
    if frame.empty:
        return frame
    flags = frame[PAPER_DEFAULT] if PAPER_DEFAULT in frame.columns else pd.Series(False, index=frame.index)
    frame[PAPER_DEFAULT] = flags.astype("boolean").fillna(False).astype(bool)
    ids = frame[CONFIG_ID] if CONFIG_ID in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    missing = ids.isna()
    if missing.any():
        hp = [c for c in frame.columns if c.startswith(HP_PREFIX)]
        derived = frame.loc[missing, hp].apply(
            lambda row: config_id({c.removeprefix(HP_PREFIX): v for c, v in row.items() if not pd.isna(v)}),
            axis=1,
        )
        ids = ids.astype(object)
        ids[missing] = derived if len(hp) else config_id({})
    frame[CONFIG_ID] = ids.astype(str)
    return frame


def read_epochs(
    location: str, filesystem: pafs.FileSystem | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """All epoch rows of a study: ``location`` is the study folder (``<storage>/<study>``) or its
    ``epochs`` folder, local or a URI. One ``pyarrow.dataset`` scan reads per-epoch and compacted files
    alike; each (trial, epoch) appears once (the reader rule in the module docstring). Schemas of all
    files are unified (columns missing in a file are null), the partition keys ``dataset``/``method``
    become string columns, rows are sorted by (dataset, method, trial_id, epoch). ``columns``: read only
    these (with the row identity), e.g. to count a study's epoch rows without reading its metrics."""
    return _read_table(location, EPOCHS_DIR, filesystem, columns)


def read_trials(location: str, filesystem: pafs.FileSystem | None = None) -> pd.DataFrame:
    """All trial rows of a study (see :func:`read_epochs` for ``location``)."""
    return _read_table(location, TRIALS_DIR, filesystem)
