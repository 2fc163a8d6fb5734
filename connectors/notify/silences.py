"""Silences: matcher-based mutes with a start and an end, kept on a compacted Kafka topic.

Storage decision: silences live on the Kafka topic ``ioc.alert-silences`` (``IOC_NOTIFY_
SILENCES_TOPIC``; created compacted by the notifier and the CLI), key = silence id, value =
the silence's latest version (JSON, schema ``ioc.alert-silences/v1``). ``iocstream silence
add`` writes a new id; ``expire`` writes the same id again with ``ends_at`` = now. Every
notifier reads the topic from the beginning at start and follows it live, so a silence takes
effect within one poll everywhere, survives restarts, and its history (who, when, why) is on
the topic. Kafka compaction keeps the latest version of each silence.

A silence mutes an alert when it is active (``starts_at <= now < ends_at``) and **all** its
matchers match the alert's labels plus ``severity`` and ``state``. Muted alerts are still
tracked; when the silence ends they notify at the next group flush.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from connectors.kafka.admin import TopicSpec
from connectors.notify.labels import Matcher, matches_all
from connectors.settings import TopicSettings
from schemas.alerts import format_time_us
from schemas.readings import parse_time

SCHEMA: Final = "ioc.alert-silences/v1"


def silences_topic_spec(name: str) -> TopicSpec:
    """The silences topic as every writer creates it: one partition, compacted."""
    compact = (("cleanup.policy", "compact"),)
    return TopicSpec(name, 1, TopicSettings().replication_factor, compact)


@dataclass(frozen=True, slots=True)
class Silence:
    """One version of one silence."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    updated_at: datetime

    def __post_init__(self) -> None:
        for t in (self.starts_at, self.ends_at, self.updated_at):
            if t.tzinfo is None:
                raise ValueError("silence times must be timezone-aware")
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher")
        if not self.created_by:
            raise ValueError("a silence needs its author (created_by)")

    @classmethod
    def new(
        cls,
        matchers: Iterable[str],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str = "",
    ) -> Silence:
        """A new silence with a fresh id; ``ValueError`` if it ends before it starts."""
        if ends_at <= starts_at:
            raise ValueError("a silence must end after it starts")
        parsed = tuple(Matcher.parse(m) for m in matchers)
        if parsed and all(m.matches({}) for m in parsed):
            raise ValueError(
                "these matchers would silence every alert: at least one must not "
                "match an empty value (e.g. alertname=...)"
            )
        return cls(uuid.uuid4().hex, parsed, starts_at, ends_at, created_by, comment, starts_at)

    def expired(self, by: str, now: datetime) -> Silence:
        """This silence ended at ``now`` by ``by`` (same id; the comment names who ended it).

        Its ``updated_at`` is later than this version's even if the host that wrote it had a
        clock running ahead, so every reader keeps the expiry (:meth:`SilenceSet.put`).
        """
        return Silence(
            self.id,
            self.matchers,
            min(self.starts_at, now),
            now,
            self.created_by,
            f"{self.comment} (expired by {by})".strip(),
            max(now, self.updated_at + timedelta(microseconds=1)),
        )

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.active(now) and matches_all(self.matchers, labels)


def silence_to_dict(s: Silence) -> dict[str, Any]:
    """A silence's fields as JSON values (the record without its schema; the web API's view)."""
    return {
        "id": s.id,
        "matchers": [str(m) for m in s.matchers],
        "starts_at": format_time_us(s.starts_at),
        "ends_at": format_time_us(s.ends_at),
        "created_by": s.created_by,
        "comment": s.comment,
        "updated_at": format_time_us(s.updated_at),
    }


def encode_silence(s: Silence) -> bytes:
    return orjson.dumps({"schema": SCHEMA, **silence_to_dict(s)})


def decode_silence(data: bytes) -> Silence:
    """Parse a silence; ``ValueError`` if it is not a valid ``ioc.alert-silences/v1`` one."""
    try:
        obj: dict[str, Any] = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document")
        return Silence(
            str(obj["id"]),
            tuple(Matcher.parse(m) for m in obj["matchers"]),
            parse_time(obj["starts_at"]),
            parse_time(obj["ends_at"]),
            str(obj["created_by"]),
            str(obj.get("comment", "")),
            parse_time(obj["updated_at"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid silence: {exc}") from None


class SilenceSet:
    """The latest version of every silence seen."""

    def __init__(self) -> None:
        self.silences: dict[str, Silence] = {}

    def put(self, s: Silence) -> None:
        current = self.silences.get(s.id)
        if current is None or s.updated_at >= current.updated_at:
            self.silences[s.id] = s

    def muting(self, labels: Mapping[str, str], now: datetime) -> Silence | None:
        """The first active silence that mutes ``labels``, if any."""
        for s in self.silences.values():
            if s.mutes(labels, now):
                return s
        return None
