"""The aiohttp application of the live alert feed: pages, JSON API and server-sent events.

Routes (everything under ``/api/`` except ``/api/login`` needs the token, see
:mod:`streams.web.auth`):

=======  ===============================  ====================================================
GET      ``/``, ``/static/...``           the page (plain HTML/CSS/JS; holds no data itself)
GET      ``/healthz``                     liveness and readiness (book rebuilt), no auth
POST     ``/api/login``                   ``{"token"}`` → session cookie; ``/api/logout``
GET      ``/api/session``                 204 if the session is valid
GET      ``/api/alerts``                  alerts, newest first; ``?district=&kind=&state=``
GET      ``/api/alerts/{fp}``             one alert and its history
POST     ``/api/alerts/{fp}/actions``     ``{"action", "operator", ...}`` → ``ioc.alert-actions``
GET      ``/api/history``                 newest events of all alerts (``?limit=``)
GET      ``/api/tiles``                   indicator tiles per district
GET      ``/api/silences``                active and pending silences, newest first (``?all=1``)
POST     ``/api/silences``                ``{"matchers", "duration_minutes"|"ends_at", ...}`` → 201
GET      ``/api/silences/{id}``           one silence
DELETE   ``/api/silences/{id}``           expire it now (``operator``) → 202
GET      ``/api/stream``                  SSE: ``snapshot`` at connect, then ``alert`` events
=======  ===============================  ====================================================

Guarantees: the token is never logged (the access log writes the path without the query
string and no headers); a wrong token is answered 401 and counted; SSE streams end cleanly at
shutdown; an action answers 202 and a new silence 201 only after Kafka acknowledged it
(silences: :mod:`streams.web.silences`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from connectors.metrics import Metrics
from schemas.alerts import AlertAction, format_time_us
from streams.web.actions import BadAction, build_action
from streams.web.auth import COOKIE, authorized, session_value, token_matches
from streams.web.book import AlertBook, Filter
from streams.web.feed import CLOSE, AlertFeed
from streams.web.silences import SilenceStore, add_silence_routes

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).with_name("static")
HEARTBEAT_S: Final = 15.0
_PUBLIC: Final = frozenset({"/", "/healthz", "/api/login", "/api/logout"})


class Publisher(Protocol):
    """Where actions go (:class:`streams.web.actions.ActionPublisher` in production)."""

    async def publish(self, action: AlertAction) -> None: ...


class Service(Protocol):
    """Something the app starts with itself and stops at shutdown."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class WebContext:
    """Everything the handlers need; ``services`` are started and stopped with the app.

    Without ``silences`` the server has no ``/api/silences`` routes.
    """

    token: str
    feed: AlertFeed
    publisher: Publisher
    metrics: Metrics
    tiles: Callable[[], Awaitable[list[dict[str, Any]]]]
    services: list[Service] = field(default_factory=list)
    silences: SilenceStore | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @property
    def book(self) -> AlertBook:
        return self.feed.book


CTX: Final = web.AppKey("ctx", WebContext)


