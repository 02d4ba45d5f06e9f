"""What Ray prints on the driver's console during a study, condensed to one plain line per message.

Ray's driver runs a thread that prints every error a node publishes (``(raylet) Raylet is terminated ...``,
``(raylet) Task was killed due to the node running low on memory ...``) straight to ``sys.stdout``: a
multi-line block with ANSI colour codes, which on node loss also quotes "the last 20 lines of the Raylet
logs" -- read from the log folder of the node that noticed, not the node that died (Ray 2.x,
``ray/_private/process_watcher.py``). A study user needs to know *that* a node was lost and where the
details are; what happens to the trials is the study's own to say (``study status`` lists every attempt).

:class:`RayConsole` wraps a console stream: each Ray block (a line starting ``(raylet)`` and the indented
lines after it) goes whole, without colour codes, to ``ray_messages.log`` and is replaced on the console by
one line; every other line passes through, with ANSI codes removed when the console is not a terminal (the
study's progress table draws itself with them on a terminal only).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
RAY_SOURCES = ("(raylet)", "(gcs_server)", "(autoscaler")
MESSAGES_FILE = "ray_messages.log"
SHORT = 160


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def _is_ray_block_start(plain: str) -> bool:
    return plain.startswith(RAY_SOURCES)


def _is_continuation(plain: str) -> bool:
    return plain[:1] in (" ", "\t") or plain == ""


def one_line(plain_first_line: str) -> str:
    """The console line for a Ray message: its source and first sentence(s), without Ray's list of possible
    reasons and log quotes."""
    text = plain_first_line.strip()
    for cut in (" Possible reasons", " Last 20 lines"):
        text = text.split(cut, 1)[0]
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


class RayConsole:
    """A text stream over ``sink`` that condenses Ray's node messages (see the module docstring).

    Thread-safe (Ray prints from its own thread while the study's progress prints from the main one);
    complete lines are handled as they arrive, a partial line waits for its end (or :meth:`flush_pending`).
    """

    def __init__(self, sink: TextIO, log_path: Path) -> None:
        self.sink = sink
        self.log_path = log_path
        self.plain = not _isatty(sink)
        self.condensed = 0
        self._lock = threading.RLock()
        self._pending = ""
        self._in_block = False

    # -- the stream interface print() and logging use
    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._line(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.sink.flush()

    def isatty(self) -> bool:
        return not self.plain

    def fileno(self) -> int:
        return self.sink.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.sink, "encoding", "utf-8")

    def flush_pending(self) -> None:
        with self._lock:
            if self._pending:
                text, self._pending = self._pending, ""
                self._line(text, newline=False)
            self.sink.flush()

    # -- the filter
    def _line(self, line: str, newline: bool = True) -> None:
        plain = strip_ansi(line)
        if _is_ray_block_start(plain):
            self._in_block = True
            self.condensed += 1
            self._log(f"--- {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}\n{plain}\n")
            self.sink.write(f"ray: {one_line(plain)} (Ray's whole message: {self.log_path})\n")
            return
        if self._in_block and _is_continuation(plain):
            self._log(plain + "\n")
            return
        self._in_block = False
        self.sink.write((plain if self.plain else line) + ("\n" if newline else ""))

    def _log(self, text: str) -> None:
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(text)
        except OSError:  # the log is a courtesy: never fail a study over it
            pass


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def ray_messages_path(location: str, study_name: str) -> Path:
    """Where Ray's whole messages go: the study folder when it is a local path, else the temp folder."""
    if "://" in location:
        return Path(tempfile.gettempdir()) / f"mtl-study-{study_name}" / MESSAGES_FILE
    return Path(location) / MESSAGES_FILE


@contextlib.contextmanager
def ray_console(log_path: Path) -> Iterator[tuple[RayConsole, RayConsole]]:
    """Route ``sys.stdout`` and ``sys.stderr`` through :class:`RayConsole` for the duration (Ray's message
    thread looks them up when it prints); restores them after."""
    out, err = RayConsole(sys.stdout, log_path), RayConsole(sys.stderr, log_path)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        yield out, err
    finally:
        sys.stdout, sys.stderr = saved
        out.flush_pending()
        err.flush_pending()
