"""Alert inputs: what the alerter's first stage turns its input topics into (pure, no I/O).

The alerter re-keys everything it consumes by **alert fingerprint** onto one internal topic
(``<app id>-alert-inputs``), so that every input of one alert — observations from any device,
operator actions, clock ticks — is read by one task, in one total order (see
``streams/alerting/__init__.py`` for why). Three kinds of internal message (JSON, schema
``ioc.alert-input/v1``):

* ``obs`` — the observations of one input message for one rule and one fingerprint, with
  ``now``, the forwarder's clock when it forwarded them. Key: the fingerprint.
* ``pack`` — ``obs`` items whose fingerprints fall in one internal partition (Kafka's default
  partitioner on the fingerprint, :func:`partition_of`), in input order, each (rule,
  fingerprint) at most once, sent to that partition explicitly. What the forwarders send:
  the observations of a short linger go as one internal message per partition
  (:mod:`streams.alerting.packing`) instead of one per alert, so a reading batch of 500
  devices costs a handful of Kafka records, not 500.
* ``action`` — one operator action from ``ioc.alert-actions``, unchanged. Key: the fingerprint.
* ``tick`` — the passage of time to ``now`` for every alert of one partition. Key:
  :data:`TICK_KEY`, sent to an explicit partition.

Putting ``now`` into the message is what makes the second stage deterministic: replaying the
internal topic after a crash recomputes exactly the same states and events.

Observations are built from:

* readings (``ioc.readings/v1`` batches): metric = the reading's metric; labels ``device_id``,
  ``device_kind``, ``district``, ``ward`` plus the registry's device labels (``station``,
  ``river``...); ``expected_interval`` from the registry; event time = the reading's.
* 1-minute statistics (``ioc.indicators/v1``): metric ``<metric>_mean_1m``, value the mean,
  same labels, event time = window end.
* city-system events (``ioc.events``, :data:`SLA_EVENTS`): an application submitted or a
  citizen report created/assigned is outstanding (value 1, deadline ``due_at``) until it is
  resolved/responded/closed (value 0): metrics ``application_processing`` (labels
  ``application_id``, ``agency``, ``service``, ``district``, ``ward``) and
  ``feedback_response`` (``ticket_id``, ``agency``, ``category``, ``district``, ``ward``).
* derived indicators (``ioc.indicator-values/v1``): metric from :data:`INDICATOR_METRICS`
  (``vn_aqi_1h`` of a device is ``vn_aqi_hourly``; of a district ``vn_aqi_hourly_district``),
  otherwise ``<indicator>`` for a device subject and ``<indicator>_<subject kind>`` for others;
  labels: the record's labels, ``district``, the subject (``device_id``/``ward``/``agency``),
  ``level``; event time = window end.

Batching: per input message, observations are grouped per ``(rule, fingerprint)`` into one
internal message, in input order. For absence rules only the latest observation of the group
is kept (an absence rule only needs the last time a subject was seen).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from connectors.kafka.partitioning import partition_for
from connectors.registry import Registry
from schemas.alerts import AlertAction, decode_action, encode_action, format_time_us
from schemas.events import Event
from schemas.indicator_values import SCHEMA as VALUES_SCHEMA
from schemas.indicator_values import IndicatorValue, decode_value
from schemas.indicators import SCHEMA as INDICATORS_SCHEMA
from schemas.indicators import WindowResult, decode_indicator
from schemas.readings import parse_time
from streams.alerts.model import Observation
from streams.alerts.rules import RuleSet

SCHEMA: Final = "ioc.alert-input/v1"
TICK_KEY: Final = b"\x00tick"

#: Metric names of derived indicators, by (indicator, subject kind), where the rules use others.
INDICATOR_METRICS: Final[Mapping[tuple[str, str], str]] = {
    ("vn_aqi_1h", "device"): "vn_aqi_hourly",
    ("vn_aqi_1h", "district"): "vn_aqi_hourly_district",
}
#: City-system event type -> (SLA metric, id label, outstanding after this event).
SLA_EVENTS: Final[Mapping[str, tuple[str, str, bool]]] = {
    "vn.longxuyen.application.submitted": ("application_processing", "application_id", True),
    "vn.longxuyen.application.resolved": ("application_processing", "application_id", False),
    "vn.longxuyen.feedback.created": ("feedback_response", "ticket_id", True),
    "vn.longxuyen.feedback.assigned": ("feedback_response", "ticket_id", True),
    "vn.longxuyen.feedback.responded": ("feedback_response", "ticket_id", False),
    "vn.longxuyen.feedback.closed": ("feedback_response", "ticket_id", False),
}
_SUBJECT_LABEL: Final = {"device": "device_id", "ward": "ward", "agency": "agency"}


class AlertInputError(ValueError):
    """An internal alert-input message or an input record that cannot be used."""


@dataclass(frozen=True, slots=True)
class ObsInput:
    """Observations of one fingerprint for one rule, forwarded at ``now``."""

    fingerprint: str
    rule: str
    observations: tuple[Observation, ...]
    now: datetime


@dataclass(frozen=True, slots=True)
class ActionInput:
    """An operator action, forwarded unchanged."""

    action: AlertAction


@dataclass(frozen=True, slots=True)
class TickInput:
    """Time has reached ``now`` (the forwarder's clock) for one partition."""

    now: datetime


@dataclass(frozen=True, slots=True)
class PackInput:
    """The ``obs`` items of one input message for one internal partition, in input order;
    each (rule, fingerprint) at most once (what :func:`group_observations` gives)."""

    items: tuple[ObsInput, ...]


AlertInput = ObsInput | ActionInput | TickInput | PackInput


# --- encoding -------------------------------------------------------------------------------


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)


