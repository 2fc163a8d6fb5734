"""Mosquitto on loopback with the config from ``deploy/mosquitto/``.

Persistence is on (``<data dir>/mosquitto``), so QoS 1 sessions survive a restart. When
``IOC_MQTT_USERNAME`` is set, the broker requires that user and the password from
``IOC_MQTT_PASSWORD`` (written to a password file with ``mosquitto_passwd``); otherwise it
allows anonymous clients on loopback.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from pathlib import Path

from connectors.settings import MqttSettings
from streams.stack.process import ManagedProcess, ServiceError
from streams.stack.settings import DEPLOY_DIR, StackSettings

log = logging.getLogger(__name__)

TEMPLATE = DEPLOY_DIR / "mosquitto" / "mosquitto.conf.template"
INSTALL_HINT = (
    "the mosquitto broker is not installed: on Debian/Ubuntu run `apt-get install mosquitto` "
    "(or `make install`, which does it when it can), or set IOC_STACK_MOSQUITTO_BIN"
)


def find_mosquitto(stack: StackSettings) -> str:
    """Path of the mosquitto binary, or a ServiceError saying how to install it."""
    for candidate in (stack.stack_mosquitto_bin, shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ServiceError(INSTALL_HINT)


class MosquittoService:
    """The local MQTT broker."""

    name = "mosquitto"

    def __init__(self, stack: StackSettings, mqtt: MqttSettings) -> None:
        self.stack = stack
        self.mqtt = mqtt
        self.dir = stack.data_dir.resolve() / "mosquitto"
        self.process = ManagedProcess(self.name, stack.run_dir, stack.log_dir, marker=str(self.dir))

    @property
    def address(self) -> str:
        return f"{self.mqtt.host}:{self.mqtt.port}"

    def _auth_lines(self) -> str:
        if not self.mqtt.username:
            return "allow_anonymous true"
        password = self.mqtt.password.get_secret_value() if self.mqtt.password else ""
        passwd_file = self.dir / "passwd"
        passwd_file.write_text("")
        passwd_file.chmod(0o600)
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        result = subprocess.run(
            [tool, "-b", str(passwd_file), self.mqtt.username, password],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"mosquitto_passwd failed: {result.stderr.strip()}")
        return f"allow_anonymous false\npassword_file {passwd_file}"

    def start(self) -> None:
        binary = find_mosquitto(self.stack)
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        config = self.dir / "mosquitto.conf"
        config.write_text(
            TEMPLATE.read_text().format(
                host=self.mqtt.host,
                port=self.mqtt.port,
                persistence_dir=self.dir / "data",
                auth=self._auth_lines(),
            )
        )
        self.process.start([binary, "-c", str(config)])

    def healthy(self) -> bool:
        with socket.create_connection((self.mqtt.host, self.mqtt.port), timeout=2) as sock:
            # MQTT 3.1.1 CONNECT with a clean session; a CONNACK proves the broker speaks MQTT.
            client_id = b"iocstream-stack-check"
            variable = b"\x00\x04MQTT\x04\x02\x00\x05"
            payload = len(client_id).to_bytes(2, "big") + client_id
            flags = 0x02
            if self.mqtt.username:
                flags |= 0xC0
                user = self.mqtt.username.encode()
                pw = (self.mqtt.password.get_secret_value() if self.mqtt.password else "").encode()
                payload += len(user).to_bytes(2, "big") + user + len(pw).to_bytes(2, "big") + pw
            variable = variable[:7] + bytes([flags]) + variable[8:]
            body = variable + payload
            sock.sendall(bytes([0x10, len(body)]) + body)
            reply = sock.recv(4)
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        return len(reply) == 4 and reply[0] == 0x20 and reply[3] == 0
