"""City-service KPIs of the stream worker through a real Kafka broker, as a subprocess.

A seeded day of city-system events (applications, feedback, documents; two districts, two
agencies each; repeated events; one event without an agency; one device status event) goes,
in time order, onto a one-partition events topic; a last document per district a day later
closes every minute before it. The test computes, with its own small model of the
definitions in ``streams/service_kpis.py`` (windows ``[T - h, T)``, backlog ``opened < T <=
done``, overdue ``due < T``, early = before the due date's local day in UTC+7, p50/p90 by
``statistics.quantiles(method="inclusive")``), every KPI of every (agency, district) at every
minute, and from those the records a change-only emitter must send (no heartbeat). The worker
must send exactly those records (values to float tolerance), and dead-letter exactly the
event without an agency.

Needs a real broker (the ``stack`` fixture); fails (never skips) when it is unreachable.
"""

from __future__ import annotations

import math
import random
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import events as ev
from schemas.deadletter import DeadLetter
from schemas.indicator_values import SCHEMA as VALUES_SCHEMA
from schemas.indicator_values import decode_value
from schemas.readings import format_time
from tests.integration.test_worker import (
    Collector,
    Worker,
    _wait_for,
    kafka_bootstrap,
    workers,
)

pytestmark = pytest.mark.integration
__all__ = ["kafka_bootstrap", "workers"]  # fixtures used by the tests below

SEED = 20261129
T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 08:00 local
GRACE_S = 5
ICT = timezone(timedelta(hours=7))
MINUTE = timedelta(minutes=1)
HORIZONS = (("24h", timedelta(days=1)), ("30d", timedelta(days=30)))
HANDLED = {"application": "resolved", "feedback": "responded", "document": "processed"}
AGENCIES = {
    "long-xuyen": ("ubnd-my-binh", "phong-qldt"),
    "chau-doc": ("ubnd-vinh-my", "phong-qldt"),
}


@dataclass
class ModelItem:
    kind: str
    agency: str
    district: str
    opened: datetime
    due: datetime | None = None
    handled: datetime | None = None
    done: datetime | None = None


def _event(type_: str, subject: str, at: datetime, **data: Any) -> ev.Event:
    body = {k: format_time(v) if isinstance(v, datetime) else v for k, v in data.items()}
    return ev.Event(id=f"{type_}/{subject}", source="/test/services", type=type_, subject=subject,
                    time=at, data=body, received_at=at)  # fmt: skip


def _scenario() -> list[ev.Event]:
    rng = random.Random(SEED)
    out: list[ev.Event] = []
    for n in range(90):
        district = rng.choice(sorted(AGENCIES))
        agency = rng.choice(AGENCIES[district])
        opened = T0 + timedelta(seconds=rng.randrange(0, 10 * 3600))
        due = opened + timedelta(minutes=rng.randrange(30, 600))
        done = opened + timedelta(minutes=rng.randrange(5, 800))
        base = {"agency": agency, "district": district}
        if n % 3 == 0:
            fields = {**base, "procedure_code": "HT.01", "service_level": "direct",
                      "submitted_at": opened, "due_at": due}  # fmt: skip
            out.append(_event(ev.APPLICATION_SUBMITTED, f"HS-{n}", opened, **fields))
            if rng.random() < 0.8:
                out.append(_event(ev.APPLICATION_RESOLVED, f"HS-{n}", done, **fields,
                                  resolved_at=done, outcome="approved"))  # fmt: skip
        elif n % 3 == 1:
            fields = {**base, "ward": "w", "category": "other", "created_at": opened,
                      "due_at": due}  # fmt: skip
            out.append(_event(ev.FEEDBACK_CREATED, f"PA-{n}", opened, **fields, channel="app"))
            if rng.random() < 0.7:
                out.append(_event(ev.FEEDBACK_RESPONDED, f"PA-{n}", done, **fields,
                                  responded_at=done))  # fmt: skip
        else:
            fields = {**base, "direction": "incoming", "category": "directive",
                      "received_at": opened, "due_at": due}  # fmt: skip
            out.append(_event(ev.DOCUMENT_RECEIVED, f"VB-{n}", opened, **fields))
            if rng.random() < 0.7:
                out.append(_event(ev.DOCUMENT_PROCESSED, f"VB-{n}", done, **fields,
                                  processed_at=done, outcome="completed"))  # fmt: skip
    out.sort(key=lambda e: e.time)
    for district, (agency, _) in AGENCIES.items():  # closes every minute before it
        end = T0 + timedelta(days=1, hours=14)
        out.append(_event(ev.DOCUMENT_RECEIVED, f"VB-end-{district}", end, agency=agency,
                          district=district, direction="incoming", category="report",
                          received_at=end))  # fmt: skip
    return out


