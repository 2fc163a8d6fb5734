"""One ClickHouse HTTP query request, from its parameters to its response.

Steps: parse parameters (:mod:`protocol`), check credentials, read the statement
(:mod:`body`; multipart forms carry the query, bound parameters and external tables),
take a connection (the session's, or one from the pool), apply the request's database and
settings, run the query or stream the insert, answer (:mod:`output`), then restore the
connection. Every failure becomes ClickHouse's error response; a failed or abandoned insert
is cancelled (see :class:`~connectors.chserver.engine.Inserter` for what that keeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from connectors.chserver import compression
from connectors.chserver.body import Head, RequestBody
from connectors.chserver.engine import Connection, Engine, Inserter
from connectors.chserver.errors import (
    AUTHENTICATION_FAILED,
    CANNOT_READ_ALL_DATA,
    NOT_IMPLEMENTED,
    READONLY,
    SYNTAX_ERROR,
    UNKNOWN_EXCEPTION,
    ServerError,
)
from connectors.chserver.form import MAX_FORM, FormError, parse_form
from connectors.chserver.output import Responder, error_response
from connectors.chserver.protocol import (
    ExternalTable,
    QuerySpec,
    Stats,
    authenticated,
    choose_encoding,
    parse_request,
    quote_identifier,
)
from connectors.chserver.sessions import SessionRegistry
from connectors.chserver.statement import (
    READONLY_KINDS,
    RESULT_KINDS,
    changes_connection,
    output_format,
    statement_kind,
)

log = logging.getLogger(__name__)
Run = Callable[..., Awaitable[Any]]

# Output formats whose chDB streaming chunks concatenate to exactly the full output.
# Others (JSON, *WithNames, Parquet, Arrow...) repeat headers per chunk: run them whole.
STREAMABLE_FORMATS = frozenset(
    {
        "Native",
        "TabSeparated",
        "TSV",
        "TabSeparatedRaw",
        "TSVRaw",
        "CSV",
        "RowBinary",
        "JSONEachRow",
        "JSONCompactEachRow",
        "JSONStringsEachRow",
        "JSONLines",
        "NDJSON",
    }
)
_STREAM_KINDS = frozenset({"SELECT", "WITH", "("})
_GET_READONLY = (
    "Cannot execute query in readonly mode. For queries over HTTP, method GET implies "
    "readonly. You should use method POST for modifying queries"
)


@dataclass
class ServerContext:
    """What every request shares."""

    engine: Engine
    sessions: SessionRegistry
    run: Run
    pool_slots: asyncio.Semaphore
    display_name: str
    user: str | None = None
    password: str | None = None


class QueryHandler:
    """The aiohttp handler for ClickHouse's query endpoint (any path but /ping etc.)."""

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def drain(self, grace_s: float, cancel_wait_s: float) -> int:
        """At shutdown (no new connections): wait up to ``grace_s`` for the requests in
        flight, then cancel the rest (their streams and inserts are cancelled) and wait
        up to ``cancel_wait_s`` for them. Returns how many had to be cancelled."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace_s)
        late = set(self._in_flight)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=cancel_wait_s)
        return len(late)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        started = time.monotonic()
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        base = {
            "X-ClickHouse-Server-Display-Name": self._ctx.display_name,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self._ctx.engine.timezone,
        }
        status = 200
        kind = "?"
        detail = ""
        resp: web.StreamResponse | None = None
        responder: Responder | None = None
        try:
            if (
                request.method in ("GET", "HEAD")
                and "query" not in request.query
                and not request.body_exists
            ):
                return web.Response(text="Ok.\n")
            spec, files, body = await self._parse(request, query_id)
            base["X-ClickHouse-Query-Id"] = spec.query_id
            if spec.settings.get("session_timezone"):
                base["X-ClickHouse-Timezone"] = spec.settings["session_timezone"]
            detail = (
                f" session={spec.session_id is not None} settings={','.join(spec.settings) or '-'}"
                f" in={request.headers.get('Content-Encoding', '-')}"
            )
            if not authenticated(spec.credentials, self._ctx.user, self._ctx.password):
                raise ServerError.of(
                    AUTHENTICATION_FAILED,
                    f"{spec.credentials.user}: Authentication failed: password is incorrect, "
                    "or there is no user with such name",
                    403,
                )
            if spec.native_compression:
                raise ServerError.of(
                    NOT_IMPLEMENTED,
                    "ClickHouse native compression (compress=1/decompress=1) is not supported by "
                    "this embedded server; use HTTP compression (Content-Encoding, "
                    "enable_http_compression=1)",
                    501,
                )
            head = await body.head() if body is not None else Head(query=spec.query.encode())
            sql = (
                head.insert.statement if head.insert else head.query.decode("utf-8", "replace")
            ).strip()
            kind = statement_kind(sql)
            if not sql:
                raise ServerError.of(SYNTAX_ERROR, "Empty query", 400)
            if request.method == "GET" and kind not in READONLY_KINDS:
                raise ServerError.of(READONLY, _GET_READONLY)
            responder = self._responder(request, spec, base)
            resp = await self._execute(spec, sql, kind, head, body, files, responder)
            return resp
        except ServerError as err:
            status = err.status
            log.warning("query %s failed: %s", query_id, err.first_line())
            return error_response(err, base, self._ctx.engine.version)
        except ConnectionError:
            status = 499  # the client went away: answer into the void, aiohttp closes quietly
            log.debug("query %s: client disconnected", query_id)
            if responder is not None and responder.response is not None:
                return responder.response
            return web.Response(status=499)
        except HttpProcessingError as exc:  # a malformed or truncated request body
            bad = ServerError.of(CANNOT_READ_ALL_DATA, f"Cannot read the request body: {exc}", 400)
            status = bad.status
            log.warning("query %s failed: %s", query_id, bad.first_line())
            return error_response(bad, base, self._ctx.engine.version)
        except Exception as exc:
            status = 500
            log.exception("query %s: unexpected server error", query_id)
            if responder is not None and responder.prepared:
                raise
            unknown = ServerError.of(UNKNOWN_EXCEPTION, f"Unexpected server error: {exc!r}")
            return error_response(unknown, base, self._ctx.engine.version)
        finally:
            log.debug(
                "%s %s query_id=%s status=%d %.3fs%s out=%s",
                request.method,
                kind,
                query_id,
                status,
                time.monotonic() - started,
                detail,
                resp.headers.get("Content-Encoding", "-") if resp is not None else "-",
            )

    async def _parse(
        self, request: web.Request, query_id: str
    ) -> tuple[QuerySpec, list[tuple[str, bytes]], RequestBody | None]:
        """The request's parameters, external files and body (None for a form)."""
        params = list(request.query.items())
        files: list[tuple[str, bytes]] = []
        form = request.content_type == "multipart/form-data"
        if form:
            fields, files = await _read_multipart(request)
            params += fields
        params.append(("query_id", query_id))
        spec = parse_request(params, request.headers, multipart=form)
        if form:
            return spec, files, None
        decoder = compression.decoder(request.headers.get("Content-Encoding"))
        content = request.content if request.body_exists else None
        return spec, files, RequestBody(spec.query, content, decoder)

    def _responder(self, request: web.Request, spec: QuerySpec, base: dict[str, str]) -> Responder:
        """How to answer: compressed with the client's preferred encoding when the
        request (or else the engine's ``enable_http_compression``, 1 in chDB) allows."""
        encoding = None
        compress = spec.compress_response
        if compress if compress is not None else self._ctx.engine.http_compression:
            accept = request.headers.get("Accept-Encoding")
            encoding = choose_encoding(accept, compression.RESPONSE_ENCODINGS)
        return Responder(
            request, base, self._ctx.run, encoding=encoding, zlib_level=spec.zlib_level
        )

    async def _execute(
        self,
        spec: QuerySpec,
        sql: str,
        kind: str,
        head: Head,
        body: RequestBody | None,
        files: list[tuple[str, bytes]],
        responder: Responder,
    ) -> web.StreamResponse:
        run = self._ctx.run
        tables = [spec.external_table(name) for name, _ in files]
        bare = changes_connection(sql)
        async with self._connection(spec, bare=bare) as conn:
            loaded: list[ExternalTable] = []
            try:
                for table, (_, data) in zip(tables, files, strict=True):
                    loaded.append(table)
                    await run(_load_external, conn, table, data)
                if head.insert is not None and body is not None:
                    return await self._insert(conn, head, body, responder)
                return await self._query(conn, sql, kind, spec, responder)
            finally:
                for table in loaded:
                    await run(_drop_external, conn, table)

    @contextlib.asynccontextmanager
    async def _connection(self, spec: QuerySpec, *, bare: bool) -> AsyncIterator[Connection]:
        """The request's connection, prepared with its database and settings (or in its
        own state when ``bare``). A pooled connection that ran a state-changing
        statement is closed afterwards, as ClickHouse forgets such state without a session."""
        ctx = self._ctx
        if spec.session_id:
            sessions = ctx.sessions
            async with sessions.use(
                spec.session_id, idle_timeout=spec.session_timeout, check=spec.session_check
            ) as session:
                try:
                    await ctx.run(session.conn.prepare, spec.database, spec.settings, bare=bare)
                    yield session.conn
                finally:
                    broken = session.conn.broken
            if spec.close_session or broken:
                if broken:
                    log.warning("session %s could not be restored; closing it", spec.session_id)
                await sessions.close(spec.session_id)
            return
        async with ctx.pool_slots:
            conn = await ctx.run(ctx.engine.acquire, spec.database, spec.settings, bare=bare)
            try:
                yield conn
            finally:
                conn.broken = conn.broken or bare
                await ctx.run(ctx.engine.release, conn)

    async def _query(
        self, conn: Connection, sql: str, kind: str, spec: QuerySpec, responder: Responder
    ) -> web.StreamResponse:
        run = self._ctx.run
        fmt = output_format(sql) or spec.default_format
        stream = None
        if kind in _STREAM_KINDS and fmt in STREAMABLE_FORMATS:
            stream = await run(conn.stream, sql, spec.default_format, spec.params)
        if stream is None:
            result = await run(conn.query, sql, spec.default_format, spec.params)
            shown = kind in RESULT_KINDS or len(result.data) > 0
            return await responder.complete(result, result.stats, fmt if shown else None)
        try:
            if spec.wait_end_of_query:
                return await responder.spooled(stream, fmt, spec.buffer_size)
            return await responder.streamed(stream, fmt)
        finally:
            await run(stream.cancel)

    async def _insert(
        self, conn: Connection, head: Head, body: RequestBody, responder: Responder
    ) -> web.StreamResponse:
        assert head.insert is not None
        run = self._ctx.run
        inserter: Inserter = await run(conn.insert, head.insert.statement, head.insert.format)
        pending: asyncio.Future[Any] | None = None
        try:
            if head.data:
                await run(inserter.append, head.data)
            async for raw in body.batches():
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(run(_feed, body, inserter, raw))
            if pending is not None:
                await pending
                pending = None
            await run(body.finish)
            stats: Stats = await run(inserter.finish)
        except BaseException:
            if pending is not None:  # never cancel while an append is running
                await asyncio.gather(pending, return_exceptions=True)
            await run(inserter.cancel)
            raise
        return await responder.complete(None, stats, None)


