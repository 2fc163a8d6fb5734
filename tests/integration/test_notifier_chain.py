"""Readings → ``iocstream alerter`` → ``ioc.alerts`` → ``iocstream notifier`` → webhook, with both
processes SIGKILLed and restarted in the middle of a firing alert.

The receiver must see exactly: the firing notification (minor), one notification for the
escalation to major (the acknowledgement, sent with ``iocstream alerts ack``, adds none), and
the resolved notification — no duplicate from the replays the restarts cause, none missing.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer

from streams.alerting.alerts_cli import run as alerts_cli
from tests.integration.test_alerter import FP, REPO, Alerter, Events, Service
from tests.integration.test_notifier import Receiver

pytestmark = pytest.mark.integration

ROUTES = """
version: 1
receivers:
  - {{name: hook, type: webhook, url: "http://127.0.0.1:{port}/hook"}}
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def _delivered(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    try:
        return sum(orjson.loads(m.value)["outcome"] == "delivered" for m in consumer)
    finally:
        consumer.close()


def test_alert_to_webhook_across_restarts_of_alerter_and_notifier(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerter = Alerter(tmp_path, IOC_ALERTER_COMMIT_INTERVAL_S="1000")
    suffix = uuid.uuid4().hex[:10]
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES.format(port=receiver.port), encoding="utf-8")
    log_topic = f"test-chain-log-{suffix}"
    env = {
        **os.environ,
        "IOC_TOPIC_ALERTS": alerter.topics["alerts"],
        "IOC_NOTIFY_SILENCES_TOPIC": f"test-chain-silences-{suffix}",
        "IOC_NOTIFY_LOG_TOPIC": log_topic,
        "IOC_NOTIFY_ROUTES": str(routes),
        "IOC_NOTIFY_EVALUATE_INTERVAL_S": "0.2",
        "PYTHONPATH": str(REPO),
    }
    code = "import sys; from connectors.notify.cli import run; sys.exit(run([]))"
    notifier = Service(f"notifier-{suffix}", code, env, tmp_path)
    monkeypatch.setenv("IOC_TOPIC_ALERTS", alerter.topics["alerts"])
    monkeypatch.setenv("IOC_TOPIC_ALERT_ACTIONS", alerter.topics["alert_actions"])
    events = Events(alerter.bootstrap, alerter.topics["alerts"])
    try:
        alerter.start()
        notifier.start()
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        alerter.reading(t0, 120)
        alerter.reading(t0 + timedelta(seconds=12), 130)
        receiver.wait_for("/hook", 1, notifier)
        deadline = time.monotonic() + 60
        while _delivered(alerter.bootstrap, log_topic) < 1:
            assert time.monotonic() < deadline, "the delivery was never logged"
        alerter.kill()
        notifier.kill()
        alerter.start()
        notifier.start()
        alerter.wait_for_log("alert states restored")
        alerter.reading(t0 + timedelta(seconds=20), 160)
        receiver.wait_for("/hook", 2, notifier)
        assert alerts_cli(["ack", FP, "--actor", "operator-an", "--comment", "on it"]) == 0
        events.wait_for(alerter, "acknowledged")
        alerter.reading(t0 + timedelta(seconds=40), 50)
        bodies = receiver.wait_for("/hook", 3, notifier)
        events.wait_for(alerter, "resolved")
    finally:
        events.close()
        notifier.stop()
        alerter.close()
    summary = [
        (b["status"], [(a["status"], a["labels"]["severity"]) for a in b["alerts"]]) for b in bodies
    ]
    assert summary == [
        ("firing", [("firing", "minor")]),
        ("firing", [("firing", "major")]),
        ("resolved", [("resolved", "major")]),
    ]
    assert bodies[2]["alerts"][0]["acknowledgedBy"] == "operator-an"
    assert len({b["idempotencyKey"] for b in bodies}) == 3
    assert len(receiver.requests["/hook"]) == 3