def _model_items(events: list[ev.Event]) -> dict[str, ModelItem]:
    items: dict[str, ModelItem] = {}
    for e in events:
        d = e.data
        kind = e.type.split(".")[2]
        opened = datetime.fromisoformat(d.get("submitted_at") or d.get("created_at")
                                        or d["received_at"])  # fmt: skip
        item = items.setdefault(e.subject, ModelItem(kind, d["agency"], d["district"], opened))
        if "due_at" in d:
            item.due = datetime.fromisoformat(d["due_at"])
        for name in ("resolved_at", "responded_at", "processed_at"):
            if name in d:
                item.handled = item.done = datetime.fromisoformat(d[name])
    return items


def _kpis(
    items: list[ModelItem], kind: str, at: datetime
) -> dict[str, tuple[float, dict[str, float]]]:
    backlog = [i for i in items if i.opened < at and (i.done is None or i.done >= at)]
    overdue = sum(1 for i in backlog if i.due is not None and i.due < at)
    out = {f"{kind}_backlog": (float(len(backlog)), {"overdue": float(overdue)}),
           f"{kind}_overdue": (float(overdue), {})}  # fmt: skip
    for label, h in HORIZONS:
        received = sum(1 for i in items if at - h <= i.opened < at)
        handled = [i for i in items if i.handled is not None and at - h <= i.handled < at]
        early = on_time = late = 0
        for i in handled:
            assert i.handled is not None
            assert i.due is not None
            if i.handled > i.due:
                late += 1
            elif i.handled.astimezone(ICT).date() < i.due.astimezone(ICT).date():
                early += 1
            else:
                on_time += 1
        out[f"{kind}_received_{label}"] = (float(received), {})
        out[f"{kind}_{HANDLED[kind]}_{label}"] = (
            float(len(handled)),
            {"early": float(early), "on_time": float(on_time), "late": float(late),
             "no_due": 0.0},
        )  # fmt: skip
        if handled:
            out[f"{kind}_on_time_rate_{label}"] = (
                (early + on_time) / len(handled),
                {"in_scope": float(len(handled)), "on_time": float(early + on_time),
                 "early": float(early), "late": float(late)},
            )  # fmt: skip
            hours = sorted(
                (i.handled - i.opened) / timedelta(hours=1) for i in handled if i.handled
            )
            if len(hours) == 1:
                p50 = p90 = hours[0]
            else:
                p50 = statistics.median(hours)
                p90 = statistics.quantiles(hours, n=10, method="inclusive")[8]
            out[f"{kind}_response_hours_{label}"] = (
                p50, {"p50": p50, "p90": p90, "count": float(len(hours))},
            )  # fmt: skip
    return out


def _expected(events: list[ev.Event]) -> dict[str, tuple[float, dict[str, float]]]:
    """Record key -> (value, components) of every record a change-only emitter sends."""
    good = [e for e in events if e.data.get("agency")]
    items = _model_items(good)
    # one events partition, in time order: each district's watermark is its last event
    last = {e.data["district"]: e.time for e in good}
    grace = timedelta(seconds=GRACE_S)
    expected: dict[str, tuple[float, dict[str, float]]] = {}
    keys = sorted({(i.agency, i.district) for i in items.values()})
    for agency, district in keys:
        end = last[district] - grace
        closed = end.replace(second=0, microsecond=0)
        for kind in HANDLED:
            mine = [i for i in items.values()
                    if (i.agency, i.district, i.kind) == (agency, district, kind)]  # fmt: skip
            emitted: dict[str, tuple[float, dict[str, float]]] = {}
            at = T0.replace(minute=0)
            while at <= closed:
                for name, val in sorted(_kpis(mine, kind, at).items()):
                    prev = emitted.get(name)
                    if prev == val or (prev is None and val[0] == 0 and not any(val[1].values())):
                        continue
                    emitted[name] = val
                    start = at - MINUTE
                    for label, h in HORIZONS:
                        if name.endswith(label):
                            start = at - h
                    expected[f"{name}|agency:{agency}@{district}|{format_time(start)}"] = val
                at += MINUTE
    return expected


def _close(a: tuple[float, dict[str, float]], b: tuple[float, dict[str, float]]) -> bool:
    if a[1].keys() != b[1].keys() or not math.isclose(a[0], b[0], rel_tol=1e-9, abs_tol=1e-9):
        return False
    return all(math.isclose(a[1][k], b[1][k], rel_tol=1e-9, abs_tol=1e-9) for k in a[1])


def _inputs() -> list[bytes]:
    """The events topic's messages: the scenario plus a repeat, an event without an agency
    and a device status event (not a service event)."""
    no_agency = _event(ev.APPLICATION_SUBMITTED, "HS-bad", T0 + timedelta(hours=1),
                       district="long-xuyen", procedure_code="X", service_level="direct",
                       submitted_at=T0 + timedelta(hours=1),
                       due_at=T0 + timedelta(hours=2))  # fmt: skip
    status = {"specversion": "1.0", "id": "s-1", "source": "/bridge", "type":
              "vn.longxuyen.device.status", "subject": "aq-1", "time": format_time(T0),
              "iocreceivedat": format_time(T0), "data": {"status": "online"}}  # fmt: skip
    values = [e.encode() for e in _scenario()]
    values.insert(10, values[5])  # a repeat (same source and id)
    values.insert(20, no_agency.encode())
    values.insert(30, orjson.dumps(status))
    return values


