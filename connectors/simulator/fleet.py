"""Run one simulation over several worker processes (``iocstream simulate --workers N``).

Why: paho-mqtt spends about 45 µs of CPU per QoS 1 message in Python, so one process tops
out below 20,000 msg/s on a typical core; N processes (each its own MQTT connection, client
id ``<id>-w<k>``) scale with cores. ``RunSpec.split`` says who publishes what; the union is
exactly the single-process run.

Guarantees:

* The parent only coordinates: it forwards its stop flag to every worker (within 0.25 s),
  merges their progress into one display and their summaries into one.
* Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; the parent
  decides) and treat SIGTERM like a stop request for the whole fleet.
* A worker that fails or dies is reported in the merged summary's ``error``; the others
  finish their share. If the parent is interrupted hard, it stops its workers (by their
  own process handles) before returning.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
from collections.abc import Sequence
from dataclasses import fields
from types import FrameType
from typing import Any

from connectors.simulator.progress import Reporter, Snapshot
from connectors.simulator.publisher import PublishSummary
from connectors.simulator.runner import RunSpec, execute
from connectors.simulator.session import StopFlag

log = logging.getLogger(__name__)

_POLL_S = 0.25
_JOIN_S = 10.0


def merge(summaries: Sequence[PublishSummary]) -> PublishSummary:
    """Counters summed, elapsed the longest, interrupted if any was, errors joined."""
    out = PublishSummary()
    for f in fields(PublishSummary):
        if f.type in ("int", int):
            setattr(out, f.name, sum(getattr(s, f.name) for s in summaries))
    out.elapsed_s = max((s.elapsed_s for s in summaries), default=0.0)
    out.interrupted = any(s.interrupted for s in summaries)
    errors = [s.error for s in summaries if s.error]
    out.error = "; ".join(errors) if errors else None
    return out


class _QueueReporter:
    """A worker's reporter: sends its snapshots to the parent."""

    def __init__(self, out: Any, index: int) -> None:
        self._out = out
        self._index = index

    def update(self, snap: Snapshot) -> None:
        self._out.put(("progress", self._index, snap))

    def close(self, snap: Snapshot) -> None:
        self._out.put(("progress", self._index, snap))


def _worker(spec: RunSpec, index: int, out: Any, stop: Any, log_level: int) -> None:
    """Entry point of a worker process: run its share, report a summary, never raise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)-7s %(name)s[w{index}]: %(message)s",
    )
    try:
        summary = execute(spec, _QueueReporter(out, index), stop)
    except Exception as exc:
        log.exception("worker %d failed", index)
        summary = PublishSummary(error=f"worker {index} failed: {exc!r}")
    out.put(("done", index, summary))


def _total(snaps: dict[int, Snapshot], total: int | None) -> Snapshot:
    return Snapshot(
        published=sum(s.published for s in snaps.values()),
        acked=sum(s.acked for s in snaps.values()),
        failed=sum(s.failed for s in snaps.values()),
        elapsed_s=max((s.elapsed_s for s in snaps.values()), default=0.0),
        total=total,
    )


def run_fleet(
    spec: RunSpec, workers: int, reporter: Reporter, stop: StopFlag | None = None
) -> PublishSummary:
    """Run ``spec`` over ``workers`` processes (in this process if that is 1 or there is
    only one device); returns the merged summary. ``stop`` ends the run cleanly."""
    stop = stop or threading.Event()
    parts = spec.split(workers)
    if len(parts) == 1:
        return execute(parts[0], reporter, stop)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    fleet_stop = ctx.Event()
    level = logging.getLogger().getEffectiveLevel()
    procs = [
        ctx.Process(
            target=_worker,
            args=(part, k, out, fleet_stop, level),
            name=f"iocstream-simulator-w{k}",
            daemon=True,
        )
        for k, part in enumerate(parts)
    ]
    for p in procs:
        p.start()
    log.info("simulator: %d worker processes", len(procs))
    snaps: dict[int, Snapshot] = {}
    results: dict[int, PublishSummary] = {}
    dead_seen: dict[int, int] = {}
    try:
        while len(results) < len(procs):
            if stop.is_set():
                fleet_stop.set()
            try:
                kind, k, payload = out.get(timeout=_POLL_S)
            except queue.Empty:
                for k, p in enumerate(procs):
                    if k in results or p.is_alive():
                        continue
                    dead_seen[k] = dead_seen.get(k, 0) + 1
                    if dead_seen[k] >= 2:  # its last words would have arrived by now
                        results[k] = PublishSummary(
                            error=f"worker {k} exited with code {p.exitcode} without a summary"
                        )
                continue
            if kind == "progress":
                snaps[k] = payload
                reporter.update(_total(snaps, spec.messages))
            else:
                results[k] = payload
    finally:
        if len(results) < len(procs):
            fleet_stop.set()
        for p in procs:
            p.join(_JOIN_S)
            if p.is_alive():
                log.warning("worker %s did not stop; terminating it", p.name)
                p.terminate()
                p.join(_JOIN_S)
        out.close()
    reporter.close(_total(snaps, spec.messages))
    return merge([results[k] for k in sorted(results)])
