"""District indicators of the stream worker survive a SIGKILL and restart (real Kafka broker).

Six hours of PM readings from three air-quality stations in two districts — one station stops
after four hours, another is silent for half an hour — and a registry that also expects two
weather stations that never report (one of them alone in its district). The readings are
produced live, paced; the worker (``IOC_WORKER_DISTRICTS=1``, default offset commits, short
checkpoints) is SIGKILLed once the district state has reached its changelog and district
records are out, then restarted after the rest has been produced; a reading a day later on
every partition closes every window.

The district records on ``ioc.indicators``, taking the highest revision of each key, must then
be exactly what the test computes from the same data — every window present (none lost: each
devices-reporting family — 1 minute, 5 and 15 minutes hopping, 1 hour — over hours 2 to 6,
every district VN_AQI window of the stations), the counts of stations and of reporting
devices exact (none counted twice) — and two records of one key and revision must be
identical. The devices-reporting figures are computed from the
readings themselves (a device reports in a window when it has a reading in it); the district
VN_AQI from the station records the worker emitted (the worst station). The restarted worker
must have restored a district state written by the killed one.

This test fails when the district state is not restored: offsets committed before the kill
then cover inputs that the new state never sees.

Needs a real broker (the ``stack`` fixture); fails (never skips) when it is unreachable.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.kafka.partitioning import partition_for
from schemas.indicator_values import IndicatorValue, decode_value
from schemas.readings import SCHEMA, format_time
from tests.integration.test_worker import (
    PARTITIONS,
    WAIT_S,
    Collector,
    Worker,
    _produce,
    kafka_bootstrap,
    workers,
)
from tests.integration.test_worker_districts import SILENT, STATIONS, _reading, _registry

pytestmark = pytest.mark.integration
__all__ = ["kafka_bootstrap", "workers"]  # fixtures used by the tests below

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
HOURS = 6
MINUTE = timedelta(minutes=1)
STOPS = {"aq-a2": 240}  # device -> minute from which it sends nothing
GAPS = {"aq-b1": range(100, 130)}  # device -> minutes without readings
# readings per message: the stations' partitions advance at different paces, so district
# windows get inputs both before and after the kill
BATCH = {"aq-a1": 24, "aq-b1": 18, "aq-a2": 12}
STATION_KEYS = (b"vn_aqi_1h|device:", b"vn_aqi_1d|device:")
INTERVAL_S = {**dict.fromkeys(STATIONS, 60.0), **dict.fromkeys(SILENT, 600.0)}
# devices-reporting families: indicator -> (size, hop) in minutes
HEALTH = {
    "devices_reporting_1m": (1, 1),
    "devices_reporting_5m_hop1m": (5, 1),
    "devices_reporting_15m_hop5m": (15, 5),
    "devices_reporting_1h": (60, 60),
}


def _minutes(device: str) -> list[int]:
    """The minutes (from T0) in which ``device`` sends readings."""
    stop = STOPS.get(device, HOURS * 60)
    gap = GAPS.get(device, range(0))
    return [m for m in range(stop) if m not in gap]


def _messages() -> dict[int, list[bytes]]:
    """Reading batches per partition (:data:`BATCH` readings of one station per message), in
    time order, and a last reading a day later on every partition."""
    rng = random.Random(20261201)
    per_partition: dict[int, list[list[dict[str, Any]]]] = defaultdict(list)
    for device, district in STATIONS.items():
        stream = []
        for minute in _minutes(device):
            at = T0 + minute * MINUTE + timedelta(seconds=30)
            for metric, high in (("pm25", 90), ("pm10", 200)):
                stream.append(
                    _reading(device, district, metric, at, round(rng.uniform(5, high), 1))
                )
        per_partition[partition_for(device, PARTITIONS)] += [
            stream[i : i + BATCH[device]] for i in range(0, len(stream), BATCH[device])
        ]
    out: dict[int, list[bytes]] = {}
    for p in range(PARTITIONS):
        batches = sorted(per_partition[p], key=lambda b: (b[0]["event_time"], b[0]["device_id"]))
        device = next(f"zz-{i}" for i in range(100) if partition_for(f"zz-{i}", PARTITIONS) == p)
        batches.append([_reading(device, "nowhere", "pm25", T0 + timedelta(days=1), 1.0)])
        out[p] = [orjson.dumps({"schema": SCHEMA, "readings": b}) for b in batches]
    return out


Expected = dict[str, tuple[float, dict[str, float], dict[str, str]]]


def _expected_health() -> Expected:
    """Key -> (value, components, labels) of every devices-reporting record of the windows
    inside the data's hours after the first, computed from the readings. (The district clock
    opens at the first minute forwarded, which may be any of the first few: the indicators
    topic's partitions interleave. Before it, only windows with a device have a record.)"""
    districts = sorted({*STATIONS.values(), *SILENT.values()})
    where = {**STATIONS, **SILENT}
    sent = {d: set(_minutes(d)) if d in STATIONS else set() for d in where}
    out: Expected = {}
    for indicator, (size, hop) in HEALTH.items():
        for start in range(60, HOURS * 60 - size + 1, hop):
            window = set(range(start, start + size))
            for district in districts:
                want = {
                    d for d, dd in where.items() if dd == district and INTERVAL_S[d] <= size * 60
                }
                seen = {d for d, dd in where.items() if dd == district and sent[d] & window}
                ok = len(want & seen)
                components = {"reporting": float(ok), "expected": float(len(want)),
                              "silent": float(len(want - seen)),
                              "unexpected": float(len(seen - want))}  # fmt: skip
                labels = {"silent_devices": ",".join(sorted(want - seen))}
                key = f"{indicator}|district:{district}|{format_time(T0 + start * MINUTE)}"
                out[key] = (ok / len(want) if want else 1.0, components, labels)
    return out


