"""Grouping, timing and de-duplication of notifications: the notifier's pure core.

:class:`Dispatcher` is fed the alert state changes of ``ioc.alerts`` (:meth:`observe`), the
silences (:attr:`silences`) and the notification log (:meth:`restore`), and asked what to send
now (:meth:`due`). It reads no clock: ``now`` is always passed in, so every policy below is
unit-tested with fixed timestamps.

Policies (Alertmanager's, plus escalation):

* **Routing and groups.** An alert's labels (plus ``severity`` and ``state``) are routed
  through the tree (:meth:`Route.match`); on each route it joins the group of its
  ``group_by`` label values. An open alert (firing or no-data) creates its group.
* **What a group says.** Its *firing* alerts are its open alerts that still route to it and
  are not muted (silence, the alert's own silence from ``ioc.alert-actions``, inhibition); its
  *resolved* alerts are those last notified as firing that are no longer (resolved, or routed
  elsewhere). The group's **signature** is the set of ``(fingerprint, alert id, status,
  severity)`` it would send (resolved ones only for receivers with ``send_resolved``).
* **When.** A new group waits ``group_wait`` and then notifies. Afterwards a changed
  signature notifies once ``group_interval`` has passed since the last notification; an
  unchanged one is repeated every ``repeat_interval`` **while one of its firing alerts is
  unacknowledged**. Resolved alerts are dropped from the group once notified; a group with
  nothing firing is dropped. While one of the route's ``mute_time_intervals`` is active
  nothing is sent (the group stays due). A receiver without a rate-limit token is retried at
  the next call (nothing is dropped).
* **Escalation.** On a route with ``escalate: {after, receiver}``, a firing, unmuted alert
  still unacknowledged ``after`` it fired is notified once to the escalation receiver.
* **Same notification or a new one.** Each notification has an **idempotency key**: a hash of
  receiver, route, group, signature and the group's sequence number (escalations: receiver,
  route, alert id). The notification log (:meth:`restore`) records what was delivered, so
  after a restart the same undelivered notification gets the same key (receivers drop
  duplicates by it) and a delivered one is not sent again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson

from connectors.notify.config import NotifyConfig, Route
from connectors.notify.labels import alert_labels
from connectors.notify.limits import TokenBucket, inhibited
from connectors.notify.silences import SilenceSet
from schemas.alerts import AlertState, format_time_us
from schemas.readings import parse_time

GroupKey = tuple[tuple[str, str], ...]
Kind = Literal["notify", "repeat", "escalation"]


@dataclass(frozen=True, slots=True)
class Sent:
    """What was last delivered to a group: signature, time, sequence, alerts by status."""

    signature: str
    at: datetime
    seq: int
    firing: frozenset[str]
    resolved: frozenset[str]


@dataclass(slots=True)
class Group:
    """The alerts of one route and one ``group_by`` value set."""

    route: Route
    key: GroupKey
    created: datetime
    members: set[str] = field(default_factory=set)
    sent: Sent | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one receiver about a group (or, for an escalation, one alert)."""

    receiver: str
    route: str
    group_key: GroupKey
    kind: Kind
    status: Literal["firing", "resolved"]
    firing: tuple[AlertState, ...]
    resolved: tuple[AlertState, ...]
    signature: str
    seq: int
    at: datetime
    idempotency_key: str

    @property
    def group_labels(self) -> dict[str, str]:
        return dict(self.group_key)


def _hash(*parts: object) -> str:
    return hashlib.sha256(orjson.dumps([str(p) for p in parts])).hexdigest()[:32]


