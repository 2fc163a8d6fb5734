"""``iocstream ingest`` against real Kafka: both CloudEvents modes, copies, bad input, restarts.

Each test gets its own uuid-named inbound, events and dead-letter topics (3 partitions) and
runs ingest as a subprocess with those names in ``IOC_TOPIC_*``, exactly as an operator
would. The simulator's events are produced in structured and binary mode (keyed by subject)
together with exact copies, a copy in the other mode and invalid records; the test waits
until ingest's consumer group has committed the inbound topic's end offsets (which ingest
does only after Kafka acknowledged everything it produced) and then reads the events and
dead-letter topics whole, so "nothing else arrived" is a fact, not a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.settings import KafkaSettings
from connectors.simulator.events import encode_event, generate_events
from schemas.deadletter import DeadLetter
from schemas.events import Event

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 120.0
RUN_INGEST = (
    "import sys; from streams.cli.main import configure_logging; configure_logging('INFO'); "
    "from connectors.ingest.cli import run; sys.exit(run(sys.argv[1:]))"
)
Record = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


class IngestProcess:
    """One ``iocstream ingest`` subprocess; its log goes to a file the test can show."""

    def __init__(self, env: dict[str, str], group: str, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", RUN_INGEST, "--group", group, "--metrics-port", "0"],
                env=env,
                cwd=REPO,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"ingest ignored SIGTERM for 60 s:\n{self.log()}")


@pytest.fixture
def topics(stack: dict[str, str], unique: str) -> dict[str, str]:
    del stack
    names = {
        "IOC_TOPIC_INBOUND": f"test-inbound-{unique}",
        "IOC_TOPIC_EVENTS": f"test-events-{unique}",
        "IOC_TOPIC_DEADLETTER": f"test-deadletter-{unique}",
    }
    ensure_topics(KafkaSettings(), [TopicSpec(n, 3, 1) for n in names.values()])
    return names


@pytest.fixture
def ingest_env(topics: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **topics, "PYTHONPATH": str(REPO)}


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[IngestProcess]]:
    started: list[IngestProcess] = []
    yield started
    for process in started:  # a failed test must not leave ingest running
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def produce(topic: str, records: list[Record]) -> None:
    producer = KafkaProducer(**KafkaSettings().client_options(), acks="all")
    try:
        for key, value, headers in records:
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def read_all(topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end offsets."""
    consumer = KafkaConsumer(**KafkaSettings().client_options(), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out: list[Any] = []
        deadline = time.monotonic() + WAIT_S
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def wait_until_committed(group: str, topic: str, ingest: IngestProcess) -> None:
    """Wait until ``group`` committed ``topic``'s end offsets (so all was produced)."""
    consumer = KafkaConsumer(**KafkaSettings().client_options(), enable_auto_commit=False)
    admin = KafkaAdminClient(**KafkaSettings().client_options())
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                committed = admin.list_group_offsets(group).get(group, {})
            except KafkaError:  # the group may not exist yet
                committed = {}
            if all(tp in committed and committed[tp].offset >= ends[tp] for tp in partitions):
                return
            if ingest.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"ingest did not commit {topic} to {ends} (committed: {committed}; "
                    f"exit code {ingest.proc.poll()}):\n{ingest.log()}"
                )
            time.sleep(0.2)
    finally:
        consumer.close()
        admin.close()


def encoded(event: dict[str, Any], mode: str) -> Record:
    value, headers = encode_event(event, mode)  # type: ignore[arg-type]
    return event["subject"].encode(), value, headers


def invalid_records() -> dict[str, Record]:
    """One record per dead-letter reason this test expects, by reason."""
    now = datetime.now(UTC) - timedelta(hours=1)
    good = next(generate_events(99, now - timedelta(days=1), now))
    structured_header = [("content-type", b"application/cloudevents+json")]
    bad_data = {**good, "id": "bad-data", "data": {**good["data"], "agency": "Not A Slug"}}
    return {
        "malformed_json": (b"k1", b'{"specversion": "1.0", "id": ', structured_header),
        "unknown_event_type": encoded({**good, "id": "bad-type", "type": "vn.x.y"}, "structured"),
        "schema_violation": encoded(bad_data, "binary"),
        "invalid_event": encoded({**good, "id": "bad-env", "specversion": "0.3"}, "structured"),
    }


