"""District VN_AQI and devices reporting of the stream worker through a real Kafka broker.

Three hours of PM readings from three air-quality stations in two districts (one station
stops after two hours), a registry (``IOC_REGISTRY_PATH``) that also expects a silent weather
station and a silent district, and a reading a day later on every partition, which closes
every window. The worker runs with ``IOC_WORKER_DISTRICTS=1``. The test reads the station
records the worker itself emitted (``vn_aqi_1h``/``vn_aqi_1d`` per station,
``reading_stats_1h`` per device) and computes from them, independently, what each district
record must end as (the highest revision of each key): the worst station with its dominant
pollutant, and hourly devices reporting against the registry's expectation — zero for the
silent district. (The district agent derives devices reporting from the 1-minute windows;
every family is checked against the readings in ``test_worker_districts_kill.py``.)

Needs a real broker (the ``stack`` fixture); fails (never skips) when it is unreachable.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.kafka.partitioning import partition_for
from schemas.indicator_values import SCHEMA as VALUES_SCHEMA
from schemas.indicator_values import IndicatorValue, decode_value
from schemas.indicators import decode_indicator
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

pytestmark = pytest.mark.integration
__all__ = ["kafka_bootstrap", "workers"]  # fixtures used by the tests below

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
H = timedelta(hours=1)
STATIONS = {"aq-a1": "long-xuyen", "aq-a2": "long-xuyen", "aq-b1": "chau-doc"}
SILENT = {"wx-b2": "chau-doc", "wx-c1": "tri-ton"}
KINDS = """version: 1
kinds:
  air_quality:
    expected_interval_s: 60
    metrics:
      pm25: {unit: "ug/m3", min: 0, max: 1000}
      pm10: {unit: "ug/m3", min: 0, max: 2000}
  weather:
    expected_interval_s: 600
    metrics:
      temperature: {unit: "Cel", min: -10, max: 60}
