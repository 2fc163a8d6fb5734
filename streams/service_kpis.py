"""City-service KPIs from ``ioc.events`` (pure: no Faust, Kafka or clock).

Three kinds of *items* pass through city systems: public-service applications (hồ sơ),
citizen-feedback tickets (phản ánh) and electronic documents (văn bản). Each event of an item
is turned into a :class:`Fact` (:func:`fact_of`); an :class:`Item` is the fold of its facts, in
the order they were applied. Every event type repeats the times it needs, so an item seen
only through its last event (e.g. ``application.resolved`` with ``submitted_at`` and
``due_at``) is complete.

Item times (all event time, epoch ms):

* ``opened``: ``submitted_at`` / ``created_at`` / ``received_at``;
* ``handled``: ``resolved_at`` (not for ``withdrawn`` applications) / ``responded_at`` /
  ``processed_at`` — the handling that on-time rate and response time judge;
* ``done``: when it left the backlog — ``resolved_at`` / the first of ``responded_at`` and
  ``closed_at`` (a duplicate report is closed without a response) / ``processed_at``;
* ``due``: ``due_at`` (the last one given: a feedback assignment may re-set it; documents
  may have none).

An item counts for the (agency, district) of its last applied fact: a ticket created at the
IOC (``agency`` of ``feedback.created``, else :data:`UNASSIGNED`) moves to the agency it is
assigned to, with its history.

KPIs of one (agency, district) and kind at a minute boundary ``T`` (:func:`snapshot`), over
each horizon ``h`` of :data:`HORIZONS` (24 h, 30 d), windows ``[T - h, T)``:

* ``received``: items opened in the window; ``handled``: items handled in the window, split
  into ``early`` (handled before the local calendar day of ``due``), ``on_time`` (on the due
  day, not after ``due``), ``late`` (after ``due``) and ``no_due``;
* ``on_time_rate`` = (early + on time) ÷ handled items with a due date — DOMAIN.md's "handled
  early or on time ÷ all in scope", the scope being the items handled in the window (as the
  ``service_applications_daily`` view and the services dashboard compute it; open overdue
  items are reported by ``overdue`` instead); absent while that scope is empty;
* ``response`` p50 and p90 of ``handled - opened`` in hours over the handled items, by linear
  interpolation between closest ranks (NumPy's default, ClickHouse ``quantileExactInclusive``);
  absent while no item was handled;
* at ``T`` itself: ``backlog`` = items with ``opened < T <= done`` (or not done), ``overdue`` =
  backlog items with ``due < T``.

A handling at exactly ``due`` is on time; an item handled at ``t`` counts in windows ending
after ``t``. The local day of ``due`` is taken in the configured time zone (Asia/Ho_Chi_Minh).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from schemas import events as ev
from schemas.readings import parse_time
from streams.window_specs import DAY_MS, HOUR_MS
from streams.windows import MINUTE_MS, from_ms, to_ms

APPLICATION: Final = "application"
FEEDBACK: Final = "feedback"
DOCUMENT: Final = "document"
KINDS: Final = (APPLICATION, FEEDBACK, DOCUMENT)
UNASSIGNED: Final = "unassigned"
HORIZONS: Final = (("24h", DAY_MS), ("30d", 30 * DAY_MS))
HANDLED_NAME: Final = {APPLICATION: "resolved", FEEDBACK: "responded", DOCUMENT: "processed"}

KIND_OF_TYPE: Final = {
    ev.APPLICATION_SUBMITTED: APPLICATION,
    ev.APPLICATION_RESOLVED: APPLICATION,
    ev.FEEDBACK_CREATED: FEEDBACK,
    ev.FEEDBACK_ASSIGNED: FEEDBACK,
    ev.FEEDBACK_RESPONDED: FEEDBACK,
    ev.FEEDBACK_CLOSED: FEEDBACK,
    ev.DOCUMENT_RECEIVED: DOCUMENT,
    ev.DOCUMENT_PROCESSED: DOCUMENT,
}
"""The event types that feed service KPIs (others on ``ioc.events`` are ignored)."""

# per type: (field of opened, field of handled or None, field of done or None)
_TIMES: Final = {
    ev.APPLICATION_SUBMITTED: ("submitted_at", None, None),
    ev.APPLICATION_RESOLVED: ("submitted_at", "resolved_at", "resolved_at"),
    ev.FEEDBACK_CREATED: ("created_at", None, None),
    ev.FEEDBACK_ASSIGNED: ("created_at", None, None),
    ev.FEEDBACK_RESPONDED: ("created_at", "responded_at", "responded_at"),
    ev.FEEDBACK_CLOSED: ("created_at", "responded_at", "closed_at"),
    ev.DOCUMENT_RECEIVED: ("received_at", None, None),
    ev.DOCUMENT_PROCESSED: ("received_at", "processed_at", "processed_at"),
}


class FactError(ValueError):
    """An event lacks what a service KPI needs (a required field or a readable time)."""


@dataclass(frozen=True, slots=True)
class Fact:
    """What one event says about its item; ``offset`` is the input offset it came from."""

    offset: int
    event_id: str  # "<source> <id>": unique per event (CloudEvents), for de-duplication
    agency: str
    district: str
    opened: int
    due: int | None
    handled: int | None
    done: int | None

    def to_list(self) -> list[Any]:
        return [self.offset, self.event_id, self.agency, self.district, self.opened,
                self.due, self.handled, self.done]  # fmt: skip

    @classmethod
    def from_list(cls, obj: Sequence[Any]) -> Fact:
        offset, event_id, agency, district, opened, due, handled, done = obj
        return cls(int(offset), str(event_id), str(agency), str(district), int(opened),
                   _opt(due), _opt(handled), _opt(done))  # fmt: skip


def _opt(value: Any) -> int | None:
    return None if value is None else int(value)


def _time(data: Mapping[str, Any], name: str | None) -> int | None:
    if name is None:
        return None
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FactError(f"{name} must be a time string")
    try:
        return to_ms(parse_time(value))
    except ValueError as exc:
        raise FactError(f"{name}: {exc}") from exc


def item_key(event: ev.Event) -> tuple[str, str]:
    """``(kind, subject)`` of the item an event belongs to; raises ``FactError`` for a type
    that is not a service event."""
    kind = KIND_OF_TYPE.get(event.type)
    if kind is None:
        raise FactError(f"not a service event type: {event.type!r}")
    return kind, event.subject


def fact_of(event: ev.Event, offset: int) -> Fact:
    """The fact of one service event (read at input ``offset``); raises ``FactError``."""
    opened_f, handled_f, done_f = _TIMES.get(event.type, (None, None, None))
    if opened_f is None:
        raise FactError(f"not a service event type: {event.type!r}")
    data = event.data
    opened = _time(data, opened_f)
    if opened is None:
        raise FactError(f"{event.type} without {opened_f}")
    handled = _time(data, handled_f)
    done = _time(data, done_f)
    if event.type == ev.APPLICATION_RESOLVED and data.get("outcome") == "withdrawn":
        handled = None  # withdrawn by the applicant: leaves the backlog, never judged
    if event.type == ev.FEEDBACK_CLOSED and handled is not None and done is not None:
        done = min(done, handled)
    agency = event.agency
    if not agency:
        if KIND_OF_TYPE[event.type] != FEEDBACK:
            raise FactError(f"{event.type} without agency")
        agency = UNASSIGNED
    if not event.district:
        raise FactError(f"{event.type} without district")
    return Fact(
        offset=offset,
        event_id=f"{event.source} {event.id}",
        agency=agency,
        district=event.district,
        opened=opened,
        due=_time(data, "due_at"),
        handled=handled,
        done=done,
    )


class Item:
    """One application, ticket or document: the fold of its facts (see module docstring)."""

    __slots__ = ("_judged", "agency", "district", "done", "due", "facts", "handled", "kind",
                 "opened", "subject")  # fmt: skip

    def __init__(self, kind: str, subject: str) -> None:
        self.kind = kind
        self.subject = subject
        self.facts: list[Fact] = []
        self.agency = ""
        self.district = ""
        self.opened = 0
        self.due: int | None = None
        self.handled: int | None = None
        self.done: int | None = None
        self._judged: tuple[ZoneInfo, int, float] | None = None

    def judged(self, tz: ZoneInfo) -> tuple[int, float]:
        """A handled item's class (0 early, 1 on time, 2 late, 3 no due date) and response
        time in hours; cached until the item changes. Only for handled items."""
        cached = self._judged
        if cached is not None and cached[0] is tz:
            return cached[1], cached[2]
        handled, due = self.handled, self.due
        assert handled is not None
        if due is None:
            cls = 3
        elif handled > due:
            cls = 2
        else:
            cls = 0 if handled < local_day_start(due, tz) else 1
        hours = (handled - self.opened) / HOUR_MS
        self._judged = (tz, cls, hours)
        return cls, hours

    def has(self, event_id: str) -> bool:
        return any(f.event_id == event_id for f in self.facts)

    def add(self, fact: Fact) -> None:
        """Fold one more fact in: agency, district and a given due date from the last fact;
        the earliest opened, handled and done times."""
        first = not self.facts
        self._judged = None
        self.facts.append(fact)
        self.agency, self.district = fact.agency, fact.district
        self.opened = fact.opened if first else min(self.opened, fact.opened)
        if fact.due is not None:
            self.due = fact.due
        if fact.handled is not None:
            self.handled = fact.handled if self.handled is None else min(self.handled, fact.handled)
        if fact.done is not None:
            self.done = fact.done if self.done is None else min(self.done, fact.done)

    @classmethod
    def of(cls, kind: str, subject: str, facts: Iterable[Fact]) -> Item:
        item = cls(kind, subject)
        for fact in facts:
            item.add(fact)
        return item

    def change_points(self) -> list[int]:
        """Every time after which a snapshot of the item's KPIs may differ."""
        points = [self.opened]
        points += [self.opened + h for _, h in HORIZONS]
        if self.handled is not None:
            points.append(self.handled)
            points += [self.handled + h for _, h in HORIZONS]
        if self.done is not None:
            points.append(self.done)
        if self.due is not None:
            points.append(self.due)
        return points

    def horizon(self) -> int | None:
        """The last time the item can matter to a snapshot; ``None`` while it is open."""
        if self.done is None:
            return None
        return max(self.change_points())


