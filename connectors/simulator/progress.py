"""Progress of a simulator run: a rich live bar on a terminal, periodic log lines elsewhere.

Reporters only display; they never change what is published. ``update`` may be called as
often as the caller likes: the log reporter writes at most one line per ``every_s``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger(__name__)

ProgressMode = Literal["auto", "rich", "log", "none"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Telemetry counters so far (status messages not included)."""

    published: int
    acked: int
    failed: int
    elapsed_s: float
    total: int | None

    @property
    def rate(self) -> float:
        """Average published messages per second since the telemetry phase began."""
        return self.published / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Reporter(Protocol):
    def update(self, snap: Snapshot) -> None: ...

    def close(self, snap: Snapshot) -> None: ...


class NullReporter:
    """Shows nothing."""

    def update(self, snap: Snapshot) -> None:
        pass

    def close(self, snap: Snapshot) -> None:
        pass


class LogReporter:
    """One INFO line every ``every_s`` seconds: published, acked, failed, rate, ETA."""

    def __init__(self, every_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._next = clock() + every_s

    def update(self, snap: Snapshot) -> None:
        now = self._clock()
        if now >= self._next:
            self._next = now + self.every_s
            self._line(snap)

    def close(self, snap: Snapshot) -> None:
        self._line(snap)

    @staticmethod
    def _line(snap: Snapshot) -> None:
        eta = ""
        if snap.total is not None and snap.rate > 0:
            eta = f", eta {max(0.0, (snap.total - snap.published) / snap.rate):.0f} s"
        of = f"/{snap.total}" if snap.total is not None else ""
        log.info(
            "published %d%s, acked %d, failed %d, %.0f msg/s, elapsed %.1f s%s",
            snap.published,
            of,
            snap.acked,
            snap.failed,
            snap.rate,
            snap.elapsed_s,
            eta,
        )


class RichReporter:
    """A live progress bar on the terminal (published of total, acked, rate, elapsed, ETA)."""

    def __init__(self, total: int | None, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]simulate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("acked {task.fields[acked]}  failed {task.fields[failed]}"),
            TextColumn("{task.fields[rate]:.0f} msg/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: TaskID = self._progress.add_task(
            "simulate", total=total, acked=0, failed=0, rate=0.0
        )
        self._progress.start()

    def update(self, snap: Snapshot) -> None:
        self._progress.update(
            self._task,
            completed=snap.published,
            acked=snap.acked,
            failed=snap.failed,
            rate=snap.rate,
        )

    def close(self, snap: Snapshot) -> None:
        self.update(snap)
        self._progress.stop()


def make_reporter(mode: ProgressMode, total: int | None) -> Reporter:
    """``auto``: a rich bar when stdout is a terminal, else log lines."""
    if mode == "auto":
        mode = "rich" if sys.stdout.isatty() else "log"
    if mode == "rich":
        return RichReporter(total)
    if mode == "log":
        return LogReporter()
    return NullReporter()