class Values:
    """The derived records read so far — district records and station VN_AQI — decoded once
    each (the other records are told apart by their key)."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, IndicatorValue]] = []
        self._read = 0

    def update(self, messages: list[tuple[bytes, bytes]]) -> list[tuple[bytes, IndicatorValue]]:
        for key, value in messages[self._read :]:
            if b"|district:" in key or key.startswith(STATION_KEYS):
                self.records.append((key, decode_value(value)))
        self._read = len(messages)
        return self.records


def _expected_aqi(records: list[tuple[bytes, IndicatorValue]]) -> Expected:
    """Key -> (value, components, labels) of every district VN_AQI record, from the station
    records the worker emitted: the worst station, each pollutant's largest sub-index."""
    by_window: dict[tuple[str, datetime, str], dict[str, IndicatorValue]] = defaultdict(dict)
    for _, v in records:
        if v.subject_kind == "device" and v.indicator in ("vn_aqi_1h", "vn_aqi_1d"):
            by_window[(v.indicator, v.window_start, v.district)][v.subject_id] = v
    expected_stations: dict[str, int] = defaultdict(int)
    for district in STATIONS.values():
        expected_stations[district] += 1
    out: Expected = {}
    for (indicator, start, district), stations in by_window.items():
        worst = sorted(stations.values(), key=lambda v: (-v.value, v.subject_id))[0]
        components: dict[str, float] = {}
        for v in stations.values():
            for pollutant, sub in v.components.items():
                components[pollutant] = max(components.get(pollutant, sub), sub)
        components["stations"] = float(len(stations))
        components["expected"] = float(expected_stations[district])
        labels = {"dominant": worst.labels["dominant"], "worst_station": worst.subject_id}
        out[f"{indicator}|district:{district}|{format_time(start)}"] = (
            worst.value,
            components,
            labels,
        )
    return out


def _latest(records: list[tuple[bytes, IndicatorValue]]) -> dict[str, IndicatorValue]:
    """The highest revision of every district record; equal key and revision must mean
    identical records."""
    latest: dict[str, IndicatorValue] = {}
    for key, v in records:
        if v.subject_kind != "district":
            continue
        assert v.key == key.decode()
        if v.key not in latest or v.revision > latest[v.key].revision:
            latest[v.key] = v
        elif v.revision == latest[v.key].revision:
            assert v == latest[v.key], f"two different records of {v.key} revision {v.revision}"
    return latest


def _wrong(latest: dict[str, IndicatorValue], expected: Expected) -> list[str]:
    """Keys whose latest record is missing or differs from the expectation."""
    out = []
    for key, (value, components, labels) in expected.items():
        got = latest.get(key)
        if (
            got is None
            or got.value != value
            or dict(got.components) != components
            or any(got.labels.get(k) != v for k, v in labels.items())
        ):
            out.append(key)
    return out


def _ready(records: list[tuple[bytes, IndicatorValue]]) -> bool:
    """Every station's daily VN_AQI is out (the last input of the run)."""
    return len({k for k, _ in records if k.startswith(b"vn_aqi_1d|device:")}) == len(STATIONS)


