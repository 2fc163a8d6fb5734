"""The alerter's consumer lag: the pure per-topic sum and the gauge its Faust wiring sets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust
from prometheus_client import CollectorRegistry

from connectors.metrics import Metrics
from connectors.settings import TopicSettings
from streams.alerting.agents import AlerterAgents, inputs_topic_name
from streams.alerting.lag import topic_lags
from streams.alerts import load_rules


def test_lag_is_end_minus_next_offset_summed_per_topic() -> None:
    ends = {("r", 0): 10, ("r", 1): 7, ("i", 0): None, ("x", 0): 99}
    positions = {("r", 0): 4, ("r", 1): 9, ("i", 0): 3, ("x", 0): 1}
    # r: 6 + 0 (never negative); i: no end offset known yet; x: not a reported topic;
    # q: nothing processed since the rebalance -> 0, not a stale value
    assert topic_lags(positions, ends.get, ["r", "i", "q"]) == {"r": 6, "i": 0, "q": 0}


def test_alerter_reports_lag_of_inputs_and_internal_topic(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    app = faust.App(
        "test-alert-lag", broker="kafka://127.0.0.1:1", datadir=str(tmp_path), web_enabled=False
    )
    topics = TopicSettings(
        readings="r", indicators="i", events="e", alert_actions="a", alerts="out"
    )
    agents = AlerterAgents(app, topics, load_rules(), partitions=2, metrics=Metrics(registry))
    internal = inputs_topic_name("test-alert-lag")
    agents._next_input.update({("r", 0): 5, ("r", 1): 2, ("a", 0): 1})
    agents._next_offset.update({0: 40, 1: 10})
    ends = {("r", 0): 8, ("r", 1): 2, ("a", 0): 1, (internal, 0): 45, (internal, 1): 10}

    async def end_offsets(keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        assert sorted(keys) == sorted([("r", 0), ("r", 1), ("a", 0), (internal, 0), (internal, 1)])
        return ends

    agents._end_offsets = end_offsets  # type: ignore[method-assign]
    asyncio.run(agents.report_lag())

    def gauge(topic: str) -> float | None:
        labels = {"component": "alerter", "topic": topic}
        return registry.get_sample_value("iocstream_consumer_lag_records", labels)

    assert {t: gauge(t) for t in ("r", "i", "e", "a", internal)} == {
        "r": 3.0,
        "i": 0.0,
        "e": 0.0,
        "a": 0.0,
        internal: 5.0,
    }

    async def unavailable(keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        raise RuntimeError("consumer not started")

    agents._end_offsets = unavailable  # type: ignore[method-assign]
    asyncio.run(agents.report_lag())
    assert (gauge("r"), gauge(internal)) == (3.0, 5.0)  # kept, not zeroed
