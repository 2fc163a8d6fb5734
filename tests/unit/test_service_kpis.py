"""City-service KPI maths (streams/service_kpis.py) with fixed timestamps."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas import events as ev
from schemas.readings import format_time
from streams.service_kpis import (
    UNASSIGNED,
    FactError,
    Item,
    fact_of,
    indicator_names,
    item_key,
    local_day_start,
    minute_after,
    percentile,
    snapshot,
    window_of,
)
from streams.windows import to_ms

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # 17:00 local
H = timedelta(hours=1)


def event(type_: str, subject: str, at: datetime, eid: str = "", **data: Any) -> ev.Event:
    """A canonical service event; ``data`` values that are datetimes are formatted."""
    body = {k: format_time(v) if isinstance(v, datetime) else v for k, v in data.items()}
    body.setdefault("district", "long-xuyen")
    return ev.Event(
        id=eid or f"{type_}-{subject}-{at.isoformat()}",
        source="/test",
        type=type_,
        subject=subject,
        time=at,
        data=body,
        received_at=at,
    )


def submitted(subject: str, at: datetime, due: datetime, agency: str = "ubnd-a") -> ev.Event:
    return event(ev.APPLICATION_SUBMITTED, subject, at, agency=agency, submitted_at=at, due_at=due)


def resolved(
    subject: str, opened: datetime, at: datetime, due: datetime, outcome: str = "approved"
) -> ev.Event:
    return event(ev.APPLICATION_RESOLVED, subject, at, agency="ubnd-a", submitted_at=opened,
                 due_at=due, resolved_at=at, outcome=outcome)  # fmt: skip


def item_of(*events: ev.Event) -> Item:
    kind, subject = item_key(events[0])
    return Item.of(kind, subject, [fact_of(e, i) for i, e in enumerate(events)])


# --- facts and items ---------------------------------------------------------------------------


def test_application_facts_fold_into_one_item() -> None:
    due = T0 + 72 * H
    item = item_of(submitted("HS-1", T0, due), resolved("HS-1", T0, T0 + 5 * H, due))
    assert (item.kind, item.subject, item.agency, item.district) == (
        "application",
        "HS-1",
        "ubnd-a",
        "long-xuyen",
    )
    assert (item.opened, item.handled, item.done, item.due) == (
        to_ms(T0),
        to_ms(T0 + 5 * H),
        to_ms(T0 + 5 * H),
        to_ms(due),
    )


def test_a_resolution_alone_is_a_complete_item() -> None:
    due = T0 + 72 * H
    item = item_of(resolved("HS-2", T0, T0 + 2 * H, due))
    assert (item.opened, item.handled, item.due) == (to_ms(T0), to_ms(T0 + 2 * H), to_ms(due))


def test_a_withdrawn_application_leaves_the_backlog_unjudged() -> None:
    item = item_of(resolved("HS-3", T0, T0 + H, T0 + 2 * H, outcome="withdrawn"))
    assert item.handled is None
    assert item.done == to_ms(T0 + H)


def test_feedback_moves_to_the_assigned_agency_and_takes_the_new_due_date() -> None:
    created = event(ev.FEEDBACK_CREATED, "PA-1", T0, ward="w", category="flooding",
                    channel="app", created_at=T0, due_at=T0 + 24 * H)  # fmt: skip
    assigned = event(ev.FEEDBACK_ASSIGNED, "PA-1", T0 + H, agency="phong-qldt", ward="w",
                     category="flooding", created_at=T0, assigned_at=T0 + H,
                     due_at=T0 + 48 * H)  # fmt: skip
    item = item_of(created)
    assert item.agency == UNASSIGNED
    item.add(fact_of(assigned, 1))
    assert (item.agency, item.due, item.done) == ("phong-qldt", to_ms(T0 + 48 * H), None)


def test_feedback_closed_without_response_is_done_but_not_handled() -> None:
    closed = event(ev.FEEDBACK_CLOSED, "PA-2", T0 + 3 * H, agency="phong-qldt", ward="w",
                   category="other", created_at=T0, closed_at=T0 + 3 * H,
                   resolution="duplicate")  # fmt: skip
    item = item_of(closed)
    assert (item.handled, item.done) == (None, to_ms(T0 + 3 * H))


def test_feedback_closed_with_response_is_done_at_the_response() -> None:
    closed = event(ev.FEEDBACK_CLOSED, "PA-3", T0 + 9 * H, agency="phong-qldt", ward="w",
                   category="other", created_at=T0, responded_at=T0 + 2 * H,
                   closed_at=T0 + 9 * H, resolution="resolved")  # fmt: skip
    item = item_of(closed)
    assert (item.handled, item.done) == (to_ms(T0 + 2 * H), to_ms(T0 + 2 * H))


def test_document_without_due_date() -> None:
    doc = event(ev.DOCUMENT_PROCESSED, "VB-1", T0 + H, agency="phong-tnmt", direction="incoming",
                category="report", received_at=T0, processed_at=T0 + H,
                outcome="filed")  # fmt: skip
    item = item_of(doc)
    assert (item.kind, item.due, item.handled) == ("document", None, to_ms(T0 + H))


def test_events_that_feed_no_kpi_are_refused() -> None:
    status = event("vn.longxuyen.device.status", "aq-1", T0, status="online")
    with pytest.raises(FactError):
        item_key(status)
    with pytest.raises(FactError):
        fact_of(status, 0)
    no_agency = event(ev.APPLICATION_SUBMITTED, "HS-9", T0, submitted_at=T0, due_at=T0 + H)
    with pytest.raises(FactError, match="agency"):
        fact_of(no_agency, 0)


def test_fact_round_trips_through_its_list_form() -> None:
    fact = fact_of(resolved("HS-4", T0, T0 + H, T0 + 2 * H), 42)
    from streams.service_kpis import Fact

    assert Fact.from_list(fact.to_list()) == fact


# --- time helpers ------------------------------------------------------------------------------


def test_minute_after_is_strictly_after() -> None:
    assert minute_after(to_ms(T0)) == to_ms(T0) + 60_000
    assert minute_after(to_ms(T0) - 1) == to_ms(T0)


def test_local_day_is_not_the_utc_day() -> None:
    # 2026-11-28 18:00Z is 01:00 on the 29th in Asia/Ho_Chi_Minh: its local day starts 17:00Z
    at = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
    assert local_day_start(to_ms(at), TZ) == to_ms(datetime(2026, 11, 28, 17, tzinfo=UTC))
    at = datetime(2026, 11, 28, 16, 59, 59, 999000, tzinfo=UTC)
    assert local_day_start(to_ms(at), TZ) == to_ms(datetime(2026, 11, 27, 17, tzinfo=UTC))


def test_percentile_matches_the_inclusive_method() -> None:
    values = [0.5, 1.0, 2.0, 3.5, 10.0, 11.0, 40.0]
    want = statistics.quantiles(values, n=10, method="inclusive")
    assert percentile(values, 0.5) == pytest.approx(statistics.median(values))
    assert percentile(values, 0.9) == pytest.approx(want[8])
    assert percentile([7.0], 0.9) == 7.0


def test_window_of_each_indicator() -> None:
    at = to_ms(T0)
    assert window_of("application_on_time_rate_24h", at) == (at - 86_400_000, at)
    assert window_of("feedback_response_hours_30d", at) == (at - 30 * 86_400_000, at)
    assert window_of("document_backlog", at) == (at - 60_000, at)
    assert len(indicator_names()) == 3 * (2 + 2 * 4)


# --- snapshots ---------------------------------------------------------------------------------


def test_on_time_classes_use_the_local_day_of_the_due_date() -> None:
    # due 2026-11-28 18:00Z = 01:00 local on the 29th; that local day starts 17:00Z on the 28th
    due = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
    opened = due - 48 * H
    items = [
        item_of(resolved("early", opened, due - 2 * H, due)),  # 16:00Z: local 23:00 the 28th
        item_of(resolved("day", opened, due - 30 * timedelta(minutes=1), due)),  # 17:30Z
        item_of(resolved("exact", opened, due, due)),  # at the due time: on time
        item_of(resolved("late", opened, due + timedelta(milliseconds=1), due)),
    ]
    at = to_ms(due + H)
    snap = snapshot(items, "application", at, TZ)
    rate, comps = snap["application_on_time_rate_24h"]
    assert comps == {"in_scope": 4.0, "on_time": 3.0, "early": 1.0, "late": 1.0}
    assert rate == 0.75
    assert snap["application_resolved_24h"][1] == {
        "early": 1.0,
        "on_time": 2.0,
        "late": 1.0,
        "no_due": 0.0,
    }


def test_rolling_window_edges_are_half_open() -> None:
    at = T0 + 48 * H
    due = at + 100 * H
    inside = item_of(resolved("in", T0, at - 24 * H, due))  # exactly at T - 24 h: inside
    before = item_of(resolved("out", T0, at - 24 * H - timedelta(milliseconds=1), due))
    at_end = item_of(resolved("end", T0, at, due))  # exactly at T: not yet
    snap = snapshot([inside, before, at_end], "application", to_ms(at), TZ)
    assert snap["application_resolved_24h"][0] == 1.0
    assert snap["application_resolved_30d"][0] == 2.0
    assert snap["application_received_24h"][0] == 0.0
    assert snap["application_received_30d"][0] == 3.0
    # the item resolved at T is still in the backlog at T (done >= T)
    assert snap["application_backlog"][0] == 1.0


def test_backlog_and_overdue_at_a_boundary() -> None:
    at = T0 + 10 * H
    items = [
        item_of(submitted("open", T0, at + H)),
        item_of(submitted("due-now", T0, at)),  # due == T: not yet overdue
        item_of(submitted("overdue", T0, at - timedelta(milliseconds=1))),
        item_of(submitted("future", at, at + H)),  # opened at T: not yet in the backlog
        item_of(resolved("gone", T0, at - H, at + H)),
    ]
    snap = snapshot(items, "application", to_ms(at), TZ)
    assert snap["application_backlog"] == (3.0, {"overdue": 1.0})
    assert snap["application_overdue"] == (1.0, {})


def test_response_percentiles_in_hours() -> None:
    at = T0 + 21 * H
    hours = [1, 2, 3, 4, 20]
    items = [item_of(resolved(f"r{h}", T0, T0 + h * H, T0 + 50 * H)) for h in hours]
    value, comps = snapshot(items, "application", to_ms(at), TZ)["application_response_hours_24h"]
    assert value == 3.0
    assert comps == {"p50": 3.0, "p90": pytest.approx(13.6), "count": 5.0}


def test_rates_and_response_are_absent_without_scope() -> None:
    items = [item_of(submitted("open", T0, T0 + H))]
    snap = snapshot(items, "application", to_ms(T0 + 2 * H), TZ)
    assert "application_on_time_rate_24h" not in snap
    assert "application_response_hours_24h" not in snap
    assert snap["application_resolved_24h"][0] == 0.0


def test_documents_without_due_date_are_processed_but_not_rated() -> None:
    doc = event(ev.DOCUMENT_PROCESSED, "VB-2", T0 + H, agency="phong-tnmt", direction="incoming",
                category="report", received_at=T0, processed_at=T0 + H,
                outcome="filed")  # fmt: skip
    snap = snapshot([item_of(doc)], "document", to_ms(T0 + 2 * H), TZ)
    assert snap["document_processed_24h"][1]["no_due"] == 1.0
    assert "document_on_time_rate_24h" not in snap
    assert snap["document_response_hours_24h"][0] == 1.0
