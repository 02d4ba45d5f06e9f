"""Fault injection for the fault tests (``tests/faults/``, ``tests/study/``): nothing here is active unless
the environment variable ``MTL_STUDY_FAULTS`` is set.

The variable ``MTL_STUDY_FAULTS`` holds JSON such as
``{"crash_once": {"epoch": 1, "marker_dir": "/tmp/x", "seed": 0}, "nan": {"epoch": 2, "seed": 1}}``:
``crash_once`` raises once per trial after writing that epoch's row and before reporting it;
``nan`` makes that epoch's ``val_delta_p`` NaN. ``seed`` (optional) limits it to trials of that seed.
Two more, each a spec or a list of specs (``tests/faults/``):
``pause`` — ``{"epoch": 1, "marker_dir": "/tmp/x", "seed": 0, "once": true, "wait_s": 120}``: after writing
that epoch's row (before saving its state), the trial process writes its PID to
``<marker_dir>/<trial_id>.<n>.pid`` (``n`` = attempts paused so far) and sleeps up to ``wait_s``, so a test
can SIGKILL it at a known point; with ``once`` (the default) only the first attempt pauses.
``storage_down`` — ``{"flag": "/tmp/x/down", "seed": 1}``: while the file ``flag`` exists, every write of
the trial to the results storage (Parquet rows, trainer states: create, write, move, delete) raises
``OSError(EROFS)`` (``injected storage fault ...``) and is logged as a line ``<seed> <trial_id> <path>`` in
``<flag>.refused``; reads still work. Ray Tune's own experiment files and the driver's writes are not
affected. Nothing of this is active unless ``MTL_STUDY_FAULTS`` is set.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

FAULTS_ENV = "MTL_STUDY_FAULTS"


class InjectedFault(RuntimeError):
    """Raised by the test-only fault injection (``MTL_STUDY_FAULTS``)."""


def load_faults() -> dict[str, Any]:
    raw = os.environ.get(FAULTS_ENV)
    return json.loads(raw) if raw else {}


def applies(spec: Mapping[str, Any] | None, epoch: int, seed: int) -> bool:
    return bool(spec) and int(spec["epoch"]) == epoch and spec.get("seed", seed) == seed


def specs_for(faults: Mapping[str, Any], key: str, seed: int) -> list[dict[str, Any]]:
    """The fault specs under ``key`` (a spec or a list of specs) that apply to trials of ``seed``."""
    raw = faults.get(key) or []
    return [spec for spec in (raw if isinstance(raw, list) else [raw]) if spec.get("seed", seed) == seed]


def pause_for_kill(spec: Mapping[str, Any], trial_id: str) -> None:
    """Test-only (``pause``): publish this process's PID and wait to be killed."""
    marker_dir = Path(spec["marker_dir"])
    marker_dir.mkdir(parents=True, exist_ok=True)
    paused = len(list(marker_dir.glob(f"{trial_id}.*.pid")))
    if paused and spec.get("once", True):
        return
    tmp = marker_dir / f".{trial_id}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(str(os.getpid()))
    tmp.rename(marker_dir / f"{trial_id}.{paused}.pid")
    deadline = time.monotonic() + float(spec.get("wait_s", 120))
    while time.monotonic() < deadline:
        time.sleep(0.05)


class WatchedStorage(pafs.FileSystemHandler):
    """A pyarrow filesystem handler over ``fs`` that calls :meth:`before_write` with the operation and path
    before every call that changes storage (create, write, append, move, copy, delete); reads pass through.
    The base of the test-only storages: :class:`FaultyStorage` and the compaction tests' crash storage."""

    type_prefix = "watched"

    def __init__(self, fs: pafs.FileSystem) -> None:
        self.fs = fs

    def before_write(self, what: str, path: str) -> None:
        """Called before each mutating call (may raise to make it fail)."""

    def get_type_name(self) -> str:
        return f"{self.type_prefix}+{self.fs.type_name}"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.before_write("create_dir", path)
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.before_write("delete_dir", path)
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.before_write("delete_dir_contents", path)
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self.before_write("delete_root_dir_contents", "/")
        self.fs.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path: str) -> None:
        self.before_write("delete_file", path)
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.before_write("move", dest)
        self.fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.before_write("copy_file", dest)
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        self.before_write("write", path)
        return self.fs.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        self.before_write("append", path)
        return self.fs.open_append_stream(path, metadata=metadata)


class FaultyStorage(WatchedStorage):
    """Test-only (``storage_down``): a pyarrow filesystem whose writes fail while a flag file exists."""

    type_prefix = "faulty"

    def __init__(self, fs: pafs.FileSystem, flags: list[str], label: str = "") -> None:
        super().__init__(fs)
        self.flags = flags
        self.label = label

    def before_write(self, what: str, path: str) -> None:
        for flag in self.flags:
            if os.path.exists(flag):
                with open(f"{flag}.refused", "a") as log:
                    log.write(f"{self.label} {path}\n")
                raise OSError(errno.EROFS, f"injected storage fault: storage is read-only ({flag})", path)
