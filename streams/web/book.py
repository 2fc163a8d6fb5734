"""The alert book: latest state per alert fingerprint and each alert's history (pure logic).

Fed with :class:`~schemas.alerts.AlertEvent` values from ``ioc.alerts`` in topic order, it keeps

* the latest snapshot per fingerprint (the one with the highest revision),
* the history of every fingerprint (the newest ``history_per_alert`` events), and
* the newest ``recent_events`` events of all alerts (the page's "history" list).

Guarantees:

* Idempotent under at-least-once delivery: events of one fingerprint share a Kafka key, hence a
  partition, hence arrive in revision order; an event whose revision is not above the highest
  one seen for its fingerprint is a redelivery (or an older copy) and is ignored
  (:meth:`AlertBook.apply` returns ``False``). Rebuilding the book by reading the topic from the
  start gives the same book whatever duplicates the topic holds.
* No I/O, no clock: views are plain JSON-ready dicts, ordered newest first by the time of the
  alert's latest change, ties broken by fingerprint (deterministic).
* Memory is bounded per fingerprint; fingerprints themselves are few (rule x subject).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from schemas.alerts import AlertEvent, AlertState, format_time_us

#: The state filter value that selects alerts an operator may act on (firing or no-data).
OPEN: Final = "open"
#: States that carry an alert (``inactive`` fingerprints are never listed).
LISTED_STATES: Final = frozenset({"pending", "firing", "nodata", "resolved"})


def _t(value: Any) -> str | None:
    return None if value is None else format_time_us(value)


def alert_view(state: AlertState, last: AlertEvent) -> dict[str, Any]:
    """What the page shows of one alert: its state plus the latest change."""
    ann = state.annotations
    return {
        "fingerprint": state.fingerprint,
        "rule": state.rule,
        "alert_id": state.alert_id,
        "state": state.state,
        "open": state.is_open,
        "severity": state.severity,
        "value": state.value,
        "labels": dict(state.labels),
        "district": state.labels.get("district", ""),
        "summary_vi": ann.get("summary_vi") or ann.get("summary") or state.rule,
        "summary_en": ann.get("summary_en") or ann.get("summary") or state.rule,
        "description_vi": ann.get("description_vi", ""),
        "description_en": ann.get("description_en", ""),
        "dashboard_url": ann.get("dashboard_url", ""),
        "runbook_url": ann.get("runbook_url", ""),
        "revision": state.revision,
        "fired_at": _t(state.fired_at),
        "resolved_at": _t(state.resolved_at),
        "resolved_by": state.resolved_by,
        "acknowledged_by": state.acknowledged_by,
        "acknowledged_at": _t(state.acknowledged_at),
        "assignee": state.assignee,
        "silenced_until": _t(state.silenced_until),
        "silenced_by": state.silenced_by,
        "changed_at": format_time_us(last.at),
        "last_kind": last.kind,
    }


def event_view(event: AlertEvent) -> dict[str, Any]:
    """One history line: what changed, who did it, when."""
    return {
        "event_id": event.event_id,
        "fingerprint": event.fingerprint,
        "rule": event.rule,
        "alert_id": event.alert_id,
        "revision": event.revision,
        "kind": event.kind,
        "at": format_time_us(event.at),
        "actor": event.actor,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "from_severity": event.from_severity,
        "to_severity": event.to_severity,
        "detail": event.detail,
        "comment": event.comment,
        "district": event.state.labels.get("district", ""),
    }


@dataclass(frozen=True, slots=True)
class Filter:
    """Alert list filter; ``None`` (or ``""``) matches anything.

    ``kind`` is the alert's rule name; ``state`` is a state name or :data:`OPEN`.
    """

    district: str | None = None
    kind: str | None = None
    state: str | None = None

    def matches(self, state: AlertState) -> bool:
        """Whether the alert passes every given criterion."""
        if self.district and state.labels.get("district", "") != self.district:
            return False
        if self.kind and state.rule != self.kind:
            return False
        if self.state == OPEN:
            return state.is_open
        return not self.state or state.state == self.state


class AlertBook:
    """Latest state and history of every alert seen on ``ioc.alerts`` (module docstring)."""

    def __init__(self, *, history_per_alert: int = 200, recent_events: int = 1000) -> None:
        self._latest: dict[str, AlertEvent] = {}
        self._history: dict[str, deque[AlertEvent]] = {}
        self._recent: deque[AlertEvent] = deque(maxlen=recent_events)
        self._per_alert = history_per_alert
        self.applied = 0
        self.duplicates = 0

    def apply(self, event: AlertEvent) -> bool:
        """Record one event; ``False`` (and no change) for a redelivered or older one."""
        latest = self._latest.get(event.fingerprint)
        if latest is not None and event.revision <= latest.revision:
            self.duplicates += 1
            return False
        self._latest[event.fingerprint] = event
        self._history.setdefault(event.fingerprint, deque(maxlen=self._per_alert)).append(event)
        self._recent.append(event)
        self.applied += 1
        return True

    def apply_all(self, events: Iterable[AlertEvent]) -> int:
        """Record many events; returns how many were new."""
        return sum(self.apply(e) for e in events)

    def state(self, fingerprint: str) -> AlertState | None:
        """The latest state of one fingerprint, if any event was seen for it."""
        latest = self._latest.get(fingerprint)
        return None if latest is None else latest.state

    def view(self, fingerprint: str) -> dict[str, Any] | None:
        """The page's view of one alert, if known."""
        latest = self._latest.get(fingerprint)
        return None if latest is None else alert_view(latest.state, latest)

    def alerts(self, flt: Filter = Filter()) -> list[dict[str, Any]]:
        """Listed alerts passing ``flt``, newest change first."""
        chosen = [
            e
            for e in self._latest.values()
            if e.state.state in LISTED_STATES and flt.matches(e.state)
        ]
        chosen.sort(key=lambda e: (e.at, e.fingerprint), reverse=True)
        return [alert_view(e.state, e) for e in chosen]

    def history(self, fingerprint: str) -> list[dict[str, Any]]:
        """The kept history of one fingerprint, newest first (empty if unknown)."""
        return [event_view(e) for e in reversed(self._history.get(fingerprint, ()))]

    def recent(self, limit: int = 100, flt: Filter = Filter()) -> list[dict[str, Any]]:
        """The newest events of all alerts (state filter applies to the state after each)."""
        out: list[dict[str, Any]] = []
        for event in reversed(self._recent):
            if flt.matches(event.state):
                out.append(event_view(event))
                if len(out) >= limit:
                    break
        return out

    def facets(self) -> dict[str, list[str]]:
        """Districts and rules seen, sorted: the choices of the page's filters."""
        states = [e.state for e in self._latest.values() if e.state.state in LISTED_STATES]
        return {
            "districts": sorted({s.labels.get("district", "") for s in states} - {""}),
            "kinds": sorted({s.rule for s in states}),
        }

    def __len__(self) -> int:
        return len(self._latest)
