"""Receiver payloads, silences' wire format, the token bucket and the attempt record."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from connectors.notify.config import RateLimit
from connectors.notify.dispatch import Notification
from connectors.notify.limits import TokenBucket
from connectors.notify.payloads import (
    email_message,
    message_text,
    pagerduty_events,
    telegram_body,
    webhook_body,
)
from connectors.notify.senders import Attempt
from connectors.notify.service import attempt_record
from connectors.notify.silences import Silence, SilenceSet, decode_silence, encode_silence
from schemas.alerts import AlertState

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
FIRING = AlertState(
    "fp1",
    "vn_aqi_station",
    {"alertname": "vn_aqi_station", "district": "lx", "team": "mt"},
    "firing",
    "major",
    annotations={
        "summary_vi": "AQI Xấu",
        "summary_en": "AQI bad",
        "runbook_url": "docs/runbooks/air-quality.md",
    },
    episode=2,
    revision=5,
    fired_at=T0,
    active_since=T0 - timedelta(minutes=5),
)
RESOLVED = replace(
    FIRING,
    fingerprint="fp2",
    state="resolved",
    resolved_at=T0,
    revision=9,
    labels={**FIRING.labels, "team": "other"},
)


def _n(**kw: object) -> Notification:
    base = {
        "receiver": "ops",
        "route": "route",
        "group_key": (("district", "lx"),),
        "kind": "notify",
        "status": "firing",
        "firing": (FIRING,),
        "resolved": (RESOLVED,),
        "signature": "sig",
        "seq": 0,
        "at": T0,
        "idempotency_key": "k1",
    }
    return Notification(**{**base, **kw})  # type: ignore[arg-type]


def test_webhook_body_is_alertmanager_shaped() -> None:
    body = webhook_body(_n())
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["groupLabels"] == {"district": "lx"}
    assert body["commonLabels"] == {
        "alertname": "vn_aqi_station",
        "district": "lx",
        "severity": "major",
    }
    firing, resolved = body["alerts"]
    assert firing["status"] == "firing"
    assert firing["startsAt"] == "2026-11-28T01:55:00.000000Z"
    assert firing["endsAt"] == "0001-01-01T00:00:00Z"
    assert firing["alertId"] == "fp1:2"
    assert resolved["endsAt"] == "2026-11-28T02:00:00.000000Z"
    assert body["idempotencyKey"] == "k1"
    orjson.dumps(body)


def test_texts_show_both_languages_and_the_runbook() -> None:
    text = message_text(_n())
    assert text.splitlines()[0] == "[FIRING:1] district=lx"
    assert "AQI Xấu / AQI bad" in text
    assert "Runbook: docs/runbooks/air-quality.md" in text
    assert telegram_body(_n(), "-1")["chat_id"] == "-1"
    mail = email_message(_n(kind="escalation"), "a@x", ("b@x", "c@x"))
    assert mail["Subject"].startswith("[ESCALATION:1]")
    assert mail["To"] == "b@x, c@x"
    assert mail["Message-ID"] == "<k1@iocstream>"


def test_pagerduty_events_trigger_acknowledge_resolve() -> None:
    acked = replace(FIRING, fingerprint="fp3", acknowledged_by="an")
    events = pagerduty_events(_n(firing=(FIRING, acked)), "rk")
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", "fp1:2"),
        ("acknowledge", "fp3:2"),
        ("resolve", "fp2:2"),
    ]
    assert events[0]["payload"]["severity"] == "error"
    assert all(e["routing_key"] == "rk" for e in events)


def test_silences_round_trip_and_latest_version_wins() -> None:
    s = Silence.new(['district="lx"', "severity=~minor|major"], T0, T0 + timedelta(hours=1), "an")
    assert decode_silence(encode_silence(s)) == s
    silences = SilenceSet()
    silences.put(s)
    labels = {"district": "lx", "severity": "major"}
    assert silences.muting(labels, T0) == s
    assert silences.muting({**labels, "severity": "critical"}, T0) is None
    expired = replace(s, ends_at=T0 + timedelta(minutes=1), updated_at=T0 + timedelta(minutes=1))
    silences.put(expired)
    silences.put(s)  # an older version arriving late changes nothing
    assert silences.muting(labels, T0 + timedelta(minutes=2)) is None
    with pytest.raises(ValueError, match="end after"):
        Silence.new(['a="b"'], T0, T0, "an")
    with pytest.raises(ValueError, match="invalid silence"):
        decode_silence(b'{"schema": "ioc.alert-silences/v1"}')


def test_token_bucket() -> None:
    bucket = TokenBucket(RateLimit(2, timedelta(seconds=10)))
    assert bucket.take(T0)
    assert bucket.take(T0)
    assert not bucket.take(T0 + timedelta(seconds=4))
    assert bucket.take(T0 + timedelta(seconds=5))
    assert not bucket.take(T0 + timedelta(seconds=5))
    assert not bucket.take(T0)  # the clock going back gives nothing
    assert bucket.take(T0 + timedelta(hours=1))
    assert bucket.tokens == 1.0  # never more than the burst


def test_attempt_record_has_what_the_log_table_needs() -> None:
    record = orjson.loads(
        attempt_record(_n(), "webhook", 2, Attempt(False, True, 503, "HTTP 503", 12.5), "failed")
    )
    assert record["schema"] == "ioc.notifications/v1"
    assert (record["receiver"], record["attempt"], record["outcome"]) == ("ops", 2, "failed")
    assert record["http_status"] == 503
    assert record["alert_ids"] == ["fp1:2", "fp2:2"]
    assert "delivered" not in record
    final = orjson.loads(attempt_record(_n(), "webhook", 3, Attempt(True, False, 200), "delivered"))
    assert final["delivered"]["seq"] == 0


def test_attempt_records_load_into_the_notification_attempts_table() -> None:
    """The sink's row builder accepts what the notifier logs (the audit trail in ClickHouse)."""
    from connectors.clickhouse.rows import NOTIFICATION_ATTEMPTS, ColumnBlock

    value = attempt_record(_n(), "webhook", 1, Attempt(False, False, 0, "refused", 3.0), "gave_up")
    rows = NOTIFICATION_ATTEMPTS.rows(value)
    assert not isinstance(rows, ColumnBlock)
    [row] = rows
    got = dict(zip(NOTIFICATION_ATTEMPTS.data_columns, row, strict=True))
    assert (got["receiver"], got["receiver_type"], got["attempt"]) == ("ops", "webhook", 1)
    assert (got["outcome"], got["http_status"], got["error"]) == ("gave_up", 0, "refused")
    assert got["alert_ids"] == ["fp1:2", "fp2:2"]
    assert got["at"].tzinfo is not None


def test_a_silence_of_everything_is_refused_and_an_expiry_always_wins() -> None:
    with pytest.raises(ValueError, match="every alert"):
        Silence.new(['alertname=~".*"', 'district=""'], T0, T0 + timedelta(hours=1), "op")
    ahead = Silence.new(["alertname=x"], T0, T0 + timedelta(hours=2), "op", "flood")
    ahead = replace(ahead, updated_at=T0 + timedelta(minutes=5))  # written by a fast clock
    ended = ahead.expired("duty", T0 + timedelta(minutes=1))
    assert ended.ends_at == T0 + timedelta(minutes=1)
    assert ended.comment == "flood (expired by duty)"
    assert ended.updated_at > ahead.updated_at
    kept = SilenceSet()
    kept.put(ahead)
    kept.put(ended)
    assert not kept.silences[ahead.id].active(T0 + timedelta(minutes=2))
