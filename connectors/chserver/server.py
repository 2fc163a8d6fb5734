"""The HTTP server: routes, thread pool, session expiry, startup and graceful shutdown.

:func:`serve` blocks until SIGTERM or SIGINT. On a signal it stops accepting connections,
lets in-flight requests finish (up to ``SHUTDOWN_GRACE`` seconds, then cancels them: an
unfinished insert is cancelled), closes every session and pooled connection and finally
the engine, so chDB flushes and releases the data directory.

Logging: INFO at start and stop, one DEBUG line per request, WARNING for failed requests
(with the query id). Passwords and request URLs (which may carry one) are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.chserver.engine import Connection, Engine
from connectors.chserver.errors import QUERY_WAS_CANCELLED, ServerError
from connectors.chserver.form import MAX_FORM
from connectors.chserver.handler import QueryHandler, ServerContext
from connectors.chserver.sessions import SessionRegistry

log = logging.getLogger(__name__)

# The stack gives a service 20 s between SIGTERM and SIGKILL.
SHUTDOWN_GRACE = 10.0
ENGINE_GRACE = 5.0
MAX_WORKERS = 32
MAX_POOLED_REQUESTS = 64
MAX_SESSIONS = 256
MAX_URL = 1 << 20  # ClickHouse's http_max_uri_size


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="Ok.\n")


def build_app(ctx: ServerContext) -> tuple[web.Application, QueryHandler]:
    """The aiohttp application: /ping and /replicas_status, everything else is a query."""
    app = web.Application(client_max_size=MAX_FORM)
    app.router.add_route("GET", "/ping", _ok)
    app.router.add_route("GET", "/replicas_status", _ok)
    handler = QueryHandler(ctx)
    app.router.add_route("GET", "/{tail:.*}", handler)
    app.router.add_route("POST", "/{tail:.*}", handler)
    return app, handler


class EngineThreads:
    """The thread pool for blocking engine calls, counting the calls still running.

    A call whose awaiting request was cancelled keeps running in its thread; shutdown waits
    for those (bounded) before closing the engine under them.
    """

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chserver")
        self._loop = asyncio.get_running_loop()
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the pool; ServerError once the server is closing."""
        if self._closed:
            raise ServerError.of(QUERY_WAS_CANCELLED, "The server is shutting down")
        future = self._executor.submit(functools.partial(fn, *args, **kwargs))
        self._running += 1
        self._idle.clear()
        future.add_done_callback(lambda _: self._loop.call_soon_threadsafe(self._finished))
        return await asyncio.wrap_future(future)

    def _finished(self) -> None:
        self._running -= 1
        if self._running == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Whether every call ended within ``timeout_s``."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


async def run_server(
    data_dir: Path,
    host: str,
    port: int,
    *,
    user: str | None = None,
    password: str | None = None,
    ready: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    loop = asyncio.get_running_loop()
    threads = EngineThreads(MAX_WORKERS)
    run = threads.run
    try:
        engine: Engine = await run(Engine, data_dir)
    except BaseException:
        threads.close()
        raise

    async def open_conn() -> Connection:
        conn: Connection = await run(engine.open, persistent=True)
        return conn

    async def close_conn(conn: Connection) -> None:
        await run(conn.close)

    sessions = SessionRegistry(open_conn, close_conn, max_sessions=MAX_SESSIONS)
    ctx = ServerContext(
        engine=engine,
        sessions=sessions,
        run=run,
        pool_slots=asyncio.Semaphore(MAX_POOLED_REQUESTS),
        display_name=socket.gethostname(),
        user=user,
        password=password,
    )
    app, handler = build_app(ctx)
    runner = web.AppRunner(
        app,
        access_log=None,
        auto_decompress=False,
        max_line_size=MAX_URL,
        max_field_size=64 * 1024,
        shutdown_timeout=1.0,  # requests are drained before (see below)
    )
    own_stop = stop is None
    stop = stop or asyncio.Event()
    if own_stop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
    reaper = asyncio.create_task(_expire_sessions(sessions))
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        log.info(
            "serving ClickHouse HTTP on %s:%d, data dir %s (chDB engine %s, timezone %s%s)",
            host,
            port,
            data_dir,
            engine.version,
            engine.timezone,
            f", user {user} required" if user else "",
        )
        if ready is not None:
            ready()
        await stop.wait()
        log.info("stopping: finishing in-flight requests (up to %.0fs)", SHUTDOWN_GRACE)
    finally:
        reaper.cancel()
        for listening in list(runner.sites):
            await listening.stop()  # no new connections
        cancelled = await handler.drain(SHUTDOWN_GRACE, ENGINE_GRACE)
        if cancelled:
            log.warning(
                "cancelled %d request(s) still running after %.0fs", cancelled, SHUTDOWN_GRACE
            )
        await runner.cleanup()  # closes idle keep-alive connections
        with contextlib.suppress(TimeoutError):  # a session stuck in a call: see below
            await asyncio.wait_for(sessions.close_all(), ENGINE_GRACE)
        if await threads.wait_idle(ENGINE_GRACE):
            await run(engine.close)
            log.info("stopped; data dir %s released", data_dir)
        else:
            log.warning(
                "engine calls still running after %.0fs; exiting without closing the engine "
                "(committed data is on disk)",
                ENGINE_GRACE,
            )
        threads.close()


async def _expire_sessions(sessions: SessionRegistry) -> None:
    while True:
        await asyncio.sleep(1.0)
        try:
            expired = await sessions.expire()
        except Exception:  # the reaper must survive any one failure
            log.warning("expiring sessions failed", exc_info=True)
            continue
        if expired:
            log.debug("expired %d idle session(s)", expired)


def serve(
    data_dir: Path,
    host: str,
    port: int,
    *,
    user: str | None = None,
    password: str | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve ClickHouse's HTTP interface for ``data_dir`` on ``host:port``.

    Blocks until SIGTERM/SIGINT, then shuts down gracefully. With ``user``, every query
    must authenticate as that user with ``password`` (HTTP 403, code 516 otherwise).
    ``ready`` is called once the port accepts connections. Raises OSError if the port is
    taken and ServerError if the engine cannot open the directory.
    """
    asyncio.run(run_server(data_dir, host, port, user=user, password=password, ready=ready))
