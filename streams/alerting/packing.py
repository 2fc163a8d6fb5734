"""Packs of alert inputs gathered over several input messages (pure: no Faust, no Kafka).

The forwarders send the internal topic one ``pack`` per internal partition. Made per input
message, a reading batch of a few devices spread over every internal partition gives packs of
one or two alerts each, and the evaluator pays Faust's per-message cost for each. A
:class:`PackBuffer` gathers the ``obs`` items of the input messages of a short linger
(``IOC_ALERTER_PACK_LINGER_S``) and hands out one pack per partition.

Guarantees of :meth:`PackBuffer.take`:

* each (rule, fingerprint) appears at most once per pack (the evaluator's replay rule needs
  it): items of the same alert from several input messages are merged, observations in the
  order they arrived, with the latest ``now``; for an absence rule only the latest
  observation is kept, as :func:`~streams.alerting.inputs.group_observations` does;
* within a partition, alerts come in the order they were first added;
* every item added since the last ``take`` is in exactly one of the packs it returns.
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.alerting.inputs import ObsInput, PackInput, partition_of
from streams.alerts.model import Observation


class PackBuffer:
    """``obs`` items waiting to be sent, per internal partition."""

    def __init__(self, partitions: int, absence_rules: Iterable[str] = ()) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self.absence_rules = frozenset(absence_rules)
        self._parts: dict[int, dict[tuple[str, str], ObsInput]] = {}
        self.observations = 0  # observations waiting (a size bound for the caller)

    def __bool__(self) -> bool:
        return bool(self._parts)

    def add(self, items: Iterable[ObsInput]) -> None:
        """Add the items of one input message (each (rule, fingerprint) at most once)."""
        for item in items:
            part = self._parts.setdefault(partition_of(item.fingerprint, self.partitions), {})
            key = (item.rule, item.fingerprint)
            before = part.get(key)
            if before is None:
                part[key] = item
                self.observations += len(item.observations)
                continue
            if item.rule in self.absence_rules:
                merged = max((*before.observations, *item.observations), key=lambda o: o.event_time)
                observations: tuple[Observation, ...] = (merged,)
            else:
                observations = (*before.observations, *item.observations)
            self.observations += len(observations) - len(before.observations)
            part[key] = ObsInput(
                item.fingerprint,
                item.rule,
                observations,
                max(before.now, item.now),
            )

    def take(self) -> dict[int, PackInput]:
        """The packs of everything added so far, per partition; the buffer is then empty."""
        packs = {p: PackInput(tuple(items.values())) for p, items in self._parts.items()}
        self._parts = {}
        self.observations = 0
        return packs
