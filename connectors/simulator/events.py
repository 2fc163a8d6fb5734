"""City-service event streams for Long Xuyên as CloudEvents, and a Kafka publisher for them.

:func:`generate_events` (pure, seeded) simulates three city systems over a period ending at
``end`` and yields their CloudEvents (structured-mode dicts) in event-time order:

* public services (``/vn/longxuyen/public-services``): applications for common procedures at
  ward offices and city departments, mostly in office hours, each with a statutory due date
  (working days, 17:00 local) and a resolution that is early (before the due day), on time
  (on the due day) or late; each agency has its own late share (1-9 %), a quarter of the
  rest is on time. About 450 applications a day.
* citizen feedback (``/vn/longxuyen/citizen-feedback``): reports created at any hour with a
  response deadline by category (24 h for flooding ... 7 days), then assigned, responded
  (about 15 % after the deadline) and closed with an optional 1-5 rating; 5 % are closed as
  duplicates without a response. About 40 a day.
* electronic documents (``/vn/longxuyen/e-documents``): incoming and outgoing documents per
  department; directives and most incoming letters carry a due date, about 10 % of those are
  processed late. About 250 a day.

Volumes scale with ``Volumes``. Lifecycle steps that would fall after ``end`` are not
emitted, so cases still open at the end form the backlog. Everything (ids included) is
determined by ``seed``, ``start``, ``end`` and the volumes: the same arguments give the same
events, with the same CloudEvents ids, which ingest would drop as duplicates; use another
seed for new events. Procedure codes and agency slugs are illustrative, not official.

:func:`encode_event` gives a record's value and headers in structured or binary mode;
:func:`publish_events` produces them to the inbound topic (kafka-python, acks=all,
idempotent) keyed by subject, paced, with exact duplicates injected on request;
:func:`run_events` is the command line.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from threading import Event as StopFlag
from typing import Any, Literal

import orjson
from kafka import KafkaProducer

from connectors.settings import KafkaSettings, TopicSettings
from connectors.simulator.climate import CITY_TZ
from connectors.simulator.model import DISTRICT, WARDS
from connectors.simulator.pacing import TokenBucket
from schemas import events as ev
from schemas.readings import format_time

log = logging.getLogger(__name__)

Mode = Literal["structured", "binary"]
_Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
SOURCE_SERVICES = "/vn/longxuyen/public-services"
SOURCE_FEEDBACK = "/vn/longxuyen/citizen-feedback"
SOURCE_DOCUMENTS = "/vn/longxuyen/e-documents"
SOURCES = {"application": SOURCE_SERVICES, "feedback": SOURCE_FEEDBACK}
SOURCES["document"] = SOURCE_DOCUMENTS


@dataclass(frozen=True)
class Volumes:
    """New cases per day (Mon-Fri office load; weekends carry a fifth of it)."""

    applications_per_day: float = 450.0
    feedback_per_day: float = 40.0
    documents_per_day: float = 250.0

    def scaled(self, factor: float) -> Volumes:
        return Volumes(
            *(
                v * factor
                for v in (self.applications_per_day, self.feedback_per_day, self.documents_per_day)
            )
        )


TNMT, QLDT, KT = "phong-tai-nguyen-moi-truong", "phong-quan-ly-do-thi", "phong-kinh-te"
LDTBXH, TP, VP = "phong-lao-dong-thuong-binh-xa-hoi", "phong-tu-phap", "van-phong-hdnd-ubnd"
# (code, name, agency or None for the applicant's ward office, service level, days, weight)
PROCEDURES = (
    ("HT.KS.01", "Đăng ký khai sinh", None, "online_full", 1, 20),
    ("HT.KH.02", "Đăng ký kết hôn", None, "online_partial", 3, 6),
    ("CT.BS.03", "Chứng thực bản sao từ bản chính", None, "direct", 1, 30),
    ("HT.XN.04", "Xác nhận tình trạng hôn nhân", None, "online_full", 3, 8),
    ("KT.HKD.05", "Đăng ký hộ kinh doanh", KT, "online_full", 3, 8),
    ("XD.GP.06", "Cấp giấy phép xây dựng nhà ở riêng lẻ", QLDT, "online_partial", 15, 6),
    ("DD.BD.07", "Đăng ký biến động đất đai", TNMT, "online_partial", 10, 9),
    ("DD.CN.08", "Cấp giấy chứng nhận quyền sử dụng đất lần đầu", TNMT, "direct", 30, 3),
    ("LD.TC.09", "Trợ cấp xã hội hằng tháng", LDTBXH, "online_partial", 10, 5),
    ("TP.LL.10", "Cấp phiếu lý lịch tư pháp", TP, "online_full", 10, 5),
)


def _w(spec: str) -> dict[str, float]:
    """``"a:3 b:1"`` -> ``{"a": 3.0, "b": 1.0}``: compact weight tables."""
    return {k: float(v) for k, v in (item.split(":") for item in spec.split())}


DOC_AGENCIES = _w(
    f"{VP}:5 {TNMT}:3 {QLDT}:3 phong-tai-chinh-ke-hoach:3 phong-noi-vu:2 {TP}:1 {KT}:2 "
    f"phong-giao-duc-dao-tao:2 phong-y-te:1 {LDTBXH}:2 phong-van-hoa-thong-tin:1"
)
DOC_IN = _w("official_letter:40 directive:12 decision:12 report:12 invitation:12 plan:6 other:6")
DOC_OUT = _w("official_letter:45 report:20 decision:15 plan:10 invitation:5 other:5")
SENDERS = ("UBND tỉnh An Giang", "Sở Tài nguyên và Môi trường", "Sở Nội vụ", "Sở Xây dựng")
# category: (weight, response deadline in hours, handling agency or None for the ward office)
FEEDBACK = {
    "urban_order": (18, 120, None),
    "traffic": (15, 48, QLDT),
    "waste": (15, 48, TNMT),
    "lighting": (12, 72, QLDT),
    "environment": (12, 120, TNMT),
    "flooding": (10, 24, QLDT),
    "water_supply": (8, 48, KT),
    "public_services": (5, 120, VP),
    "other": (5, 168, None),
}
# share of a working day's new cases per local hour: offices open 07:00-11:30, 13:00-17:00
OFFICE_HOURS = (0, 0, 0, 0, 0, 0, 1, 8, 12, 12, 10, 5, 2, 7, 10, 10, 6, 2, 1, 1, 1, 1, 0, 0)
ALL_HOURS = (1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 7, 6, 5, 6, 6, 6, 6, 6, 5, 5, 4, 3, 2, 1)


class _Sim:
    """The state of one generation run: random source, id counters, pending events."""

    def __init__(self, seed: int, start: datetime, end: datetime) -> None:
        self.rng = random.Random(f"iocstream-events:{seed}:{format_time(start)}")
        self.tag = "".join(self.rng.choice("ABCDEFGHKLMNPQRSTUVXY") for _ in range(3))
        self.end = end
        self.seq = 0
        self.heap: list[tuple[datetime, int, dict[str, Any]]] = []

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def emit(self, type_: str, subject: str, at: datetime, data: dict[str, Any]) -> None:
        if at >= self.end:
            return  # after the simulated period: the case is still open
        event_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        event = {
            "specversion": ev.SPECVERSION,
            "id": str(event_id),
            "source": SOURCES[type_.split(".")[2]],
            "type": type_,
            "subject": subject,
            "time": format_time(at),
            "datacontenttype": ev.JSON_CONTENT_TYPE,
            "data": {k: format_time(v) if isinstance(v, datetime) else v for k, v in data.items()},
        }
        heapq.heappush(self.heap, (at, self.next_seq(), event))

    def pick(self, weights: dict[Any, float] | str) -> Any:
        """A key of ``weights`` (or of ``_w(weights)``) drawn with those weights."""
        table = _w(weights) if isinstance(weights, str) else weights
        return self.rng.choices(list(table), list(table.values()))[0]

    def hours(self, mean: float) -> timedelta:
        return timedelta(hours=self.rng.expovariate(1 / mean))


def _due(t: datetime, working_days: int) -> datetime:
    """17:00 local on the ``working_days``-th working day (Mon-Fri) after ``t``."""
    day = t.astimezone(CITY_TZ).date()
    while working_days > 0:
        day += timedelta(days=1)
        working_days -= day.weekday() < 5
    return datetime.combine(day, clock_time(17), CITY_TZ).astimezone(UTC)


def _office(t: datetime, rng: random.Random) -> datetime:
    """``t``, or the next working morning if ``t`` falls outside office hours."""
    local = t.astimezone(CITY_TZ)
    if local.weekday() < 5 and 7.5 <= local.hour + local.minute / 60 < 17:
        return t
    day = local.date() + timedelta(days=1 if local.hour >= 17 else 0)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    morning = datetime.combine(day, clock_time(7, 30), CITY_TZ).astimezone(UTC)
    return morning + timedelta(minutes=rng.uniform(0, 150))


def _office_back(t: datetime, rng: random.Random) -> datetime:
    """``t``, or shortly before the previous office closing if ``t`` is outside office hours."""
    local = t.astimezone(CITY_TZ)
    if local.weekday() < 5 and 7.5 <= local.hour + local.minute / 60 < 17:
        return t
    day = local.date() - timedelta(days=0 if local.hour >= 17 else 1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    closing = datetime.combine(day, clock_time(17), CITY_TZ).astimezone(UTC)
    return closing - timedelta(minutes=rng.uniform(1, 120))


def _application(sim: _Sim, t: datetime) -> None:
    rng = sim.rng
    code, name, agency, level, days, _ = sim.pick({p: p[5] for p in PROCEDURES})
    ward = rng.choice(WARDS)
    agency = agency or f"ubnd-{ward}"
    online = level == "online_full" or (level == "online_partial" and rng.random() < 0.55)
    channel = "online" if online else ("postal" if rng.random() < 0.03 else "counter")
    due = _due(t, days)
    subject = f"HS-{sim.tag}-{t.astimezone(CITY_TZ):%y%m%d}-{sim.next_seq():06d}"
    base = {
        "application_id": subject,
        "agency": agency,
        "district": DISTRICT,
        "ward": ward,
        "procedure_code": code,
        "service_level": level,
        "channel": channel,
        "submitted_at": t,
        "due_at": due,
    }
    applicant = sim.pick("citizen:85 business:12 organisation:3")
    submitted = {**base, "procedure_name": name, "applicant_type": applicant}
    sim.emit(ev.APPLICATION_SUBMITTED, subject, t, submitted)
    late_share = random.Random(f"perf:{agency}").uniform(0.01, 0.09)
    due_date = due.astimezone(CITY_TZ).date()
    due_day = datetime.combine(due_date, clock_time(7, 30), CITY_TZ)
    eve = datetime.combine(due_date - timedelta(days=1), clock_time(17), CITY_TZ)
    draw = rng.random()
    if draw < late_share:  # late: after the deadline
        resolved = _office(due + timedelta(minutes=10) + sim.hours(30.0), rng)
    elif draw < late_share + 0.25 or eve <= t + timedelta(minutes=30):  # on the due day
        low = max(t + timedelta(minutes=10), due_day)
        resolved = low + (due - low) * rng.uniform(0.0, 0.95)
    else:  # early: before the due day, in office hours
        target = _office_back(t + (eve - t) * rng.uniform(0.1, 1.0), rng)
        resolved = max(target, t + timedelta(minutes=5))
    outcome = sim.pick("approved:93 rejected:5 withdrawn:2")
    data = {**base, "resolved_at": resolved, "outcome": outcome}
    sim.emit(ev.APPLICATION_RESOLVED, subject, resolved, data)


def _feedback(sim: _Sim, t: datetime) -> None:
    rng = sim.rng
    category = sim.pick({c: spec[0] for c, spec in FEEDBACK.items()})
    _, sla_h, handler = FEEDBACK[category]
    ward = rng.choice(WARDS)
    agency = handler or f"ubnd-{ward}"
    due = t + timedelta(hours=sla_h)
    subject = f"PA-{sim.tag}-{t.astimezone(CITY_TZ):%Y}-{sim.next_seq():06d}"
    base = {
        "ticket_id": subject,
        "district": DISTRICT,
        "ward": ward,
        "category": category,
        "created_at": t,
        "due_at": due,
    }
    where = {
        "lat": round(10.37 + rng.uniform(-0.03, 0.03), 5),
        "lon": round(105.43 + rng.uniform(-0.03, 0.03), 5),
    }
    channel = sim.pick("app:45 hotline:20 zalo:20 web:10 email:5")
    created = {**base, "agency": "ioc-long-xuyen", "channel": channel, "location": where}
    sim.emit(ev.FEEDBACK_CREATED, subject, t, created)
    assigned = t + min(timedelta(minutes=5) + sim.hours(2.0), (due - t) * 0.5)
    handled = {**base, "agency": agency}
    sim.emit(ev.FEEDBACK_ASSIGNED, subject, assigned, {**handled, "assigned_at": assigned})
    if rng.random() < 0.05:
        closed = assigned + timedelta(minutes=10) + sim.hours(1.0)
        data = {**handled, "closed_at": closed, "resolution": "duplicate"}
        sim.emit(ev.FEEDBACK_CLOSED, subject, closed, data)
        return
    overdue = rng.random() < 0.15
    if overdue:
        responded = due + timedelta(minutes=15) + sim.hours(36.0)
    else:
        responded = assigned + (due - assigned) * rng.uniform(0.05, 1.0)
    sim.emit(ev.FEEDBACK_RESPONDED, subject, responded, {**handled, "responded_at": responded})
    closed = responded + timedelta(minutes=30) + sim.hours(20.0)
    resolution = sim.pick("resolved:90 rejected:7 withdrawn:3")
    data = {**handled, "responded_at": responded, "closed_at": closed, "resolution": resolution}
    if rng.random() < 0.8:
        weights = (15, 20, 30, 25, 10) if overdue else (3, 5, 15, 40, 37)
        data["satisfaction"] = sim.pick(dict(zip(range(1, 6), weights, strict=True)))
    sim.emit(ev.FEEDBACK_CLOSED, subject, closed, data)


def _document(sim: _Sim, t: datetime) -> None:
    rng = sim.rng
    agency = sim.pick(DOC_AGENCIES)
    incoming = rng.random() < 0.65
    category = sim.pick(DOC_IN if incoming else DOC_OUT)
    urgency = sim.pick("normal:85 urgent:12 express:3")
    subject = f"VB-{sim.tag}-{t.astimezone(CITY_TZ):%Y}-{sim.next_seq():06d}"
    base: dict[str, Any] = {
        "document_id": subject,
        "agency": agency,
        "district": DISTRICT,
        "direction": "incoming" if incoming else "outgoing",
        "category": category,
        "urgency": urgency,
        "received_at": t,
    }
    if category == "directive" or (
        incoming and category == "official_letter" and rng.random() < 0.6
    ):
        days = rng.randint(5, 20) if category == "directive" else rng.randint(5, 15)
        base["due_at"] = _due(t, max(1, days // 3) if urgency != "normal" else days)
    extra = {"sender": rng.choice(SENDERS)} if incoming else {}
    sim.emit(ev.DOCUMENT_RECEIVED, subject, t, {**base, **extra})
    due = base.get("due_at")
    if due is None:
        processed = _office(t + timedelta(hours=1) + sim.hours(48.0), rng)
    elif rng.random() < (0.12 if category == "directive" else 0.08):
        processed = _office(due + timedelta(minutes=10) + sim.hours(48.0), rng)
    else:
        processed = t + (due - t) * rng.uniform(0.1, 0.97)
    outcome = "completed"
    if incoming:
        outcome = sim.pick("completed:75 forwarded:15 filed:8 returned:2")
    data = {**base, "processed_at": processed, "outcome": outcome}
    sim.emit(ev.DOCUMENT_PROCESSED, subject, processed, data)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 50:  # normal approximation keeps large rates cheap
        return max(0, round(rng.gauss(lam, lam**0.5)))
    limit, k, p = pow(2.718281828459045, -lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def generate_events(
    seed: int, start: datetime, end: datetime, volumes: Volumes | None = None
) -> Iterator[dict[str, Any]]:
    """CloudEvents (structured-mode dicts) of the three systems in ``[start, end)``, in time
    order (see the module docstring). Raises ``ValueError`` for naive or reversed times."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    volumes = volumes or Volumes()
    sim = _Sim(seed, start, end)
    kinds = (
        (_application, volumes.applications_per_day, OFFICE_HOURS),
        (_document, volumes.documents_per_day, OFFICE_HOURS),
        (_feedback, volumes.feedback_per_day, ALL_HOURS),
    )
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end or sim.heap:
        if hour < end:
            local = hour.astimezone(CITY_TZ)
            day_factor = 1.0 if local.weekday() < 5 else 0.2
            for make, per_day, profile in kinds:
                lam = per_day * day_factor * profile[local.hour] / sum(profile)
                times = sorted(
                    hour + timedelta(seconds=sim.rng.uniform(0, 3600))
                    for _ in range(_poisson(sim.rng, lam))
                )
                for t in times:
                    if start <= t < end:
                        make(sim, t)
        hour += timedelta(hours=1)
        while sim.heap and (sim.heap[0][0] < hour or hour >= end):
            yield heapq.heappop(sim.heap)[2]


