"""Road segment congestion level from mean speed and occupancy."""

from __future__ import annotations

import dataclasses
import math

import pytest

from streams.traffic import (
    DEFAULT_THRESHOLDS,
    CongestionLevel,
    CongestionThresholds,
    assess_congestion,
    congestion_level,
    occupancy_level,
    speed_level,
)

FREE_FLOW = 50.0  # km/h, an urban arterial


@pytest.mark.parametrize(
    ("speed", "expected"),
    [
        (60.0, CongestionLevel.FREE),  # faster than free flow
        (40.0, CongestionLevel.FREE),  # 80 %
        (34.0, CongestionLevel.FREE),  # 68 %
        (33.5, CongestionLevel.MODERATE),  # 67 %: LOS C starts at or below 67 %
        (26.0, CongestionLevel.MODERATE),
        (25.0, CongestionLevel.HEAVY),  # 50 %
        (16.0, CongestionLevel.HEAVY),
        (15.0, CongestionLevel.JAMMED),  # 30 %: LOS F
        (0.0, CongestionLevel.JAMMED),
    ],
)
def test_speed_level_follows_the_ratio_to_free_flow(
    speed: float, expected: CongestionLevel
) -> None:
    assert speed_level(speed, FREE_FLOW) is expected


@pytest.mark.parametrize(
    ("occupancy", "expected"),
    [
        (0.0, CongestionLevel.FREE),
        (0.149, CongestionLevel.FREE),
        (0.15, CongestionLevel.MODERATE),
        (0.249, CongestionLevel.MODERATE),
        (0.25, CongestionLevel.HEAVY),
        (0.50, CongestionLevel.JAMMED),
        (1.0, CongestionLevel.JAMMED),
    ],
)
def test_occupancy_level(occupancy: float, expected: CongestionLevel) -> None:
    assert occupancy_level(occupancy) is expected


def test_the_worse_signal_wins() -> None:
    result = assess_congestion(mean_speed_kmh=45.0, occupancy=0.6, free_flow_kmh=FREE_FLOW)
    assert result.level is CongestionLevel.JAMMED
    assert result.by_speed is CongestionLevel.FREE
    assert result.by_occupancy is CongestionLevel.JAMMED
    assert result.speed_ratio == pytest.approx(0.9)
    assert congestion_level(mean_speed_kmh=10.0, occupancy=0.05, free_flow_kmh=FREE_FLOW) is (
        CongestionLevel.JAMMED
    )


def test_either_signal_alone_is_enough() -> None:
    by_occupancy = assess_congestion(occupancy=0.3)
    assert (by_occupancy.level, by_occupancy.by_speed, by_occupancy.speed_ratio) == (
        CongestionLevel.HEAVY,
        None,
        None,
    )
    assert congestion_level(mean_speed_kmh=30.0, free_flow_kmh=FREE_FLOW) is (
        CongestionLevel.MODERATE
    )


@pytest.mark.parametrize(
    ("level_occupancy", "congested"),
    [(0.1, False), (0.2, False), (0.3, True), (0.7, True)],
)
def test_fiware_congested_flag_from_heavy_up(level_occupancy: float, congested: bool) -> None:
    assert assess_congestion(occupancy=level_occupancy).congested is congested


def test_congested_flag_threshold_is_configurable() -> None:
    strict = CongestionThresholds(congested_from=CongestionLevel.MODERATE)
    assert assess_congestion(occupancy=0.2, thresholds=strict).congested is True
    assert assess_congestion(occupancy=0.2).congested is False


def test_custom_thresholds_change_the_classification() -> None:
    lenient = CongestionThresholds(moderate_ratio=0.5, heavy_ratio=0.3, jammed_ratio=0.1)
    assert speed_level(20.0, FREE_FLOW) is CongestionLevel.HEAVY
    assert speed_level(20.0, FREE_FLOW, lenient) is CongestionLevel.MODERATE


def test_levels_have_stable_keys_and_labels() -> None:
    assert [lv.key for lv in CongestionLevel] == ["free", "moderate", "heavy", "jammed"]
    assert CongestionLevel.JAMMED.label_vi == "Ùn tắc"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "need mean_speed_kmh or occupancy"),
        ({"mean_speed_kmh": 20.0}, "free_flow_kmh"),
        ({"mean_speed_kmh": -1.0, "free_flow_kmh": FREE_FLOW}, "negative"),
        ({"mean_speed_kmh": math.nan, "free_flow_kmh": FREE_FLOW}, "finite"),
        ({"mean_speed_kmh": 20.0, "free_flow_kmh": 0.0}, "positive"),
        ({"occupancy": 15.0}, "fraction"),  # a percentage is refused, not misread
        ({"occupancy": -0.1}, "fraction"),
        ({"occupancy": "0.2"}, "finite number"),
    ],
)
def test_bad_observations_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assess_congestion(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heavy_ratio": 0.7}, "strictly decrease"),
        ({"jammed_occupancy": 0.2}, "strictly increase"),
        ({"moderate_ratio": 1.5}, r"\(0, 1\]"),
        ({"jammed_ratio": 0.0}, r"\(0, 1\]"),
        ({"congested_from": CongestionLevel.FREE}, "congested_from"),
    ],
)
def test_thresholds_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CongestionThresholds(**kwargs)  # type: ignore[arg-type]


def test_thresholds_from_config_mapping() -> None:
    loaded = CongestionThresholds.from_mapping({"heavy_occupancy": 0.3, "congested_from": "jammed"})
    assert loaded == dataclasses.replace(
        DEFAULT_THRESHOLDS, heavy_occupancy=0.3, congested_from=CongestionLevel.JAMMED
    )
    assert CongestionThresholds.from_mapping({}) == DEFAULT_THRESHOLDS


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"jam_ratio": 0.2}, "unknown congestion threshold"),
        ({"congested_from": "very"}, "congested_from must be one of"),
        ({"heavy_ratio": "0.5"}, "heavy_ratio must be a number"),
        ({"heavy_ratio": 0.9}, "strictly decrease"),
    ],
)
def test_bad_threshold_config_is_a_clear_error(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CongestionThresholds.from_mapping(config)
