"""MQTT topic layout: parsing, building and subscription filters."""

from __future__ import annotations

import pytest

from connectors.mqtt.topics import (
    STATUS_FILTER,
    TELEMETRY_FILTER,
    Topic,
    is_segment,
    parse_topic,
    status_topic,
    subscription_filter,
    subscription_filters,
    telemetry_topic,
)


def test_parses_telemetry_and_status_topics() -> None:
    assert parse_topic("ioc/long-xuyen/air_quality/aq-lx-001/telemetry") == Topic(
        "long-xuyen", "air_quality", "aq-lx-001", "telemetry"
    )
    assert parse_topic("ioc/chau-doc/river_gauge/rg-chau-doc/status") == Topic(
        "chau-doc", "river_gauge", "rg-chau-doc", "status"
    )


def test_builders_round_trip_through_the_parser() -> None:
    topic = telemetry_topic("tan-chau", "river_gauge", "rg-tan-chau")
    assert topic == "ioc/tan-chau/river_gauge/rg-tan-chau/telemetry"
    assert parse_topic(topic) == Topic("tan-chau", "river_gauge", "rg-tan-chau", "telemetry")
    status = status_topic("tan-chau", "river_gauge", "rg-tan-chau")
    assert status == "ioc/tan-chau/river_gauge/rg-tan-chau/status"
    assert parse_topic(status) == Topic("tan-chau", "river_gauge", "rg-tan-chau", "status")


def test_segments_may_be_64_characters_not_65() -> None:
    longest = "a" * 64
    assert parse_topic(f"ioc/{longest}/k/d/telemetry") is not None
    assert parse_topic(f"ioc/{longest}a/k/d/telemetry") is None


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "ioc",
        "ioc/long-xuyen/air_quality/aq-lx-001",  # no channel
        "ioc/long-xuyen/air_quality/aq-lx-001/telemetry/",  # trailing level
        "ioc/long-xuyen/air_quality/aq-lx-001/telemetry/extra",
        "/ioc/long-xuyen/air_quality/aq-lx-001/telemetry",  # leading slash
        "IOC/long-xuyen/air_quality/aq-lx-001/telemetry",  # case matters
        "ioc/Long-Xuyen/air_quality/aq-lx-001/telemetry",
        "ioc/long-xuyen/air_quality/aq-lx-001/attributes",  # unknown channel
        "ioc/long-xuyen/air_quality/aq-lx-001/Telemetry",
        "ioc//air_quality/aq-lx-001/telemetry",  # empty level
        "ioc/+/air_quality/aq-lx-001/telemetry",  # wildcard
        "ioc/#",
        "ioc/long-xuyen/air_quality/-aq/telemetry",  # must start with [a-z0-9]
        "ioc/long-xuyen/air_quality/_aq/telemetry",
        "ioc/long xuyen/air_quality/aq-lx-001/telemetry",  # space
        "ioc/long-xuyen/air_quality/aq-lx-001/telemetry\n",  # trailing newline
        "ioc/long-xuyên/air_quality/aq-lx-001/telemetry",  # non-ASCII
        "ioc/long-xuyen/air_quality/aq\x00/telemetry",  # NUL
        "ioc/long-xuyen/air.quality/aq-lx-001/telemetry",
        "$SYS/broker/uptime",
        "$share/g/ioc/long-xuyen/air_quality/aq-lx-001/telemetry",
        "ioc/long-xuyen/air_quality/\ud800/telemetry",  # lone surrogate
        "ioc/" + "a/" * 10_000 + "telemetry",
        "ioc/long-xuyen/air_quality/" + "a" * 70_000 + "/telemetry",
    ],
)
def test_topics_outside_the_layout_are_refused(topic: str) -> None:
    assert parse_topic(topic) is None


@pytest.mark.parametrize("bad", ["", "+", "#", "Aq", "a/b", "a b", "-a", "é", "a" * 65])
def test_builders_refuse_unsafe_segments(bad: str) -> None:
    assert not is_segment(bad)
    with pytest.raises(ValueError, match="not a safe topic segment"):
        telemetry_topic("long-xuyen", "air_quality", bad)
    with pytest.raises(ValueError, match="not a safe topic segment"):
        status_topic(bad, "air_quality", "aq-lx-001")


def test_subscription_filters() -> None:
    assert subscription_filter() == TELEMETRY_FILTER == "ioc/+/+/+/telemetry"
    assert subscription_filter("status") == STATUS_FILTER == "ioc/+/+/+/status"
    assert subscription_filter(district="chau-doc") == "ioc/chau-doc/+/+/telemetry"
    assert (
        subscription_filter("status", kind="river_gauge", device_id="rg-chau-doc")
        == "ioc/+/river_gauge/rg-chau-doc/status"
    )
    assert subscription_filter(share_group="bridge") == "$share/bridge/ioc/+/+/+/telemetry"
    assert subscription_filters() == [TELEMETRY_FILTER, STATUS_FILTER]
    assert subscription_filters("g1") == [
        "$share/g1/ioc/+/+/+/telemetry",
        "$share/g1/ioc/+/+/+/status",
    ]


def test_subscription_filter_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="channel"):
        subscription_filter("attributes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="district"):
        subscription_filter(district="#")
    with pytest.raises(ValueError, match="share_group"):
        subscription_filter(share_group="a/b")