def _feed(body: RequestBody, inserter: Inserter, raw: bytes) -> None:
    inserter.append(body.decode(raw))


def _load_external(conn: Connection, table: ExternalTable, data: bytes) -> None:
    conn.command(table.create_sql())
    inserter = conn.insert(f"INSERT INTO {quote_identifier(table.name)}", table.format)
    try:
        inserter.append(data)
        inserter.finish()
    except ServerError:
        inserter.cancel()
        raise


def _drop_external(conn: Connection, table: ExternalTable) -> None:
    try:
        conn.command(f"DROP TEMPORARY TABLE IF EXISTS {quote_identifier(table.name)}")
    except ServerError:
        conn.broken = True


async def _read_whole(request: web.Request) -> bytes | bytearray:
    """The request body, into one buffer of its Content-Length when it has one (aiohttp's
    ``read`` grows a buffer and copies it again: twice the time for a 13 MiB form)."""
    size = request.content_length
    if size is None or request.headers.get("Content-Encoding"):
        return await request.read()  # compressed or chunked: aiohttp knows the length
    if size > MAX_FORM:  # the application's client_max_size, which read() applies
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=size)
    buf = bytearray(size)
    view = memoryview(buf)
    pos = 0
    async for chunk in request.content.iter_any():
        end = pos + len(chunk)
        if end > size:
            raise ServerError.of(CANNOT_READ_ALL_DATA, "request body longer than its length", 400)
        view[pos:end] = chunk
        pos = end
    if pos != size:
        raise ServerError.of(CANNOT_READ_ALL_DATA, f"request body ended at {pos} of {size}", 400)
    return buf


async def _read_multipart(
    request: web.Request,
) -> tuple[list[tuple[str, str]], list[tuple[str, bytes]]]:
    """Form fields (query, param_*, settings) and files (external tables) of a form, read
    whole (at most the application's ``client_max_size``) and cut by :mod:`form`."""
    body = await _read_whole(request)
    try:
        return parse_form(request.headers.get("Content-Type", ""), body)
    except FormError as exc:
        raise ServerError.of(SYNTAX_ERROR, f"Cannot read the multipart form: {exc}", 400) from None
