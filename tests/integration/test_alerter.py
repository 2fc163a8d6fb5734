"""``iocstream alerter`` against the real broker, as a subprocess (own topics and app id per test).

* A threshold alert goes pending → firing (minor) → escalated (major, critical) → acknowledged
  (an action on the actions topic) → resolved, each once, as one alert (episode 1).
* The operators' CLI (``iocstream alerts list|assign|silence|resolve``) on a firing alert: each
  action comes back as one state change on the alerts topic, and ``list`` shows open alerts;
  the alerter reports its consumer lag on ``/metrics``.
* SIGKILL while an alert is pending, restart: the pending timer survives (the alert fires with
  ``active_since`` = the first crossing) and nothing fires twice; then SIGKILL while firing,
  restart with everything replayed (nothing was committed): still one ``firing`` change, and
  every repeated ``(fingerprint, revision)`` is an identical copy.

Event times are in the past, so no assertion depends on the wall clock or on speed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from schemas.alerts import AlertAction, AlertEvent, decode_event, encode_action
from schemas.readings import SCHEMA, format_time
from streams.alerts.model import fingerprint

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 3
WAIT_S = 90  # only bounds a failing test; nothing is asserted about speed
DEVICE = "aq-alert-test-1"
FP = fingerprint("test_pm25", {"device_id": DEVICE})
RULES = """
version: 1
rules:
  - name: test_pm25
    type: threshold
    metric: pm25
    subject: [device_id]
    carry: [district]
    labels: {team: test}
    ladder:
      - {severity: minor, at: 100, clear: 90}
      - {severity: major, at: 150, clear: 140}
      - {severity: critical, at: 200, clear: 190}
    for: 10s
    annotations:
      summary: {vi: "PM2.5 {value}", en: "PM2.5 {value}"}
  - name: test_gauge_silent
    type: absence
    matchers: ['device_kind="river_gauge"']
    subject: [device_id]
    after: 3s
    severity: warning
    annotations:
      summary: {vi: "{device_id} im lặng {silent_for}", en: "{device_id} silent {silent_for}"}
"""


def create_topics(bootstrap: str, names: list[str], partitions: int = PARTITIONS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-alerter")
    try:
        admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_sample(port: int, sample: str, value: float, service: Service) -> None:
    """Wait until ``/metrics`` on ``port`` shows ``sample`` (name with labels) at ``value``."""
    deadline = time.monotonic() + WAIT_S
    seen = None
    while seen != value:
        service.assert_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"{sample} is {seen}, never {value}; log {service.log}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            lines = resp.read().decode().splitlines()
        seen = next((float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith(sample + " ")), None)
        time.sleep(0.2)


class Service:
    """One ``python -c`` subprocess with its own environment and numbered log files."""

    def __init__(self, name: str, code: str, env: dict[str, str], tmp: Path) -> None:
        self.name, self.code, self.env, self.tmp = name, code, env, tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.tmp / f"{self.name}-{self.runs}.log"

    def start(self) -> None:
        self.runs += 1
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", self.code],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_for_log(self, text: str) -> None:
        """Wait until the current run's log has a line matching the regex ``text``."""
        deadline = time.monotonic() + WAIT_S
        while re.search(text, self.log.read_text()) is None:
            self.assert_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} never logged {text!r}; log {self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            # a process that ignores SIGTERM gets SIGKILLed by every orchestrator: a bug
            pytest.fail(f"{self.name} did not stop within 60 s of SIGTERM; log {self.log}")

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}"
            )


class Alerter(Service):
    """An alerter subprocess with its own topics, app id, rule file and data directory."""

    def __init__(self, tmp: Path, **extra_env: str) -> None:
        suffix = uuid.uuid4().hex[:10]
        bootstrap = os.environ["IOC_KAFKA_BOOTSTRAP"]
        self.bootstrap = bootstrap
        self.topics = {
            name: f"test-alerter-{name}-{suffix}"
            for name in ("readings", "indicators", "events", "alert_actions", "alerts")
        }
        create_topics(bootstrap, list(self.topics.values()))
        rules = tmp / f"rules-{suffix}.yaml"
        rules.write_text(RULES, encoding="utf-8")
        env = {
            **os.environ,
            **{f"IOC_TOPIC_{k.upper()}": v for k, v in self.topics.items()},
            "IOC_ALERTER_APP_ID": f"test-alerter-{suffix}",
            "IOC_ALERTER_RULES": str(rules),
            "IOC_ALERTER_PARTITIONS": str(PARTITIONS),
            "IOC_ALERTER_TICK_INTERVAL_S": "1",
            "IOC_ALERTER_TICK_HOLD_S": "2",
            "IOC_ALERTER_DATA_DIR": str(tmp / f"alerter-{suffix}"),
            "IOC_ALERTER_SESSION_TIMEOUT_S": "10",
            "PYTHONPATH": str(REPO),
            **extra_env,
        }
        code = "import sys; from streams.alerting.cli import run; sys.exit(run([]))"
        super().__init__(f"alerter-{suffix}", code, env, tmp)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all")

    def reading(
        self, at: datetime, value: float, device: str = DEVICE, kind: str = "air_quality"
    ) -> None:
        reading = {
            "device_id": device,
            "device_kind": kind,
            "district": "long-xuyen",
            "ward": "my-binh",
            "metric": "pm25",
            "value": value,
            "unit": "ug/m3",
            "event_time": format_time(at),
            "receive_time": format_time(at),
            "time_source": "device",
            "source": "test",
        }
        batch = orjson.dumps({"schema": SCHEMA, "readings": [reading]})
        self.producer.send(self.topics["readings"], batch, key=device.encode())
        self.producer.flush()

    def action(self, action: AlertAction) -> None:
        self.producer.send(
            self.topics["alert_actions"], encode_action(action), key=action.fingerprint.encode()
        )
        self.producer.flush()

    def close(self) -> None:
        self.stop()
        self.producer.close()


