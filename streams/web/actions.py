"""Operator actions from the page: validated into :class:`~schemas.alerts.AlertAction` and
produced to ``ioc.alert-actions`` keyed by fingerprint.

The web server never changes alert state itself: the alert evaluator (``iocstream alerter``)
is the single writer of ``ioc.alerts``. It applies each action (``streams.alerts.actions``) and
publishes the resulting change with the operator as ``actor``, which every open page then
receives over SSE. So an acknowledgement shows up in every tab at once, and in the history
with the operator's name, exactly when it has taken effect.

Guarantee of :meth:`ActionPublisher.publish`: it returns only after Kafka acknowledged the
record (``acks=all``, idempotent producer); on error it raises and the page shows the error,
so a click is never silently lost. Each action gets a fresh ``action_id`` (uuid4) so the
evaluator can recognise a re-sent copy.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from aiokafka import AIOKafkaProducer

from schemas.alerts import ACTION_KINDS, AlertAction, encode_action
from streams.web.auth import clean_operator

MAX_COMMENT_LEN: Final = 500
#: Longest silence the page allows (a week); longer mutes belong in configuration.
MAX_SILENCE: Final = timedelta(days=7)


class BadAction(ValueError):
    """The request does not describe a valid action (message is safe to show)."""


def build_action(fingerprint: str, body: Mapping[str, Any], now: datetime) -> AlertAction:
    """The action a page request asks for; :class:`BadAction` if it is incomplete or invalid.

    ``body``: ``action`` (one of ``ACTION_KINDS``), ``operator``, optional ``alert_id`` (pins the
    action to the alert the operator saw), ``assignee`` (assign), ``silence_minutes``
    (silence), ``comment``.
    """
    kind = body.get("action")
    if kind not in ACTION_KINDS:
        raise BadAction(f"action must be one of {', '.join(ACTION_KINDS)}")
    try:
        operator = clean_operator(body.get("operator"))
    except ValueError as exc:
        raise BadAction(str(exc)) from None
    comment = body.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_LEN:
        raise BadAction(f"comment must be text of at most {MAX_COMMENT_LEN} characters")
    alert_id = body.get("alert_id") or None
    if alert_id is not None and not isinstance(alert_id, str):
        raise BadAction("alert_id must be text")
    assignee: str | None = None
    until: datetime | None = None
    if kind == "assign":
        raw = body.get("assignee")
        if raw is None or not isinstance(raw, str):
            raise BadAction("assign needs an assignee ('' removes it)")
        assignee = " ".join(raw.split())
        if len(assignee) > 64:
            raise BadAction("assignee is longer than 64 characters")
    if kind == "silence":
        minutes = body.get("silence_minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0:
            raise BadAction("silence needs silence_minutes > 0")
        span = timedelta(minutes=float(minutes))
        if span > MAX_SILENCE:
            raise BadAction("a silence from the page lasts at most 7 days")
        until = now + span
    try:
        return AlertAction(
            action=kind,
            fingerprint=fingerprint,
            actor=operator,
            at=now,
            alert_id=alert_id,
            assignee=assignee,
            until=until,
            comment=comment,
            action_id=uuid.uuid4().hex,
        )
    except ValueError as exc:
        raise BadAction(str(exc)) from None


class ActionPublisher:
    """Produces actions to the actions topic (aiokafka, ``acks=all``, idempotent)."""

    def __init__(self, topic: str, kafka_options: Mapping[str, Any]) -> None:
        self.topic = topic
        self._options = dict(kafka_options)
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect (aiokafka clients must be created inside the running loop)."""
        self._producer = AIOKafkaProducer(
            **self._options, acks="all", enable_idempotence=True, client_id="iocstream-web"
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, action: AlertAction) -> None:
        """Send one action and wait for Kafka's acknowledgement."""
        if self._producer is None:
            raise RuntimeError("the action publisher is not started")
        await self._producer.send_and_wait(
            self.topic, encode_action(action), key=action.fingerprint.encode("utf-8")
        )
