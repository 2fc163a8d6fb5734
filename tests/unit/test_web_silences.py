"""Silences through the web API: validation, views, the routes, and the follower's record handling.

Kafka is replaced by an in-memory store; times are fixed (the app's clock is injected).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from connectors.metrics import Metrics
from connectors.notify.silences import Silence, decode_silence, encode_silence
from connectors.settings import TopicSettings
from streams.web.app import WebContext, make_app
from streams.web.book import AlertBook
from streams.web.feed import AlertFeed
from streams.web.settings import WebSettings
from streams.web.silence_store import SilenceFollower
from streams.web.silences import (
    BadSilence,
    build_silence,
    expire_silence,
    list_views,
    silence_state,
    silence_view,
)

TOKEN = "silence-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
RIVER = ["alertname=river_level_alarm", 'district="my-hoa"']


def _body(**extra: Any) -> dict[str, Any]:
    return {"matchers": RIVER, "duration_minutes": 90, "operator": " Lê  Văn Cường ", **extra}


def _silence(
    sid: str, start_min: int, end_min: int, *, updated_min: int | None = None, comment: str = ""
) -> Silence:
    base = build_silence(_body(), NOW)
    updated = NOW + timedelta(minutes=start_min if updated_min is None else updated_min)
    return Silence(
        sid,
        base.matchers,
        NOW + timedelta(minutes=start_min),
        NOW + timedelta(minutes=end_min),
        "An",
        comment,
        updated,
    )


# --- validation -------------------------------------------------------------------------------


def test_a_valid_body_makes_a_silence_that_starts_now() -> None:
    s = build_silence(_body(comment="đê đang sửa"), NOW)
    assert [str(m) for m in s.matchers] == ['alertname="river_level_alarm"', 'district="my-hoa"']
    assert (s.starts_at, s.ends_at, s.updated_at) == (NOW, NOW + timedelta(minutes=90), NOW)
    assert (s.created_by, s.comment) == ("Lê Văn Cường", "đê đang sửa")
    assert len(s.id) == 32
    assert s.id != build_silence(_body(), NOW).id
    assert decode_silence(encode_silence(s)) == s  # what the notifier will read


def test_ends_at_and_starts_at_are_honoured() -> None:
    body = {k: v for k, v in _body().items() if k != "duration_minutes"}
    s = build_silence({**body, "ends_at": "2026-11-28T18:30:00+07:00"}, NOW)
    assert s.ends_at == datetime(2026, 11, 28, 11, 30, tzinfo=UTC)
    later = build_silence(
        {**body, "starts_at": "2026-11-29T00:00:00Z", "ends_at": "2026-11-29T06:00:00Z"}, NOW
    )
    assert silence_state(later, NOW) == "pending"
    past_start = build_silence({**_body(), "starts_at": "2026-11-01T00:00:00Z"}, NOW)
    assert past_start.starts_at == NOW  # a start in the past means now


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"matchers": None}, "matchers must be a non-empty list"),
        ({"matchers": []}, "matchers must be a non-empty list"),
        ({"matchers": "alertname=x"}, "matchers must be a non-empty list"),
        ({"matchers": ["district~my-hoa"]}, "bad matcher 'district~my-hoa'"),
        ({"matchers": ['district="my-hoa']}, "bad quote"),
        ({"matchers": ["alertname=~("]}, "invalid regex"),
        ({"matchers": [5]}, "matcher must be a string"),
        ({"matchers": ['alertname=~".*"', "district!=x"]}, "would silence every alert"),
        ({"matchers": ["a=b"] * 33}, "at most 32 matchers"),
        ({"operator": None}, "operator name is required"),
        ({"operator": "   "}, "operator name is required"),
        ({"operator": "System"}, "reserved"),
        ({"duration_minutes": 0}, "duration_minutes must be a number > 0"),
        ({"duration_minutes": -5}, "duration_minutes must be a number > 0"),
        ({"duration_minutes": True}, "duration_minutes must be a number > 0"),
        ({"duration_minutes": "60"}, "duration_minutes must be a number > 0"),
        ({"duration_minutes": 7 * 24 * 60 + 1}, "at most 7 days"),
        ({"duration_minutes": None}, "give either duration_minutes or ends_at"),
        ({"ends_at": "2026-11-28T12:00:00Z"}, "give either duration_minutes or ends_at"),
        ({"duration_minutes": None, "ends_at": "2026-11-28T12:00:00"}, "with a timezone"),
        ({"duration_minutes": None, "ends_at": 12}, "with a timezone"),
        ({"duration_minutes": None, "ends_at": "2026-11-28T09:00:00Z"}, "must be after"),
        ({"duration_minutes": None, "ends_at": "2026-12-06T10:00:00Z"}, "at most 7 days"),
        ({"starts_at": "2026-12-06T10:00:00Z"}, "starts at most 7 days ahead"),
        ({"comment": "x" * 501}, "comment must be text"),
        ({"comment": ["x"]}, "comment must be text"),
    ],
)
def test_bad_bodies_are_refused_with_a_clear_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(BadSilence, match=None) as caught:
        build_silence(_body(**change), NOW)
    assert message in str(caught.value)


def test_exactly_seven_days_is_allowed() -> None:
    s = build_silence(_body(duration_minutes=7 * 24 * 60), NOW)
    assert s.ends_at - s.starts_at == timedelta(days=7)


def test_expiry_keeps_the_id_and_supersedes_even_a_clock_ahead() -> None:
    active = _silence("s1", -10, 60, comment="bảo trì")
    ended = expire_silence(active, "Bình", NOW)
    assert (ended.id, ended.starts_at, ended.ends_at) == ("s1", active.starts_at, NOW)
    assert ended.comment == "bảo trì (expired by Bình)"
    assert silence_state(ended, NOW) == "expired"
    ahead = _silence("s2", -10, 60, updated_min=5)  # written by a host whose clock runs ahead
    assert expire_silence(ahead, "Bình", NOW).updated_at > ahead.updated_at
    pending = expire_silence(_silence("s3", 30, 90), "Bình", NOW)
    assert (pending.starts_at, pending.ends_at) == (NOW, NOW)
    assert pending.comment == "(expired by Bình)"


def test_views_are_newest_first_and_hide_expired_unless_asked() -> None:
    items = [_silence("old", -120, -60), _silence("a", -30, 30), _silence("p", 60, 120)]
    assert [v["id"] for v in list_views(items, NOW, expired=False)] == ["p", "a"]
    views = list_views(items, NOW, expired=True)
    assert [(v["id"], v["state"]) for v in views] == [
        ("p", "pending"),
        ("a", "active"),
        ("old", "expired"),
    ]
    view = silence_view(items[1], NOW)
    assert view["matchers"] == ['alertname="river_level_alarm"', 'district="my-hoa"']
    assert (view["starts_at"], view["ends_at"]) == (
        "2026-11-28T09:30:00.000000Z",
        "2026-11-28T10:30:00.000000Z",
    )
    assert set(view) == {
        "id",
        "matchers",
        "starts_at",
        "ends_at",
        "created_by",
        "comment",
        "updated_at",
        "state",
    }


# --- routes -----------------------------------------------------------------------------------


class FakeStore:
    """In-memory stand-in for :class:`SilenceFollower`."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.ready.set()
        self.items: dict[str, Silence] = {}
        self.writes: list[Silence] = []
        self.fail = False

    def get(self, silence_id: str) -> Silence | None:
        return self.items.get(silence_id)

    def all(self) -> list[Silence]:
        return list(self.items.values())

    async def write(self, silence: Silence) -> None:
        if self.fail:
            raise RuntimeError("broker down")
        self.writes.append(silence)
        self.items[silence.id] = silence


