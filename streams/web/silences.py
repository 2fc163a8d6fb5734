"""Silences through the web API: validation and the ``/api/silences`` routes.

A silence made here is the same record the CLI writes (``iocstream silence add|expire``,
:mod:`connectors.notify.silences`): key = silence id, value = its latest version, on the
compacted silences topic (``IOC_NOTIFY_SILENCES_TOPIC``) that every notifier follows. The web
server never mutes anything itself; the notifiers do, within one poll of the record.

Routes (they sit under ``/api/``, so they need the token like the rest of the API):

* ``GET /api/silences`` — active and pending silences, newest first (``?all=1`` adds expired).
* ``GET /api/silences/{id}`` — one silence, any state.
* ``POST /api/silences`` — ``{"matchers": [...], "duration_minutes": N | "ends_at": ISO,
  "starts_at": ISO (optional, default now), "operator", "comment"}`` → 201 ``{"id", ...}``.
* ``DELETE /api/silences/{id}`` (``operator`` in the JSON body or the query) → expire it now,
  exactly as the CLI's ``expire`` does (same id, ``ends_at`` = now, the comment names who
  ended it) → 202; 200 if it had already ended; 404 for an unknown id.

Validation is stricter than the CLI's in one way, as in Alertmanager: at least one matcher must
not match an empty label value, so no silence can mute every alert. A silence lasts at most
:data:`~streams.web.actions.MAX_SILENCE` (7 days), like a silence action from the page.

The Kafka side (follow the topic, write with ``acks=all``) is
:class:`streams.web.silence_store.SilenceFollower`; :class:`SilenceStore` is what the routes
need of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import orjson
from aiohttp import web

from connectors.metrics import Metrics
from connectors.notify.labels import Matcher
from connectors.notify.silences import Silence, silence_to_dict
from schemas.alerts import format_time_us
from schemas.readings import parse_time
from streams.web.actions import MAX_COMMENT_LEN, MAX_SILENCE
from streams.web.auth import clean_operator

log = logging.getLogger(__name__)

MAX_MATCHERS: Final = 32

# --- pure validation and views -----------------------------------------------------------


class BadSilence(ValueError):
    """The request does not describe a valid silence (message is safe to show)."""


def _time(body: Mapping[str, Any], name: str) -> datetime | None:
    raw = body.get(name)
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except (TypeError, ValueError):
        raise BadSilence(
            f"{name} must be an ISO 8601 time with a timezone, e.g. 2026-11-28T18:00:00+07:00"
        ) from None


def build_silence(body: Mapping[str, Any], now: datetime) -> Silence:
    """The silence a ``POST /api/silences`` body asks for; :class:`BadSilence` saying why not.

    A ``starts_at`` in the past means now; the silence ends ``duration_minutes`` after its start
    or at ``ends_at`` (exactly one of them), at most 7 days after its start, which itself is at
    most 7 days ahead. The id is a fresh uuid4 (hex).
    """
    try:
        operator = clean_operator(body.get("operator"))
    except ValueError as exc:
        raise BadSilence(str(exc)) from None
    raw = body.get("matchers")
    if not isinstance(raw, list) or not raw:
        raise BadSilence('matchers must be a non-empty list such as ["alertname=river_level"]')
    if len(raw) > MAX_MATCHERS:
        raise BadSilence(f"at most {MAX_MATCHERS} matchers")
    try:
        matchers = [Matcher.parse(m) for m in raw]
    except ValueError as exc:
        raise BadSilence(str(exc)) from None
    if all(m.matches({}) for m in matchers):
        raise BadSilence(
            "these matchers would silence every alert: at least one must not "
            "match an empty value (e.g. alertname=...)"
        )
    comment = body.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_LEN:
        raise BadSilence(f"comment must be text of at most {MAX_COMMENT_LEN} characters")
    starts = max(_time(body, "starts_at") or now, now)
    if starts - now > MAX_SILENCE:
        raise BadSilence("a silence starts at most 7 days ahead")
    minutes, ends = body.get("duration_minutes"), _time(body, "ends_at")
    if (minutes is None) == (ends is None):
        raise BadSilence("give either duration_minutes or ends_at")
    if ends is None:
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0:
            raise BadSilence("duration_minutes must be a number > 0")
        if minutes > MAX_SILENCE / timedelta(minutes=1):
            raise BadSilence("a silence lasts at most 7 days (10080 minutes)")
        ends = starts + timedelta(minutes=minutes)
    if ends <= starts:
        raise BadSilence("ends_at must be after the silence starts (and in the future)")
    if ends - starts > MAX_SILENCE:
        raise BadSilence("a silence lasts at most 7 days")
    return Silence.new(raw, starts, ends, operator, comment)


def expire_silence(found: Silence, operator: str, now: datetime) -> Silence:
    """The version of ``found`` that ends it now (as ``iocstream silence expire`` writes it).

    Its ``updated_at`` is later than ``found``'s even if another host's clock ran ahead, so
    every reader keeps the expiry.
    """
    return found.expired(operator, now)


def silence_state(s: Silence, now: datetime) -> str:
    """``active``, ``pending`` (starts later) or ``expired``."""
    if s.active(now):
        return "active"
    return "pending" if s.starts_at > now else "expired"


def silence_view(s: Silence, now: datetime) -> dict[str, Any]:
    """The JSON shape of one silence."""
    return {**silence_to_dict(s), "state": silence_state(s, now)}


def list_views(
    silences: Iterable[Silence], now: datetime, *, expired: bool
) -> list[dict[str, Any]]:
    """Views newest first (by start); expired ones only when ``expired``."""
    chosen = [s for s in silences if expired or s.ends_at > now]
    chosen.sort(key=lambda s: (s.starts_at, s.updated_at, s.id), reverse=True)
    return [silence_view(s, now) for s in chosen]


# --- routes -------------------------------------------------------------------------------


class SilenceStore(Protocol):
    """The silences the server knows (:class:`SilenceFollower` in production)."""

    ready: asyncio.Event

    def get(self, silence_id: str) -> Silence | None: ...

    def all(self) -> list[Silence]: ...

    async def write(self, silence: Silence) -> None: ...


@dataclass(frozen=True)
class _Api:
    store: SilenceStore
    metrics: Metrics
    clock: Callable[[], datetime]


_API: Final = web.AppKey("silence_api", _Api)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


async def _body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise BadSilence("the body must be a JSON object")
    return body


async def _list(request: web.Request) -> web.Response:
    api = request.app[_API]
    expired = request.query.get("all", "") not in ("", "0", "false")
    views = list_views(api.store.all(), api.clock(), expired=expired)
    return _json({"silences": views, "ready": api.store.ready.is_set()})


async def _one(request: web.Request) -> web.Response:
    api = request.app[_API]
    found = api.store.get(request.match_info["id"])
    if found is None:
        return _error(404, f"no silence {request.match_info['id']}")
    return _json(silence_view(found, api.clock()))


async def _send(api: _Api, silence: Silence, operation: str) -> web.Response | None:
    try:
        await api.store.write(silence)
    except Exception as exc:  # noqa: BLE001  # any producer failure is reported, not fatal
        api.metrics.web_silences.labels(operation=operation, outcome="failed").inc()
        log.error("could not write silence %s (%s): %s", silence.id, operation, exc)
        return _error(503, "the silence could not be written to Kafka; try again")
    api.metrics.web_silences.labels(operation=operation, outcome="sent").inc()
    return None


async def _create(request: web.Request) -> web.Response:
    api = request.app[_API]
    try:
        silence = build_silence(await _body(request), api.clock())
    except BadSilence as exc:
        api.metrics.web_silences.labels(operation="create", outcome="rejected").inc()
        return _error(400, str(exc))
    failed = await _send(api, silence, "create")
    if failed is not None:
        return failed
    log.info(
        "silence %s created by %s until %s: %s",
        silence.id,
        silence.created_by,
        format_time_us(silence.ends_at),
        " ".join(map(str, silence.matchers)),
    )
    response = _json(silence_view(silence, api.clock()), status=201)
    response.headers["Location"] = f"/api/silences/{silence.id}"
    return response


async def _expire(request: web.Request) -> web.Response:
    api = request.app[_API]
    silence_id = request.match_info["id"]
    try:
        body = await _body(request, optional=True)
        operator = clean_operator(body.get("operator", request.query.get("operator")))
    except ValueError as exc:  # BadSilence included
        api.metrics.web_silences.labels(operation="expire", outcome="rejected").inc()
        return _error(400, str(exc))
    found = api.store.get(silence_id)
    if found is None:
        if not api.store.ready.is_set():
            return _error(503, "silences are still being read from Kafka; try again")
        return _error(404, f"no silence {silence_id}")
    now = api.clock()
    if found.ends_at <= now:
        return _json(silence_view(found, now))
    expired = expire_silence(found, operator, now)
    failed = await _send(api, expired, "expire")
    if failed is not None:
        return failed
    log.info("silence %s expired by %s", silence_id, operator)
    return _json(silence_view(expired, now), status=202)


def add_silence_routes(
    app: web.Application, store: SilenceStore, metrics: Metrics, clock: Callable[[], datetime]
) -> None:
    """Serve the ``/api/silences`` routes of ``app`` from ``store``."""
    app[_API] = _Api(store, metrics, clock)
    app.router.add_get("/api/silences", _list)
    app.router.add_post("/api/silences", _create)
    app.router.add_get("/api/silences/{id}", _one)
    app.router.add_delete("/api/silences/{id}", _expire)
