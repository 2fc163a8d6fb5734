"""The device registry: which devices exist, where they stand and what they may report.

The registry is a versioned YAML file (``deploy/devices.yaml`` in the repository; another file
through the environment variable ``IOC_REGISTRY_PATH`` or an explicit path)::

    version: 1
    kinds:
      air_quality:
        expected_interval_s: 60
        metrics:
          pm25: {unit: "ug/m3", min: 0, max: 1000, aliases: ["µg/m3", "µg/m³"]}
    devices:
      - id: aq-lx-001
        kind: air_quality
        district: long-xuyen
        ward: my-binh                  # optional
        name: "Trạm Mỹ Bình"           # optional, free text
        location: {lat: 10.3870, lon: 105.4370}
        expected_interval_s: 30        # optional, overrides the kind's
        metrics:                       # optional, per-device overrides or additions
          pm25: {max: 1500}            #   override: only the given fields change
          no2: {unit: "ug/m3", min: 0, max: 5000}   # addition: unit required
        labels: {station: long-xuyen}  # optional, string -> string

Rules (checked on load; any violation raises :class:`RegistryError` naming the file and the
offending entry, e.g. ``deploy/devices.yaml: devices[3] (aq-lx-004): unknown kind 'air'``):

* ``version`` must be ``1`` (:data:`REGISTRY_VERSION`); a newer file is refused, not guessed at.
* Device ids, kind names and metric names match ``[a-z0-9][a-z0-9_-]{0,63}`` (ids and kinds
  are MQTT topic segments as they are). District and ward slugs are lowercase ASCII words
  joined by hyphens (``long-xuyen``, ``my-binh``).
* Device ids are unique; every device's kind is declared under ``kinds``.
* A metric has a ``unit`` (case-sensitive, SenML style: ``Cel``, ``%RH``, ``ug/m3``), optional
  plausible bounds ``min`` <= ``max`` (missing means unbounded) and optional unit ``aliases``
  that devices may send instead of the canonical unit.
* ``location.lat`` is within [-90, 90] and ``location.lon`` within [-180, 180].
* Unknown fields and duplicate YAML keys are errors (they are almost always typos).

Everything loaded is immutable: frozen dataclasses and read-only mappings, safe to share
between threads.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml

REGISTRY_VERSION: Final = 1
ENV_PATH: Final = "IOC_REGISTRY_PATH"
DEFAULT_PATH: Final = Path(__file__).resolve().parents[1] / "deploy" / "devices.yaml"

SEGMENT_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
"""A device id or kind name: usable as an MQTT topic segment as is."""
PLACE_RE: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
"""A district or ward slug: lowercase ASCII words joined by single hyphens."""
METRIC_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

_KIND_FIELDS: Final = frozenset({"expected_interval_s", "metrics", "description"})
_DEVICE_FIELDS: Final = frozenset(
    {
        "id",
        "kind",
        "district",
        "ward",
        "name",
        "location",
        "expected_interval_s",
        "metrics",
        "labels",
    }
)
_METRIC_FIELDS: Final = frozenset({"unit", "min", "max", "aliases"})


class RegistryError(ValueError):
    """The registry file cannot be read or breaks a rule; the message names file and entry."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """What one metric means for a device: canonical unit and plausible range (inclusive)."""

    unit: str
    min: float = -math.inf
    max: float = math.inf
    aliases: tuple[str, ...] = ()

    def accepts_unit(self, unit: str) -> bool:
        """True if ``unit`` is the canonical unit or one of its aliases (case-sensitive)."""
        return unit == self.unit or unit in self.aliases


@dataclass(frozen=True, slots=True)
class Kind:
    """A device kind: the default reporting interval and the metrics its devices may send."""

    name: str
    expected_interval_s: float
    metrics: Mapping[str, MetricSpec] = field(hash=False)
    description: str = ""


@dataclass(frozen=True, slots=True)
class Device:
    """One registered device, with its kind's settings and its own overrides merged."""

    id: str
    kind: str
    district: str
    ward: str
    lat: float
    lon: float
    expected_interval_s: float
    metrics: Mapping[str, MetricSpec] = field(hash=False)
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)


