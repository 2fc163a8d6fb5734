"""``iocstream notifier`` against the real broker and a real local HTTP receiver (aiohttp).

* One notification per group (two alerts of one district in one message, Alertmanager body,
  ``Idempotency-Key`` header = the body's ``idempotencyKey``), then a resolved notification;
  the alert of a silenced district (silence created with ``iocstream silence add``) is never
  notified.
* Inhibition: a firing flood alert mutes the gauge alert of its district (the group's first
  notification holds only the flood alert); once the flood alert resolves, the gauge alert is
  notified. Repeat: an unchanged, unacknowledged group is notified again after
  ``repeat_interval`` (same alerts, kind ``repeat``, a new idempotency key). The notifier
  reports its consumer lag on ``/metrics``.
* A receiver answering 500 gets retries (same idempotency key, every attempt on the
  notification log) while another receiver of the same alert gets its notification; SIGKILL
  and restart of the notifier after delivery: the delivered notification is not sent again,
  and a new alert after the restart is notified.

The notifier starts after the silence and the first alert states are on their topics, so it
reads them all before deciding anything: no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from kafka import KafkaConsumer, KafkaProducer

from connectors.notify.cli import run_silence
from schemas.alerts import AlertEvent, AlertState, encode_event
from tests.integration.test_alerter import REPO, Service, create_topics, free_port, wait_for_sample

pytestmark = pytest.mark.integration

WAIT_S = 60  # only bounds a failing test


class Receiver:
    """An aiohttp server on loopback in its own thread; records every request per path.

    ``/fail`` answers 500 to its first ``failures`` requests, then 200.
    """

    def __init__(self, failures: int = 2) -> None:
        self.requests: dict[str, list[tuple[dict[str, str], dict[str, Any]]]] = {}
        self.failures = failures
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        seen = self.requests.setdefault(request.path, [])
        seen.append((dict(request.headers), body))
        if request.path == "/fail" and len(seen) <= self.failures:
            return web.Response(status=500)
        return web.Response(status=200)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def wait_for(self, path: str, count: int, service: Service) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT_S
        while len(self.requests.get(path, [])) < count:
            service.assert_alive()
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{path} got {len(self.requests.get(path, []))} of {count} "
                    f"requests; log {service.log}"
                )
            time.sleep(0.05)
        return [body for _, body in self.requests[path]]


ROUTES = """
version: 1
receivers:
  - {{name: hook, type: webhook, url: "http://127.0.0.1:{port}/hook"}}
  - {{name: fail, type: webhook, url: "http://127.0.0.1:{port}/fail", max_attempts: 5}}
route:
  receiver: hook
  group_by: [district]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
  routes:
    - {{matchers: ['team="flaky"'], receiver: fail, continue: true}}
    - {{matchers: ['team="again"'], receiver: hook, repeat_interval: 1s}}
    - {{matchers: ['team=~".*"'], receiver: hook}}
inhibit_rules:
  - source_matchers: ['team="flood"', 'state="firing"']
    target_matchers: ['team="gauge"']
    equal: [district]