class Dispatcher:
    """The notifier's state and decisions (module docstring)."""

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config
        self.alerts: dict[str, AlertState] = {}
        self.groups: dict[tuple[str, GroupKey], Group] = {}
        self.escalated: set[tuple[str, str]] = set()  # (route id, alert id)
        self.silences = SilenceSet()
        self.buckets = {
            name: TokenBucket(r.rate_limit)
            for name, r in config.receivers.items()
            if r.rate_limit is not None
        }
        self.deferred = 0  # notifications held back by a rate limit (counter)

    # --- inputs -------------------------------------------------------------------------------

    def observe(self, state: AlertState, now: datetime) -> None:
        """Take an alert's latest state (older revisions than the one held are ignored)."""
        held = self.alerts.get(state.fingerprint)
        if held is not None and held.revision >= state.revision:
            return
        self.alerts[state.fingerprint] = state
        labels = alert_labels(state)
        for route in self.config.route.match(labels):
            gid = (route.id, route.group_key(labels))
            group = self.groups.get(gid)
            if group is None:
                if not state.is_open:
                    continue
                group = self.groups[gid] = Group(route, gid[1], now)
            group.members.add(state.fingerprint)

    def restore(self, entry: Delivered) -> None:
        """Apply one delivered notification read back from the notification log."""
        route = self._route(entry.route)
        if route is None:
            return
        if entry.kind == "escalation":
            self.escalated.update((route.id, a) for a in entry.alert_ids)
            return
        sent = Sent(entry.signature, entry.at, entry.seq, entry.firing, entry.resolved)
        gid = (route.id, entry.group_key)
        group = self.groups.get(gid)
        if group is None:
            group = self.groups[gid] = Group(route, entry.group_key, entry.at)
        if group.sent is None or group.sent.seq <= sent.seq:
            group.sent = sent
            group.members -= sent.resolved
            group.members |= sent.firing

    def _route(self, route_id: str) -> Route | None:
        stack = [self.config.route]
        while stack:
            r = stack.pop()
            if r.id == route_id:
                return r
            stack.extend(r.routes)
        return None

    # --- decisions ----------------------------------------------------------------------------

    def due(
        self, now: datetime, owns: Callable[[tuple[str, GroupKey]], bool] | None = None
    ) -> list[Notification]:
        """Everything to send at ``now``, marking it sent (the caller delivers it).

        ``owns`` (several notifier instances, ``connectors/notify/ownership.py``): only the
        groups it accepts are decided; the others are left untouched, so their state keeps
        coming from the notification log (:meth:`restore`) until this instance owns them.
        """
        sources = [(fp, alert_labels(s)) for fp, s in self.alerts.items() if s.is_open]
        out: list[Notification] = []
        for gid in sorted(self.groups):
            group = self.groups[gid]
            if owns is None or owns(gid):
                firing, resolved = self._content(group, sources, now)
                out += self._escalations(group, firing, now)
                n = self._flush(group, firing, resolved, now)
                if n is not None:
                    out.append(n)
            open_ = any(self.alerts[fp].is_open for fp in group.members if fp in self.alerts)
            if not open_ and (group.sent is None or not group.sent.firing):
                del self.groups[gid]
        return out

    def _muted(
        self,
        state: AlertState,
        labels: Mapping[str, str],
        sources: Iterable[tuple[str, Mapping[str, str]]],
        now: datetime,
    ) -> bool:
        if state.silenced_at(now) or self.silences.muting(labels, now) is not None:
            return True
        return inhibited(labels, state.fingerprint, sources, self.config.inhibit)

    def _content(
        self, group: Group, sources: list[tuple[str, dict[str, str]]], now: datetime
    ) -> tuple[list[AlertState], list[AlertState]]:
        firing: list[AlertState] = []
        resolved: list[AlertState] = []
        notified = group.sent.firing if group.sent else frozenset()
        for fp in sorted(group.members):
            state = self.alerts.get(fp)
            if state is None:
                continue
            labels = alert_labels(state)
            here = any(
                r.id == group.route.id and r.group_key(labels) == group.key
                for r in self.config.route.match(labels)
            )
            if state.is_open and here:
                if not self._muted(state, labels, sources, now):
                    firing.append(state)
            elif fp in notified:
                resolved.append(state)
        return firing, resolved

    def _flush(
        self, group: Group, firing: list[AlertState], resolved: list[AlertState], now: datetime
    ) -> Notification | None:
        route = group.route
        receiver = self.config.receivers[route.receiver]
        told = resolved if receiver.send_resolved else []
        items = [(s.fingerprint, s.alert_id, "firing", s.severity) for s in firing]
        items += [(s.fingerprint, s.alert_id, "resolved", s.severity) for s in told]
        signature = _hash(*sorted(items, key=str))
        sent = group.sent
        if not firing and not told:
            if sent is not None and resolved:  # resolved, but this receiver is not told
                group.sent = Sent(
                    sent.signature,
                    sent.at,
                    sent.seq,
                    frozenset(),
                    sent.resolved | {s.fingerprint for s in resolved},
                )
                group.members -= {s.fingerprint for s in resolved}
            return None
        kind: Kind = "notify"
        if sent is None:
            if not firing or now < group.created + route.group_wait:
                return None
        elif signature != sent.signature:
            if now < sent.at + route.group_interval:
                return None
        elif firing and any(s.acknowledged_by is None for s in firing):
            if now < sent.at + route.repeat_interval:
                return None
            kind = "repeat"
        else:
            return None
        if self._muted_window(route, now) or not self._take(receiver.name, now):
            return None
        seq = 0 if sent is None else sent.seq + 1
        group.sent = Sent(
            signature,
            now,
            seq,
            frozenset(s.fingerprint for s in firing),
            frozenset(s.fingerprint for s in resolved),
        )
        group.members -= {s.fingerprint for s in resolved}
        key = _hash(receiver.name, route.id, group.key, signature, seq)
        status: Literal["firing", "resolved"] = "firing" if firing else "resolved"
        return Notification(
            receiver.name,
            route.id,
            group.key,
            kind,
            status,
            tuple(firing),
            tuple(told),
            signature,
            seq,
            now,
            key,
        )

    def _escalations(
        self, group: Group, firing: list[AlertState], now: datetime
    ) -> list[Notification]:
        esc = group.route.escalate
        if esc is None:
            return []
        out = []
        for s in firing:
            if s.alert_id is None or s.fired_at is None or s.acknowledged_by is not None:
                continue
            mark = (group.route.id, s.alert_id)
            if mark in self.escalated or now < s.fired_at + esc.after:
                continue
            if self._muted_window(group.route, now) or not self._take(esc.receiver, now):
                continue
            self.escalated.add(mark)
            key = _hash(esc.receiver, group.route.id, s.alert_id, "escalation")
            out.append(
                Notification(
                    esc.receiver,
                    group.route.id,
                    group.key,
                    "escalation",
                    "firing",
                    (s,),
                    (),
                    "",
                    0,
                    now,
                    key,
                )
            )
        return out

    def _muted_window(self, route: Route, now: datetime) -> bool:
        return any(self.config.windows[w].active(now) for w in route.mute_time_intervals)

    def _take(self, receiver: str, now: datetime) -> bool:
        bucket = self.buckets.get(receiver)
        if bucket is None or bucket.take(now):
            return True
        self.deferred += 1
        return False


