"""The device registry: the shipped file, loading rules, overrides and clear errors."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.mqtt.topics import is_segment
from connectors.registry import (
    DEFAULT_PATH,
    ENV_PATH,
    MetricSpec,
    Registry,
    RegistryError,
)
from connectors.simulator.model import UNITS, default_devices
from streams.flood import load_flood_levels

REPO = Path(__file__).resolve().parents[2]


def minimal(**device: Any) -> dict[str, Any]:
    """A valid one-kind, one-device registry document, with ``device`` fields replaced."""
    entry: dict[str, Any] = {
        "id": "aq-test-1",
        "kind": "air_quality",
        "district": "long-xuyen",
        "ward": "my-binh",
        "location": {"lat": 10.38, "lon": 105.43},
    }
    entry.update(device)
    return {
        "version": 1,
        "kinds": {
            "air_quality": {
                "expected_interval_s": 60,
                "metrics": {
                    "pm25": {"unit": "ug/m3", "min": 0, "max": 1000, "aliases": ["µg/m3"]},
                    "temperature": {"unit": "Cel", "min": -10, "max": 60},
                },
            }
        },
        "devices": [entry],
    }


# -- the shipped registry -----------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Registry:
    return Registry.load(REPO / "deploy" / "devices.yaml")


def test_shipped_registry_has_twelve_air_quality_stations_across_long_xuyen_wards(
    shipped: Registry,
) -> None:
    stations = [shipped.device(f"aq-lx-{i:03d}") for i in range(1, 13)]
    assert all(s is not None for s in stations)
    assert {s.kind for s in stations if s} == {"air_quality"}
    assert {s.district for s in stations if s} == {"long-xuyen"}
    assert len({s.ward for s in stations if s}) >= 11
    for s in stations:
        assert s is not None
        # Long Xuyên lies around 10.37 N, 105.43 E: every station within ~10 km of it.
        assert 10.30 <= s.lat <= 10.45, s.id
        assert 105.38 <= s.lon <= 105.50, s.id
        assert s.metrics["pm25"] == MetricSpec("ug/m3", 0, 1000, s.metrics["pm25"].aliases)
        assert s.metrics["humidity"].unit == "%RH"
        assert s.metrics["temperature"].unit == "Cel"


def test_shipped_registry_has_a_gauge_for_every_flood_level_station(shipped: Registry) -> None:
    gauges = [d for d in shipped if d.kind == "river_gauge"]
    assert {d.labels["station"] for d in gauges} == set(load_flood_levels())
    for d in gauges:
        assert d.metrics["level"].unit == "m"
        assert d.metrics["salinity"].unit == "g/L"
        assert 10.1 <= d.lat <= 11.1, d.id  # An Giang
        assert 104.7 <= d.lon <= 105.7, d.id
    by_station = {d.labels["station"]: d for d in gauges}
    assert by_station["tan-chau"].district == "tan-chau"
    assert by_station["chau-doc"].district == "chau-doc"
    assert by_station["long-xuyen"].district == "long-xuyen"
    assert by_station["cho-moi"].district == "cho-moi"


def test_shipped_registry_has_traffic_segments_in_long_xuyen(shipped: Registry) -> None:
    segments = [d for d in shipped if d.kind == "traffic"]
    assert len(segments) >= 5
    assert {d.district for d in segments} == {"long-xuyen"}
    units = {m: s.unit for m, s in segments[0].metrics.items()}
    assert units == {"vehicle_count": "count", "speed": "km/h", "occupancy": "%"}


def test_every_shipped_id_and_place_is_a_safe_topic_segment(shipped: Registry) -> None:
    for d in shipped:
        assert is_segment(d.id)
        assert is_segment(d.kind)
        assert is_segment(d.district)
        assert d.ward == "" or is_segment(d.ward)


def test_simulated_stations_are_registered_where_the_simulator_puts_them(
    shipped: Registry,
) -> None:
    for sim in default_devices(12):
        device = shipped.device(sim.device_id)
        assert device is not None, sim.device_id
        assert (device.kind, device.district, device.ward) == (sim.kind, sim.district, sim.ward)
        for metric, unit in UNITS.items():
            assert device.metrics[metric].unit == unit


def test_overrides_of_the_shipped_file_apply(shipped: Registry) -> None:
    reference = shipped.device("aq-lx-001")
    plain = shipped.device("aq-lx-002")
    assert reference is not None
    assert plain is not None
    assert "no2" in reference.metrics
    assert "no2" not in plain.metrics
    gauge = shipped.device("rg-long-xuyen")
    assert gauge is not None
    assert gauge.expected_interval_s == 300
    other = shipped.device("rg-tan-chau")
    assert other is not None
    assert other.expected_interval_s == 600


# -- paths --------------------------------------------------------------------------------


def test_default_path_is_the_repository_file_wherever_we_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_PATH, raising=False)
    monkeypatch.chdir(tmp_path)
    assert Registry.default_path() == REPO / "deploy" / "devices.yaml" == DEFAULT_PATH
    assert len(Registry.load_default()) > 0


def test_environment_variable_names_another_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(minimal()), encoding="utf-8")
    monkeypatch.setenv(ENV_PATH, str(path))
    assert Registry.default_path() == path
    registry = Registry.load_default()
    assert list(registry.devices) == ["aq-test-1"]
    assert registry.path == path
    assert registry.version == 1


# -- loading rules ------------------------------------------------------------------------


def test_device_inherits_its_kind_and_may_override_it() -> None:
    registry = Registry.from_dict(
        minimal(
            expected_interval_s=30,
            metrics={"pm25": {"max": 1500}, "no2": {"unit": "ug/m3", "min": 0}},
            labels={"site": "kerbside"},
            name="Trạm thử",
        )
    )
    device = registry.device("aq-test-1")
    assert device is not None
    assert device.expected_interval_s == 30
    assert device.metrics["pm25"] == MetricSpec("ug/m3", 0, 1500, ("µg/m3",))
    assert device.metrics["temperature"] == MetricSpec("Cel", -10, 60)
    assert device.metrics["no2"] == MetricSpec("ug/m3", 0, math.inf)
    assert device.labels == {"site": "kerbside"}
    assert device.name == "Trạm thử"
    kind = registry.kind("air_quality")
    assert kind is not None
    assert kind.expected_interval_s == 60
    assert "no2" not in kind.metrics  # a device's addition stays its own


def test_registry_queries() -> None:
    registry = Registry.from_dict(minimal())
    assert registry.device("nope") is None
    assert registry.kind("nope") is None
    assert "aq-test-1" in registry
    assert "nope" not in registry
    assert [d.id for d in registry] == ["aq-test-1"]
    assert "devices=1" in repr(registry)


def test_loaded_objects_are_immutable() -> None:
    registry = Registry.from_dict(minimal())
    device = registry.device("aq-test-1")
    assert device is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        device.district = "chau-doc"  # type: ignore[misc]
    with pytest.raises(TypeError):
        device.metrics["pm25"] = MetricSpec("x")  # type: ignore[index]
    with pytest.raises(TypeError):
        registry.devices["x"] = device  # type: ignore[index]
    assert hash(device) == hash(registry.device("aq-test-1"))


def test_metric_spec_accepts_its_unit_and_aliases_only() -> None:
    spec = MetricSpec("ug/m3", 0, 10, ("µg/m3",))
    assert spec.accepts_unit("ug/m3")
    assert spec.accepts_unit("µg/m3")
    assert not spec.accepts_unit("UG/M3")
    assert not spec.accepts_unit("mg/m3")


# -- errors name the file and the entry -----------------------------------------------------


def _bad_unit() -> dict[str, Any]:
    doc = minimal()
    doc["kinds"]["air_quality"]["metrics"]["pm10"] = {"min": 0}
    return doc


def _min_above_max() -> dict[str, Any]:
    doc = minimal()
    doc["kinds"]["air_quality"]["metrics"]["pm25"]["min"] = 2000
    return doc


def _duplicate() -> dict[str, Any]:
    doc = minimal()
    doc["devices"].append(dict(doc["devices"][0]))
    return doc


def _without(key: str) -> dict[str, Any]:
    doc = minimal()
    del doc[key]
    return doc


def _with(**top: Any) -> dict[str, Any]:
    doc = minimal()
    doc.update(top)
    return doc


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_without("version"), "no 'version'"),
        (_with(version=2), "unsupported registry version 2"),
        (_with(version="1"), "unsupported registry version '1'"),
        (_with(extra=1), "unknown field"),
        (_with(devices={"a": 1}), "'devices' must be a list"),
        (_with(kinds=[]), "'kinds' must be a mapping"),
        (minimal(kind="air"), r"devices\[0\] \(aq-test-1\): unknown kind 'air'"),
        (minimal(id="AQ 1"), r"devices\[0\]: id must match"),
        (minimal(id=1), r"devices\[0\]: id must match"),
        (minimal(district="Long Xuyên"), r"\(aq-test-1\): district must match"),
        (minimal(ward="my_binh"), r"\(aq-test-1\): ward must match"),
        (minimal(location={"lat": 100, "lon": 105}), "not on Earth"),
        (minimal(location={"lat": True, "lon": 105}), "location.lat must be a finite number"),
        (minimal(location=None), "location must be a mapping"),
        (minimal(expected_interval_s=0), "expected_interval_s must be > 0"),
        (minimal(colour="red"), r"\(aq-test-1\): unknown field\(s\) colour"),
        (minimal(metrics={"pm10": {"max": 5}}), "metric pm10: no unit"),
        (minimal(metrics={"pm25": {"unit": ""}}), "unit must be a short string"),
        (minimal(metrics={"pm25": {"aliases": "µg"}}), "aliases must be a list"),
        (minimal(labels={"a": 1}), "labels must map text to text"),
        (_bad_unit(), "kinds.air_quality: metric pm10: no unit"),
        (_min_above_max(), "min 2000.0 is above max 1000.0"),
        (_duplicate(), r"devices\[1\] \(aq-test-1\): duplicate device id"),
    ],
)
def test_bad_registries_are_refused_with_file_and_entry(
    tmp_path: Path, document: dict[str, Any], message: str
) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RegistryError, match=message) as info:
        Registry.load(path)
    assert str(info.value).startswith(f"{path}: ")


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text(
        "version: 1\nkinds:\n  k:\n    expected_interval_s: 1\n"
        "    metrics: {x: {unit: m}, x: {unit: s}}\ndevices: []\n",
        encoding="utf-8",
    )
    with pytest.raises(RegistryError, match="duplicate key 'x'"):
        Registry.load(path)


def test_unreadable_or_invalid_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        Registry.load(tmp_path / "missing.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nkinds: [\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="not valid YAML"):
        Registry.load(path)
    path.write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="the document must be a mapping"):
        Registry.load(path)
