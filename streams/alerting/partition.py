"""Replay-safe alert states of one partition of the internal alert-input topic (pure).

The alerter's second stage feeds every message of an internal partition, in offset order, to
:meth:`AlertPartition.apply`. States are persisted as one record per fingerprint (key: the
fingerprint, UTF-8) holding the :class:`~schemas.alerts.AlertState` *and* ``o``, the offset of
the last input applied to it, so a restored record is a consistent snapshot.

Replay rules (the no-duplicate argument in ``streams/alerting/__init__.py`` relies on them):

* an input at an offset ``<=`` a fingerprint's ``o`` is not applied to it again;
* everything else is a pure function of the stored state and the message (its ``now`` is in
  the message), so re-applying an input gives the same states and the same events, with the
  same ``(fingerprint, revision)``.

Which records must be written after an input is in :attr:`Outcome.dirty`. A tick changes only
the ``value`` of clock rules (seconds silent or overdue) when nothing happens; such a change is
not written (the value is recomputed on every tick and nothing else depends on it), so a quiet
tick writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

import orjson

from schemas.alerts import AlertEvent, AlertFormatError, AlertState, state_from_dict, state_to_dict
from streams.alerting.inputs import ActionInput, AlertInput, ObsInput, PackInput, TickInput
from streams.alerts.actions import ActionRejected, apply_action
from streams.alerts.machine import observe_all, tick
from streams.alerts.rules import Rule, RuleSet

RECORD_VERSION: Final = 1


class StateRecordError(ValueError):
    """A stored alert state record cannot be read (corrupt, or an unknown version)."""


@dataclass(slots=True)
class Stored:
    """A fingerprint's state and the offset of the last input applied to it."""

    state: AlertState
    offset: int


@dataclass(slots=True)
class Outcome:
    """What one input did: events to publish (in order), records to write, problems."""

    offset: int
    events: list[AlertEvent] = field(default_factory=list)
    dirty: list[str] = field(default_factory=list)
    rejected: str = ""  # why an action or observation was not applied ("" if it was)
    replayed: bool = False  # (some of) the input had been applied before: skipped

    def reject(self, reason: str) -> None:
        """Record why (part of) the input was not applied."""
        self.rejected = f"{self.rejected}; {reason}" if self.rejected else reason


def _rules_by_name(rules: RuleSet) -> dict[str, Rule]:
    return {r.name: r for r in rules.rules}


class AlertPartition:
    """The alert states of one internal partition."""

    def __init__(self, partition: int, rules: RuleSet) -> None:
        self.partition = partition
        self.rules = _rules_by_name(rules)
        self.states: dict[str, Stored] = {}
        self.last_tick: datetime | None = None

    def apply(self, offset: int, item: AlertInput) -> Outcome:
        """Apply the input at ``offset``; never raises for bad inputs (see ``rejected``)."""
        out = Outcome(offset)
        if isinstance(item, ObsInput):
            self._observe(out, item)
        elif isinstance(item, PackInput):
            for one in item.items:  # distinct fingerprints: each is skipped or applied alone
                self._observe(out, one)
        elif isinstance(item, ActionInput):
            self._action(out, item)
        else:
            self._tick(out, item)
        return out

    def _store(self, out: Outcome, fp: str, before: Stored | None, after: AlertState) -> None:
        if before is None or after != before.state:
            self.states[fp] = Stored(after, out.offset)
            out.dirty.append(fp)

    def _observe(self, out: Outcome, item: ObsInput) -> None:
        stored = self.states.get(item.fingerprint)
        if stored is not None and stored.offset >= out.offset:
            out.replayed = True
            return
        rule = self.rules.get(item.rule)
        if rule is None:
            out.reject(f"rule {item.rule!r} is not loaded")
            return
        state = None if stored is None else stored.state
        # the forwarder grouped the observations by this fingerprint: the first one is checked,
        # the others only if their metric or labels differ from it (composite and district
        # rules), so a foreign or corrupt message is caught without a hash per observation
        first = item.observations[0] if item.observations else None
        if first is None or rule.fingerprint_of(first) != item.fingerprint:
            out.reject(f"rule {rule.name!r} does not give fingerprint {item.fingerprint}")
            return
        usable = []
        for obs in item.observations:
            same = obs.metric == first.metric and obs.labels == first.labels
            if not same and rule.fingerprint_of(obs) != item.fingerprint:
                out.reject(f"rule {rule.name!r} does not select {obs.metric} {obs.labels}")
                continue
            usable.append(obs)
        state, events = observe_all(state, rule, usable, item.fingerprint, item.now)
        out.events += events
        if state is not None:
            self._store(out, item.fingerprint, stored, state)

    def _action(self, out: Outcome, item: ActionInput) -> None:
        action = item.action
        stored = self.states.get(action.fingerprint)
        if stored is None:
            out.reject(f"{action.action}: no alert with fingerprint {action.fingerprint}")
            return
        if stored.offset >= out.offset:
            out.replayed = True
            return
        try:
            state, events = apply_action(stored.state, action)
        except ActionRejected as exc:
            out.reject(str(exc))
            return
        out.events += events
        self._store(out, action.fingerprint, stored, state)

    def _tick(self, out: Outcome, item: TickInput) -> None:
        if self.last_tick is not None and item.now <= self.last_tick:
            out.replayed = True  # an older or duplicate tick (two forwarders): nothing to do
            return
        self.last_tick = item.now
        for fp in sorted(self.states):
            stored = self.states[fp]
            rule = self.rules.get(stored.state.rule)
            if rule is None or stored.offset >= out.offset:
                continue
            state, events = tick(stored.state, rule, item.now)
            if events:
                out.events += events
                self._store(out, fp, stored, state)
            elif replace(state, value=stored.state.value) != stored.state:
                self._store(out, fp, stored, state)
            else:
                stored.state = state  # only the clock value moved: keep it, do not write it

    # --- persistence ---------------------------------------------------------------------------

    def record(self, fp: str) -> bytes:
        """The stored record of a fingerprint."""
        stored = self.states[fp]
        return orjson.dumps(
            {
                "v": RECORD_VERSION,
                "p": self.partition,
                "o": stored.offset,
                "state": state_to_dict(stored.state),
            }
        )

    @classmethod
    def restore(
        cls, records: Iterable[tuple[bytes, bytes]], rules: RuleSet
    ) -> dict[int, AlertPartition]:
        """Rebuild the partitions found in stored records; :class:`StateRecordError` if one is
        unreadable (a corrupt state must stop the alerter, not silently re-fire alerts)."""
        parts: dict[int, AlertPartition] = {}
        for key, value in records:
            try:
                obj = orjson.loads(value)
                if obj.get("v") != RECORD_VERSION:
                    raise ValueError(f"unknown record version {obj.get('v')!r}")
                p = int(obj["p"])
                part = parts.get(p)
                if part is None:
                    part = parts[p] = cls(p, rules)
                state = state_from_dict(obj["state"])
                if state.fingerprint != key.decode("utf-8"):
                    raise ValueError(f"record of {state.fingerprint} stored under another key")
                part.states[state.fingerprint] = Stored(state, int(obj["o"]))
            except (KeyError, TypeError, ValueError, AttributeError, AlertFormatError) as exc:
                raise StateRecordError(f"unreadable alert state record {key!r}: {exc}") from exc
        return parts
