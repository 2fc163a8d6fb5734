"""The city simulator's pure parts: generation, encodings, message plan, pacing, splitting.

Local time in these tests comes from the tz database (``zoneinfo``), independently of the
simulator's own fixed UTC+7 offset.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
import pytest

from connectors.simulator.cli import build_parser, default_start
from connectors.simulator.encoding import (
    encode_payload,
    encode_senml,
    malformed_payload,
    status_topic,
)
from connectors.simulator.fleet import merge
from connectors.simulator.model import (
    METRICS,
    UNITS,
    WARDS,
    SimDevice,
    SimReading,
    default_devices,
    generate,
)
from connectors.simulator.pacing import TokenBucket
from connectors.simulator.plan import plan_messages, planned_count
from connectors.simulator.publisher import PublisherConfig, PublishSummary
from connectors.simulator.runner import RunSpec
from connectors.simulator.session import safe_url

CITY = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def run(
    n: int = 4,
    start: datetime = T0,
    interval: timedelta = MINUTE,
    count: int = 30,
    seed: int = 1,
) -> list[SimReading]:
    return list(generate(default_devices(n), start, interval, count, seed))


@pytest.fixture(scope="module")
def season_runs() -> dict[str, list[SimReading]]:
    """Six stations every 15 minutes for 45 days in the dry and in the wet season."""
    step = timedelta(minutes=15)
    days = 45 * 96
    return {
        "dry": run(6, datetime(2026, 1, 5, tzinfo=UTC), step, days, seed=11),
        "wet": run(6, datetime(2026, 7, 20, tzinfo=UTC), step, days, seed=12),
    }


def by_local_hour(readings: list[SimReading], metric: str) -> dict[int, float]:
    hours: dict[int, list[float]] = defaultdict(list)
    for r in readings:
        hours[r.event_time.astimezone(CITY).hour].append(r.values[metric])
    return {h: statistics.fmean(v) for h, v in hours.items()}


def mean_between(hourly: dict[int, float], first: int, last: int) -> float:
    return statistics.fmean(hourly[h] for h in range(first, last + 1))


# -- determinism ------------------------------------------------------------------------------


def test_same_seed_same_readings_and_another_seed_others() -> None:
    assert run(seed=7) == run(seed=7)
    a, b = run(seed=7), run(seed=8)
    assert [r.values for r in a] != [r.values for r in b]
    assert [(r.device_id, r.event_time) for r in a] == [(r.device_id, r.event_time) for r in b]


def test_a_device_does_not_depend_on_its_fleet_and_short_runs_are_prefixes() -> None:
    fleet = run(n=5, count=40)
    third = default_devices(5)[2]
    alone = list(generate([third], T0, MINUTE, 40, 1))
    assert [r for r in fleet if r.device_id == third.device_id] == alone
    assert run(n=5, count=15) == fleet[: 5 * 15]


def test_readings_come_round_by_round_at_exact_utc_event_times() -> None:
    start = datetime(2026, 11, 28, 9, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=7)))
    readings = run(n=3, start=start, interval=timedelta(seconds=10), count=4)
    first = datetime(2026, 11, 28, 2, 0, 0, 123_000, tzinfo=UTC)  # truncated to the ms
    assert len(readings) == 12
    for i, r in enumerate(readings):
        assert r.event_time == first + (i // 3) * timedelta(seconds=10)
        assert r.event_time.utcoffset() == timedelta(0)
        assert r.device_id == f"aq-lx-00{i % 3 + 1}"
        assert (r.district, r.kind) == ("long-xuyen", "air_quality")
        assert r.ward == WARDS[i % 3]
        assert tuple(r.values) == METRICS


def test_an_endless_run_can_be_cut_anywhere() -> None:
    endless: Iterator[SimReading] = generate(default_devices(2), T0, MINUTE, None, 3)
    assert [next(endless) for _ in range(20)] == run(n=2, count=10, seed=3)
    assert list(generate([], T0, MINUTE, None, 3)) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": datetime(2026, 1, 1)}, "timezone-aware"),  # noqa: DTZ001 - the bad input
        ({"interval": timedelta(0)}, "positive whole number of milliseconds"),
        ({"interval": timedelta(microseconds=1500)}, "positive whole number of milliseconds"),
        ({"count": -1}, ">= 0"),
        ({"devices": [SimDevice("x", "d", "w"), SimDevice("x", "d", "w")]}, "duplicate"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "devices": default_devices(2),
        "start": T0,
        "interval": MINUTE,
        "count": 1,
        "seed": 0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate(args["devices"], args["start"], args["interval"], args["count"], 0)  # type: ignore[arg-type]


def test_default_devices_cycle_long_xuyen_wards_with_stable_ids() -> None:
    devices = default_devices(13)
    assert [d.device_id for d in devices[:3]] == ["aq-lx-001", "aq-lx-002", "aq-lx-003"]
    assert [d.ward for d in devices[:12]] == list(WARDS)
    assert devices[12].ward == WARDS[0]
    assert {(d.district, d.kind) for d in devices} == {("long-xuyen", "air_quality")}
    assert default_devices(1000)[-1].device_id == "aq-lx-1000"
    assert default_devices(0) == []
    with pytest.raises(ValueError, match=">= 0"):
        default_devices(-1)


# -- realism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("season", ["dry", "wet"])
def test_pm_peaks_at_rush_hours_and_night_and_is_lowest_mid_afternoon(
    season_runs: dict[str, list[SimReading]], season: str
) -> None:
    pm25 = by_local_hour(season_runs[season], "pm25")
    afternoon = mean_between(pm25, 14, 16)
    assert mean_between(pm25, 7, 9) > 1.5 * afternoon
    assert mean_between(pm25, 18, 20) > 1.5 * afternoon
    assert mean_between(pm25, 0, 4) > 1.3 * afternoon
    assert min(pm25, key=pm25.__getitem__) in (13, 14, 15, 16)


@pytest.mark.parametrize("season", ["dry", "wet"])
def test_temperature_peaks_early_afternoon_and_humidity_moves_against_it(
    season_runs: dict[str, list[SimReading]], season: str
) -> None:
    readings = season_runs[season]
    temp = by_local_hour(readings, "temperature")
    assert max(temp, key=temp.__getitem__) in (13, 14, 15)
    assert min(temp, key=temp.__getitem__) in (4, 5, 6)
    assert 31.0 <= temp[14] <= 35.0
    assert 24.0 <= temp[5] <= 27.0
    t = [r.values["temperature"] for r in readings]
    h = [r.values["humidity"] for r in readings]
    assert statistics.correlation(t, h) < -0.8


def test_dry_season_is_dustier_than_wet_season(season_runs: dict[str, list[SimReading]]) -> None:
    dry = statistics.fmean(r.values["pm25"] for r in season_runs["dry"])
    wet = statistics.fmean(r.values["pm25"] for r in season_runs["wet"])
    assert dry > 1.3 * wet


def test_values_stay_in_plausible_ranges_with_one_decimal(
    season_runs: dict[str, list[SimReading]],
) -> None:
    readings = season_runs["dry"] + season_runs["wet"]
    for r in readings:
        v = r.values
        assert all(round(x, 1) == x and math.isfinite(x) for x in v.values())
        assert 3.0 <= v["pm25"] <= 500.0
        assert 1.3 <= v["pm10"] / v["pm25"] <= 2.0
        assert 20.0 <= v["temperature"] <= 40.0
        assert 59.0 <= v["humidity"] <= 97.0
    in_band = sum(60.0 <= r.values["humidity"] <= 95.0 for r in readings)
    assert in_band >= 0.97 * len(readings)


def test_spikes_are_occasional(season_runs: dict[str, list[SimReading]]) -> None:
    readings = season_runs["wet"]
    per_device: dict[str, list[float]] = defaultdict(list)
    for r in readings:
        per_device[r.device_id].append(r.values["pm25"])
    spikes = 0
    for values in per_device.values():
        threshold = 3 * statistics.median(values) + 30
        spikes += sum(v > threshold for v in values)
    assert 0 < spikes < 0.02 * len(readings)


def test_noise_has_memory_and_stations_differ() -> None:
    readings = run(n=12, start=datetime(2026, 3, 1, tzinfo=UTC), count=3 * 1440, seed=5)
    series: dict[str, list[float]] = defaultdict(list)
    for r in readings:
        series[r.device_id].append(r.values["pm25"])
    for values in series.values():
        step = statistics.median(abs(b - a) for a, b in itertools.pairwise(values))
        apart = statistics.median(
            abs(b - a) for a, b in zip(values, values[120:], strict=False)
        )  # two hours apart
        assert step < apart / 3
    means = sorted(statistics.fmean(v) for v in series.values())
    assert means[-1] > 1.2 * means[0]


# -- encodings --------------------------------------------------------------------------------


def sample() -> SimReading:
    start = datetime(2026, 11, 28, 2, 0, 5, 250_000, tzinfo=UTC)
    return next(generate(default_devices(1), start, MINUTE, 1, 9))


def test_json_payload_on_the_telemetry_topic() -> None:
    reading = sample()
    topic, payload = encode_payload(reading)
    assert topic == "ioc/long-xuyen/air_quality/aq-lx-001/telemetry"
    assert orjson.loads(payload) == {"ts": 1_795_831_205_250, "values": reading.values}
    assert status_topic(default_devices(1)[0]) == "ioc/long-xuyen/air_quality/aq-lx-001/status"


def resolve_senml(pack: list[dict[str, object]]) -> list[tuple[str, float, str, float]]:
    """RFC 8428 resolution of base fields: (name, time s, unit, value) per record."""
    out = []
    bn, bt, bu, bv = "", 0.0, None, 0.0
    for rec in pack:
        bn = str(rec.get("bn", bn))
        bt = float(rec.get("bt", bt))  # type: ignore[arg-type]
        bu = rec.get("bu", bu)
        bv = float(rec.get("bv", bv))  # type: ignore[arg-type]
        unit = rec.get("u", bu)
        assert unit is not None
        value = bv + float(rec["v"])  # type: ignore[arg-type]
        out.append((bn + str(rec["n"]), bt + float(rec.get("t", 0)), str(unit), value))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("millis", [0, 250])
def test_senml_pack_resolves_back_to_the_reading(millis: int) -> None:
    reading = replace(sample(), event_time=datetime(2026, 11, 28, 2, 0, 5, millis * 1000, UTC))
    topic, payload = encode_payload(reading, "senml")
    assert topic.endswith("/aq-lx-001/telemetry")
    assert payload == encode_senml(reading)
    pack = orjson.loads(payload)
    assert isinstance(pack[0]["bt"], int) == (millis == 0)
    resolved = resolve_senml(pack)
    assert {name for name, *_ in resolved} == {f"aq-lx-001:{m}" for m in METRICS}
    for name, t, unit, value in resolved:
        metric = name.split(":", 1)[1]
        assert round(t * 1000) == round(reading.event_time.timestamp() * 1000)
        assert unit == UNITS[metric]
        assert value == reading.values[metric]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown payload format"):
        encode_payload(sample(), "xml")  # type: ignore[arg-type]


def test_malformed_payload_is_broken_json_on_a_valid_topic() -> None:
    reading = sample()
    topic, payload = malformed_payload(reading)
    assert topic == encode_payload(reading)[0]
    assert payload
    assert encode_payload(reading)[1].startswith(payload)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(payload)


# -- the message plan -------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "malformed"), [(30, 0), (30, 1), (30, 3), (1, 4), (0, 2)])
def test_plan_keeps_every_reading_and_interleaves_broken_ones(count: int, malformed: int) -> None:
    readings = list(generate(default_devices(3), T0, MINUTE, count, 2))
    total = len(readings)
    plan = list(plan_messages(readings, "json", malformed, total))
    assert len(plan) == planned_count(total, malformed)
    good = [m for m in plan if not m.malformed]
    assert [(m.topic, m.payload) for m in good] == [encode_payload(r) for r in readings]
    bad = [m for m in plan if m.malformed]
    assert len(bad) == (malformed if total else 0)
    for i, m in enumerate(plan):
        if m.malformed:  # on the topic of the reading just before it
            assert i > 0
            assert m.topic == plan[i - 1].topic


def test_plan_of_an_endless_run_sends_broken_ones_early() -> None:
    endless = generate(default_devices(3), T0, MINUTE, None, 2)
    plan = plan_messages(endless, "senml", 2, None)
    first = [next(plan) for _ in range(6)]
    assert [m.malformed for m in first] == [False, True, False, True, False, False]
    assert planned_count(None, 2) is None


# -- pacing -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("rate", "sleep_floor"), [(1.0, 0.0), (250.0, 0.0), (20_000.0, 0.001)])
def test_token_bucket_holds_the_rate_whatever_the_sleep_granularity(
    rate: float, sleep_floor: float
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock)
    seconds = 10.0
    end = clock.now + seconds
    taken = 0
    while clock.now < end:
        wait = bucket.try_take()
        if wait == 0:
            taken += 1
        else:
            clock.now += max(wait, sleep_floor)
    # Tokens that accrue during the last sleep past the end are not taken.
    assert rate * (seconds - sleep_floor) - 1 <= taken <= rate * seconds + bucket.burst


def test_token_bucket_never_bursts_beyond_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000.0, clock=clock)
    clock.now += 60.0  # a long pause does not store a minute of tokens
    burst = 0
    while bucket.try_take() == 0:
        burst += 1
    assert burst == int(bucket.burst)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0.0)


# -- run specs, summaries, CLI helpers --------------------------------------------------------


def spec(n: int = 5, malformed: int = 2) -> RunSpec:
    return RunSpec(
        devices=tuple(default_devices(n)),
        start=T0,
        interval=MINUTE,
        count=10,
        seed=4,
        config=PublisherConfig(client_id="sim", rate=900.0),
        malformed=malformed,
    )


def test_split_shares_devices_rate_and_broken_payloads() -> None:
    whole = spec()
    parts = whole.split(2)
    assert len(parts) == 2
    assert sorted(d.device_id for p in parts for d in p.devices) == sorted(
        d.device_id for d in whole.devices
    )
    assert [p.config.rate for p in parts] == [450.0, 450.0]
    assert [p.malformed for p in parts] == [2, 0]
    assert len({p.config.client_id for p in parts}) == 2
    assert whole.split(1) == [whole]
    assert len(spec(n=2).split(8)) == 2
    readings = sorted(
        (r.device_id, r.event_time, tuple(r.values.items()))
        for p in parts
        for r in generate(p.devices, p.start, p.interval, p.count, p.seed)
    )
    expected = sorted(
        (r.device_id, r.event_time, tuple(r.values.items()))
        for r in generate(whole.devices, T0, MINUTE, 10, 4)
    )
    assert readings == expected
    with pytest.raises(ValueError, match="workers"):
        whole.split(0)


def test_merged_summary_adds_counters_and_keeps_errors() -> None:
    a = PublishSummary(published=10, acked=9, failed=1, malformed=1, elapsed_s=2.0)
    b = PublishSummary(published=5, acked=5, elapsed_s=3.0, interrupted=True, error="boom")
    m = merge([a, b])
    assert (m.published, m.acked, m.failed, m.malformed) == (15, 14, 1, 1)
    assert (m.elapsed_s, m.interrupted, m.error, m.ok) == (3.0, True, "boom", False)
    assert merge([PublishSummary(published=3, acked=3)]).ok


@pytest.mark.parametrize(
    "kwargs",
    [{"rate": -1.0}, {"rate": math.inf}, {"max_inflight": 0}, {"duration_s": 0.0}],
)
def test_publisher_config_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"rate|max_inflight|duration"):
        PublisherConfig(client_id="sim", **kwargs)  # type: ignore[arg-type]


def test_default_start_floors_to_the_minute_or_the_interval() -> None:
    now = datetime(2026, 11, 28, 2, 7, 43, 500_000, tzinfo=UTC)
    assert default_start(now, MINUTE, False) == datetime(2026, 11, 28, 2, 7, tzinfo=UTC)
    assert default_start(now, timedelta(seconds=10), True) == datetime(
        2026, 11, 28, 2, 7, 40, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--start", "2026-11-28T09:00"],
        ["--interval", "0"],
        ["--devices", "-1"],
        ["--workers", "0"],
        ["--format", "xml"],
    ],
)
def test_cli_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_urls_in_logs_carry_no_credentials() -> None:
    assert safe_url("mqtts://ioc:s3cret@broker.example:8883") == "mqtts://broker.example:8883"