# -- Kafka ------------------------------------------------------------------------------------
def encode_event(event: dict[str, Any], mode: Mode) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A record's value and headers for ``event`` in CloudEvents Kafka ``mode``."""
    if mode == "structured":
        return orjson.dumps(event), [("content-type", ev.STRUCTURED_CONTENT_TYPE.encode())]
    headers = [
        (f"ce_{name}", str(value).encode())
        for name, value in event.items()
        if name not in ("data", "datacontenttype")
    ]
    headers.append(("content-type", str(event.get("datacontenttype", "application/json")).encode()))
    return orjson.dumps(event["data"]), headers


@dataclass
class PublishReport:
    """What :func:`publish_events` did: events, exact copies, acknowledged, failed."""

    events: int = 0
    duplicates: int = 0
    acked: int = 0
    failed: int = 0


def publish_events(
    producer: KafkaProducer,
    topic: str,
    events: Iterable[dict[str, Any]],
    count: int,
    mode: Mode = "structured",
    rate: float = 100.0,
    duplicates: int = 0,
    seed: int = 1,
    stop: StopFlag | None = None,
) -> PublishReport:
    """Produce the first ``count`` of ``events`` keyed by subject, at ``rate`` records/s (0:
    as fast as possible), plus ``duplicates`` exact copies (same key, value and headers) of
    events chosen by ``seed``, each sent 1-20 records after its original. Waits for every
    acknowledgement; a record Kafka refuses is counted as failed, not retried. ``stop`` ends
    the run early (records already handed to the producer are still flushed)."""
    rng = random.Random(f"duplicates:{seed}")
    copies = Counter(rng.randrange(count) for _ in range(duplicates)) if count else Counter()
    bucket = TokenBucket(rate) if rate > 0 else None
    report = PublishReport()
    later: list[tuple[int, int, _Record]] = []  # (send after position, tie-break, record)

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    def send(record: _Record) -> None:
        while bucket is not None and (wait := bucket.try_take()) > 0:
            time.sleep(min(wait, 0.05))
        key, value, headers = record
        future = producer.send(topic, value=value, key=key, headers=headers)
        future.add_callback(lambda _m: setattr(report, "acked", report.acked + 1))
        future.add_errback(lambda _e: setattr(report, "failed", report.failed + 1))

    for index, event in enumerate(events):
        if index >= count or stopped():
            break
        value, headers = encode_event(event, mode)
        record = (str(event["subject"]).encode(), value, headers)
        send(record)
        report.events += 1
        for _ in range(copies[index]):
            heapq.heappush(later, (index + rng.randint(1, 20), len(later), record))
        while later and later[0][0] <= index and not stopped():
            send(heapq.heappop(later)[2])
            report.duplicates += 1
    while later and not stopped():
        send(heapq.heappop(later)[2])
        report.duplicates += 1
    producer.flush()
    return report


