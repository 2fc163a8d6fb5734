"""Bring the local stack up, down, and report its status.

Guarantees:

* ``up`` starts each service that is not already running, then waits until every one is
  healthy; it raises ``ServiceError`` (with the service's last log lines) if one is not.
  Services configured to a non-loopback address are production services: ``up`` only checks
  them and never starts anything for them.
* ``down`` stops, in reverse order, only the processes ``up`` recorded; twice is harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from connectors.settings import ClickHouseSettings, KafkaSettings, MqttSettings
from streams.stack.clickhouse import LOOPBACK, ClickHouseService
from streams.stack.kafka import KafkaService
from streams.stack.mosquitto import MosquittoService
from streams.stack.process import ManagedProcess, ServiceError
from streams.stack.settings import StackSettings

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str
    process: ManagedProcess

    @property
    def address(self) -> str: ...

    def start(self) -> None: ...

    def healthy(self) -> bool: ...


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    managed: bool
    pid: int | None
    healthy: bool
    log_file: str


class Stack:
    """Kafka, Mosquitto and ClickHouse as configured by the ``IOC_`` environment."""

    def __init__(
        self,
        stack: StackSettings | None = None,
        kafka: KafkaSettings | None = None,
        mqtt: MqttSettings | None = None,
        clickhouse: ClickHouseSettings | None = None,
    ) -> None:
        self.settings = stack or StackSettings()
        self.services: list[Service] = [
            KafkaService(self.settings, kafka or KafkaSettings()),
            MosquittoService(self.settings, mqtt or MqttSettings()),
            ClickHouseService(self.settings, clickhouse or ClickHouseSettings()),
        ]

    @staticmethod
    def _local(service: Service) -> bool:
        return service.address.rsplit(":", 1)[0] in LOOPBACK

    def up(self) -> list[ServiceStatus]:
        for service in self.services:
            if self._local(service) and service.process.pid() is None:
                service.start()
        for service in self.services:
            if self._local(service):
                service.process.wait_healthy(service.healthy, self.settings.stack_start_timeout_s)
            elif not _safe_health(service):
                raise ServiceError(f"{service.name} at {service.address} is not reachable")
            log.info("%s is up at %s", service.name, service.address)
        return self.status()

    def down(self) -> list[str]:
        stopped = []
        for service in reversed(self.services):
            if service.process.stop():
                stopped.append(service.name)
        return stopped

    def status(self) -> list[ServiceStatus]:
        return [
            ServiceStatus(
                name=s.name,
                address=s.address,
                managed=self._local(s),
                pid=s.process.pid(),
                healthy=_safe_health(s),
                log_file=str(s.process.log_file),
            )
            for s in self.services
        ]


def _safe_health(service: Service) -> bool:
    try:
        return service.healthy()
    except Exception:  # noqa: BLE001 - unreachable in any way means unhealthy
        return False