def _us(value: datetime) -> int:
    """Exact epoch microseconds of an aware datetime (internal messages carry times so:
    cheaper than ISO text both ways, and exact)."""
    return (value - _EPOCH) // _US


def _from_us(value: object) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"time must be integer epoch microseconds, got {value!r}")
    return _EPOCH + timedelta(microseconds=value)


def _obs_item(item: ObsInput) -> dict[str, Any]:
    """An ``obs`` item: labels and metric once (those of the first observation); each
    observation as ``[value, t_us, interval_s, deadline_us, labels, metric]``, the last two
    ``null`` when they are the item's."""
    first = item.observations[0] if item.observations else None
    labels = dict(first.labels) if first is not None else {}
    metric = first.metric if first is not None else ""
    rows = [
        [
            o.value,
            _us(o.event_time),
            None if o.expected_interval is None else o.expected_interval.total_seconds(),
            None if o.deadline is None else _us(o.deadline),
            None if o.labels == labels else dict(o.labels),
            None if o.metric == metric else o.metric,
        ]
        for o in item.observations
    ]
    return {
        "fingerprint": item.fingerprint,
        "rule": item.rule,
        "now_us": _us(item.now),
        "labels": labels,
        "metric": metric,
        "o": rows,
    }


def encode_input(item: AlertInput) -> bytes:
    """One internal message value."""
    if isinstance(item, ObsInput):
        return orjson.dumps({"schema": SCHEMA, "kind": "obs", **_obs_item(item)})
    if isinstance(item, PackInput):
        return orjson.dumps(
            {"schema": SCHEMA, "kind": "pack", "items": [_obs_item(i) for i in item.items]}
        )
    if isinstance(item, ActionInput):
        action = orjson.loads(encode_action(item.action))
        return orjson.dumps({"schema": SCHEMA, "kind": "action", "action": action})
    return orjson.dumps({"schema": SCHEMA, "kind": "tick", "now": format_time_us(item.now)})


def decode_input(data: bytes) -> AlertInput:
    """Parse an internal message; :class:`AlertInputError` if it is not a valid one."""
    try:
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} message")
        kind = obj.get("kind")
        if kind == "tick":
            return TickInput(parse_time(obj["now"]))
        if kind == "action":
            return ActionInput(decode_action(orjson.dumps(obj["action"])))
        if kind == "pack":
            return PackInput(tuple(_decode_obs(i) for i in obj["items"]))
        if kind != "obs":
            raise ValueError(f"unknown kind {kind!r}")
        return _decode_obs(obj)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AlertInputError(f"invalid alert input: {exc}") from None


def _labels(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()}


# the checks of Observation's constructor, made while decoding (Observation.trusted)
def _metric(raw: object) -> str:
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"metric must be a non-empty string, got {raw!r}")
    return raw