def _produce_events(bootstrap: str, topic: str, values: list[bytes], pace_s: float = 0.0) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all")
    for value in values:
        producer.send(topic, value, partition=0)
        if pace_s:
            producer.flush()
            time.sleep(pace_s)
    producer.flush()
    producer.close()


def _start(bootstrap: str, tmp_path: Path, unique: str, **env: str) -> tuple[Worker, str]:
    events_topic = f"test-services-events-{unique}"
    _create_topics_with(bootstrap, events_topic, 1)
    worker = Worker(
        bootstrap,
        tmp_path,
        IOC_TOPIC_EVENTS=events_topic,
        IOC_WORKER_SERVICE_GRACE_S=str(GRACE_S),
        IOC_WORKER_SERVICE_HEARTBEAT_S="0",
        **env,
    )
    return worker, events_topic


def _check(
    messages: list[tuple[bytes, bytes]],
    letters: list[tuple[bytes, bytes]],
    expected: dict[str, tuple[float, dict[str, float]]],
    *,
    repeats: bool,
) -> None:
    got: dict[str, tuple[float, dict[str, float]]] = {}
    for key, value in messages:
        if orjson.loads(value)["schema"] != VALUES_SCHEMA:
            continue
        record = decode_value(value)
        if record.subject_kind != "agency":
            continue
        assert record.key == key.decode()
        kpi = (record.value, dict(record.components))
        if repeats:  # after a crash a record may come twice, identical
            assert got.setdefault(record.key, kpi) == kpi, record.key
        else:
            assert record.key not in got, f"emitted twice: {record.key}"
            got[record.key] = kpi
    assert set(got) == set(expected)
    bad = [k for k in expected if not _close(got[k], expected[k])]
    assert not bad, [(k, got[k], expected[k]) for k in bad[:5]]
    dead = [DeadLetter.decode(v) for _, v in letters]
    assert {(d.reason, d.source_id) for d in dead} == {("schema_violation", "long-xuyen")}
    assert {orjson.loads(d.payload)["subject"] for d in dead} == {"HS-bad"}


def test_worker_emits_exactly_the_service_kpis_of_the_events(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker], unique: str
) -> None:
    expected = _expected(_scenario())
    assert len(expected) > 200
    assert any("on_time_rate_24h" in k for k in expected)
    assert any(k.startswith("feedback_overdue") and v[0] > 0 for k, v in expected.items())
    worker, events_topic = _start(kafka_bootstrap, tmp_path, unique)
    workers.append(worker)
    _produce_events(kafka_bootstrap, events_topic, _inputs())
    indicators = Collector(kafka_bootstrap, worker.indicators)
    deadletters = Collector(kafka_bootstrap, worker.deadletter)
    try:
        worker.start()
        _wait_for(indicators, worker, set(expected), len(expected))
        worker.stop()
        assert worker.proc is not None
        assert worker.proc.returncode == 0, worker.log.read_text()[-4000:]
        _check(indicators.drain(), deadletters.drain(), expected, repeats=False)
    finally:
        indicators.close()
        deadletters.close()


def test_sigkill_and_restart_give_the_same_service_kpis(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker], unique: str
) -> None:
    # nothing committed before the kill: the restart re-forwards every event (repeats) and
    # replays the by-district topic onto the state restored from the changelog
    expected = _expected(_scenario())
    worker, events_topic = _start(
        kafka_bootstrap, tmp_path, unique, IOC_WORKER_COMMIT_INTERVAL_S="600"
    )
    workers.append(worker)
    indicators = Collector(kafka_bootstrap, worker.indicators)
    deadletters = Collector(kafka_bootstrap, worker.deadletter)
    producer = threading.Thread(
        target=_produce_events,
        args=(kafka_bootstrap, events_topic, _inputs()),
        kwargs={"pace_s": 0.03},
    )
    try:
        worker.start()
        worker.wait_for_log("partitions of ")
        producer.start()
        # kill mid-stream, once a third of the records (and so some checkpoints) are out
        _wait_for(indicators, worker, set(expected), len(expected) // 3)
        worker.kill()
        before = len(indicators.poll())
        producer.join()
        worker.start()
        _wait_for(indicators, worker, set(expected), len(expected))
        worker.stop()
        log = worker.log.read_text()
        restored = [line for line in log.splitlines() if "service-kpis partition " in line]
        assert restored, log[-4000:]  # the state was restored from the changelog
        assert all(" offset -1," not in line for line in restored), restored
        assert before < len(expected)
        _check(indicators.drain(), deadletters.drain(), expected, repeats=True)
    finally:
        if producer.ident is not None:
            producer.join()
        indicators.close()
        deadletters.close()


def _create_topics_with(bootstrap: str, name: str, partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-services")
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
