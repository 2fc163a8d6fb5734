"""What each receiver type is sent (pure): Alertmanager webhook, Telegram, e-mail, PagerDuty.

* ``webhook`` — Alertmanager's webhook body (``version`` 4: ``status``, ``receiver``,
  ``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``groupKey``, ``alerts`` with
  ``status``, ``labels``, ``annotations``, ``startsAt``, ``endsAt``, ``fingerprint``), plus
  iocstream's ``idempotencyKey`` and ``kind`` (notify / repeat / escalation). Each alert also
  carries ``alertId``, ``acknowledgedBy`` and ``assignee``.
* ``telegram`` — a Telegram Bot API ``sendMessage`` body (plain text, no parse mode, so no
  escaping problems with labels).
* ``email`` — a plain-text :class:`email.message.EmailMessage` with the idempotency key as
  ``Message-ID`` (mail systems de-duplicate on it).
* ``pagerduty`` — Events API v2 events, one per alert: ``trigger`` (firing), ``acknowledge``
  (firing and acknowledged), ``resolve``; ``dedup_key`` = the alert id, so PagerDuty folds
  repeats and resolutions into one incident.

The alert annotations are bilingual (``summary_vi``/``summary_en``...); texts show both.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any, Final

from connectors.notify.dispatch import Notification
from schemas.alerts import AlertState, format_time_us

PD_SEVERITY: Final = {
    "critical": "critical",
    "major": "error",
    "minor": "warning",
    "warning": "warning",
    "info": "info",
}
ZERO_TIME: Final = "0001-01-01T00:00:00Z"


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def _labels(s: AlertState) -> dict[str, str]:
    return {**s.labels, "severity": s.severity or ""}


def _alert(s: AlertState, status: str) -> dict[str, Any]:
    starts = s.active_since or s.fired_at
    return {
        "status": status,
        "labels": _labels(s),
        "annotations": dict(s.annotations),
        "startsAt": format_time_us(starts) if starts else ZERO_TIME,
        "endsAt": format_time_us(s.resolved_at)
        if status == "resolved" and s.resolved_at
        else ZERO_TIME,
        "generatorURL": s.annotations.get("dashboard_url", ""),
        "fingerprint": s.fingerprint,
        "alertId": s.alert_id,
        "acknowledgedBy": s.acknowledged_by,
        "assignee": s.assignee,
    }


def webhook_body(n: Notification) -> dict[str, Any]:
    """Alertmanager-compatible webhook JSON (module docstring)."""
    alerts = [_alert(s, "firing") for s in n.firing] + [_alert(s, "resolved") for s in n.resolved]
    states = [*n.firing, *n.resolved]
    return {
        "version": "4",
        "groupKey": f"{n.route}:{dict(n.group_key)}",
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": _common([_labels(s) for s in states]),
        "commonAnnotations": _common([dict(s.annotations) for s in states]),
        "externalURL": "",
        "alerts": alerts,
        "idempotencyKey": n.idempotency_key,
        "kind": n.kind,
    }


def _line(s: AlertState, status: str) -> str:
    vi = s.annotations.get("summary_vi", "")
    en = s.annotations.get("summary_en", "")
    text = " / ".join(t for t in (vi, en) if t) or s.rule
    mark = "✅" if status == "resolved" else "🔴"
    ack = f" (ack: {s.acknowledged_by})" if s.acknowledged_by else ""
    return f"{mark} [{(s.severity or '').upper()}] {text}{ack}"


def title(n: Notification) -> str:
    """A one-line title: ``[FIRING:2] alertname district=...`` (``ESCALATION``, ``RESOLVED``)."""
    head = "ESCALATION" if n.kind == "escalation" else n.status.upper()
    count = len(n.firing) if n.firing else len(n.resolved)
    labels = " ".join(f"{k}={v}" for k, v in n.group_key)
    return f"[{head}:{count}] {labels}".rstrip()


def message_text(n: Notification) -> str:
    """The plain text of a chat message or an e-mail body."""
    lines = [title(n)]
    lines += [_line(s, "firing") for s in n.firing]
    lines += [_line(s, "resolved") for s in n.resolved]
    links = {s.annotations.get("runbook_url", "") for s in (*n.firing, *n.resolved)} - {""}
    lines += [f"Runbook: {url}" for url in sorted(links)]
    return "\n".join(lines)


def telegram_body(n: Notification, chat_id: str) -> dict[str, Any]:
    """Telegram Bot API ``sendMessage`` body."""
    return {"chat_id": chat_id, "text": message_text(n)[:4096], "disable_web_page_preview": True}


def email_message(n: Notification, sender: str, to: tuple[str, ...]) -> EmailMessage:
    """A plain-text e-mail; ``Message-ID`` is derived from the idempotency key."""
    msg = EmailMessage()
    msg["Subject"] = title(n)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Message-ID"] = f"<{n.idempotency_key}@iocstream>"
    msg["X-Idempotency-Key"] = n.idempotency_key
    msg.set_content(message_text(n))
    return msg


def pagerduty_events(n: Notification, routing_key: str) -> list[dict[str, Any]]:
    """Events API v2 events, one per alert (module docstring)."""
    events = []
    for status, states in (("firing", n.firing), ("resolved", n.resolved)):
        for s in states:
            action = (
                "resolve"
                if status == "resolved"
                else ("acknowledge" if s.acknowledged_by else "trigger")
            )
            event: dict[str, Any] = {
                "routing_key": routing_key,
                "event_action": action,
                "dedup_key": s.alert_id or s.fingerprint,
            }
            if action == "trigger":
                event["payload"] = {
                    "summary": _line(s, status)[:1024],
                    "source": s.labels.get("device_id") or s.labels.get("district") or "iocstream",
                    "severity": PD_SEVERITY.get(s.severity or "", "warning"),
                    "timestamp": format_time_us(s.fired_at) if s.fired_at else None,
                    "custom_details": _labels(s),
                }
            events.append(event)
    return events
