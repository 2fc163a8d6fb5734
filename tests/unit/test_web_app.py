"""The web application in process: auth, alerts API, actions, SSE, and that tokens stay secret.

Kafka is replaced by an in-memory publisher and the feed is fed directly (its consumer is not
started), so these tests exercise every route without services.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from connectors.metrics import Metrics
from schemas.alerts import AlertAction, encode_event
from streams.web.app import WebContext, make_app, make_runner
from streams.web.auth import COOKIE, session_value
from streams.web.book import AlertBook
from streams.web.feed import AlertFeed
from tests.unit.test_web_support import T0, acknowledged, event

TOKEN = "s3cret-t0ken-value"
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
TP = TopicPartition("alerts", 0)


class FakePublisher:
    def __init__(self) -> None:
        self.actions: list[AlertAction] = []
        self.fail = False

    async def publish(self, action: AlertAction) -> None:
        if self.fail:
            raise RuntimeError("broker down")
        self.actions.append(action)


def _context() -> tuple[WebContext, FakePublisher]:
    metrics = Metrics(CollectorRegistry())
    feed = AlertFeed("alerts", {}, AlertBook(), metrics)
    feed.ready.set()
    for offset, ev in enumerate([event("a", 1), event("b", 1, district="chau-doc", minutes=1)]):
        feed._handle(TP, offset, encode_event(ev))
    publisher = FakePublisher()

    async def tiles() -> list[dict[str, Any]]:
        return [{"district": "long-xuyen", "aqi": None}]

    ctx = WebContext(
        token=TOKEN, feed=feed, publisher=publisher, metrics=metrics, tiles=tiles, clock=lambda: NOW
    )
    return ctx, publisher


def _run(
    body: Callable[
        [TestClient[web.Request, web.Application], WebContext, FakePublisher], Awaitable[None]
    ],
) -> None:
    async def main() -> None:
        ctx, publisher = _context()
        server = TestServer(make_app(ctx))
        async with TestClient(server) as client:
            await body(client, ctx, publisher)

    asyncio.run(main())


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_api_needs_the_token() -> None:
    async def body(client: TestClient[Any, Any], ctx: WebContext, _p: FakePublisher) -> None:
        assert (await client.get("/api/alerts")).status == 401
        bad = await client.get("/api/alerts", headers={"Authorization": "Bearer nope"})
        assert bad.status == 401
        assert (await client.get("/api/alerts", headers=AUTH)).status == 200
        assert (await client.get("/healthz")).status == 200
        page = await client.get("/")
        assert page.status == 200
        assert "data-i18n" in await page.text()
        assert (await client.get("/static/app.js")).status == 200
        assert ctx.metrics.web_login_failures._value.get() == 1

    _run(body)


def test_login_sets_a_cookie_that_is_not_the_token() -> None:
    async def body(client: TestClient[Any, Any], _c: WebContext, _p: FakePublisher) -> None:
        wrong = await client.post("/api/login", data=orjson.dumps({"token": "guess"}))
        assert wrong.status == 401
        ok = await client.post("/api/login", data=orjson.dumps({"token": TOKEN}))
        assert ok.status == 204
        cookie = ok.cookies[COOKIE]
        assert cookie.value == session_value(TOKEN)
        assert TOKEN not in cookie.value
        assert cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        assert (await client.get("/api/session")).status == 204  # the jar sends the cookie
        assert (await client.post("/api/logout")).status == 204
        assert (await client.get("/api/session")).status == 401

    _run(body)


def test_alerts_filters_and_history() -> None:
    async def body(client: TestClient[Any, Any], _c: WebContext, _p: FakePublisher) -> None:
        data = await (await client.get("/api/alerts", headers=AUTH)).json()
        assert [a["fingerprint"] for a in data["alerts"]] == ["b", "a"]
        assert data["facets"]["districts"] == ["chau-doc", "long-xuyen"]
        only = await client.get("/api/alerts?district=long-xuyen&state=open", headers=AUTH)
        assert [a["fingerprint"] for a in (await only.json())["alerts"]] == ["a"]
        one = await (await client.get("/api/alerts/a", headers=AUTH)).json()
        assert one["alert"]["severity"] == "major"
        assert [h["kind"] for h in one["history"]] == ["firing"]
        assert (await client.get("/api/alerts/zzz", headers=AUTH)).status == 404
        recent = await (await client.get("/api/history?limit=1", headers=AUTH)).json()
        assert [e["event_id"] for e in recent["events"]] == ["b#1"]
        tiles = await (await client.get("/api/tiles", headers=AUTH)).json()
        assert tiles["tiles"][0]["district"] == "long-xuyen"

    _run(body)


def test_actions_are_published_with_the_operator_name() -> None:
    async def body(client: TestClient[Any, Any], ctx: WebContext, pub: FakePublisher) -> None:
        url = "/api/alerts/a/actions"
        ack = {"action": "acknowledge", "operator": "  Trần Thị Bình ", "alert_id": "a:1"}
        r = await client.post(url, data=orjson.dumps(ack), headers=AUTH)
        assert r.status == 202, await r.text()
        silence = {"action": "silence", "operator": "Bình", "silence_minutes": 60}
        assert (await client.post(url, data=orjson.dumps(silence), headers=AUTH)).status == 202
        assign = {"action": "assign", "operator": "Bình", "assignee": "Đội môi trường"}
        assert (await client.post(url, data=orjson.dumps(assign), headers=AUTH)).status == 202
        first, second, third = pub.actions
        assert (first.action, first.actor, first.alert_id, first.at) == (
            "acknowledge",
            "Trần Thị Bình",
            "a:1",
            NOW,
        )
        assert first.action_id
        assert first.action_id != second.action_id
        assert second.until == NOW + timedelta(minutes=60)
        assert third.assignee == "Đội môi trường"
        for bad in (
            {"action": "acknowledge"},  # no operator
            {"action": "acknowledge", "operator": "system"},
            {"action": "explode", "operator": "x"},
            {"action": "silence", "operator": "x"},
            {"action": "silence", "operator": "x", "silence_minutes": 60 * 24 * 30},
            {"action": "assign", "operator": "x"},
        ):
            resp = await client.post(url, data=orjson.dumps(bad), headers=AUTH)
            assert resp.status == 400, bad
        missing = await client.post("/api/alerts/zzz/actions", data=orjson.dumps(ack), headers=AUTH)
        assert missing.status == 404
        pub.fail = True
        assert (await client.post(url, data=orjson.dumps(ack), headers=AUTH)).status == 503
        assert len(pub.actions) == 3
        sent = ctx.metrics.web_actions.labels(action="acknowledge", outcome="sent")
        assert sent._value.get() == 1

    _run(body)


async def _sse_event(resp: Any) -> tuple[str, Any]:
    name, data = "", b""
    while True:
        line = await asyncio.wait_for(resp.content.readline(), 10)
        if line.startswith(b"event: "):
            name = line[7:].strip().decode()
        elif line.startswith(b"data: "):
            data = line[6:].strip()
        elif line == b"\n" and name:
            return name, orjson.loads(data)


def test_sse_sends_a_snapshot_then_each_new_event_once() -> None:
    async def body(client: TestClient[Any, Any], ctx: WebContext, _p: FakePublisher) -> None:
        resp = await client.get("/api/stream", headers=AUTH)
        assert resp.headers["Content-Type"] == "text/event-stream"
        name, snap = await _sse_event(resp)
        assert name == "snapshot"
        assert [a["fingerprint"] for a in snap["alerts"]] == ["b", "a"]
        ack = acknowledged(event("a", 1), "op", 30)
        ctx.feed._handle(TP, 2, encode_event(ack))
        ctx.feed._handle(TP, 3, encode_event(ack))  # redelivery: not sent again
        ctx.feed._handle(TP, 4, b"not json")  # skipped, counted
        ctx.feed._handle(TP, 5, encode_event(event("c", 1, minutes=40)))
        name, msg = await _sse_event(resp)
        assert (name, msg["alert"]["acknowledged_by"], msg["event"]["kind"]) == (
            "alert",
            "op",
            "acknowledged",
        )
        name, msg = await _sse_event(resp)
        assert msg["alert"]["fingerprint"] == "c"
        outcomes = ctx.metrics.web_alert_events
        assert outcomes.labels(outcome="duplicate")._value.get() == 1
        assert outcomes.labels(outcome="invalid")._value.get() == 1
        ctx.feed.close_subscribers()
        assert await resp.content.read() == b""  # the stream ends
        resp.release()

    _run(body)


def test_token_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        ctx, _ = _context()
        runner = make_runner(ctx)  # exactly what `iocstream web` runs
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            base = f"http://{host}:{port}"
            async with ClientSession() as client:
                for resp in (
                    await client.get(f"{base}/api/alerts?token={TOKEN}", headers=AUTH),
                    await client.post(f"{base}/api/login", data=orjson.dumps({"token": TOKEN})),
                    await client.post(f"{base}/api/login", data=orjson.dumps({"token": "x"})),
                    await client.get(f"{base}/?x=1#token=abc"),
                ):
                    resp.release()
        finally:
            await runner.cleanup()

    asyncio.run(main())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "/api/alerts" in text  # the access log did log the request...
    assert TOKEN not in text  # ...but never the token


def test_event_fixture_is_consistent() -> None:
    assert event("a", 1).state.alert_id == "a:1"
    assert acknowledged(event("a", 1), "x", 1).at == T0 + timedelta(minutes=1)


def test_web_command_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.web.cli import run

    monkeypatch.delenv("IOC_WEB_TOKEN", raising=False)
    assert run(["--port", "0", "--metrics-port", "0"]) == 2