def published(topic: str) -> list[tuple[Any, Event]]:
    return [(r, Event.decode(r.value)) for r in read_all(topic)]


def test_ingest_both_modes_duplicates_dead_letters_and_restarts(
    topics: dict[str, str],
    ingest_env: dict[str, str],
    processes: list[IngestProcess],
    tmp_path: Path,
    unique: str,
) -> None:
    inbound, events_topic, dead_topic = (
        topics["IOC_TOPIC_INBOUND"],
        topics["IOC_TOPIC_EVENTS"],
        topics["IOC_TOPIC_DEADLETTER"],
    )
    end = datetime.now(UTC) - timedelta(minutes=1)
    stream = list(generate_events(5, end - timedelta(days=2), end))
    first, later = stream[:12], stream[12]
    modes = ["structured", "binary"]
    batch = [encoded(e, modes[i % 2]) for i, e in enumerate(first)]
    copies = [batch[0], batch[1], encoded(first[2], "binary"), batch[5], batch[5]]
    bad = invalid_records()
    produce(inbound, batch[:6] + copies[:3] + list(bad.values()) + batch[6:] + copies[3:])

    group = f"ingest-{unique}"
    log_path = tmp_path / "ingest.log"
    ingest = IngestProcess(ingest_env, group, log_path)
    processes.append(ingest)
    wait_until_committed(group, inbound, ingest)

    events = published(events_topic)
    counts = Counter(e.dedup_key for _, e in events)
    assert counts == Counter((e["source"], e["id"]) for e in first)  # each exactly once
    by_id = {e["id"]: e for e in first}
    for record, event in events:
        original = by_id[event.id]
        assert record.key == original["subject"].encode()
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
        assert (event.type, event.subject, event.data) == (
            original["type"],
            original["subject"],
            original["data"],
        )
        assert event.origin.startswith(f"kafka:{inbound}/")
    order = [e["id"] for e in first]
    for subject in {e["subject"] for e in first}:  # per subject, inbound order is kept
        ids = [e.id for _, e in events if e.subject == subject]
        assert ids == [i for i in order if by_id[i]["subject"] == subject]

    dead = [(r, DeadLetter.decode(r.value)) for r in read_all(dead_topic)]
    assert sorted(d.reason for _, d in dead) == sorted(bad)
    for record, letter in dead:
        _, value, headers = bad[letter.reason]
        assert letter.payload == value
        assert letter.source.startswith(f"kafka:{inbound}/")
        assert record.headers == headers  # binary mode keeps its ce_ headers

    assert ingest.terminate() == 0
    assert "ingest stopped" in ingest.log()

    # A restart (same group): copies of events published before it are still dropped.
    produce(inbound, [batch[3], batch[4], encoded(later, "binary"), encoded(later, "structured")])
    ingest = IngestProcess(ingest_env, group, log_path)
    processes.append(ingest)
    wait_until_committed(group, inbound, ingest)
    after_restart = published(events_topic)
    assert len(after_restart) == len(events) + 1
    assert Counter(e.dedup_key for _, e in after_restart) == Counter(
        (e["source"], e["id"]) for e in [*first, later]
    )
    assert ingest.terminate() == 0

    # As after a crash before any commit: a new group re-reads the whole inbound topic.
    # Every valid record is a copy now; every invalid one becomes a dead letter again.
    replay_group = f"ingest-replay-{unique}"
    ingest = IngestProcess(ingest_env, replay_group, log_path)
    processes.append(ingest)
    wait_until_committed(replay_group, inbound, ingest)
    assert len(read_all(events_topic)) == len(after_restart)
    reasons = [DeadLetter.decode(r.value).reason for r in read_all(dead_topic)]
    assert sorted(reasons) == sorted([*bad, *bad])
    assert ingest.terminate() == 0