class QuietAccessLogger(AbstractAccessLogger):
    """Access log without query strings or headers (tokens could travel there)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.3fs",
            request.remote,
            request.method,
            request.path,
            response.status,
            time,
        )


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    path = request.path
    if (
        path.startswith("/api/")
        and path not in _PUBLIC
        and not authorized(
            request.headers.get("Authorization"), request.cookies.get(COOKIE), ctx.token
        )
    ):
        if request.headers.get("Authorization") or request.cookies.get(COOKIE):
            ctx.metrics.web_login_failures.inc()
        return _error(401, "unauthorized: log in with the access token")
    response = await handler(request)
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'self'; frame-ancestors 'self'"
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def _index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _healthz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return _json({"ok": True, "ready": ctx.feed.ready.is_set(), "alerts": len(ctx.book)})


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


async def _login(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    token = (await _body(request)).get("token")
    if not isinstance(token, str) or not token_matches(token, ctx.token):
        ctx.metrics.web_login_failures.inc()
        log.warning("refused a login from %s: wrong token", request.remote)
        return _error(401, "wrong token")
    response = web.Response(status=204)
    response.set_cookie(
        COOKIE,
        session_value(ctx.token),
        httponly=True,
        samesite="Strict",
        path="/",
        secure=request.secure,
    )
    return response


async def _logout(_request: web.Request) -> web.Response:
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response


async def _session(_request: web.Request) -> web.Response:
    return web.Response(status=204)


def _filter(request: web.Request) -> Filter:
    q = request.query
    return Filter(
        district=q.get("district") or None, kind=q.get("kind") or None, state=q.get("state") or None
    )


def _snapshot(ctx: WebContext) -> dict[str, Any]:
    return {
        "alerts": ctx.book.alerts(),
        "facets": ctx.book.facets(),
        "history": ctx.book.recent(200),
        "ready": ctx.feed.ready.is_set(),
    }


async def _alerts(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return _json(
        {
            "alerts": ctx.book.alerts(_filter(request)),
            "facets": ctx.book.facets(),
            "ready": ctx.feed.ready.is_set(),
        }
    )


async def _alert(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    fingerprint = request.match_info["fp"]
    view = ctx.book.view(fingerprint)
    if view is None:
        return _error(404, f"no alert {fingerprint}")
    return _json({"alert": view, "history": ctx.book.history(fingerprint)})


async def _history(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
    except ValueError:
        return _error(400, "limit must be an integer")
    return _json({"events": ctx.book.recent(limit, _filter(request))})


async def _action(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    fingerprint = request.match_info["fp"]
    body = await _body(request)
    kind = str(body.get("action", "?"))[:20]
    if ctx.book.state(fingerprint) is None:
        return _error(404, f"no alert {fingerprint}")
    try:
        action = build_action(fingerprint, body, ctx.clock())
    except BadAction as exc:
        ctx.metrics.web_actions.labels(action=kind, outcome="rejected").inc()
        return _error(400, str(exc))
    try:
        await ctx.publisher.publish(action)
    except Exception as exc:  # noqa: BLE001  # any producer failure is reported, not fatal
        ctx.metrics.web_actions.labels(action=action.action, outcome="failed").inc()
        log.error("could not send %s of %s: %s", action.action, fingerprint, exc)
        return _error(503, "the action could not be sent to Kafka; try again")
    ctx.metrics.web_actions.labels(action=action.action, outcome="sent").inc()
    log.info(
        "%s of alert %s by operator %s sent (action %s)",
        action.action,
        fingerprint,
        action.actor,
        action.action_id,
    )
    return _json(
        {"action_id": action.action_id, "action": action.action, "at": format_time_us(action.at)},
        status=202,
    )


async def _tiles(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return _json({"tiles": await ctx.tiles(), "at": format_time_us(ctx.clock())})


async def _send(response: web.StreamResponse, event: str, data: Any) -> None:
    await response.write(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")


async def _stream(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue = ctx.feed.subscribe()  # before the snapshot, so nothing falls in between
    try:
        await _send(response, "snapshot", _snapshot(ctx))
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if message is CLOSE:
                break
            await _send(response, "alert", message)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        ctx.feed.unsubscribe(queue)
    return response


async def _services(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]
    started: list[Service] = []
    try:
        for service in ctx.services:
            await service.start()
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            with contextlib.suppress(Exception):
                await service.stop()


async def _on_shutdown(app: web.Application) -> None:
    app[CTX].feed.close_subscribers()


def make_app(ctx: WebContext) -> web.Application:
    """The application for ``ctx`` (services start with the app's runner)."""
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[CTX] = ctx
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    app.router.add_get("/healthz", _healthz)
    app.router.add_post("/api/login", _login)
    app.router.add_post("/api/logout", _logout)
    app.router.add_get("/api/session", _session)
    app.router.add_get("/api/alerts", _alerts)
    app.router.add_get("/api/alerts/{fp}", _alert)
    app.router.add_post("/api/alerts/{fp}/actions", _action)
    app.router.add_get("/api/history", _history)
    app.router.add_get("/api/tiles", _tiles)
    app.router.add_get("/api/stream", _stream)
    if ctx.silences is not None:
        add_silence_routes(app, ctx.silences, ctx.metrics, ctx.clock)
    app.cleanup_ctx.append(_services)
    app.on_shutdown.append(_on_shutdown)
    return app


def make_runner(ctx: WebContext) -> web.AppRunner:
    """The runner production uses: the quiet access log, a short shutdown grace."""
    return web.AppRunner(make_app(ctx), access_log_class=QuietAccessLogger, shutdown_timeout=5.0)
