"""Each service of the local stack is real: Kafka, Mosquitto and ClickHouse over HTTP."""

from __future__ import annotations

import queue
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from kafka import KafkaConsumer, KafkaProducer
from paho.mqtt.enums import CallbackAPIVersion

from connectors.clickhouse.client import connect
from connectors.clickhouse.migrate import applied, load_migrations, migrate
from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.settings import ClickHouseSettings, KafkaSettings, MqttSettings
from streams.stack.stack import Stack

pytestmark = pytest.mark.integration


def test_kafka_round_trip_on_a_uuid_topic(unique: str) -> None:
    topic = f"it-kafka-{unique}"
    kafka = KafkaSettings()
    ensure_topics(kafka, [TopicSpec(topic, 2, 1)])
    producer = KafkaProducer(**kafka.client_options(), acks="all", enable_idempotence=True)
    sent = [f"message-{i}".encode() for i in range(50)]
    for value in sent:
        producer.send(topic, value=value, key=value[-1:])
    producer.flush(10)
    producer.close()
    consumer = KafkaConsumer(
        topic,
        **kafka.client_options(),
        group_id=f"g-{unique}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    received = [m.value for m in consumer]
    consumer.close()
    assert sorted(received) == sorted(sent)


def test_mosquitto_delivers_qos1(unique: str) -> None:
    settings = MqttSettings()
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    topic = f"it/{unique}/qos1"

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{unique}", protocol=mqtt.MQTTv5)
    sub.on_message = lambda _c, _u, m: got.put(m)
    sub.connect(settings.host, settings.port)
    sub.loop_start()
    sub.subscribe(topic, qos=1)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{unique}", protocol=mqtt.MQTTv5)
    pub.connect(settings.host, settings.port)
    pub.loop_start()
    try:
        time.sleep(0.5)
        info = pub.publish(topic, b"hello", qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
        message = got.get(timeout=10)
        assert message.payload == b"hello"
        assert message.qos == 1
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()


def test_clickhouse_rows_round_trip_over_http_from_another_process(unique: str) -> None:
    client = connect(ClickHouseSettings(), database=None)
    db = f"it_{unique}"
    client.command(f"CREATE DATABASE {db}")
    client.command(f"CREATE TABLE {db}.t (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
    rows = [[i, str(uuid.UUID(int=i))] for i in range(1000)]
    client.insert(f"{db}.t", rows, column_names=["id", "name"])
    back = client.query(f"SELECT id, name FROM {db}.t ORDER BY id").result_rows
    assert [list(r) for r in back] == rows
    client.command(f"DROP DATABASE {db}")


def test_migrations_run_twice_without_change(unique: str) -> None:
    settings = ClickHouseSettings(database=f"mig_{unique}")
    client = connect(settings, database=None)
    first = migrate(client, settings.database)
    assert [m.version for m in first] == [m.version for m in load_migrations()]
    tables = client.query(f"SHOW TABLES FROM {settings.database}").result_rows
    second = migrate(connect(settings, database=None), settings.database)
    assert second == []
    assert client.query(f"SHOW TABLES FROM {settings.database}").result_rows == tables
    assert len(applied(connect(settings))) == len(first)


def test_stack_status_reports_every_service_healthy() -> None:
    statuses = {s.name: s for s in Stack().status()}
    assert set(statuses) == {"kafka", "mosquitto", "clickhouse"}
    assert all(s.healthy for s in statuses.values())