devices:
"""


def _registry() -> str:
    """The device registry YAML of the test (stations and the silent weather stations)."""
    lines = [KINDS]
    for kind, devices in (("air_quality", STATIONS), ("weather", SILENT)):
        for device, district in devices.items():
            lines.append(f"  - {{id: {device}, kind: {kind}, district: {district}, "
                         "location: {lat: 10.4, lon: 105.4}}\n")  # fmt: skip
    return "".join(lines)


def _reading(device: str, district: str, metric: str, at: datetime, value: float) -> dict[str, Any]:
    return {"device_id": device, "device_kind": "air_quality", "district": district,
            "ward": "w", "metric": metric, "value": value, "unit": "ug/m3",
            "event_time": format_time(at), "receive_time": format_time(at),
            "time_source": "device", "source": "test"}  # fmt: skip


def _messages() -> dict[int, list[bytes]]:
    rng = random.Random(20261130)
    per_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for minute in range(180):
        for device, district in STATIONS.items():
            if device == "aq-a2" and minute >= 120:
                continue
            at = T0 + timedelta(minutes=minute, seconds=30)
            for metric, high in (("pm25", 90), ("pm10", 200)):
                value = round(rng.uniform(5, high), 1)
                per_partition[partition_for(device, PARTITIONS)].append(
                    _reading(device, district, metric, at, value)
                )
    out: dict[int, list[bytes]] = {}
    for p in range(PARTITIONS):
        batches = [per_partition[p][i : i + 20] for i in range(0, len(per_partition[p]), 20)]
        device = next(f"zz-{i}" for i in range(100) if partition_for(f"zz-{i}", PARTITIONS) == p)
        batches.append([_reading(device, "nowhere", "pm25", T0 + timedelta(days=1), 1.0)])
        out[p] = [orjson.dumps({"schema": SCHEMA, "readings": b}) for b in batches]
    return out


def _expected(messages: list[tuple[bytes, bytes]]) -> dict[str, tuple[float, dict[str, str]]]:
    """Key -> (value, key labels) of every district record, from the station records."""
    aqi: dict[tuple[str, datetime, str], dict[str, IndicatorValue]] = defaultdict(dict)
    reported: dict[tuple[datetime, str], set[str]] = defaultdict(set)
    for _, value in messages:
        obj = orjson.loads(value)
        if obj["schema"] == VALUES_SCHEMA:
            v = decode_value(value)
            if v.subject_kind == "device" and v.indicator in ("vn_aqi_1h", "vn_aqi_1d"):
                aqi[(v.indicator, v.window_start, v.district)][v.subject_id] = v
        else:
            w = decode_indicator(value)
            if w.indicator == "reading_stats_1h":
                reported[(w.window_start, w.district)].add(w.device_id)
    out: dict[str, tuple[float, dict[str, str]]] = {}
    for (indicator, start, district), stations in aqi.items():
        worst = sorted(stations.values(), key=lambda v: (-v.value, v.subject_id))[0]
        labels = {"dominant": worst.labels["dominant"], "worst_station": worst.subject_id}
        out[f"{indicator}|district:{district}|{format_time(start)}"] = (worst.value, labels)
    expected: dict[str, set[str]] = {d: set() for d in (*STATIONS.values(), *SILENT.values())}
    for device, district in (*STATIONS.items(), *SILENT.items()):
        expected[district].add(device)
    for h in range(1, 3):  # the hours every run closes (the first may open the clock)
        start = T0 + h * H
        for district, want in expected.items():
            ok = len(want & reported.get((start, district), set()))
            out[f"devices_reporting_1h|district:{district}|{format_time(start)}"] = (
                ok / len(want),
                {"silent_devices": ",".join(sorted(want - reported.get((start, district), set())))},
            )
    return out


def _latest(messages: list[tuple[bytes, bytes]]) -> dict[str, IndicatorValue]:
    latest: dict[str, IndicatorValue] = {}
    for key, value in messages:
        if orjson.loads(value)["schema"] != VALUES_SCHEMA:
            continue
        v = decode_value(value)
        if v.subject_kind != "district":
            continue
        assert v.key == key.decode()
        if v.key not in latest or v.revision > latest[v.key].revision:
            latest[v.key] = v
        elif v.revision == latest[v.key].revision:
            assert v == latest[v.key], f"two different records of {v.key} revision {v.revision}"
    return latest


def _matches(latest: dict[str, IndicatorValue], expected: dict[str, Any]) -> list[str]:
    wrong = []
    for key, (value, labels) in expected.items():
        got = latest.get(key)
        if (
            got is None
            or got.value != value
            or any(got.labels.get(k) != v for k, v in labels.items())
        ):
            wrong.append(key)
    return wrong


def test_worker_emits_district_aqi_and_devices_reporting(
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
    )
    workers.append(worker)
    _produce(kafka_bootstrap, worker.readings, _messages(), slice(None))
    indicators = Collector(kafka_bootstrap, worker.indicators)
    try:
        worker.start()
        deadline = time.monotonic() + WAIT_S
        wrong: list[str] = ["nothing yet"]
        while wrong:
            worker.assert_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"district records never matched: {wrong[:5]}; log {worker.log}")
            messages = indicators.poll()
            days = [m for m in messages if m[0].startswith(b"vn_aqi_1d|device:")]
            expected = _expected(messages)
            wrong = _matches(_latest(messages), expected) if len(days) == 3 else ["stations"]
            time.sleep(0.3)
        worker.stop()
        messages = indicators.drain()
        latest = _latest(messages)
        assert not _matches(latest, _expected(messages))
        aqi = {k for k in latest if k.startswith("vn_aqi")}
        assert aqi == {k for k in _expected(messages) if k.startswith("vn_aqi")}
        assert {k.split("|")[1] for k in aqi} == {"district:long-xuyen", "district:chau-doc"}
        silent = latest[f"devices_reporting_1h|district:tri-ton|{format_time(T0 + H)}"]
        assert (silent.value, silent.components["expected"]) == (0.0, 1.0)
        lx = latest[f"vn_aqi_1d|district:long-xuyen|{format_time(T0.replace(hour=17) - 24 * H)}"]
        assert lx.components["stations"] == 2.0
    finally:
        indicators.close()