class Events:
    """Every event read so far from an alerts topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap.split(","),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.raw: list[tuple[bytes, bytes]] = []

    def poll(self) -> list[AlertEvent]:
        for records in self.consumer.poll(timeout_ms=200).values():
            self.raw += [(m.key, m.value) for m in records]
        return [decode_event(v) for _, v in self.raw]

    def wait_for(self, service: Service, kind: str, severity: str | None = None) -> AlertEvent:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            service.assert_alive()
            for e in self.poll():
                if e.kind == kind and (severity is None or e.to_severity == severity):
                    return e
        pytest.fail(f"no {kind} {severity or ''} event on the alerts topic; log {service.log}")

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def alerters(tmp_path: Path) -> Iterator[list[Alerter]]:
    started: list[Alerter] = []
    yield started
    for a in started:
        a.close()


def _by_event_id(events: list[AlertEvent]) -> dict[str, list[AlertEvent]]:
    out: dict[str, list[AlertEvent]] = {}
    for e in events:
        out.setdefault(e.event_id, []).append(e)
    return out


def _assert_copies_identical(events: list[AlertEvent]) -> None:
    for event_id, copies in _by_event_id(events).items():
        assert all(c == copies[0] for c in copies), f"copies of {event_id} differ"


def test_threshold_alert_lifecycle_with_escalation_and_acknowledgement(
    tmp_path: Path, alerters: list[Alerter]
) -> None:
    alerter = Alerter(tmp_path)
    alerters.append(alerter)
    events = Events(alerter.bootstrap, alerter.topics["alerts"])
    try:
        alerter.start()
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        alerter.reading(t0, 120)
        pending = events.wait_for(alerter, "pending")
        alerter.reading(t0 + timedelta(seconds=5), 125)
        alerter.reading(t0 + timedelta(seconds=12), 130)
        firing = events.wait_for(alerter, "firing")
        alerter.reading(t0 + timedelta(seconds=20), 160)
        events.wait_for(alerter, "escalated", "major")
        alerter.reading(t0 + timedelta(seconds=25), 145)  # inside major's hysteresis band
        alerter.reading(t0 + timedelta(seconds=30), 210)
        events.wait_for(alerter, "escalated", "critical")
        at = datetime.now(UTC)
        alerter.action(AlertAction("acknowledge", FP, "operator-an", at, alert_id=f"{FP}:1"))
        acked = events.wait_for(alerter, "acknowledged")
        alerter.reading(t0 + timedelta(seconds=40), 50)
        resolved = events.wait_for(alerter, "resolved")
        all_events = events.poll()
    finally:
        events.close()
    _assert_copies_identical(all_events)
    unique = {e.event_id: e for e in all_events}
    kinds = [(e.kind, e.to_severity) for e in sorted(unique.values(), key=lambda e: e.revision)]
    assert kinds == [
        ("pending", "minor"),
        ("firing", "minor"),
        ("escalated", "major"),
        ("escalated", "critical"),
        ("acknowledged", "critical"),
        ("resolved", "critical"),
    ]
    assert {e.fingerprint for e in unique.values()} == {FP}
    assert pending.alert_id is None
    assert firing.alert_id == resolved.alert_id == f"{FP}:1"
    assert firing.notify
    assert not pending.notify
    assert firing.state.active_since == t0
    assert acked.actor == "operator-an"
    assert acked.state.acknowledged_by == "operator-an"
    assert resolved.state.value == 50
    assert all(k == FP.encode() for k, _ in events.raw)


def test_sigkill_keeps_pending_timer_and_never_fires_twice(
    tmp_path: Path, alerters: list[Alerter]
) -> None:
    # a long commit interval: the restarted alerter replays everything it had processed
    alerter = Alerter(tmp_path, IOC_ALERTER_COMMIT_INTERVAL_S="1000")
    alerters.append(alerter)
    events = Events(alerter.bootstrap, alerter.topics["alerts"])
    try:
        alerter.start()
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        alerter.reading(t0, 120)
        events.wait_for(alerter, "pending")
        alerter.kill()
        alerter.start()
        alerter.wait_for_log("alert states restored")
        alerter.reading(t0 + timedelta(seconds=12), 130)
        firing = events.wait_for(alerter, "firing")
        alerter.kill()
        alerter.start()
        alerter.wait_for_log("alert states restored")
        alerter.reading(t0 + timedelta(seconds=20), 160)
        events.wait_for(alerter, "escalated", "major")
        all_events = events.poll()
    finally:
        events.close()
    assert firing.state.active_since == t0  # pending since the first crossing, across a kill
    _assert_copies_identical(all_events)
    unique = sorted({e.event_id: e for e in all_events}.values(), key=lambda e: e.revision)
    assert [e.kind for e in unique] == ["pending", "firing", "escalated"]
    assert [e.revision for e in unique] == [1, 2, 3]
    assert {e.state.episode for e in unique} == {0, 1}
    assert sum(1 for e in all_events if e.kind == "firing") >= 1


def test_absence_fires_on_the_clock_once_across_a_restart_and_clears_on_data(
    tmp_path: Path, alerters: list[Alerter]
) -> None:
    gauge = "rg-alert-test-1"
    fp = fingerprint("test_gauge_silent", {"device_id": gauge})
    alerter = Alerter(
        tmp_path, IOC_ALERTER_COMMIT_INTERVAL_S="1000", IOC_ALERTER_STATS_INTERVAL_S="0.5"
    )
    alerters.append(alerter)
    events = Events(alerter.bootstrap, alerter.topics["alerts"])
    try:
        alerter.start()
        alerter.reading(datetime.now(UTC) - timedelta(hours=1), 2.1, gauge, "river_gauge")
        firing = events.wait_for(alerter, "firing")  # on a tick: nothing else can fire it
        alerter.kill()
        alerter.start()
        alerter.wait_for_log("alert states restored")
        alerter.wait_for_log(r"ticks=[1-9]")  # the restarted alerter has ticked
        alerter.reading(datetime.now(UTC), 2.2, gauge, "river_gauge")
        resolved = events.wait_for(alerter, "resolved")
        all_events = events.poll()
    finally:
        events.close()
    assert firing.fingerprint == resolved.fingerprint == fp
    assert firing.to_severity == "warning"
    _assert_copies_identical(all_events)
    unique = sorted({e.event_id: e for e in all_events}.values(), key=lambda e: e.revision)
    assert [e.kind for e in unique] == ["firing", "resolved"]


def test_operator_cli_lists_assigns_silences_and_resolves(
    tmp_path: Path,
    alerters: list[Alerter],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from streams.alerting.alerts_cli import run as alerts_cli

    port = free_port()
    alerter = Alerter(tmp_path, IOC_ALERTER_METRICS_PORT=str(port))
    alerters.append(alerter)
    monkeypatch.setenv("IOC_TOPIC_ALERTS", alerter.topics["alerts"])
    monkeypatch.setenv("IOC_TOPIC_ALERT_ACTIONS", alerter.topics["alert_actions"])
    events = Events(alerter.bootstrap, alerter.topics["alerts"])
    try:
        alerter.start()
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        alerter.reading(t0, 120)
        alerter.reading(t0 + timedelta(seconds=12), 130)
        events.wait_for(alerter, "firing")
        assert alerts_cli(["list"]) == 0
        listed = capsys.readouterr().out
        assert f"{FP}  firing" in listed
        assert alerts_cli(["assign", FP, "operator-binh", "--actor", "lead-an"]) == 0
        assigned = events.wait_for(alerter, "assigned")
        assert alerts_cli(["silence", FP, "--actor", "lead-an", "--duration", "1h"]) == 0
        silenced = events.wait_for(alerter, "silenced")
        assert alerts_cli(["resolve", FP, "--actor", "lead-an", "--comment", "fixed"]) == 0
        resolved = events.wait_for(alerter, "resolved")
        capsys.readouterr()
        assert alerts_cli(["list"]) == 0
        assert FP not in capsys.readouterr().out  # only open alerts by default
        assert alerts_cli(["list", "--all"]) == 0
        assert f"{FP}  resolved" in capsys.readouterr().out
        for topic in (alerter.topics["readings"], alerter.topics["alert_actions"]):
            lag = f'iocstream_consumer_lag_records{{component="alerter",topic="{topic}"}}'
            wait_for_sample(port, lag, 0.0, alerter)  # caught up, reported by the alerter
    finally:
        events.close()
    assert (assigned.actor, assigned.state.assignee) == ("lead-an", "operator-binh")
    assert silenced.state.silenced_until is not None
    assert (resolved.actor, resolved.comment, resolved.state.state) == (
        "lead-an",
        "fixed",
        "resolved",
    )
