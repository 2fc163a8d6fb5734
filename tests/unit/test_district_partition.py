"""Replay-safe district aggregation state (streams/district_partition.py), fixed timestamps."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from schemas.indicator_values import IndicatorValue, encode_value
from schemas.indicators import WindowResult, encode_indicator
from streams.district_health import health_families
from streams.district_partition import DistrictState, InputError, StateFormatError, encode_tick
from streams.windows import to_ms

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
STATIONS = {"lx": {"aq-1", "aq-2"}, "cd": {"aq-3"}}
DEVICES = {"lx": {"aq-1", "aq-2", "g-1"}, "cd": {"aq-3"}, "tt": {"g-9"}}
HEALTH = health_families((d, dist, 60.0) for dist, ds in DEVICES.items() for d in sorted(ds))


def aqi(sid: str, district: str, start: datetime, value: float, dominant: str = "pm25") -> bytes:
    return encode_value(IndicatorValue(
        indicator="vn_aqi_1h", subject_kind="device", subject_id=sid, district=district,
        window_start=start, window_end=start + H, value=value, level="moderate",
        components={dominant: value}, labels={"dominant": dominant, "table": "VN_AQI"},
    ))  # fmt: skip


def minute(device: str, district: str, start: datetime, metric: str = "pm25") -> bytes:
    return encode_indicator(WindowResult(
        indicator="reading_stats_1m", device_id=device, device_kind="x", district=district,
        ward="", metric=metric, unit="ug/m3", window_start=start, window_end=start + M,
        count=1, mean=1.0, min=1.0, max=1.0, last=1.0, stddev=0.0,
    ))  # fmt: skip


def new(grace_ms: int = 0, health_keep: timedelta = 24 * H) -> DistrictState:
    keep_ms = round(health_keep.total_seconds() * 1000)
    return DistrictState(STATIONS, HEALTH, grace_ms=grace_ms, health_keep_ms=keep_ms)


def feed(st: DistrictState, msgs: list[bytes], first: int = 0) -> list[IndicatorValue]:
    out: list[IndicatorValue] = []
    for i, m in enumerate(msgs[first:], start=first):
        out += st.apply(i, m).values
    return out


def test_a_complete_district_is_emitted_at_once() -> None:
    st = new(grace_ms=600_000)
    assert feed(st, [aqi("aq-1", "lx", T0, 40)]) == []
    values = st.apply(1, aqi("aq-2", "lx", T0, 90, "no2")).values
    assert [(v.subject_id, v.value, v.labels["dominant"], v.revision) for v in values] == [
        ("lx", 90, "no2", 0)
    ]
    assert values[0].components == {"pm25": 40, "no2": 90, "stations": 2, "expected": 2}


def test_an_incomplete_district_waits_for_the_watermark_then_late_stations_revise_it() -> None:
    st = new(grace_ms=600_000)
    assert st.apply(0, aqi("aq-1", "lx", T0, 40)).values == []
    assert st.apply(1, encode_tick(to_ms(T0 + H + timedelta(minutes=9)))).values == []
    values = st.apply(2, encode_tick(to_ms(T0 + H + timedelta(minutes=10)))).values
    district = [v for v in values if v.indicator == "vn_aqi_1h"]
    assert [(v.subject_id, v.window_start, v.value, v.revision) for v in district] == [
        ("lx", T0, 40, 0)
    ]
    assert district[0].components["stations"] == 1
    late = st.apply(3, aqi("aq-2", "lx", T0, 120)).values
    assert [(v.value, v.revision, v.labels["worst_station"]) for v in late] == [(120, 1, "aq-2")]
    assert st.apply(4, aqi("aq-2", "lx", T0, 120)).values == []  # a repeat changes nothing
    assert st.apply(5, aqi("aq-3", "cd", T0, 20)).values[0].revision == 0  # first for cd


def test_every_registry_district_gets_a_health_record_per_hour() -> None:
    st = new(grace_ms=0)
    got = feed(st, [minute("aq-1", "lx", T0), encode_tick(to_ms(T0 + 3 * H))])
    health = {(v.subject_id, v.window_start): (v.value, v.components["reporting"]) for v in got
              if v.indicator == "devices_reporting_1h"}  # fmt: skip
    assert health[("lx", T0)][0] == pytest.approx(1 / 3)
    assert health[("lx", T0)][1] == 1.0
    assert health[("cd", T0)] == (0.0, 0.0)  # silent
    assert health[("tt", T0)] == (0.0, 0.0)
    assert health[("tt", T0 + 2 * H)] == (0.0, 0.0)  # an hour with no input at all
    assert len(health) == 3 * 3
    assert st.apply(2, encode_tick(to_ms(T0 + 3 * H) + 1)).values == []  # no hour passed


def test_inputs_older_than_the_kept_windows_are_late() -> None:
    st = new(grace_ms=0)
    feed(st, [aqi("aq-3", "cd", T0, 30), encode_tick(to_ms(T0 + 3 * 24 * H))])
    out = st.apply(2, aqi("aq-1", "lx", T0, 50))
    assert out.late
    assert out.values == []


def test_bad_inputs_and_records() -> None:
    with pytest.raises(InputError):
        new().apply(0, b"{}")
    with pytest.raises(InputError):
        new().apply(0, b"nope")
    with pytest.raises(StateFormatError):
        new().restore([(b"\x00partition", b"{}")])


def _scenario(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    msgs: list[bytes] = []
    for h in range(6):
        start = T0 + h * H
        batch = [minute(d, dist, start + rng.randrange(60) * M) for dist, devs in DEVICES.items()
                 for d in sorted(devs) for _ in range(3) if rng.random() < 0.5]  # fmt: skip
        batch += [aqi(s, dist, start, rng.randrange(10, 200)) for dist, ss in STATIONS.items()
                  for s in sorted(ss) if rng.random() < 0.8]  # fmt: skip
        # late: minutes of the hour before (beyond the grace) and a station of it
        batch += [minute(d, dist, start - H + rng.randrange(60) * M) for dist, devs in
                  DEVICES.items() for d in sorted(devs) if rng.random() < 0.3]  # fmt: skip
        if h and rng.random() < 0.7:
            dist = rng.choice(sorted(STATIONS))
            batch.append(aqi(rng.choice(sorted(STATIONS[dist])), dist, start - H, 250))
        rng.shuffle(batch)
        msgs += batch
        if rng.random() < 0.3:
            msgs.append(encode_tick(to_ms(start + H + timedelta(minutes=rng.randrange(60)))))
    for _ in range(10):  # stragglers and repeats
        i = rng.randrange(len(msgs) - 20)
        msgs.insert(i + rng.randrange(5, 20), msgs[i] if rng.random() < 0.5 else msgs.pop(i))
    return msgs


@pytest.mark.parametrize("seed", range(5))
def test_a_crash_at_any_point_gives_the_uninterrupted_output(seed: int) -> None:
    msgs = _scenario(seed)
    keep = 2 * H if seed % 2 else 24 * H  # with short keeping, cells are dropped on the way
    values = feed(new(600_000, keep), msgs)
    assert any(v.revision > 0 for v in values if v.indicator == "vn_aqi_1h")  # late stations
    for family in ("devices_reporting_1m", "devices_reporting_15m_hop5m"):
        assert any(v.revision > 0 for v in values if v.indicator == family)  # late minutes
    whole = [encode_value(v) for v in values]
    assert len(whole) == len(set(whole))
    rng = random.Random(seed)
    for _ in range(5):
        st = new(600_000, keep)
        written: list[tuple[bytes, bytes | None]] = []
        outputs: dict[int, list[bytes]] = {}
        for i, m in enumerate(msgs[: rng.randrange(len(msgs))]):
            outputs[i] = [encode_value(v) for v in st.apply(i, m).values]
            if rng.random() < 0.2:
                written += st.checkpoint()
        table: dict[bytes, bytes] = {}
        for key, value in written[: rng.randrange(len(written) + 1)]:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        restored = new(600_000, keep)
        restored.restore(table.items())
        durable = [v for i in range(restored.offset + 1) for v in outputs.get(i, [])]
        replayed = [encode_value(v) for v in feed(restored, msgs, first=restored.offset + 1)]
        assert set(replayed) <= set(whole)
        assert set(durable) | set(replayed) == set(whole)
