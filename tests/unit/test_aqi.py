"""VN_AQI (Decision 1459/QĐ-TCMT) and US EPA AQI maths: worked examples, edges, properties."""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.aqi import (
    DAILY_KEYS,
    HOURLY_KEYS,
    US_EPA,
    VN_AQI,
    AqiInputError,
    AqiResult,
    IndexTable,
    PollutantScale,
    Segment,
    band_for,
    daily_aqi,
    hourly_aqi,
    nowcast,
    nowcast_weight,
    round_half_up,
    sub_index,
)

# Decision 1459/QĐ-TCMT worked example: PM2.5 hourly means 09:00..20:00, oldest first.
PM25_09_TO_20 = [26.9, 24.7, 20.5, 23.5, 19.5, 16.5, 19.0, 16.5, 20.3, 22.4, 19.6, 20.6]
NEWEST_FIRST = PM25_09_TO_20[::-1]


def within_one(actual: int, printed: int) -> bool:
    # The decision's printed examples do not all follow one rounding rule.
    return abs(actual - printed) <= 1


# --- NowCast -----------------------------------------------------------------------------------


def test_nowcast_worked_example() -> None:
    assert nowcast_weight(NEWEST_FIRST) == pytest.approx(0.61, abs=0.005)
    value = nowcast(NEWEST_FIRST)
    assert value is not None
    assert value == pytest.approx(20.27, abs=0.01)
    assert round(value, 1) == 20.3


def test_nowcast_missing_hour_keeps_its_place_with_weight_zero() -> None:
    # c1=10, c2 missing, c3=20: w* = 0.5, so NowCast = (10 + 0.25*20) / (1 + 0.25) = 12.
    assert nowcast([10.0, None, 20.0]) == pytest.approx(12.0)


def test_nowcast_needs_two_of_the_three_newest_hours() -> None:
    assert nowcast([10.0, None, None, 20.0, 20.0]) is None
    assert nowcast([None, 10.0, 20.0]) is not None
    assert nowcast([10.0, 11.0]) is not None
    assert nowcast([10.0]) is None
    assert nowcast([]) is None


def test_nowcast_all_missing_is_none() -> None:
    assert nowcast([None] * 12) is None
    assert nowcast_weight([None] * 12) is None


def test_nowcast_cmax_zero_is_zero() -> None:
    assert nowcast([0.0, 0.0, 0.0]) == 0.0
    assert nowcast([0.0, None, 0.0, 0.0]) == 0.0
    assert nowcast_weight([0.0, 0.0]) == 1.0


def test_nowcast_constant_series_is_that_constant() -> None:
    assert nowcast([35.0] * 12) == pytest.approx(35.0)


def test_nowcast_weight_has_a_floor_of_one_half() -> None:
    assert nowcast_weight([100.0, 1.0, 1.0]) == 0.5
    # c1=100, c2=c3=1 with w=0.5: (100 + 0.5 + 0.25) / 1.75
    assert nowcast([100.0, 1.0, 1.0]) == pytest.approx(100.75 / 1.75)


def test_nowcast_uses_twelve_hours_only() -> None:
    assert nowcast([*NEWEST_FIRST, 1000.0]) == nowcast(NEWEST_FIRST)


def test_nowcast_accepts_a_deque_of_hours() -> None:
    hours: deque[float | None] = deque([*NEWEST_FIRST, 1000.0], maxlen=24)
    assert nowcast(hours) == nowcast(NEWEST_FIRST)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "12", True])
def test_nowcast_rejects_bad_hours(bad: object) -> None:
    with pytest.raises(AqiInputError, match="c2"):
        nowcast([10.0, bad, 10.0])  # type: ignore[list-item]


# --- Hourly and daily worked examples ----------------------------------------------------------


def test_hourly_worked_example() -> None:
    pm25 = nowcast(NEWEST_FIRST)
    assert pm25 is not None
    result = hourly_aqi({"o3": 136.1, "no2": 118.7, "pm25": round(pm25, 1)})
    assert within_one(result.sub_indices["o3"], 43)
    assert within_one(result.sub_indices["no2"], 60)
    assert within_one(result.sub_indices["pm25"], 41)
    assert within_one(result.aqi, 60)
    assert result.dominant == "no2"
    assert result.band == "moderate"
    assert result.band_vi == "Trung bình"
    assert result.colour == (255, 255, 0)
    assert result.table == "VN_AQI"