def run_events(argv: list[str]) -> int:
    """``iocstream simulate-events``: 0 if every record was acknowledged, 1 otherwise."""
    p = argparse.ArgumentParser(
        prog="iocstream simulate-events",
        description="Publish seeded Long Xuyên city-service events (public-service "
        "applications, citizen feedback, electronic documents) as CloudEvents to the inbound "
        "topic (IOC_TOPIC_INBOUND, default ioc.inbound), keyed by subject, for `iocstream "
        "ingest`. Event times cover the --days before now; see connectors/simulator/events.py.",
    )
    p.add_argument("--rate", type=float, default=100.0, help="records/s (0: unlimited)")
    p.add_argument("--count", type=int, default=2_000, help="events to publish at most")
    p.add_argument("--seed", type=int, default=1, help="same seed and period: same events")
    p.add_argument("--mode", choices=("structured", "binary"), default="structured")
    p.add_argument("--duplicates", type=int, default=0, help="exact copies to inject")
    p.add_argument(
        "--days",
        type=float,
        default=14.0,
        help="simulated period ending now (ingest rejects events older than its --max-age-days)",
    )
    p.add_argument("--scale", type=float, default=1.0, help="multiply the daily volumes")
    p.add_argument("--topic", default=None, help="default: IOC_TOPIC_INBOUND")
    args = p.parse_args(argv)
    if args.count < 0 or args.duplicates < 0 or args.rate < 0 or args.days <= 0 or args.scale <= 0:
        p.error("--count, --duplicates and --rate must be >= 0; --days and --scale > 0")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=args.days)
    topic = args.topic or TopicSettings().inbound
    stop = StopFlag()
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    signal.signal(signal.SIGINT, lambda _s, _f: stop.set())
    producer = KafkaProducer(
        **KafkaSettings().client_options(),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        client_id="iocstream-simulate-events",
    )
    try:
        events = generate_events(args.seed, start, end, Volumes().scaled(args.scale))
        report = publish_events(
            producer,
            topic,
            events,
            count=args.count,
            mode=args.mode,
            rate=args.rate,
            duplicates=args.duplicates,
            seed=args.seed,
            stop=stop,
        )
    finally:
        producer.close(timeout=10)
    print(
        f"published {report.events} events and {report.duplicates} exact copies to {topic} "
        f"({args.mode} mode): {report.acked} acknowledged, {report.failed} failed"
    )
    if report.events < args.count and not stop.is_set():
        log.warning("the period held only %d events; raise --days or --scale", report.events)
    return 0 if report.failed == 0 and report.acked == report.events + report.duplicates else 1
