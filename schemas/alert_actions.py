"""Operator actions: the ``ioc.alert-actions/v1`` contract.

One :class:`AlertAction` is an operator's acknowledge, unacknowledge, assign, resolve, silence
or unsilence of one alert fingerprint. Key on Kafka: the fingerprint. Value: one JSON object
(UTF-8)::

    {"schema": "ioc.alert-actions/v1", "action": "silence", "fingerprint": "3f6c0a1e9b2d4c57",
     "actor": "op.lan", "at": "2026-11-28T09:05:30.123456Z", "alert_id": "3f6c0a1e9b2d4c57:2",
     "assignee": null, "until": "2026-11-28T11:05:30.123456Z", "comment": "", "action_id": ""}

Guarantees:

* ``decode_action(encode_action(a)) == a``; times are UTC ISO 8601 with microseconds and ``Z``.
* :func:`decode_action` raises :class:`~schemas.alert_wire.AlertFormatError` (a
  ``ValueError``) for anything that is not a valid v1 action; it never returns a partially
  filled object. Unknown fields are ignored.
* :class:`AlertAction` validates on construction (known action, aware times, non-empty
  fingerprint and actor, ``until`` for a silence, ``assignee`` for an assignment) and raises
  ``ValueError`` on bad input. No action can claim :data:`SYSTEM_ACTOR`, the actor of the
  changes the rules make by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, get_args

import orjson

from schemas.alert_wire import (
    AlertFormatError,
    check_aware,
    format_opt_time,
    format_time_us,
    load_document,
    read_opt_str,
    read_opt_time,
    read_str,
)
from schemas.readings import parse_time

__all__ = [
    "ACTION_KINDS",
    "ACTION_SCHEMA",
    "SYSTEM_ACTOR",
    "ActionKind",
    "AlertAction",
    "decode_action",
    "encode_action",
]

ACTION_SCHEMA: Final = "ioc.alert-actions/v1"

ActionKind = Literal["acknowledge", "unacknowledge", "assign", "resolve", "silence", "unsilence"]
ACTION_KINDS: Final[tuple[ActionKind, ...]] = get_args(ActionKind)

#: The actor of every change the rules make by themselves (operators are named by their id).
SYSTEM_ACTOR: Final = "system"


@dataclass(frozen=True, slots=True)
class AlertAction:
    """An operator's action on one alert fingerprint.

    ``alert_id`` (optional) pins the action to one alert: if the fingerprint has moved on to a
    newer alert, the action is rejected rather than applied to the wrong alert. ``silence``
    needs ``until``; ``assign`` needs ``assignee`` (``""`` removes the assignee).
    """

    action: ActionKind
    fingerprint: str
    actor: str
    at: datetime
    alert_id: str | None = None
    assignee: str | None = None
    until: datetime | None = None
    comment: str = ""
    action_id: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTION_KINDS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTION_KINDS}")
        if not self.fingerprint or not self.actor:
            raise ValueError("fingerprint and actor must not be empty")
        if self.actor == SYSTEM_ACTOR:
            raise ValueError(f"actor {SYSTEM_ACTOR!r} is reserved for the rules")
        check_aware("at", self.at)
        check_aware("until", self.until)
        if self.action == "silence" and self.until is None:
            raise ValueError("a silence needs 'until'")
        if self.action == "assign" and self.assignee is None:
            raise ValueError("an assignment needs 'assignee' ('' to unassign)")


def encode_action(action: AlertAction) -> bytes:
    """Encode an operator action as one ``ioc.alert-actions`` message value."""
    return orjson.dumps(
        {
            "schema": ACTION_SCHEMA,
            "action": action.action,
            "fingerprint": action.fingerprint,
            "actor": action.actor,
            "at": format_time_us(action.at),
            "alert_id": action.alert_id,
            "assignee": action.assignee,
            "until": format_opt_time(action.until),
            "comment": action.comment,
            "action_id": action.action_id,
        }
    )


def decode_action(data: bytes) -> AlertAction:
    """Parse an ``ioc.alert-actions/v1`` message value; :class:`AlertFormatError` if malformed."""
    obj = load_document(data, ACTION_SCHEMA)
    try:
        return AlertAction(
            action=read_str(obj, "action"),  # type: ignore[arg-type]  # checked in __post_init__
            fingerprint=read_str(obj, "fingerprint"),
            actor=read_str(obj, "actor"),
            at=parse_time(read_str(obj, "at")),
            alert_id=read_opt_str(obj, "alert_id"),
            assignee=read_opt_str(obj, "assignee"),
            until=read_opt_time(obj, "until"),
            comment=str(obj.get("comment", "")),
            action_id=str(obj.get("action_id", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertFormatError(f"invalid alert action: {exc}") from None