"""


def _event(fp: str, district: str, state: str, revision: int, team: str = "t") -> bytes:
    now = datetime.now(UTC)
    snapshot = AlertState(
        fingerprint=fp,
        rule="test_rule",
        labels={"alertname": "test_rule", "district": district, "team": team, "device_id": fp},
        state=state,
        severity="major",
        episode=1,
        revision=revision,  # type: ignore[arg-type]
        annotations={"summary_vi": f"Cảnh báo {fp}", "summary_en": f"Alert {fp}"},
        fired_at=now,
        active_since=now,
        resolved_at=now if state == "resolved" else None,
    )
    event = AlertEvent(
        fingerprint=fp,
        rule="test_rule",
        alert_id=snapshot.alert_id,
        revision=revision,
        kind="firing" if state == "firing" else "resolved",
        at=now,
        actor="system",
        notify=True,
        from_state="pending" if state == "firing" else "firing",
        to_state=snapshot.state,
        from_severity="major",
        to_severity="major",
        state=snapshot,
    )
    return encode_event(event)


class Setup:
    """Topics, routing file and a notifier subprocess for one test."""

    def __init__(self, tmp: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.bootstrap = os.environ["IOC_KAFKA_BOOTSTRAP"]
        self.alerts = f"test-notifier-alerts-{suffix}"
        self.silences = f"test-notifier-silences-{suffix}"
        self.log_topic = f"test-notifier-log-{suffix}"
        create_topics(self.bootstrap, [self.alerts], partitions=2)
        routes = tmp / f"routes-{suffix}.yaml"
        routes.write_text(ROUTES.format(port=port), encoding="utf-8")
        env = {
            "IOC_TOPIC_ALERTS": self.alerts,
            "IOC_NOTIFY_SILENCES_TOPIC": self.silences,
            "IOC_NOTIFY_LOG_TOPIC": self.log_topic,
            "IOC_NOTIFY_ROUTES": str(routes),
            "IOC_NOTIFY_BACKOFF_S": "0.2",
            "IOC_NOTIFY_EVALUATE_INTERVAL_S": "0.2",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        code = "import sys; from connectors.notify.cli import run; sys.exit(run([]))"
        self.service = Service(
            f"notifier-{suffix}", code, {**os.environ, "PYTHONPATH": str(REPO)}, tmp
        )
        self.producer = KafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks="all")

    def publish(self, fp: str, district: str, state: str, revision: int, team: str = "t") -> None:
        self.producer.send(
            self.alerts, _event(fp, district, state, revision, team), key=fp.encode()
        )
        self.producer.flush()

    def log_records(self) -> list[dict[str, Any]]:
        consumer = KafkaConsumer(
            self.log_topic,
            bootstrap_servers=self.bootstrap.split(","),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=2000,
        )
        try:
            return [orjson.loads(m.value) for m in consumer]
        finally:
            consumer.close()

    def close(self) -> None:
        self.service.stop()
        self.producer.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def setup(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    s = Setup(tmp_path, receiver.port, monkeypatch)
    yield s
    s.close()


def test_one_notification_per_group_resolved_and_silenced(
    setup: Setup, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_silence(
            [
                "add",
                'district="chau-doc"',
                "--duration",
                "1h",
                "--author",
                "test-operator",
                "--comment",
                "maintenance",
            ]
        )
        == 0
    )
    silence_id = capsys.readouterr().out.strip()
    assert run_silence(["list"]) == 0
    assert silence_id in capsys.readouterr().out
    setup.publish("a", "long-xuyen", "firing", 2)
    setup.publish("b", "long-xuyen", "firing", 2)
    setup.publish("c", "chau-doc", "firing", 2)
    setup.service.start()
    [first] = receiver.wait_for("/hook", 1, setup.service)
    setup.publish("a", "long-xuyen", "resolved", 3)
    setup.publish("b", "long-xuyen", "resolved", 3)
    bodies = receiver.wait_for("/hook", 2, setup.service)
    assert first["status"] == "firing"
    assert first["groupLabels"] == {"district": "long-xuyen"}
    assert sorted(a["fingerprint"] for a in first["alerts"]) == ["a", "b"]
    assert first["commonLabels"]["severity"] == "major"
    headers = receiver.requests["/hook"][0][0]
    assert headers["Idempotency-Key"] == first["idempotencyKey"]
    resolved = bodies[1]
    assert resolved["status"] == "resolved"
    assert sorted((a["fingerprint"], a["status"]) for a in resolved["alerts"]) == [
        ("a", "resolved"),
        ("b", "resolved"),
    ]
    assert all(a["labels"]["district"] != "chau-doc" for b in bodies for a in b["alerts"])
    assert len(receiver.requests["/hook"]) == 2
    assert run_silence(["expire", silence_id, "--author", "test-operator"]) == 0


def test_retries_do_not_block_others_and_restart_does_not_repeat(
    setup: Setup, receiver: Receiver
) -> None:
    setup.publish("f", "long-xuyen", "firing", 2, team="flaky")
    setup.service.start()
    [hooked] = receiver.wait_for("/hook", 1, setup.service)
    attempts = receiver.wait_for("/fail", 3, setup.service)
    keys = {h["Idempotency-Key"] for h, _ in receiver.requests["/fail"]}
    assert keys == {attempts[0]["idempotencyKey"]}
    assert hooked["idempotencyKey"] != attempts[0]["idempotencyKey"]
    deadline = time.monotonic() + WAIT_S
    while sum(r["outcome"] == "delivered" for r in setup.log_records()) < 2:
        assert time.monotonic() < deadline, "deliveries never logged"
    outcomes = sorted((r["receiver"], r["attempt"], r["outcome"]) for r in setup.log_records())
    assert outcomes == [
        ("fail", 1, "failed"),
        ("fail", 2, "failed"),
        ("fail", 3, "delivered"),
        ("hook", 1, "delivered"),
    ]
    setup.service.kill()
    setup.publish("g", "chau-doc", "firing", 2)
    setup.service.start()
    bodies = receiver.wait_for("/hook", 2, setup.service)
    assert [a["fingerprint"] for a in bodies[1]["alerts"]] == ["g"]
    assert len(receiver.requests["/fail"]) == 3
    assert len(receiver.requests["/hook"]) == 2


def test_inhibition_lifts_when_the_source_resolves_and_repeat_while_unacknowledged(
    setup: Setup, receiver: Receiver
) -> None:
    setup.publish("flood", "an-phu", "firing", 2, team="flood")
    setup.publish("gauge", "an-phu", "firing", 2, team="gauge")
    port = free_port()
    setup.service.env["IOC_NOTIFY_METRICS_PORT"] = str(port)
    setup.service.start()
    [first] = receiver.wait_for("/hook", 1, setup.service)
    assert [(a["fingerprint"], a["status"]) for a in first["alerts"]] == [("flood", "firing")]
    setup.publish("flood", "an-phu", "resolved", 3, team="flood")
    second = receiver.wait_for("/hook", 2, setup.service)[1]
    assert sorted((a["fingerprint"], a["status"]) for a in second["alerts"]) == [
        ("flood", "resolved"),
        ("gauge", "firing"),
    ]
    setup.publish("again", "tri-ton", "firing", 2, team="again")

    def again() -> list[dict[str, Any]]:
        bodies = [b for _, b in receiver.requests.get("/hook", [])]
        return [b for b in bodies if b["alerts"][0]["fingerprint"] == "again"]

    deadline = time.monotonic() + WAIT_S
    while len(mine := again()) < 2:
        setup.service.assert_alive()
        assert time.monotonic() < deadline, "no repeat of an unacknowledged group"
        time.sleep(0.05)
    assert [b["kind"] for b in mine[:2]] == ["notify", "repeat"]
    assert [a["alertId"] for a in mine[1]["alerts"]] == [a["alertId"] for a in mine[0]["alerts"]]
    assert mine[0]["idempotencyKey"] != mine[1]["idempotencyKey"]
    lag = f'iocstream_consumer_lag_records{{component="notifier",topic="{setup.alerts}"}}'
    wait_for_sample(port, lag, 0.0, setup.service)
