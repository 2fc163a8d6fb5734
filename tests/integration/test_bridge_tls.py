"""The bridge over MQTT with TLS (server and client certificates) and a password.

The test makes a throw-away CA, a server certificate for ``127.0.0.1``/``localhost`` and a
client certificate with the ``openssl`` CLI, a password file with ``mosquitto_passwd``, and
runs its **own** Mosquitto on a free loopback port that requires all three. Kafka is the
shared test stack's. Checks: readings flow with the right settings; the broker refuses a
wrong password and a client without a certificate; the password never shows in the logs, in
``repr`` or in ``redacted()``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from connectors.bridge.clients import mqtt_tls_context
from connectors.settings import MqttSettings
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
    wait_for,
    wire_time,
)

pytestmark = pytest.mark.integration

USER = "ioc-bridge"
PASSWORD = "s3cret-Tr0ub4dor-&3"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[MqttSettings]:
    """A Mosquitto requiring TLS, a client certificate and a password; its client settings."""
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    passwd_tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    d = tmp_path / "pki"
    d.mkdir()
    make_pki(d)
    passwd = d / "passwd"
    passwd.write_text("")
    passwd.chmod(0o600)
    subprocess.run([passwd_tool, "-b", str(passwd), USER, PASSWORD], check=True)
    (port,) = free_ports(1)
    config = d / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {d / 'ca.pem'}\ncertfile {d / 'server.pem'}\nkeyfile {d / 'server.key'}\n"
        "require_certificate true\nallow_anonymous false\n"
        f"password_file {passwd}\npersistence false\nlog_dest stdout\n"
        # as root, mosquitto would switch to its own user, who cannot read pytest's tmp dir
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    log_path = tmp_path / "mosquitto.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [mosquitto, "-c", str(config)], stdout=log_file, stderr=subprocess.STDOUT
        )
    settings = MqttSettings(
        url=f"mqtts://127.0.0.1:{port}",
        username=USER,
        password=SecretStr(PASSWORD),
        ca_file=str(d / "ca.pem"),
        cert_file=str(d / "client.pem"),
        key_file=str(d / "client.key"),
    )
    try:
        wait_for(lambda: _connect_result(settings) == 0, 20, "the TLS broker")
        yield settings
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _connect_result(settings: MqttSettings, user: str | None = None, pw: str | None = None) -> int:
    """The CONNACK reason (0 = accepted) for a client with these settings, or -1 if none."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set(
        user or settings.username,
        pw or (settings.password.get_secret_value() if settings.password else None),
    )
    context = mqtt_tls_context(settings)
    if context is not None:
        client.tls_set_context(context)
    result: list[int] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: result.append(reason.value)
    try:
        client.connect(settings.host, settings.port, keepalive=10)
    except OSError:
        return -1
    client.loop_start()
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()
    return result[0] if result else -1


def test_tls_and_password(
    tmp_path: Path, unique: str, tls_broker: MqttSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert _connect_result(tls_broker, pw="wrong") != 0
    no_cert = tls_broker.model_copy(update={"cert_file": None, "key_file": None})
    assert _connect_result(no_cert) != 0

    fleet = make_fleet(tmp_path, unique, 2)
    topics = make_topics(unique)
    t = now_ms()
    pub = Publisher(f"pub-{unique}", tls_broker)
    reader = TopicReader(topics.readings)
    want = {(d, wire_time(t + i)) for i, d in enumerate(fleet.device_ids)}
    try:
        with running_bridge(f"bridge-{unique}", fleet, topics, mqtt_settings=tls_broker) as b:
            pub.publish((fleet.telemetry(d), reading(i, t)) for i, d in enumerate(fleet.device_ids))
            got = collect_readings(reader, want, 30)
            wait_for(lambda: b.stats["acked"] == len(want), 20, "acknowledgements")
    finally:
        pub.close()
        reader.close()
    assert {(r["device_id"], r["event_time"]) for _p, r in got} == want
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(tls_broker)
    assert PASSWORD not in str(tls_broker.redacted())
