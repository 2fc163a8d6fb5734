"""A sink whose partitions are revoked and given back to it in one rebalance loses nothing.

kafka-python keeps the fetch position of a partition that is revoked and assigned again to
the same consumer, while the sink drops the open (unwritten, uncommitted) batch of a revoked
partition. The sink must therefore move every newly assigned partition back to its committed
offset (or recorded range) and forget what it had fetched before.

The test gets there deterministically: the sink writes and commits a first part of the
readings (full batches), then reads a second part into open batches (batch age limit far away),
and another member joins the group (subscribed to another topic, so the sink keeps every
partition; or to the same topic, so it keeps half) and leaves again: two rebalances in which the
sink keeps partitions whose open batch it dropped. When the sink has read the second part again
it is stopped (which writes the open batches) and ClickHouse must hold every reading exactly once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
from clickhouse_connect.driver.client import Client
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from connectors.clickhouse.batch import Limits
from connectors.clickhouse.sink import ClickHouseSink
from tests.integration.test_sink_support import (
    PARTITIONS,
    Topics,
    build_load,
    fresh_database,
    sink_thread,
    wait_for,
)

pytestmark = pytest.mark.integration

PER_MESSAGE = 50
WRITTEN = 20  # messages per partition written and committed before the rebalances
OPEN = 10  # messages per partition in open batches during the rebalances
LIMITS = Limits(WRITTEN * PER_MESSAGE, 1 << 30, 600.0)  # full after WRITTEN; never by age


@pytest.mark.parametrize("member_topic", ["other", "same"])
def test_partitions_kept_across_rebalances_lose_no_open_batch(
    unique: str, member_topic: str
) -> None:
    bootstrap = os.environ["IOC_KAFKA_BOOTSTRAP"]
    url = os.environ["IOC_CLICKHOUSE_URL"]
    topics = Topics.create(bootstrap, unique)
    readings = topics.names["readings"]
    other = f"test-sink-other-{unique}"
    _create_topic(bootstrap, other)
    load = build_load(reading_batches=PARTITIONS * (WRITTEN + OPEN), per_batch=PER_MESSAGE,
                      extras=0, poison=False)  # fmt: skip
    values = [v for _k, v in load.messages["readings"]]
    first = values[: PARTITIONS * WRITTEN]
    second = values[PARTITIONS * WRITTEN :]
    group = f"g-{unique}"
    database = f"rebalance_{unique}"
    try:
        reader = fresh_database(url, database)
        with sink_thread(bootstrap, fresh_database(url, database), topics, group,
                         LIMITS) as sink:  # fmt: skip
            _produce(bootstrap, readings, first)
            written = PARTITIONS * WRITTEN * PER_MESSAGE
            got = wait_for("first part", lambda: _count(reader), {"rows": written}, 40)
            assert got == {"rows": written}
            _produce(bootstrap, readings, second)
            open_rows = PARTITIONS * OPEN * PER_MESSAGE
            got = wait_for("open batches", lambda: {"rows": _open_rows(sink)}, {"rows": open_rows},
                           40)  # fmt: skip
            assert got == {"rows": open_rows}
            assert _count(reader) == {"rows": written}  # still open: nothing more written
            before = sink.rebalances
            member = _member(bootstrap, group, other if member_topic == "other" else readings)
            try:
                # the member polls (joins) until the sink has its assignment of the rebalance
                # (the member's own may be empty: the sink, as leader, may not know the
                # member's topic yet)
                _until("the sink's second assignment", lambda: _joined(member, sink, before))
            finally:
                member.close()
            _until("the sink's third assignment", lambda: sink.rebalances > before + 1)
            # the kept partitions' open batches were dropped: the sink must read them again
            reread = wait_for("open batches again", lambda: {"rows": _open_rows(sink)},
                              {"rows": open_rows}, 40)  # fmt: skip
        # stopping wrote the open batches: every reading must be there exactly once
        final = reader.query("SELECT count(), sum(value) FROM readings").result_rows[0]
        reader.close()
        assert (int(final[0]), float(final[1])) == (
            int(load.expected["readings"]),
            load.expected["readings_sum"],
        ), f"open rows read again after the rebalances: {reread}"
    finally:
        topics.delete(bootstrap)
        _delete_topic(bootstrap, other)


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """``values`` in turn to each partition (message ``i`` to partition ``i % PARTITIONS``)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=5)
    try:
        for i, value in enumerate(values):
            producer.send(topic, value=value, partition=i % PARTITIONS)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def _member(bootstrap: str, group: str, topic: str) -> KafkaConsumer:
    """Another member of ``group`` that commits nothing."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="test-sink-member",
    )
    consumer.subscribe([topic])
    return consumer


def _joined(member: KafkaConsumer, sink: ClickHouseSink, before: int) -> bool:
    member.poll(timeout_ms=200)
    return sink.rebalances > before


def _open_rows(sink: ClickHouseSink) -> int:
    """Rows in the sink's open batches (read from the test thread: retried if it changes)."""
    for _ in range(100):
        try:
            return sum(b.rows for b in list(sink.pending.values()))
        except RuntimeError:  # the dict changed size while being copied
            continue
    return -1


def _count(reader: Client) -> dict[str, int]:
    return {"rows": int(reader.query("SELECT count() FROM readings").result_rows[0][0])}


def _until(what: str, check: Callable[[], bool], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _create_topic(bootstrap: str, name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-sink")
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()


def _delete_topic(bootstrap: str, name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-sink")
    try:
        admin.delete_topics([name])
    finally:
        admin.close()
