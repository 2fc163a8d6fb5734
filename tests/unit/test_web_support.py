"""Alert events for the web tests (unit and integration), from the ``schemas.alerts`` contract.

A support module named like a test module (the tests of this area own ``test_web*``): it
defines no tests itself.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from schemas.alerts import AlertEvent, AlertState, EventKind, Severity, StateName

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def event(
    fingerprint: str = "fp-aqi-1",
    revision: int = 1,
    *,
    kind: EventKind = "firing",
    state: StateName = "firing",
    severity: Severity = "major",
    district: str = "long-xuyen",
    rule: str = "vn_aqi_station",
    minutes: int = 0,
    actor: str = "system",
    acknowledged_by: str | None = None,
    episode: int = 1,
) -> AlertEvent:
    """One event whose snapshot is consistent with its kind."""
    at = T0 + timedelta(minutes=minutes)
    snapshot = AlertState(
        fingerprint=fingerprint,
        rule=rule,
        labels={"district": district, "device_id": f"aq-{fingerprint}"},
        state=state,
        severity=severity,
        value=162.0,
        annotations={
            "summary_vi": f"Không khí xấu {fingerprint}",
            "summary_en": f"Bad air {fingerprint}",
        },
        episode=episode,
        revision=revision,
        fired_at=T0,
        acknowledged_by=acknowledged_by,
        acknowledged_at=at if acknowledged_by else None,
        resolved_at=at if state == "resolved" else None,
    )
    return AlertEvent(
        fingerprint=fingerprint,
        rule=rule,
        alert_id=snapshot.alert_id,
        revision=revision,
        kind=kind,
        at=at,
        actor=actor,
        notify=kind == "firing",
        from_state="pending" if kind == "firing" else "firing",
        to_state=state,
        from_severity=None if kind == "firing" else severity,
        to_severity=severity,
        state=snapshot,
        detail=kind,
    )


def acknowledged(base: AlertEvent, operator: str, minutes: int) -> AlertEvent:
    """The acknowledgement event following ``base``."""
    at = T0 + timedelta(minutes=minutes)
    state = replace(
        base.state, revision=base.revision + 1, acknowledged_by=operator, acknowledged_at=at
    )
    return replace(
        base,
        revision=base.revision + 1,
        kind="acknowledged",
        at=at,
        actor=operator,
        notify=False,
        from_state=base.to_state,
        state=state,
    )
