"""Two ``iocstream notifier`` processes share the notification groups through a consumer group.

Both read every alert; each delivers only the groups whose key hashes to a partition Kafka
assigned to it (``connectors/notify/ownership.py``). Checked against a real local HTTP
receiver: every group is notified exactly once while both run, both deliver some groups, and
after one is SIGKILLed the survivor takes its groups over (after the group's session timeout)
and notifies their changes — without repeating what the killed one had delivered.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.test_alerter import REPO, Service
from tests.integration.test_notifier import WAIT_S, Receiver, Setup

pytestmark = pytest.mark.integration

DISTRICTS = [f"district-{i:02d}" for i in range(8)]
NOTIFIED = re.compile(r"notify \{'district': '([^']+)'\} via hook")


def _delivered_by(service: Service) -> list[str]:
    text = "".join(
        (service.tmp / f"{service.name}-{run}.log").read_text()
        for run in range(1, service.runs + 1)
    )
    return NOTIFIED.findall(text)


GRANTED = re.compile(r"delivering the notification groups of partitions \[([0-9, ]*)\]")


def _owned(service: Service) -> bool:
    """Whether the service's last granted assignment is exactly one partition."""
    grants = GRANTED.findall(service.log.read_text())
    return bool(grants) and len(grants[-1].split(",")) == 1


def _wait(cond: object, what: str, *services: Service) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():  # type: ignore[operator]
        for s in services:
            s.assert_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; logs {[str(s.log) for s in services]}")
        time.sleep(0.1)


def test_two_notifiers_split_the_groups_and_the_survivor_takes_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver() as receiver:
        setup = Setup(tmp_path, receiver.port, monkeypatch)
        code = "import sys; from connectors.notify.cli import run; sys.exit(run([]))"
        other = Service(
            setup.service.name + "-b", code, {**os.environ, "PYTHONPATH": str(REPO)}, tmp_path
        )
        try:
            setup.service.start()
            other.start()
            # both in the group with one partition each before any alert (else the first
            # to join may deliver every group before the other arrives)
            _wait(lambda: _owned(setup.service) and _owned(other), "both to own", setup.service)
            for i, district in enumerate(DISTRICTS):
                setup.publish(f"fp-{i}", district, "firing", 2)
            receiver.wait_for("/hook", len(DISTRICTS), setup.service)
            time.sleep(3)  # more than group_interval: a duplicate would have come by now
            bodies = [body for _, body in receiver.requests["/hook"]]
            notified = Counter(b["groupLabels"]["district"] for b in bodies)
            assert notified == Counter(DISTRICTS), "each group exactly once"
            first, second = _delivered_by(setup.service), _delivered_by(other)
            assert sorted(first + second) == sorted(DISTRICTS)
            assert first, f"one instance delivered nothing; log {setup.service.log}"
            assert second, f"one instance delivered nothing; log {other.log}"

            # the first instance dies; its groups change while it is gone
            setup.service.kill()
            for i, district in enumerate(first):
                setup.publish(f"fp-new-{i}", district, "firing", 2)
            total = len(DISTRICTS) + len(first)
            _wait(lambda: len(receiver.requests["/hook"]) >= total, "the takeover", other)
            time.sleep(3)
            bodies = [body for _, body in receiver.requests["/hook"]]
            assert len(bodies) == total, "nothing repeated, nothing missing"
            takeover = bodies[len(DISTRICTS) :]
            assert sorted(b["groupLabels"]["district"] for b in takeover) == sorted(first)
            for b in takeover:
                # the group's new notification holds its old alert and the new one
                fps = sorted(a["fingerprint"] for a in b["alerts"])
                assert len(fps) == 2, fps
                assert any(f.startswith("fp-new-") for f in fps), fps
            assert sorted(_delivered_by(other)) == sorted(second + first)
        finally:
            other.stop()
            setup.close()