def test_daily_worked_example() -> None:
    result = daily_aqi({"o3_8h": 89.3, "o3": 114.6, "no2": 130.8, "pm25": 55.7})
    assert within_one(result.sub_indices["o3"], 45)  # the larger of 8-hour 45 and 1-hour 36
    assert within_one(result.sub_indices["no2"], 65)
    assert within_one(result.sub_indices["pm25"], 110)
    assert within_one(result.aqi, 110)
    assert result.dominant == "pm25"
    assert (result.band, result.band_vi, result.band_en) == ("poor", "Kém", "Poor")
    assert result.colour == (255, 126, 0)


def test_daily_o3_one_hour_worked_example() -> None:
    assert within_one(daily_aqi({"pm25": 0.0, "o3": 114.6}).sub_indices["o3"], 36)
    assert within_one(daily_aqi({"pm25": 0.0, "o3_8h": 89.3}).sub_indices["o3"], 45)


def test_daily_o3_takes_the_larger_sub_index() -> None:
    # 1-hour 300 µg/m³ -> 150; 8-hour 100 µg/m³ -> 50.
    assert daily_aqi({"pm25": 0.0, "o3": 300.0, "o3_8h": 100.0}).sub_indices["o3"] == 150


def test_daily_o3_8h_above_400_uses_the_1h_value_only() -> None:
    # 1-hour 500 µg/m³ lies on 400..800 -> 200..300: 225.
    result = daily_aqi({"pm25": 0.0, "o3": 500.0, "o3_8h": 450.0})
    assert result.sub_indices["o3"] == 225
    assert daily_aqi({"pm25": 0.0, "o3": 500.0, "o3_8h": 400.0}).sub_indices["o3"] == 300


def test_daily_o3_8h_above_400_without_1h_is_a_clear_error() -> None:
    with pytest.raises(AqiInputError, match="1-hour O3"):
        daily_aqi({"pm25": 10.0, "o3_8h": 401.0})


# --- Interpolation, bands, rounding, caps --------------------------------------------------------


@pytest.mark.parametrize(
    ("aqi", "key"),
    [
        (0, "good"),
        (50, "good"),
        (51, "moderate"),
        (100, "moderate"),
        (101, "poor"),
        (150, "poor"),
        (151, "bad"),
        (200, "bad"),
        (201, "very_bad"),
        (300, "very_bad"),
        (301, "hazardous"),
        (500, "hazardous"),
    ],
)
def test_band_edges(aqi: int, key: str) -> None:
    assert band_for(aqi).key == key


@pytest.mark.parametrize("aqi", [-1, 501])
def test_band_outside_scale_is_an_error(aqi: int) -> None:
    with pytest.raises(AqiInputError, match="outside"):
        band_for(aqi)


@pytest.mark.parametrize(
    ("pm25", "aqi", "band"),
    [
        (25.0, 50, "good"),  # a breakpoint maps to its index level
        (25.4, 51, "moderate"),  # 50.8 rounds to 51
        (50.0, 100, "moderate"),
        (50.3, 101, "poor"),  # 100.5 rounds half up to 101
        (80.0, 150, "poor"),
        (150.0, 200, "bad"),
        (250.0, 300, "very_bad"),
        (251.0, 301, "hazardous"),
    ],
)
def test_pm25_breakpoints_and_band_edges(pm25: float, aqi: int, band: str) -> None:
    result = hourly_aqi({"pm25": pm25})
    assert (result.aqi, result.band) == (aqi, band)


def test_rounding_is_half_up() -> None:
    assert round_half_up(42.5) == 43
    assert round_half_up(59.35) == 59
    assert round_half_up(109.5) == 110
    assert round_half_up(0.49) == 0


def test_zero_concentrations_give_zero() -> None:
    result = hourly_aqi(dict.fromkeys(HOURLY_KEYS, 0.0))
    assert result.aqi == 0
    assert set(result.sub_indices.values()) == {0}
    assert result.dominant == "pm25"  # ties go to the first pollutant in the fixed order
    assert result.band == "good"