def _district_hours(messages: list[tuple[bytes, bytes]]) -> int:
    """Hours from T0 to the start of the latest district window emitted so far."""
    starts = [k.rsplit(b"|", 1)[1].decode() for k, _ in messages if b"|district:" in k]
    latest = max((datetime.fromisoformat(s) for s in starts), default=T0)
    return (latest - T0) // timedelta(hours=1)


def _health(expected: Expected, indicator: str, start: datetime) -> dict[str, Any]:
    """District -> expectation of one window of a devices-reporting family."""
    return {
        key.split("|")[1].removeprefix("district:"): want
        for key, want in expected.items()
        if key.startswith(f"{indicator}|") and key.endswith(f"|{format_time(start)}")
    }


def test_sigkill_and_restart_give_the_same_district_indicators(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    registry = tmp_path / "devices.yaml"
    registry.write_text(_registry())
    worker = Worker(
        kafka_bootstrap,
        tmp_path,
        IOC_REGISTRY_PATH=str(registry),
        IOC_WORKER_DISTRICTS="1",
        IOC_WORKER_DISTRICT_GRACE_S="0",
        IOC_WORKER_SERVICES="0",
        IOC_WORKER_CHECKPOINT_INTERVAL_S="0.5",
    )
    workers.append(worker)
    health = _expected_health()
    indicators = Collector(kafka_bootstrap, worker.indicators)
    changelog: Collector | None = None
    producer = threading.Thread(
        target=_produce,
        args=(kafka_bootstrap, worker.readings, _messages(), slice(None)),
        kwargs={"pace_s": 0.08},
    )
    try:
        worker.start()
        worker.wait_for_log("partitions of ")  # consuming (its changelog topics exist)
        changelog = Collector(
            kafka_bootstrap, f"{worker.env['IOC_WORKER_APP_ID']}-district-cells-changelog"
        )
        producer.start()
        # kill mid-stream, once a district state is durable and the fastest partition has
        # closed its second hour (the slowest has not: some district windows are open)
        deadline = time.monotonic() + WAIT_S
        while not (changelog.poll() and _district_hours(indicators.poll()) >= 2):
            worker.assert_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"no district state or records before the kill; log {worker.log}")
            time.sleep(0.05)
        worker.kill()
        before = {k for k, _ in indicators.poll() if b"|district:" in k}
        producer.join()
        worker.start()
        deadline = time.monotonic() + WAIT_S
        wrong = ["nothing yet"]
        values = Values()
        while wrong:
            worker.assert_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"district records never matched: {wrong[:5]}; log {worker.log}")
            records = values.update(indicators.poll())
            if _ready(records):
                wrong = _wrong(_latest(records), {**health, **_expected_aqi(records)})
            time.sleep(0.3)
        worker.stop()
        log = worker.log.read_text()
        restored = [line for line in log.splitlines() if "districts partition 0 state" in line]
        assert restored, log[-4000:]  # the restart restored the killed run's district state
        assert all(" offset -1," not in line for line in restored), restored
        records = values.update(indicators.drain())
        latest = _latest(records)
        expected = {**health, **_expected_aqi(records)}
        assert not _wrong(latest, expected)
        aqi = {k for k in latest if k.startswith("vn_aqi")}
        assert aqi == {k for k in expected if k.startswith("vn_aqi")}  # none lost, none extra
        assert any(k.startswith("vn_aqi_1h") for k in aqi)
        assert len(before) < len(latest)  # the kill came mid-stream
        # the data's gaps show: a silent station, a stopped one, a district never reporting
        hour = _health(expected, "devices_reporting_1h", T0 + 4 * 60 * MINUTE)
        assert hour["long-xuyen"][1]["silent"] == 1.0  # aq-a2 stopped
        assert hour["tri-ton"][0] == 0.0
        gap = _health(expected, "devices_reporting_15m_hop5m", T0 + 100 * MINUTE)
        assert gap["chau-doc"][1] == {"reporting": 0, "expected": 2, "silent": 2, "unexpected": 0}
        five = _health(expected, "devices_reporting_5m_hop1m", T0 + 60 * MINUTE)
        assert five["chau-doc"][1]["expected"] == 1  # the weather station: not every 5 min
    finally:
        if producer.ident is not None:
            producer.join()
        indicators.close()
        if changelog is not None:
            changelog.close()
