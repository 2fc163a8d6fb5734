"""The notifier's consumer lag gauge, against a stand-in for its aiokafka consumer."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from connectors.metrics import Metrics
from connectors.notify.config import load_config
from connectors.notify.senders import Senders
from connectors.notify.service import Notifier, NotifierSettings
from connectors.settings import KafkaSettings


class FakeConsumer:
    """``assignment``, ``highwater`` (as of the last fetch) and ``position`` of aiokafka."""

    def __init__(self, ends: dict[TopicPartition, int | None], at: dict[TopicPartition, int]):
        self.ends, self.at = ends, at

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends[tp]

    async def position(self, tp: TopicPartition) -> int:
        return self.at[tp]


def test_notifier_reports_lag_per_topic() -> None:
    registry = CollectorRegistry()
    settings = NotifierSettings(silences_topic="sil", log_topic="log")
    notifier = Notifier(
        load_config(),
        settings,
        KafkaSettings(),
        "alerts",
        lambda session: Senders({}, session),
        metrics=Metrics(registry),
    )
    a0, a1, a2 = (TopicPartition("alerts", p) for p in (0, 1, 2))
    s0 = TopicPartition("sil", 0)
    consumer = FakeConsumer({a0: 12, a1: 4, a2: None, s0: 3}, {a0: 2, a1: 4, a2: 0, s0: 3})
    asyncio.run(notifier.report_lag(consumer))  # type: ignore[arg-type,unused-ignore]

    def gauge(topic: str) -> float | None:
        labels = {"component": "notifier", "topic": topic}
        return registry.get_sample_value("iocstream_consumer_lag_records", labels)

    # alerts: 10 + 0 + (no fetch yet on partition 2); silences caught up
    assert (gauge("alerts"), gauge("sil")) == (10.0, 0.0)