def test_above_the_top_breakpoint_caps_at_500() -> None:
    assert hourly_aqi({"pm25": 500.0}).aqi == 500
    assert hourly_aqi({"pm25": 5000.0}).aqi == 500
    assert hourly_aqi({"pm10": 10.0, "co": 1e9}).sub_indices["co"] == 500


def test_none_means_not_measured() -> None:
    result = hourly_aqi({"pm25": None, "pm10": 50.0, "no2": None})
    assert dict(result.sub_indices) == {"pm10": 50}


# --- Bad input ----------------------------------------------------------------------------------


def test_unknown_pollutant_key_is_a_clear_error() -> None:
    with pytest.raises(AqiInputError, match=r"unknown pollutant key.*'pm1'"):
        hourly_aqi({"pm25": 10.0, "pm1": 3.0})
    with pytest.raises(AqiInputError, match="unknown pollutant key"):
        hourly_aqi({"pm25": 10.0, "o3_8h": 3.0})  # 8-hour O3 is a daily input only


@pytest.mark.parametrize("bad", [-0.1, math.nan, -math.inf, math.inf, "5", [1.0]])
def test_bad_concentration_is_a_clear_error(bad: object) -> None:
    with pytest.raises(AqiInputError, match="no2"):
        hourly_aqi({"pm25": 10.0, "no2": bad})  # type: ignore[dict-item]


def test_negative_concentration_message_says_so() -> None:
    with pytest.raises(AqiInputError, match="negative"):
        daily_aqi({"pm10": -3.0})


@pytest.mark.parametrize("function", [hourly_aqi, daily_aqi])
def test_station_without_particulates_is_a_clear_error(
    function: Callable[[Mapping[str, float | None]], AqiResult],
) -> None:
    with pytest.raises(AqiInputError, match=r"PM2\.5 or PM10"):
        function({"no2": 40.0, "o3": 80.0})
    with pytest.raises(AqiInputError, match=r"PM2\.5 or PM10"):
        function({"pm25": None, "no2": 40.0})
    with pytest.raises(AqiInputError, match=r"PM2\.5 or PM10"):
        function({})


