"""Where a study's rows live: storage locations, the hive-partitioned folders and the file names (DESIGN §6).

Layout (under the study's folder, on any pyarrow filesystem)::

    <storage>/<study>/epochs/dataset=<dataset>/method=<method>/<trial_id>_e<epoch:05d>.parquet
    <storage>/<study>/epochs/dataset=<dataset>/method=<method>/<trial_id>_compacted.parquet
    <storage>/<study>/trials/dataset=<dataset>/method=<method>/<trial_id>.parquet

Partition values are percent-encoded (``igbv1+max_norm`` -> ``method=igbv1%2Bmax_norm``), which pyarrow's
hive partitioning decodes on read. ``dataset`` and ``method`` live only in the path (pyarrow refuses a
column that is both in the files and a partition key), so read through :mod:`results_store.reader`, or
``pandas.read_parquet(<study>/epochs)``, never one file on its own.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

import pyarrow.fs as pafs

from results_store.columns import COMPACTED_SUFFIX, EPOCHS_DIR, TRIALS_DIR

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
"""Study names, and trial ids used as file names unquoted."""


def resolve_storage(storage: str, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """A storage location -> (pyarrow filesystem, path on it).

    ``storage`` is a local folder (relative paths are made absolute) or any URI pyarrow understands
    (``file:///...``, ``s3://bucket/prefix``, ``gs://...``, ``hdfs://...``). With ``filesystem`` given,
    ``storage`` is a path on it.
    """
    if filesystem is not None:
        return filesystem, storage.rstrip("/") or "/"
    if "://" in storage:
        fs, path = pafs.FileSystem.from_uri(storage)
        return fs, path.rstrip("/") or "/"
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(storage))


def storage_uri(storage: str) -> str:
    """A storage location as Ray Tune's ``storage_path`` wants it: URIs unchanged, local paths absolute."""
    return storage if "://" in storage else os.path.abspath(os.path.expanduser(storage))


def join(*parts: str) -> str:
    """``parts`` joined by single slashes (the first keeps its leading slash or scheme)."""
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p != "")


def partition_dir(root: str, table: str, dataset: str, method: str) -> str:
    """The folder of one (dataset, method) partition of ``table`` (``epochs``/``trials``) under ``root``."""
    return join(root, table, f"dataset={quote(dataset, safe='')}", f"method={quote(method, safe='')}")


def file_stem(trial_id: str) -> str:
    """A trial's file name stem: its id, percent-encoded when it holds other characters than
    :data:`SAFE_NAME` allows."""
    return trial_id if SAFE_NAME.match(trial_id) else quote(trial_id, safe="")


def epoch_file_name(trial_id: str, epoch: int) -> str:
    """The per-epoch file of ``epoch`` (0-based) of a trial."""
    return f"{file_stem(trial_id)}_e{int(epoch):05d}.parquet"


def compacted_file_name(trial_id: str) -> str:
    """The one file a trial's epoch rows are compacted into (:mod:`results_store.compaction`)."""
    return file_stem(trial_id) + COMPACTED_SUFFIX


def trial_file_name(trial_id: str) -> str:
    """A trial's ``trials/`` row."""
    return f"{file_stem(trial_id)}.parquet"


def study_folder(name_or_path: str, storage: str = "results") -> str:
    """The folder of a study given by its path/URI, or by its name under ``storage``; raises
    :class:`FileNotFoundError` when neither holds ``trials/`` or ``epochs/``."""
    candidates = [storage_uri(name_or_path) if "://" not in name_or_path else name_or_path.rstrip("/")]
    if "://" not in name_or_path and "/" not in name_or_path:
        candidates.append(f"{storage_uri(storage).rstrip('/')}/{name_or_path}")
    for location in candidates:
        fs, path = resolve_storage(location)
        for table in (TRIALS_DIR, EPOCHS_DIR):
            if fs.get_file_info(f"{path}/{table}").type == pafs.FileType.Directory:
                return location
    raise FileNotFoundError(
        f"no study results at {' or '.join(candidates)} (expected a folder with trials/ and epochs/)"
    )
