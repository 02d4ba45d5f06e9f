"""The live progress table of a whole study (pure: fed by events, renders text; no Ray).

One row per (dataset, method) group: trials pending / running / done / stopped early by ASHA / failed, the
best validation Δp so far, epochs per hour (of this run) and an ETA (an upper bound: the remaining trials'
epochs at the group's rate, as if ASHA stopped none of them), plus a total row. :class:`ProgressPrinter`
redraws it in place on a terminal (ANSI) and prints it as plain lines every ``interval`` seconds otherwise;
each trial's end is one line either way. Epochs printed to people are 1-based: "epoch 3/8" after the third
epoch (the stored Parquet ``epoch`` column is 0-based).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO

STATES = ("pending", "running", "done", "stopped", "failed")


def fmt_delta(value: float | None, nan: str = "-") -> str:
    """A Δp in percent with its sign; ``nan`` for a missing or NaN value."""
    return nan if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.2f}%"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@dataclass
class GroupProgress:
    """What is known of one group's trials."""

    total: int
    max_epochs: int
    running: dict[str, int] = field(default_factory=dict)  # trial id -> epochs done
    ended: dict[str, str] = field(default_factory=dict)  # trial id -> done | stopped | failed
    best: float | None = None
    epochs_this_run: int = 0

    def count(self, state: str) -> int:
        if state == "running":
            return len(self.running)
        if state == "pending":
            return max(0, self.total - len(self.running) - len(self.ended))
        return sum(1 for s in self.ended.values() if s == state)

    def remaining_epochs(self) -> int:
        running = sum(max(0, self.max_epochs - done) for done in self.running.values())
        return self.count("pending") * self.max_epochs + running


class StudyProgress:
    """Trial states and rates of every group of a study, updated by the study callback's events."""

    def __init__(
        self, totals: Mapping[str, int], max_epochs: int, clock: Callable[[], float] = time.monotonic
    ):
        self.clock = clock
        self.start = clock()
        self.groups = {label: GroupProgress(int(n), int(max_epochs)) for label, n in totals.items()}

    def _best(self, label: str, value: float | None) -> None:
        if value is None or not math.isfinite(value):
            return
        group = self.groups[label]
        group.best = value if group.best is None else max(group.best, value)

    def started(self, label: str, trial_id: str, epochs_done: int = 0) -> None:
        group = self.groups[label]
        group.ended.pop(trial_id, None)  # a trial retried after a failure runs again
        group.running.setdefault(trial_id, int(epochs_done))

    def waiting(self, label: str, trial_id: str) -> None:
        """A trial crashed and waits to be retried: it holds no slot until it starts again (it counts as
        pending), so the table never shows more trials running than the cluster runs."""
        self.groups[label].running.pop(trial_id, None)

    def result(self, label: str, trial_id: str, epochs_done: int, best: float | None) -> None:
        group = self.groups[label]
        before = group.running.get(trial_id)
        group.running[trial_id] = int(epochs_done)
        if before is not None and epochs_done > before:
            group.epochs_this_run += int(epochs_done) - before
        elif before is None:
            group.epochs_this_run += 1
        self._best(label, best)

    def ended(
        self, label: str, trial_id: str, state: str, epochs_done: int | None = None, best: float | None = None
    ) -> None:
        """A trial ended: ``state`` is done, stopped or failed (``done`` below max_epochs means stopped)."""
        if state not in ("done", "stopped", "failed"):
            raise ValueError(f"unknown trial end state {state!r}; valid: done, stopped, failed")
        group = self.groups[label]
        group.running.pop(trial_id, None)
        if state == "done" and epochs_done is not None and epochs_done < group.max_epochs:
            state = "stopped"
        group.ended[trial_id] = state
        self._best(label, best)

    def finished(self) -> bool:
        return all(g.count("pending") == 0 and not g.running for g in self.groups.values())

    def rows(self) -> list[dict[str, object]]:
        """One dict per group, then a total row (``group`` = "all")."""
        hours = max(self.clock() - self.start, 1e-9) / 3600
        out = []
        for label, g in self.groups.items():
            rate = g.epochs_this_run / hours if g.epochs_this_run else None
            eta = g.remaining_epochs() / rate * 3600 if rate else (0.0 if g.remaining_epochs() == 0 else None)
            out.append(
                {
                    "group": label,
                    **{s: g.count(s) for s in STATES},
                    "best": g.best,
                    "epochs_per_hour": rate,
                    "eta_s": eta,
                }
            )
        total_epochs = sum(g.epochs_this_run for g in self.groups.values())
        total_rate = total_epochs / hours if total_epochs else None
        remaining = sum(g.remaining_epochs() for g in self.groups.values())
        out.append(
            {
                "group": "all",
                **{s: sum(int(r[s]) for r in out) for s in STATES},
                "best": None,
                "epochs_per_hour": total_rate,
                "eta_s": remaining / total_rate * 3600 if total_rate else (0.0 if remaining == 0 else None),
            }
        )
        return out

    def render(self) -> list[str]:
        """The table as lines of text."""
        header = ["group", *STATES, "best val Δp", "epochs/h", "ETA ≤"]
        body = [
            [
                str(r["group"]),
                *(str(r[s]) for s in STATES),
                fmt_delta(r["best"]),  # type: ignore[arg-type]
                "-" if r["epochs_per_hour"] is None else f"{r['epochs_per_hour']:.0f}",
                fmt_duration(r["eta_s"]),
            ]  # type: ignore[arg-type]
            for r in self.rows()
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in [header, *body]
        ]
        elapsed = fmt_duration(self.clock() - self.start)
        return [f"study progress after {elapsed}", *lines]


class ProgressPrinter:
    """Shows a :class:`StudyProgress`: redrawn in place on a terminal, plain lines every ``interval`` s
    otherwise. Event lines (:meth:`line`) are printed above the table."""

    def __init__(
        self,
        progress: StudyProgress,
        stream: IO[str] | None = None,
        interval: float = 30.0,
        tty: bool | None = None,
        redraw_every: float = 1.0,
    ) -> None:
        self.progress = progress
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self.redraw_every = redraw_every
        self._drawn = 0  # lines of the table on screen (terminal only)
        self._last = -math.inf

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _erase(self) -> None:
        if self.tty and self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")  # up to the table's first line, clear to the end
            self._drawn = 0

    def line(self, text: str) -> None:
        """A one-off line (a trial ended, failed, ...), kept above the table."""
        self._erase()
        self._write(text + "\n")
        if self.tty:
            self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        """The table, if due (terminal: at most every ``redraw_every`` s; otherwise every ``interval`` s)."""
        now = self.progress.clock()
        due = self.redraw_every if self.tty else self.interval
        if not force and now - self._last < due:
            return
        self._last = now
        lines = self.progress.render()
        self._erase()
        self._write("\n".join(lines) + "\n")
        if self.tty:
            self._drawn = len(lines)

    def close(self) -> None:
        """The final table, left on screen."""
        self.draw(force=True)
        self._drawn = 0
