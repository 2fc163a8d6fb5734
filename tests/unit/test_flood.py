"""River gauge indicators: alarm levels, the shipped configuration, rise rate, maxima."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.flood import (
    DEFAULT_FLOOD_LEVELS_PATH,
    ICT,
    AlarmLevel,
    FloodConfigError,
    GaugeThresholds,
    alarm_level,
    daily_maxima,
    hourly_maxima,
    load_flood_levels,
    parse_flood_levels,
    rise_rate_cm_per_h,
)

T0 = datetime(2026, 10, 5, 6, 0, tzinfo=ICT)  # flood season, 06:00 local time
LONG_XUYEN = GaugeThresholds("long-xuyen", "Long Xuyên", 1.90, 2.20, 2.50, river="Hậu")
BD1_ONLY = GaugeThresholds("cho-moi", "Chợ Mới", 2.0)


def ramp(
    cm_per_h: float, *, hours: float = 3, every_min: int = 15, start_m: float = 1.5
) -> list[tuple[datetime, float]]:
    """Samples of a level rising linearly by ``cm_per_h`` from T0."""
    steps = int(hours * 60 / every_min)
    return [
        (T0 + timedelta(minutes=every_min * i), start_m + cm_per_h / 100 * every_min * i / 60)
        for i in range(steps + 1)
    ]


# --- Alarm levels -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level_m", "expected"),
    [
        (1.89, AlarmLevel.NONE),
        (1.90, AlarmLevel.BD1),  # reaching the threshold counts
        (2.19, AlarmLevel.BD1),
        (2.20, AlarmLevel.BD2),
        (2.49, AlarmLevel.BD2),
        (2.50, AlarmLevel.BD3),
        (3.10, AlarmLevel.BD3),
        (-0.5, AlarmLevel.NONE),
    ],
)
def test_alarm_level_long_xuyen(level_m: float, expected: AlarmLevel) -> None:
    assert alarm_level(level_m, LONG_XUYEN) is expected


def test_station_with_bd1_only_never_goes_past_bd1() -> None:
    assert alarm_level(1.99, BD1_ONLY) is AlarmLevel.NONE
    assert alarm_level(9.0, BD1_ONLY) is AlarmLevel.BD1


def test_alarm_levels_are_ordered_and_labelled() -> None:
    assert AlarmLevel.NONE < AlarmLevel.BD1 < AlarmLevel.BD2 < AlarmLevel.BD3
    assert [lv.label_vi for lv in AlarmLevel] == ["Dưới BĐ I", "BĐ I", "BĐ II", "BĐ III"]
    assert AlarmLevel.BD3.label_en == "alarm level III"


@pytest.mark.parametrize("bad", [math.nan, math.inf, "2.1", None])
def test_alarm_level_rejects_bad_levels(bad: object) -> None:
    with pytest.raises(ValueError, match="water level"):
        alarm_level(bad, LONG_XUYEN)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bd1_m": 2.0, "bd2_m": 2.0}, "strictly increase"),
        ({"bd1_m": 2.0, "bd2_m": 1.5}, "strictly increase"),
        ({"bd1_m": 2.0, "bd3_m": 3.0}, "without bd2_m"),
        ({"bd1_m": math.nan}, "finite"),
        ({"bd1_m": 2.0, "unconfirmed": frozenset({AlarmLevel.NONE})}, "unconfirmed"),
    ],
)
def test_thresholds_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GaugeThresholds("x", "X", **kwargs)  # type: ignore[arg-type]


# --- Shipped configuration ----------------------------------------------------------------------


def test_default_configuration_is_the_domain_table() -> None:
    stations = load_flood_levels()
    assert DEFAULT_FLOOD_LEVELS_PATH.name == "flood_levels.yaml"
    expected = {
        "tan-chau": (3.50, 4.00, 4.50),
        "chau-doc": (3.00, 3.50, 4.00),
        "long-xuyen": (1.90, 2.20, 2.50),
        "cho-moi": (2.0, None, None),
        "vam-nao": (2.5, None, None),
        "khanh-an": (4.2, None, None),
        "xuan-to": (3.0, None, None),
        "tri-ton": (2.0, None, None),
        "vinh-gia": (2.0, None, None),
        "co-to": (1.4, None, None),
        "vong-the": (1.4, None, None),
    }
    assert {k: (s.bd1_m, s.bd2_m, s.bd3_m) for k, s in stations.items()} == expected
    assert stations["tan-chau"].river == "Tiền"
    assert stations["chau-doc"].name == "Châu Đốc"
    assert stations["long-xuyen"].unconfirmed == frozenset({AlarmLevel.BD2})
    assert stations["tan-chau"].unconfirmed == frozenset({AlarmLevel.BD2, AlarmLevel.BD3})


VALID_STATION = "  - id: a\n    name: A\n    bd1_m: 1.0\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nstations: [", "not valid YAML"),
        ("- 1\n- 2\n", "mapping at the top level"),
        ("version: 2\nstations:\n" + VALID_STATION, "unsupported version"),
        ("version: 1\nunit: cm\nstations:\n" + VALID_STATION, "metres"),
        ("version: 1\nstations: []\n", "non-empty list"),
        ("version: 1\nstations:\n  - 3\n", r"stations\[0\].*mapping"),
        ("version: 1\nstations:\n  - id: a\n    name: A\n", "missing field 'bd1_m'"),
        ("version: 1\nstations:\n" + VALID_STATION + "    bd4_m: 5\n", r"unknown field.*bd4_m"),
        ("version: 1\nstations:\n" + VALID_STATION + VALID_STATION, "duplicate station id 'a'"),
        ("version: 1\nstations:\n" + VALID_STATION + "    bd2_m: 0.5\n", r"\(a\).*increase"),
        ("version: 1\nstations:\n" + VALID_STATION + "    bd2_m: high\n", "bd2_m must be a number"),
        ("version: 1\nstations:\n" + VALID_STATION + "    bd3_m: 2.0\n", "without bd2_m"),
        ("version: 1\nstations:\n" + VALID_STATION + "    unconfirmed: [bd4]\n", "unconfirmed"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "levels.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FloodConfigError, match=message) as caught:
        load_flood_levels(path)
    assert str(path) in str(caught.value)


def test_missing_configuration_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FloodConfigError, match="cannot read"):
        load_flood_levels(tmp_path / "absent.yaml")


def test_parse_accepts_a_minimal_document() -> None:
    stations = parse_flood_levels(
        {"version": 1, "stations": [{"id": "a", "name": "A", "bd1_m": 1}]}
    )
    assert stations["a"] == GaugeThresholds("a", "A", 1.0)


# --- Rise rate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cm_per_h", [12.0, 0.0, -7.5])
def test_rise_rate_of_a_linear_ramp(cm_per_h: float) -> None:
    assert rise_rate_cm_per_h(ramp(cm_per_h)) == pytest.approx(cm_per_h, abs=1e-9)


def test_rise_rate_accepts_unordered_samples_in_any_timezone() -> None:
    samples = ramp(10.0)
    mixed = [(t.astimezone(UTC), lv) if i % 2 else (t, lv) for i, (t, lv) in enumerate(samples)]
    assert rise_rate_cm_per_h(list(reversed(mixed))) == pytest.approx(10.0)


def test_rise_rate_ignores_samples_outside_the_span() -> None:
    old = [(T0 - timedelta(hours=h), 5.0) for h in (1, 2, 3)]  # a falling history before T0
    assert rise_rate_cm_per_h(old + ramp(10.0), span=timedelta(hours=3)) == pytest.approx(10.0)


def test_rise_rate_regression_damps_a_single_outlier() -> None:
    samples = ramp(10.0)
    samples[-1] = (samples[-1][0], samples[-1][1] + 0.30)  # last reading 30 cm too high
    endpoints = (samples[-1][1] - samples[0][1]) * 100 / 3
    rate = rise_rate_cm_per_h(samples)
    assert rate is not None
    assert 10.0 < rate < endpoints


def test_rise_rate_with_too_few_samples_is_none() -> None:
    assert rise_rate_cm_per_h([]) is None
    assert rise_rate_cm_per_h(ramp(10.0)[:1]) is None
    two = [ramp(10.0)[0], ramp(10.0)[-1]]
    assert rise_rate_cm_per_h(two) is None  # default needs 3
    assert rise_rate_cm_per_h(two, min_samples=2) == pytest.approx(10.0)


def test_rise_rate_with_too_short_coverage_is_none() -> None:
    samples = ramp(10.0, hours=1)  # one hour of data against a 3-hour span
    assert rise_rate_cm_per_h(samples, span=timedelta(hours=3)) is None
    assert rise_rate_cm_per_h(samples, span=timedelta(hours=3), min_coverage=0.3) == pytest.approx(
        10.0
    )


def test_rise_rate_of_a_stale_gauge_is_none() -> None:
    samples = ramp(10.0)
    later = samples[-1][0] + timedelta(hours=6)
    assert rise_rate_cm_per_h(samples, end=later) is None


def test_rise_rate_with_all_samples_at_one_time_is_none() -> None:
    assert rise_rate_cm_per_h([(T0, 1.0), (T0, 1.2), (T0, 1.4)], min_coverage=0) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"span": timedelta(0)}, "span"),
        ({"min_samples": 1}, "min_samples"),
        ({"min_coverage": 1.5}, "min_coverage"),
        ({"end": datetime(2026, 10, 5, 9, 0)}, "timezone-aware"),  # noqa: DTZ001
    ],
)
def test_rise_rate_rejects_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rise_rate_cm_per_h(ramp(10.0), **kwargs)  # type: ignore[arg-type]


def test_rise_rate_rejects_bad_samples() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rise_rate_cm_per_h([(datetime(2026, 10, 5, 6, 0), 1.0), (T0, 1.0)])  # noqa: DTZ001
    with pytest.raises(ValueError, match="finite"):
        rise_rate_cm_per_h([(T0, math.nan), (T0 + timedelta(hours=1), 1.0)])


# --- Maxima -------------------------------------------------------------------------------------


def test_hourly_maxima_group_by_clock_hour() -> None:
    samples = [
        (T0, 1.80),
        (T0 + timedelta(minutes=20), 1.95),
        (T0 + timedelta(minutes=59, seconds=59), 1.90),
        (T0 + timedelta(hours=1), 2.05),  # exactly 07:00 starts the next hour
        ((T0 + timedelta(hours=1, minutes=30)).astimezone(UTC), 2.01),
    ]
    assert hourly_maxima(samples) == {T0: 1.95, T0 + timedelta(hours=1): 2.05}
    assert list(hourly_maxima(reversed(samples))) == [T0, T0 + timedelta(hours=1)]


def test_daily_maxima_use_local_midnight() -> None:
    late = datetime(2026, 10, 5, 23, 30, tzinfo=ICT)  # 16:30 UTC
    early = datetime(2026, 10, 6, 0, 30, tzinfo=ICT)  # 17:30 UTC, same UTC day
    samples = [(late, 2.3), (late - timedelta(hours=12), 2.6), (early, 2.4)]
    assert daily_maxima(samples) == {
        datetime(2026, 10, 5, tzinfo=ICT): 2.6,
        datetime(2026, 10, 6, tzinfo=ICT): 2.4,
    }
    assert daily_maxima(samples, tz=UTC) == {datetime(2026, 10, 5, tzinfo=UTC): 2.6}


def test_maxima_of_nothing_is_empty() -> None:
    assert hourly_maxima([]) == {}