def test_result_is_immutable() -> None:
    result = hourly_aqi({"pm25": 10.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.aqi = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.sub_indices["pm25"] = 3  # type: ignore[index]


def test_tables_are_validated_data() -> None:
    assert ("o3", "8h") in VN_AQI.scales
    with pytest.raises(TypeError):
        VN_AQI.scales[("x", "1h")] = VN_AQI.scales[("o3", "1h")]  # type: ignore[index]
    with pytest.raises(ValueError, match="bands"):
        IndexTable("broken", VN_AQI.scales, VN_AQI.bands[1:], requires_particulates=True)


def test_custom_table_with_gaps_between_rows_never_exceeds_a_row() -> None:
    gappy = IndexTable(
        "gappy",
        {("pm25", "24h"): PollutantScale((Segment(0, 10, 0, 50), Segment(11, 20, 51, 500)))},
        VN_AQI.bands,
        requires_particulates=True,
    )
    assert hourly_aqi({"pm25": 10.5}, table=gappy).aqi == 50  # in the gap: top of the lower row
    assert hourly_aqi({"pm25": 11.0}, table=gappy).aqi == 51
    with pytest.raises(ValueError, match="out of order"):
        PollutantScale((Segment(0, 10, 0, 50), Segment(5, 20, 51, 100)))


# --- US EPA table -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pm25", "aqi"),
    [
        (9.0, 50),  # 2024 revision: good ends at 9.0
        (9.09, 50),  # EPA truncates PM2.5 to 0.1 µg/m³ before the lookup
        (9.1, 51),
        (12.0, 56),  # 51 + 49/26.3 * 2.9 = 56.4
        (35.4, 100),
        (35.5, 101),
        (225.5, 301),
        (325.4, 500),
        (400.0, 500),
    ],
)
def test_epa_pm25(pm25: float, aqi: int) -> None:
    assert hourly_aqi({"pm25": pm25}, table=US_EPA).aqi == aqi


def test_epa_pm10_and_bands() -> None:
    assert hourly_aqi({"pm10": 54.0}, table=US_EPA).aqi == 50
    assert hourly_aqi({"pm10": 55.0}, table=US_EPA).aqi == 51
    result = daily_aqi({"pm10": 155.0}, table=US_EPA)
    assert (result.aqi, result.band, result.table) == (
        101,
        "unhealthy_for_sensitive_groups",
        "US_EPA",
    )
    assert result.colour == (255, 126, 0)


def test_epa_gases_are_converted_from_ugm3_at_25c() -> None:
    # 100 ppb NO2 = 100 * 46.0055 / 24.45 = 188.16 µg/m³; 188.2 µg/m³ truncates to 100 ppb.
    assert hourly_aqi({"no2": 188.2}, table=US_EPA).sub_indices["no2"] == 100
    # 0.070 ppm O3 (8-hour) = 70 * 48.00 / 24.45 = 137.4 µg/m³ -> 100
    assert daily_aqi({"pm25": 0.0, "o3_8h": 137.5}, table=US_EPA).sub_indices["o3"] == 100


def test_epa_low_one_hour_o3_has_no_sub_index() -> None:
    # 100 µg/m³ is about 0.049 ppm, below EPA's 1-hour scale (from 0.125 ppm).
    assert sub_index("o3", 100.0, averaging="1h", table=US_EPA) is None
    assert "o3" not in hourly_aqi({"pm25": 5.0, "o3": 100.0}, table=US_EPA).sub_indices


def test_epa_co_needs_8_hour_means_and_says_so() -> None:
    with pytest.raises(AqiInputError, match="no 1h breakpoints for co"):
        hourly_aqi({"pm25": 5.0, "co": 1000.0}, table=US_EPA)


def test_vn_and_epa_differ_for_the_same_pm25() -> None:
    assert hourly_aqi({"pm25": 20.0}).band == "good"
    assert hourly_aqi({"pm25": 20.0}, table=US_EPA).band == "moderate"


# --- Properties ---------------------------------------------------------------------------------

concentration = st.floats(min_value=0.0, max_value=200_000.0, allow_nan=False)
hourly_inputs = st.fixed_dictionaries(
    {"pm25": concentration},
    optional={k: concentration for k in HOURLY_KEYS if k != "pm25"},
)
daily_inputs = st.fixed_dictionaries(
    {"pm10": concentration, "o3": concentration},
    optional={k: concentration for k in DAILY_KEYS if k not in ("pm10", "o3")},
)


@given(st.sampled_from(HOURLY_KEYS), concentration, concentration)
def test_sub_index_is_monotonic_in_concentration(key: str, a: float, b: float) -> None:
    low, high = sorted((a, b))
    base = {"pm10": 0.0} if key != "pm10" else {"pm25": 0.0}
    assert (
        hourly_aqi({**base, key: low}).sub_indices[key]
        <= hourly_aqi({**base, key: high}).sub_indices[key]
    )


@given(st.sampled_from(["pm25", "pm10"]), concentration, concentration)
def test_epa_particulate_sub_index_is_monotonic(key: str, a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert hourly_aqi({key: low}, table=US_EPA).aqi <= hourly_aqi({key: high}, table=US_EPA).aqi


@given(hourly_inputs)
def test_hourly_aqi_is_within_scale_and_dominant_is_argmax(values: dict[str, float]) -> None:
    result = hourly_aqi(values)
    assert 0 <= result.aqi <= 500
    assert all(0 <= v <= 500 for v in result.sub_indices.values())
    assert result.sub_indices[result.dominant] == result.aqi == max(result.sub_indices.values())
    assert band_for(result.aqi).key == result.band


@given(daily_inputs)
def test_daily_aqi_is_within_scale_and_dominant_is_argmax(values: dict[str, float]) -> None:
    result = daily_aqi(values)  # o3 (1-hour) is always given, so an 8-hour O3 > 400 is fine
    assert 0 <= result.aqi <= 500
    assert result.sub_indices[result.dominant] == result.aqi == max(result.sub_indices.values())


@given(st.lists(st.one_of(st.none(), concentration), max_size=15))
def test_nowcast_lies_between_the_available_hours(hours: list[float | None]) -> None:
    value = nowcast(hours)
    available = [h for h in hours[:12] if h is not None]
    if value is None:
        assert sum(h is not None for h in hours[:3]) < 2
    else:
        assert min(available) - 1e-9 <= value <= max(available) + 1e-9