@dataclass(frozen=True, slots=True)
class Delivered:
    """The notification log's memory of a delivered notification (what :meth:`restore` needs)."""

    route: str
    kind: str
    group_key: GroupKey
    signature: str
    seq: int
    at: datetime
    firing: frozenset[str]
    resolved: frozenset[str]
    alert_ids: tuple[str, ...]

    @classmethod
    def of(cls, n: Notification) -> Delivered:
        return cls(
            n.route,
            n.kind,
            n.group_key,
            n.signature,
            n.seq,
            n.at,
            frozenset(s.fingerprint for s in n.firing),
            frozenset(s.fingerprint for s in n.resolved),
            tuple(s.alert_id or "" for s in (*n.firing, *n.resolved)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "kind": self.kind,
            "group_key": [list(kv) for kv in self.group_key],
            "signature": self.signature,
            "seq": self.seq,
            "at": format_time_us(self.at),
            "firing": sorted(self.firing),
            "resolved": sorted(self.resolved),
            "alert_ids": list(self.alert_ids),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Delivered:
        """Parse :meth:`to_dict`'s output; ``ValueError`` (or ``KeyError``/``TypeError``)."""
        return cls(
            str(obj["route"]),
            str(obj["kind"]),
            tuple((str(k), str(v)) for k, v in obj["group_key"]),
            str(obj["signature"]),
            int(obj["seq"]),
            parse_time(str(obj["at"])),
            frozenset(str(f) for f in obj["firing"]),
            frozenset(str(f) for f in obj["resolved"]),
            tuple(str(a) for a in obj["alert_ids"]),
        )
