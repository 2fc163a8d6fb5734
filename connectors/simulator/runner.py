"""A simulator run as plain data (``RunSpec``), its split over worker processes, and how one
process executes its share.

Splitting keeps every guarantee of ``generate``: device i goes to worker ``i % n`` and a
device's readings do not depend on which other devices are generated with it, so the union
of the workers' messages is exactly the single-process run's (per-device order included).
Broken payloads (``malformed``) all go to worker 0; the rate is divided evenly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from connectors.settings import MqttSettings
from connectors.simulator.encoding import PayloadFormat
from connectors.simulator.model import SimDevice, generate
from connectors.simulator.plan import plan_messages, planned_count
from connectors.simulator.progress import Reporter
from connectors.simulator.publisher import Publisher, PublisherConfig, PublishSummary
from connectors.simulator.session import StopFlag


@dataclass(frozen=True)
class RunSpec:
    """Everything one simulator run needs; picklable, so a worker process can take it.

    ``mqtt_url`` None means ``IOC_MQTT_URL``; credentials always come from the environment
    (``IOC_MQTT_USERNAME`` / ``IOC_MQTT_PASSWORD``), never through this object.
    """

    devices: tuple[SimDevice, ...]
    start: datetime
    interval: timedelta
    count: int | None
    seed: int
    config: PublisherConfig
    fmt: PayloadFormat = "json"
    malformed: int = 0
    mqtt_url: str | None = None

    @property
    def readings(self) -> int | None:
        """Readings this run generates (None: endless)."""
        return None if self.count is None else self.count * len(self.devices)

    @property
    def messages(self) -> int | None:
        """Telemetry messages this run publishes, broken ones included (None: endless)."""
        return planned_count(self.readings, self.malformed)

    def settings(self) -> MqttSettings:
        return MqttSettings() if self.mqtt_url is None else MqttSettings(url=self.mqtt_url)

    def split(self, workers: int) -> list[RunSpec]:
        """This run shared among ``workers`` processes (fewer if there are fewer devices).

        Raises ``ValueError`` if ``workers`` < 1.
        """
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        n = max(1, min(workers, len(self.devices)))
        if n == 1:
            return [self]
        return [
            replace(
                self,
                devices=self.devices[k::n],
                malformed=self.malformed if k == 0 else 0,
                config=replace(
                    self.config,
                    rate=self.config.rate / n,
                    client_id=f"{self.config.client_id}-w{k}",
                ),
            )
            for k in range(n)
        ]


def execute(spec: RunSpec, reporter: Reporter, stop: StopFlag) -> PublishSummary:
    """Generate, encode and publish ``spec``'s messages in this process (see ``Publisher``).

    Never raises for broker trouble; the summary's ``error`` says what went wrong.
    """
    publisher = Publisher(spec.settings(), spec.config, spec.devices, reporter, stop=stop)
    readings = generate(spec.devices, spec.start, spec.interval, spec.count, spec.seed)
    messages = plan_messages(readings, spec.fmt, spec.malformed, spec.readings)
    return publisher.run(messages, spec.messages)