class Registry:
    """Devices by id and kinds by name, read-only.

    Build one with :meth:`load` (a YAML file), :meth:`from_dict` (already parsed data) or the
    constructor (ready-made objects, e.g. in tests).
    """

    __slots__ = ("_devices", "_kinds", "path", "version")

    def __init__(
        self,
        devices: Mapping[str, Device],
        kinds: Mapping[str, Kind],
        *,
        version: int = REGISTRY_VERSION,
        path: Path | None = None,
    ) -> None:
        self._devices: Mapping[str, Device] = MappingProxyType(dict(devices))
        self._kinds: Mapping[str, Kind] = MappingProxyType(dict(kinds))
        self.version = version
        self.path = path

    # -- construction ---------------------------------------------------------------------
    @staticmethod
    def default_path() -> Path:
        """``$IOC_REGISTRY_PATH`` if set and not empty, else ``deploy/devices.yaml``.

        The default is the repository's file, found from this module's location (not from
        the working directory), so every command finds it wherever it runs.
        """
        env = os.environ.get(ENV_PATH, "").strip()
        return Path(env) if env else DEFAULT_PATH

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Registry:
        """Read and validate a registry file; raises :class:`RegistryError` on any problem."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{p}: cannot read the device registry: {exc}") from exc
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise RegistryError(f"{p}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=str(p), path=p)

    @classmethod
    def load_default(cls) -> Registry:
        """:meth:`load` of :meth:`default_path`."""
        return cls.load(cls.default_path())

    @classmethod
    def from_dict(
        cls, data: object, source: str = "<registry>", path: Path | None = None
    ) -> Registry:
        """Validate parsed registry data (the YAML document as Python objects).

        ``source`` prefixes every error message. Raises :class:`RegistryError`.
        """
        top = _mapping(data, source, "the document")
        _no_unknown(top, frozenset({"version", "kinds", "devices"}), source, "the document")
        version = top.get("version")
        if version is None:
            raise RegistryError(f"{source}: no 'version' (this build reads version 1)")
        if type(version) is not int or version != REGISTRY_VERSION:
            raise RegistryError(
                f"{source}: unsupported registry version {version!r}; "
                f"this build reads version {REGISTRY_VERSION}"
            )
        kinds_data = _mapping(top.get("kinds"), source, "'kinds'")
        kinds: dict[str, Kind] = {}
        for name, body in kinds_data.items():
            kinds[str(name)] = _parse_kind(name, body, source)
        devices_data = top.get("devices")
        if not isinstance(devices_data, list):
            raise RegistryError(f"{source}: 'devices' must be a list of device entries")
        devices: dict[str, Device] = {}
        for index, entry in enumerate(devices_data):
            device = _parse_device(index, entry, kinds, source)
            if device.id in devices:
                raise RegistryError(
                    f"{source}: devices[{index}] ({device.id}): duplicate device id"
                )
            devices[device.id] = device
        return cls(devices, kinds, version=version, path=path)

    # -- queries --------------------------------------------------------------------------
    def device(self, device_id: str) -> Device | None:
        """The device with this id, or ``None`` if it is not registered."""
        return self._devices.get(device_id)

    def kind(self, name: str) -> Kind | None:
        """The kind with this name, or ``None`` if it is not declared."""
        return self._kinds.get(name)

    @property
    def devices(self) -> Mapping[str, Device]:
        """Every device by id (read-only)."""
        return self._devices

    @property
    def kinds(self) -> Mapping[str, Kind]:
        """Every kind by name (read-only)."""
        return self._kinds

    def __len__(self) -> int:
        return len(self._devices)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._devices

    def __iter__(self) -> Iterator[Device]:
        return iter(self._devices.values())

    def __repr__(self) -> str:
        return (
            f"Registry(version={self.version}, devices={len(self._devices)}, "
            f"kinds={sorted(self._kinds)}, path={self.path})"
        )


# -- parsing helpers ----------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in out
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _mapping(value: object, source: str, where: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise RegistryError(f"{source}: {where} must be a mapping, got {_type(value)}")
    return value


def _no_unknown(body: Mapping[Any, Any], allowed: frozenset[str], source: str, where: str) -> None:
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise RegistryError(
            f"{source}: {where}: unknown field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _type(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _slug(value: object, pattern: re.Pattern[str], source: str, where: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RegistryError(
            f"{source}: {where}: {what} must match {pattern.pattern}, got {value!r}"
        )
    return value


def _number(value: object, source: str, where: str, what: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise RegistryError(f"{source}: {where}: {what} must be a finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _interval(value: object, source: str, where: str) -> float:
    seconds = _number(value, source, where, "expected_interval_s")
    if seconds <= 0:
        raise RegistryError(f"{source}: {where}: expected_interval_s must be > 0, got {value!r}")
    return seconds


def _parse_metric(
    name: object, body: object, base: MetricSpec | None, source: str, where: str
) -> MetricSpec:
    metric = _slug(name, METRIC_RE, source, where, "a metric name")
    here = f"{where}: metric {metric}"
    spec = _mapping(body, source, here)
    _no_unknown(spec, _METRIC_FIELDS, source, here)
    if "unit" in spec:
        unit = spec["unit"]
        if not isinstance(unit, str) or not unit or len(unit) > 32:
            raise RegistryError(f"{source}: {here}: unit must be a short string, got {unit!r}")
    elif base is not None:
        unit = base.unit
    else:
        raise RegistryError(f"{source}: {here}: no unit")
    low = base.min if base is not None else -math.inf
    high = base.max if base is not None else math.inf
    if spec.get("min") is not None:
        low = _number(spec["min"], source, here, "min")
    if spec.get("max") is not None:
        high = _number(spec["max"], source, here, "max")
    if low > high:
        raise RegistryError(f"{source}: {here}: min {low} is above max {high}")
    aliases: tuple[str, ...] = base.aliases if base is not None else ()
    if "aliases" in spec:
        raw = spec["aliases"]
        if not isinstance(raw, list) or not all(isinstance(a, str) and a for a in raw):
            raise RegistryError(f"{source}: {here}: aliases must be a list of strings")
        aliases = tuple(raw)
    return MetricSpec(unit=unit, min=low, max=high, aliases=aliases)


def _parse_kind(name: object, body: object, source: str) -> Kind:
    kind = _slug(name, SEGMENT_RE, source, "kinds", "a kind name")
    where = f"kinds.{kind}"
    spec = _mapping(body, source, where)
    _no_unknown(spec, _KIND_FIELDS, source, where)
    if "expected_interval_s" not in spec:
        raise RegistryError(f"{source}: {where}: no expected_interval_s")
    interval = _interval(spec["expected_interval_s"], source, where)
    metrics_data = _mapping(spec.get("metrics"), source, f"{where}.metrics")
    if not metrics_data:
        raise RegistryError(f"{source}: {where}: declares no metrics")
    metrics = {
        str(m): _parse_metric(m, body, None, source, where) for m, body in metrics_data.items()
    }
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise RegistryError(f"{source}: {where}: description must be text")
    return Kind(kind, interval, MappingProxyType(metrics), description)


def _parse_device(index: int, entry: object, kinds: Mapping[str, Kind], source: str) -> Device:
    where = f"devices[{index}]"
    body = _mapping(entry, source, where)
    device_id = _slug(body.get("id"), SEGMENT_RE, source, where, "id")
    where = f"devices[{index}] ({device_id})"
    _no_unknown(body, _DEVICE_FIELDS, source, where)
    kind_name = body.get("kind")
    kind = kinds.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise RegistryError(
            f"{source}: {where}: unknown kind {kind_name!r}; known kinds: "
            f"{', '.join(sorted(kinds)) or 'none'}"
        )
    district = _slug(body.get("district"), PLACE_RE, source, where, "district")
    ward = body.get("ward", "")
    if ward != "":
        ward = _slug(ward, PLACE_RE, source, where, "ward")
    name = body.get("name", "")
    if not isinstance(name, str):
        raise RegistryError(f"{source}: {where}: name must be text, got {name!r}")
    location = _mapping(body.get("location"), source, f"{where}: location")
    _no_unknown(location, frozenset({"lat", "lon"}), source, f"{where}: location")
    lat = _number(location.get("lat"), source, where, "location.lat")
    lon = _number(location.get("lon"), source, where, "location.lon")
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise RegistryError(f"{source}: {where}: location ({lat}, {lon}) is not on Earth")
    interval = (
        _interval(body["expected_interval_s"], source, where)
        if "expected_interval_s" in body
        else kind.expected_interval_s
    )
    metrics = dict(kind.metrics)
    if "metrics" in body:
        for metric, spec in _mapping(body["metrics"], source, f"{where}: metrics").items():
            metrics[str(metric)] = _parse_metric(
                metric, spec, kind.metrics.get(str(metric)), source, where
            )
    labels_data = body.get("labels", {})
    labels = _mapping(labels_data, source, f"{where}: labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise RegistryError(f"{source}: {where}: labels must map text to text")
    return Device(
        id=device_id,
        kind=kind.name,
        district=district,
        ward=ward,
        lat=lat,
        lon=lon,
        expected_interval_s=interval,
        metrics=MappingProxyType(metrics),
        name=name,
        labels=MappingProxyType(dict(labels)),
    )