def minute_after(ms: int) -> int:
    """The first minute boundary strictly after ``ms``: the first ``T`` whose ``[.., T)``
    windows hold an instant ``ms``."""
    return ms - ms % MINUTE_MS + MINUTE_MS


def local_day_start(ms: int, tz: ZoneInfo) -> int:
    """Start (epoch ms) of the local calendar day holding ``ms`` in ``tz``."""
    local = from_ms(ms).astimezone(tz)
    return to_ms(datetime(local.year, local.month, local.day, tzinfo=tz))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values by linear interpolation between closest
    ranks; ``sorted_values`` must not be empty."""
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


KpiValue = tuple[float, dict[str, float]]
"""One KPI's value and components."""


def snapshot(items: Iterable[Item], kind: str, at_ms: int, tz: ZoneInfo) -> dict[str, KpiValue]:
    """The KPIs of ``items`` (one kind, one agency and district) at minute boundary ``at_ms``,
    by indicator name (``<kind>_<kpi>[_<horizon>]``); rates and response times are absent
    when their scope is empty. See the module docstring for the definitions."""
    handled_name = HANDLED_NAME[kind]
    backlog = overdue = 0
    received = [0] * len(HORIZONS)
    classes = [[0, 0, 0, 0] for _ in HORIZONS]  # early, on time, late, no due
    hours: list[list[float]] = [[] for _ in HORIZONS]
    starts = [(i, at_ms - h) for i, (_, h) in enumerate(HORIZONS)]
    for item in items:
        opened, handled, done = item.opened, item.handled, item.done
        if opened < at_ms and (done is None or done >= at_ms):
            backlog += 1
            due = item.due
            if due is not None and due < at_ms:
                overdue += 1
        for i, start in starts:
            if start <= opened < at_ms:
                received[i] += 1
            if handled is not None and start <= handled < at_ms:
                cls, response = item.judged(tz)
                classes[i][cls] += 1
                hours[i].append(response)
    out: dict[str, KpiValue] = {
        f"{kind}_backlog": (float(backlog), {"overdue": float(overdue)}),
        f"{kind}_overdue": (float(overdue), {}),
    }
    for i, (label, _) in enumerate(HORIZONS):
        early, on_time, late, no_due = classes[i]
        handled_n = early + on_time + late + no_due
        out[f"{kind}_received_{label}"] = (float(received[i]), {})
        out[f"{kind}_{handled_name}_{label}"] = (
            float(handled_n),
            {"early": float(early), "on_time": float(on_time), "late": float(late),
             "no_due": float(no_due)},
        )  # fmt: skip
        scope = early + on_time + late
        if scope:
            out[f"{kind}_on_time_rate_{label}"] = (
                (early + on_time) / scope,
                {"in_scope": float(scope), "on_time": float(early + on_time),
                 "early": float(early), "late": float(late)},
            )  # fmt: skip
        if hours[i]:
            values = sorted(hours[i])
            p50, p90 = percentile(values, 0.5), percentile(values, 0.9)
            out[f"{kind}_response_hours_{label}"] = (
                p50,
                {"p50": p50, "p90": p90, "count": float(len(values))},
            )
    return out


def window_of(name: str, at_ms: int) -> tuple[int, int]:
    """``(start, end)`` ms of the window an indicator ``name`` reports at ``at_ms``: its
    horizon for rolling KPIs, the last minute for the instantaneous backlog and overdue."""
    for label, h in HORIZONS:
        if name.endswith(f"_{label}"):
            return at_ms - h, at_ms
    return at_ms - MINUTE_MS, at_ms


def indicator_names() -> list[str]:
    """Every indicator name :func:`snapshot` can produce."""
    names = []
    for kind in KINDS:
        names += [f"{kind}_backlog", f"{kind}_overdue"]
        for label, _ in HORIZONS:
            names += [f"{kind}_{x}_{label}" for x in ("received", HANDLED_NAME[kind],
                                                     "on_time_rate", "response_hours")]  # fmt: skip
    return names
