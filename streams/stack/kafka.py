"""Apache Kafka in KRaft mode, single node on loopback, from jars fetched with Maven.

Guarantees:

* The jars are fetched once per Kafka version (pinned in ``deploy/kafka/pom.xml``) into
  ``<cache dir>/kafka-<version>/libs``; a marker file records a complete fetch, so an
  interrupted download is retried, never used half-done.
* Storage is formatted only when ``<data dir>/kafka/meta.properties`` is absent, so topics
  and offsets survive ``down``/``up``.
"""

from __future__ import annotations

import base64
import logging
import re
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from kafka import KafkaAdminClient

from connectors.settings import KafkaSettings
from streams.stack.process import ManagedProcess, ServiceError
from streams.stack.settings import DEPLOY_DIR, StackSettings

log = logging.getLogger(__name__)

POM = DEPLOY_DIR / "kafka" / "pom.xml"
TEMPLATE = DEPLOY_DIR / "kafka" / "server.properties.template"
LOG4J = DEPLOY_DIR / "kafka" / "log4j2.properties"


def kafka_version() -> str:
    """The Kafka version pinned in the Maven project."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not match:
        raise ServiceError(f"no <kafka.version> in {POM}")
    return match.group(1)


def libs_dir(stack: StackSettings) -> Path:
    return stack.cache_dir.resolve() / f"kafka-{kafka_version()}" / "libs"


def fetch_jars(stack: StackSettings) -> Path:
    """Make sure the broker's jars are in the cache; fetch them with Maven if not."""
    libs = libs_dir(stack)
    marker = libs.parent / "complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError(
            "Maven (mvn) is needed once to fetch Kafka's jars: apt-get install maven"
        )
    if libs.exists():
        shutil.rmtree(libs)
    log.info("fetching Apache Kafka %s jars from Maven Central into %s", kafka_version(), libs)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"fetching Kafka jars failed:\n{result.stdout}\n{result.stderr}")
    marker.write_text(kafka_version() + "\n")
    return libs


class KafkaService:
    """The local Kafka broker."""

    name = "kafka"

    def __init__(self, stack: StackSettings, kafka: KafkaSettings) -> None:
        self.stack = stack
        self.kafka = kafka
        first = kafka.bootstrap.split(",")[0]
        parts = urlsplit(f"//{first}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 9092
        self.dir = stack.data_dir.resolve() / "kafka"
        self.process = ManagedProcess(self.name, stack.run_dir, stack.log_dir, marker=str(self.dir))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _render_config(self) -> Path:
        config = self.dir / "server.properties"
        config.write_text(
            TEMPLATE.read_text().format(
                host=self.host,
                port=self.port,
                controller_port=self.stack.stack_kafka_controller_port,
                log_dir=self.dir / "log",
                partitions=self.stack.stack_kafka_partitions,
                retention_hours=self.stack.stack_kafka_retention_hours,
            )
        )
        return config

    def start(self) -> None:
        libs = fetch_jars(self.stack)
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self._render_config()
        classpath = f"{libs}/*"
        if not (self.dir / "log" / "meta.properties").exists():
            log.info("formatting Kafka storage in %s", self.dir / "log")
            result = subprocess.run(
                [
                    "java",
                    f"-Dlog4j2.configurationFile={LOG4J}",
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    _cluster_id(),
                    "-c",
                    str(config),
                    "--ignore-formatted",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise ServiceError(
                    f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}"
                )
        self.process.start(
            [
                "java",
                f"-Xmx{self.stack.stack_kafka_heap}",
                f"-Xms{self.stack.stack_kafka_heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ]
        )

    def healthy(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=2):
            pass  # the listener is open; now ask the broker for metadata
        admin = KafkaAdminClient(
            **self.kafka.client_options(), request_timeout_ms=3000, client_id="iocstream-stack"
        )
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()


def _cluster_id() -> str:
    """A fresh KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid``, never one that starts with ``-``: the storage
    tool's argument parser would read it as an option (1 start in 64 failed before).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
