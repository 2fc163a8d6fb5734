"""The alert book: latest state per fingerprint, history, duplicates, filters, ordering."""

from __future__ import annotations

from streams.web.book import OPEN, AlertBook, Filter
from tests.unit.test_web_support import acknowledged, event


def test_latest_state_history_and_newest_first() -> None:
    book = AlertBook()
    first = event("a", 1, minutes=0)
    second = event("b", 1, minutes=5, district="chau-doc", rule="river_level_alarm")
    assert book.apply_all([first, second, acknowledged(first, "Nguyễn Văn An", 10)]) == 3
    alerts = book.alerts()
    assert [a["fingerprint"] for a in alerts] == ["a", "b"]  # a changed last (ack at +10)
    assert alerts[0]["acknowledged_by"] == "Nguyễn Văn An"
    assert alerts[0]["last_kind"] == "acknowledged"
    history = book.history("a")
    assert [h["kind"] for h in history] == ["acknowledged", "firing"]
    assert history[0]["actor"] == "Nguyễn Văn An"
    assert [e["event_id"] for e in book.recent(10)] == ["a#2", "b#1", "a#1"]


def test_redelivered_and_older_events_are_ignored() -> None:
    book = AlertBook()
    first = event("a", 1)
    ack = acknowledged(first, "op", 3)
    assert book.apply(first)
    assert book.apply(ack)
    assert not book.apply(first)  # older revision
    assert not book.apply(ack)  # same pair again
    assert book.duplicates == 2
    assert len(book.history("a")) == 2
    assert book.alerts()[0]["revision"] == 2


def test_rebuild_with_duplicates_gives_the_same_book() -> None:
    events = [event("a", 1), event("b", 1, minutes=1), acknowledged(event("a", 1), "op", 2)]
    clean, noisy = AlertBook(), AlertBook()
    clean.apply_all(events)
    noisy.apply_all([events[0], events[0], events[1], events[2], events[1], events[2]])
    assert clean.alerts() == noisy.alerts()
    assert clean.recent(10) == noisy.recent(10)


def test_filters_by_district_kind_and_state() -> None:
    book = AlertBook()
    book.apply_all(
        [
            event("a", 1, district="long-xuyen"),
            event("b", 1, district="chau-doc", rule="river_level_alarm", minutes=1),
            event("c", 2, kind="resolved", state="resolved", minutes=2),
            event("d", 1, kind="pending_cleared", state="inactive", minutes=3),
        ]
    )
    ids = lambda f: [a["fingerprint"] for a in book.alerts(f)]  # noqa: E731
    assert ids(Filter()) == ["c", "b", "a"]  # inactive never listed
    assert ids(Filter(district="chau-doc")) == ["b"]
    assert ids(Filter(kind="vn_aqi_station")) == ["c", "a"]
    assert ids(Filter(state="resolved")) == ["c"]
    assert ids(Filter(state=OPEN)) == ["b", "a"]
    assert book.facets() == {
        "districts": ["chau-doc", "long-xuyen"],
        "kinds": ["river_level_alarm", "vn_aqi_station"],
    }


def test_history_is_bounded_per_alert() -> None:
    book = AlertBook(history_per_alert=3, recent_events=4)
    base = event("a", 1)
    book.apply(base)
    latest = base
    for i in range(5):
        latest = acknowledged(latest, f"op{i}", i + 1)
        book.apply(latest)
    assert [h["revision"] for h in book.history("a")] == [6, 5, 4]
    assert len(book.recent(100)) == 4
    assert book.history("unknown") == []
    assert book.view("unknown") is None
