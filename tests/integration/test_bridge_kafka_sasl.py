"""The bridge producing to a Kafka broker that requires SASL/SCRAM-SHA-256 over TLS.

The test starts its **own** single-node KRaft broker (the stack's jars, its own free loopback
ports, a throw-away CA from ``openssl``): a ``SASL_SSL`` listener for clients, a plaintext
listener for the broker itself and its controller. SCRAM credentials are written at storage
format time (``kafka-storage format --add-scram``), as KRaft allows. MQTT is the shared test
stack's Mosquitto. The bridge gets its Kafka settings only from the environment
(``IOC_KAFKA_*``). Checks: readings flow through the authenticated, encrypted connection;
a wrong password and a client without SASL are refused; the password never shows in the
bridge's logs (DEBUG included), in ``repr`` or in ``redacted()``.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError
from pydantic import SecretStr

from connectors.bridge.clients import producer_options
from connectors.settings import KafkaSettings
from streams.stack.kafka import LOG4J, fetch_jars
from streams.stack.process import ManagedProcess
from streams.stack.settings import StackSettings
from tests.integration.test_bridge_support import (
    Publisher,
    TopicReader,
    collect_readings,
    free_ports,
    make_fleet,
    make_pki,
    make_topics,
    now_ms,
    reading,
    running_bridge,
    wire_time,
)

pytestmark = pytest.mark.integration

USER = "ioc-bridge"
PASSWORD = "Scram-s3cret-never-logged"
MECHANISM = "SCRAM-SHA-256"


def _config(d: Path, client_port: int, internal_port: int, controller_port: int) -> Path:
    (d / "keystore.pem").write_text((d / "server.key").read_text() + (d / "server.pem").read_text())
    config = d / "server.properties"
    host = "127.0.0.1"
    config.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{host}:{controller_port}",
                f"listeners=SASL_SSL://{host}:{client_port},INTERNAL://{host}:{internal_port},"
                f"CONTROLLER://{host}:{controller_port}",
                f"advertised.listeners=SASL_SSL://{host}:{client_port},"
                f"INTERNAL://{host}:{internal_port}",
                "listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,"
                "CONTROLLER:PLAINTEXT",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=INTERNAL",
                f"sasl.enabled.mechanisms={MECHANISM}",
                "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={d / 'keystore.pem'}",
                f"log.dirs={d / 'log'}",
                "num.partitions=4",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "num.network.threads=2",
                "num.io.threads=2",
                "",
            ]
        )
    )
    return config


@pytest.fixture
def sasl_kafka(tmp_path: Path) -> Iterator[KafkaSettings]:
    """A broker requiring SCRAM over TLS; yields the bridge user's client settings."""
    d = tmp_path / "kafka-sasl"
    d.mkdir()
    make_pki(d)
    client_port, internal_port, controller_port = free_ports(3)
    config = _config(d, client_port, internal_port, controller_port)
    classpath = f"{fetch_jars(StackSettings())}/*"
    java = ["java", f"-Dlog4j2.configurationFile={LOG4J}", "-cp", classpath]
    subprocess.run(
        [
            *java, "kafka.tools.StorageTool", "format", "-t", "c2FzbC10ZXN0LWNsdXN0ZXI",
            "-c", str(config), "--add-scram", f"{MECHANISM}=[name={USER},password={PASSWORD}]",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    broker = ManagedProcess("kafka-sasl", d, d, marker=str(config))
    broker.start([*java[:1], "-Xmx256m", "-Xms256m", *java[1:], "kafka.Kafka", str(config)])
    settings = KafkaSettings(
        bootstrap=f"127.0.0.1:{client_port}",
        security_protocol="SASL_SSL",
        sasl_mechanism=MECHANISM,
        sasl_username=USER,
        sasl_password=SecretStr(PASSWORD),
        ssl_cafile=str(d / "ca.pem"),
    )

    def healthy() -> bool:
        with socket.create_connection(("127.0.0.1", client_port), timeout=2):
            pass  # listening; a client built before this would leak its sockets on failure
        admin = KafkaAdminClient(
            **settings.client_options(), request_timeout_ms=3000, api_version=(2, 6)
        )
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()

    try:
        broker.wait_healthy(healthy, 90)
        yield settings
    finally:
        broker.stop()


def _refused(settings: KafkaSettings) -> bool:
    """Whether the broker refuses the bridge's producer with these settings.

    ``api_version`` is given so that the constructor does not probe the broker (a failed probe
    there would leak kafka-python's wake-up sockets); the metadata request then fails within
    ``max_block_ms`` (5 s).
    """
    producer = KafkaProducer(**producer_options(settings, "probe"), api_version=(2, 6))
    try:
        producer.partitions_for("any-topic")
    except KafkaError:
        return True
    finally:
        producer.close(timeout=5)
    return False


def test_bridge_produces_with_scram_over_tls(
    sasl_kafka: KafkaSettings,
    tmp_path: Path,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    s = sasl_kafka
    for name, value in {
        "BOOTSTRAP": s.bootstrap,
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": MECHANISM,
        "SASL_USERNAME": USER,
        "SASL_PASSWORD": PASSWORD,
        "SSL_CAFILE": str(s.ssl_cafile),
    }.items():
        monkeypatch.setenv(f"IOC_KAFKA_{name}", value)
    from_env = KafkaSettings()
    assert from_env.client_options() == s.client_options()
    fleet = make_fleet(tmp_path, unique, 2)
    topics = make_topics(unique)  # created on the SASL broker, through the environment
    # kafka-python's KafkaAdminClient (used by make_topics, not by the bridge) logs its whole
    # configuration, password included, at DEBUG; the bridge's own clients must not.
    caplog.clear()
    base = now_ms() - 10_000
    want = {(d, wire_time(base + i)) for d in fleet.device_ids for i in range(50)}
    pub = Publisher(f"pub-{unique}")
    readings = TopicReader(topics.readings)
    try:
        with running_bridge(f"bridge-{unique}", fleet, topics) as bridge:
            pub.publish(
                (fleet.telemetry(d), reading(i, base)) for i in range(50) for d in fleet.device_ids
            )
            got = collect_readings(readings, want, 60)
            assert bridge.stats["dead_letters"] == 0
        assert {(r["device_id"], r["event_time"]) for _p, r in got} == want
    finally:
        pub.close()
        readings.close()

    assert not _refused(s)
    assert _refused(s.model_copy(update={"sasl_password": SecretStr("not-the-password")}))
    assert _refused(s.model_copy(update={"security_protocol": "SSL", "sasl_mechanism": None}))

    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(from_env)
    assert PASSWORD not in str(from_env.redacted())