def _finite(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError(f"value must be a finite number, got {raw!r}")
    return float(raw)


def _interval(raw: object) -> timedelta:
    seconds = _finite(raw)
    if seconds <= 0:
        raise ValueError("expected_interval must be positive")
    return timedelta(seconds=seconds)


def _decode_obs(obj: Mapping[str, Any]) -> ObsInput:
    if "o" not in obj:  # written before compact items (an upgrade with a backlog)
        observations = tuple(
            Observation(
                labels=_labels(labels),
                metric=str(metric),
                value=float(value),
                event_time=parse_time(t),
                expected_interval=None if ei is None else timedelta(seconds=float(ei)),
                deadline=None if dl is None else parse_time(dl),
            )
            for labels, metric, value, t, ei, dl in obj["obs"]
        )
        now = parse_time(obj["now"])
    else:
        base_labels, base_metric = _labels(obj["labels"]), _metric(obj["metric"])
        observations = tuple(
            Observation.trusted(
                base_labels if labels is None else _labels(labels),
                base_metric if metric is None else _metric(metric),
                _finite(value),
                _from_us(t),
                None if ei is None else _interval(ei),
                None if dl is None else _from_us(dl),
            )
            for value, t, ei, dl, labels, metric in obj["o"]
        )
        now = _from_us(obj["now_us"])
    return ObsInput(str(obj["fingerprint"]), str(obj["rule"]), observations, now)


def partition_of(fingerprint: str, partitions: int) -> int:
    """The internal partition of an alert: Kafka's default partitioner on the fingerprint, as
    the producer picks it for a message keyed by the fingerprint (actions are sent so)."""
    return partition_for(fingerprint, partitions)


# --- building observations -------------------------------------------------------------------


class ObservationBuilder:
    """Turns input records into observations, enriched from the device registry."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry

    def _device(self, device_id: str, labels: dict[str, str]) -> timedelta | None:
        device = self.registry.device(device_id) if self.registry is not None else None
        if device is None:
            return None
        for name, value in device.labels.items():
            labels.setdefault(name, value)
        for name, value in (
            ("device_kind", device.kind),
            ("district", device.district),
            ("ward", device.ward),
        ):
            if not labels.get(name):
                labels[name] = value
        return timedelta(seconds=device.expected_interval_s)

    def from_reading(self, obj: Mapping[str, Any]) -> Observation | None:
        """The observation of one raw reading object; ``None`` if it is unusable."""
        try:
            device_id = obj["device_id"]
            labels = {
                "device_id": str(device_id),
                "device_kind": str(obj.get("device_kind", "")),
                "district": str(obj.get("district", "")),
                "ward": str(obj.get("ward", "")),
            }
            interval = self._device(str(device_id), labels)
            return Observation(
                labels, str(obj["metric"]), obj["value"], parse_time(obj["event_time"]), interval
            )
        except (KeyError, TypeError, ValueError):
            return None

    def from_window(self, w: WindowResult) -> Observation:
        """The observation of a closed 1-minute statistics window (the mean)."""
        labels = {
            "device_id": w.device_id,
            "device_kind": w.device_kind,
            "district": w.district,
            "ward": w.ward,
        }
        interval = self._device(w.device_id, labels)
        return Observation(labels, f"{w.metric}_mean_1m", w.mean, w.window_end, interval)

    def from_value(self, v: IndicatorValue) -> Observation:
        """The observation of a derived indicator."""
        labels = {str(k): str(x) for k, x in v.labels.items()}
        if v.district:
            labels["district"] = v.district
        subject_label = _SUBJECT_LABEL.get(v.subject_kind)
        if subject_label:
            labels[subject_label] = v.subject_id
        if v.level:
            labels["level"] = v.level
        interval = self._device(v.subject_id, labels) if v.subject_kind == "device" else None
        metric = INDICATOR_METRICS.get((v.indicator, v.subject_kind))
        if metric is None:
            metric = (
                v.indicator if v.subject_kind == "device" else (f"{v.indicator}_{v.subject_kind}")
            )
        return Observation(labels, metric, v.value, v.window_end, interval)

    def from_event(self, event: Event) -> Observation | None:
        """The SLA observation of a city-system event (:data:`SLA_EVENTS`), else ``None``.

        Value 1 while the application/ticket awaits its result/response, 0 once done; the
        deadline is the data's ``due_at``; event time = the event's ``time``.
        """
        kind = SLA_EVENTS.get(event.type)
        if kind is None:
            return None
        metric, id_field, outstanding = kind
        data = event.data
        labels = {
            id_field: event.subject,
            "agency": event.agency,
            "district": event.district,
            "ward": event.ward,
        }
        if metric == "application_processing":
            labels["service"] = str(data.get("procedure_name") or data.get("procedure_code", ""))
        else:
            labels["category"] = str(data.get("category", ""))
        labels = {k: v for k, v in labels.items() if v}
        return Observation(
            labels,
            metric,
            1.0 if outstanding else 0.0,
            event.time,
            deadline=event.data_time("due_at"),
        )

    def from_indicator_message(self, data: bytes) -> Observation:
        """An ``ioc.indicators`` message (either schema); ``ValueError`` if neither."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise AlertInputError(f"not JSON: {exc}") from None
        schema = obj.get("schema") if isinstance(obj, dict) else None
        if schema == VALUES_SCHEMA:
            return self.from_value(decode_value(data))
        if schema == INDICATORS_SCHEMA:
            return self.from_window(decode_indicator(data))
        raise AlertInputError(f"not an indicator record (schema {schema!r})")


def group_observations(
    rules: RuleSet, observations: Iterable[Observation], now: datetime
) -> list[ObsInput]:
    """One :class:`ObsInput` per (rule, fingerprint), in first-seen order (module docstring)."""
    groups: dict[tuple[str, str], list[Observation]] = {}
    for obs in observations:
        for rule in rules.rules:
            fp = rule.fingerprint_of(obs)  # None unless the rule selects the observation
            if fp is None:
                continue
            items = groups.setdefault((rule.name, fp), [])
            if rule.kind == "absence" and items:
                if obs.event_time >= items[-1].event_time:
                    items[-1] = obs
            else:
                items.append(obs)
    return [ObsInput(fp, name, tuple(items), now) for (name, fp), items in groups.items()]


def reading_observations(
    builder: ObservationBuilder, objs: Sequence[Any], metrics: frozenset[str] | None = None
) -> list[Observation]:
    """The usable observations of a batch's raw reading objects (bad ones are skipped:
    the stream worker dead-letters them); with ``metrics``, only of those metrics (the ones
    some rule wants: :meth:`RuleSet.metrics`)."""
    out: list[Observation] = []
    for obj in objs:
        if isinstance(obj, dict) and (metrics is None or obj.get("metric") in metrics):
            obs = builder.from_reading(obj)
            if obs is not None:
                out.append(obs)
    return out