class FakePublisher:
    async def publish(self, action: object) -> None:
        raise AssertionError("no alert actions in these tests")


Client = TestClient[Any, Any]


def _run(
    body: Callable[[Client, WebContext, FakeStore], Awaitable[None]], *, store: bool = True
) -> None:
    async def main() -> None:
        metrics = Metrics(CollectorRegistry())
        feed = AlertFeed("alerts", {}, AlertBook(), metrics)
        feed.ready.set()
        fake = FakeStore()

        async def tiles() -> list[dict[str, Any]]:
            return []

        ctx = WebContext(
            token=TOKEN,
            feed=feed,
            publisher=FakePublisher(),
            metrics=metrics,
            tiles=tiles,
            clock=lambda: NOW,
            silences=fake if store else None,
        )
        async with TestClient(TestServer(make_app(ctx))) as client:
            await body(client, ctx, fake)

    asyncio.run(main())


def _count(ctx: WebContext, operation: str, outcome: str) -> float:
    value: float = ctx.metrics.web_silences.labels(
        operation=operation, outcome=outcome
    )._value.get()
    return value


def test_post_writes_the_silence_and_answers_its_id() -> None:
    async def body(client: Client, ctx: WebContext, store: FakeStore) -> None:
        r = await client.post("/api/silences", data=orjson.dumps(_body()), headers=AUTH)
        assert r.status == 201, await r.text()
        data = await r.json()
        (written,) = store.writes
        assert data["id"] == written.id
        assert r.headers["Location"] == f"/api/silences/{written.id}"
        assert (data["state"], data["created_by"]) == ("active", "Lê Văn Cường")
        assert written.ends_at == NOW + timedelta(minutes=90)
        assert _count(ctx, "create", "sent") == 1
        listed = await (await client.get("/api/silences", headers=AUTH)).json()
        assert [s["id"] for s in listed["silences"]] == [written.id]
        assert listed["ready"] is True
        one = await client.get(f"/api/silences/{written.id}", headers=AUTH)
        assert (await one.json())["matchers"] == data["matchers"]
        assert (await client.get("/api/silences/nope", headers=AUTH)).status == 404

    _run(body)


