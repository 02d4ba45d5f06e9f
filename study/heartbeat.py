"""The driver's heartbeat: ``<study>/driver.json`` says a driver is attached to the study and alive.

While ``study run``/``study resume`` runs, the driver rewrites it every :data:`BEAT_S` seconds (host, pid,
time) and removes it when the experiment ends. ``study status`` reads it: trials whose rows say
``running`` while no fresh heartbeat exists belong to a study whose driver is gone (killed, or its machine
lost), and are not running; it says so and how to continue (`study resume`). No Ray, no torch.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from typing import Any

import pyarrow.fs as pafs

from results_store.location import resolve_storage

DRIVER_FILE = "driver.json"
BEAT_S = 30.0
STALE_S = 120.0
"""A heartbeat older than this means no driver is attached (4 missed beats)."""


def _path(location: str) -> tuple[pafs.FileSystem, str]:
    fs, path = resolve_storage(location)
    return fs, f"{path.rstrip('/')}/{DRIVER_FILE}"


def beat(location: str) -> None:
    """Write the heartbeat now (atomically: a temporary name, then a rename)."""
    fs, path = _path(location)
    payload = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "updated_at": _dt.datetime.now(_dt.UTC).isoformat(),
    }
    tmp = f"{path}.{os.getpid()}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(json.dumps(payload).encode())
    fs.move(tmp, path)


def stop(location: str) -> None:
    """Remove the heartbeat (the experiment ended)."""
    fs, path = _path(location)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def read(location: str) -> dict[str, Any] | None:
    fs, path = _path(location)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    try:
        with fs.open_input_stream(path) as f:
            return dict(json.loads(f.read().decode()))
    except (OSError, ValueError):
        return None


def driver_warning(location: str, running: int, now: _dt.datetime | None = None) -> str | None:
    """A warning when ``running`` trials are recorded as running but no driver is attached, else None."""
    if running <= 0:
        return None
    now = now or _dt.datetime.now(_dt.UTC)
    heartbeat = read(location)
    if heartbeat is not None:
        age = (now - _dt.datetime.fromisoformat(heartbeat["updated_at"])).total_seconds()
        if age <= STALE_S:
            return None
        since = f"its last heartbeat ({heartbeat['host']}, pid {heartbeat['pid']}) is {age / 60:.0f} min old"
    else:
        since = "no driver has written a heartbeat"
    return (
        f"no driver is attached ({since}): the {running} trial(s) recorded as running are not running; "
        f"continue the study with `study resume {location}`"
    )