def test_post_refuses_bad_input_and_reports_kafka_failure() -> None:
    async def body(client: Client, ctx: WebContext, store: FakeStore) -> None:
        bad = await client.post(
            "/api/silences", data=orjson.dumps(_body(matchers=["x~y"])), headers=AUTH
        )
        assert bad.status == 400
        assert "bad matcher 'x~y'" in (await bad.json())["error"]
        too_long = _body(duration_minutes=8 * 24 * 60)
        r = await client.post("/api/silences", data=orjson.dumps(too_long), headers=AUTH)
        assert (r.status, (await r.json())["error"]) == (
            400,
            "a silence lasts at most 7 days (10080 minutes)",
        )
        for junk in (b"{", b"[]", b""):
            r = await client.post("/api/silences", data=junk, headers=AUTH)
            assert (r.status, await r.json()) == (400, {"error": "the body must be a JSON object"})
        assert _count(ctx, "create", "rejected") == 5
        store.fail = True
        down = await client.post("/api/silences", data=orjson.dumps(_body()), headers=AUTH)
        assert down.status == 503
        assert _count(ctx, "create", "failed") == 1
        assert store.writes == []
        assert (await client.post("/api/silences", data=orjson.dumps(_body()))).status == 401

    _run(body)


def test_delete_expires_now_with_the_operator_in_the_comment() -> None:
    async def body(client: Client, ctx: WebContext, store: FakeStore) -> None:
        for s in (_silence("s1", -10, 60, comment="đê"), _silence("s2", 30, 90)):
            store.items[s.id] = s
        r = await client.delete("/api/silences/s1?operator=B%C3%ACnh", headers=AUTH)
        assert r.status == 202, await r.text()
        assert (await r.json())["state"] == "expired"
        by_body = await client.delete(
            "/api/silences/s2", data=orjson.dumps({"operator": "Châu"}), headers=AUTH
        )
        assert by_body.status == 202
        first, second = store.writes
        assert (first.id, first.ends_at, first.comment) == ("s1", NOW, "đê (expired by Bình)")
        assert (second.id, second.comment) == ("s2", "(expired by Châu)")
        assert _count(ctx, "expire", "sent") == 2
        again = await client.delete("/api/silences/s1?operator=x", headers=AUTH)
        assert again.status == 200  # already over: nothing written
        assert len(store.writes) == 2
        assert (await (await client.get("/api/silences", headers=AUTH)).json())["silences"] == []
        everything = await (await client.get("/api/silences?all=1", headers=AUTH)).json()
        assert {s["id"] for s in everything["silences"]} == {"s1", "s2"}
        assert (await client.delete("/api/silences/zzz?operator=x", headers=AUTH)).status == 404
        junk = await client.delete("/api/silences/s1", data=b"[1]", headers=AUTH)
        assert junk.status == 400
        no_operator = await client.delete("/api/silences/s1", headers=AUTH)
        assert no_operator.status == 400
        assert "operator name is required" in (await no_operator.json())["error"]
        store.items["s3"] = _silence("s3", -10, 60)
        store.fail = True
        assert (await client.delete("/api/silences/s3?operator=x", headers=AUTH)).status == 503
        assert _count(ctx, "expire", "failed") == 1
        store.ready.clear()  # still reading the topic: an unknown id may simply be unread
        assert (await client.delete("/api/silences/zzz?operator=x", headers=AUTH)).status == 503

    _run(body)


def test_without_a_store_there_are_no_silence_routes() -> None:
    async def body(client: Client, _ctx: WebContext, _store: FakeStore) -> None:
        assert (await client.get("/api/silences", headers=AUTH)).status == 404

    _run(body, store=False)


# --- the Kafka store's record handling and the command line --------------------------------------


def test_follower_keeps_the_latest_version_and_forgets_tombstones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    follower = SilenceFollower("silences", {}, Metrics(CollectorRegistry()))
    tp = TopicPartition("silences", 0)
    active = _silence("s1", -10, 60)
    ended = expire_silence(active, "Bình", NOW)
    follower._handle(tp, 0, b"s1", encode_silence(ended))
    follower._handle(tp, 1, b"s1", encode_silence(active))  # an older version arrives late
    follower._handle(tp, 2, b"s2", encode_silence(_silence("s2", 0, 5)))
    with caplog.at_level(logging.WARNING):
        follower._handle(tp, 3, b"bad", b"not json")
    assert "silences[0]@3" in caplog.text
    assert follower.get("s1") == ended
    follower._handle(tp, 4, b"s2", None)
    assert [s.id for s in follower.all()] == ["s1"]
    with pytest.raises(RuntimeError, match="not started"):
        asyncio.run(follower.write(active))


def test_web_command_takes_the_notifiers_silences_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.notify.service import NotifierSettings
    from streams.web.cli import _parser

    monkeypatch.setenv("IOC_NOTIFY_SILENCES_TOPIC", "city.silences")
    parser = _parser(WebSettings(), TopicSettings(), NotifierSettings().silences_topic)
    assert parser.parse_args([]).silences_topic == "city.silences"
    assert parser.parse_args(["--silences-topic", "t"]).silences_topic == "t"
