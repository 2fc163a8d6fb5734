"""HTTP sessions (``session_id``): one dedicated engine connection per session.

Like ClickHouse, a session keeps its ``SET`` settings, current database and temporary
tables between requests, expires after ``session_timeout`` seconds without requests, and
runs one request at a time. Unlike ClickHouse, a request that finds its session busy waits
for it (up to ``lock_wait`` seconds, then SESSION_IS_LOCKED) instead of failing at once.

The registry is bounded: when it is full, the least recently used idle session is closed
to make room; when every session is busy, a new one is refused (TOO_MANY_SIMULTANEOUS_QUERIES).
All methods run on the event loop; opening and closing connections goes through the
``run`` callable (the thread pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

from connectors.chserver.engine import Connection
from connectors.chserver.errors import (
    SESSION_IS_LOCKED,
    SESSION_NOT_FOUND,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    ServerError,
)

log = logging.getLogger(__name__)


class Session:
    """One session: its connection, lock and expiry."""

    def __init__(self, session_id: str, conn: Connection, timeout: float) -> None:
        self.id = session_id
        self.conn = conn
        self.timeout = timeout
        self.lock = asyncio.Lock()
        self.last_used = time.monotonic()
        self.closed = False

    def expired(self, now: float) -> bool:
        return not self.lock.locked() and now - self.last_used > self.timeout


class SessionRegistry:
    """All live sessions, least recently used first."""

    def __init__(
        self,
        open_conn: Callable[[], Awaitable[Connection]],
        close_conn: Callable[[Connection], Awaitable[None]],
        *,
        max_sessions: int = 256,
        lock_wait: float = 60.0,
    ) -> None:
        self._open = open_conn
        self._close = close_conn
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._max = max_sessions
        self._lock_wait = lock_wait
        self._creating: dict[str, asyncio.Future[Session]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    @contextlib.asynccontextmanager
    async def use(
        self, session_id: str, *, idle_timeout: float, check: bool
    ) -> AsyncIterator[Session]:
        """Hold session ``session_id`` for one request, creating it unless ``check``."""
        while True:
            session = await self._get(session_id, idle_timeout=idle_timeout, check=check)
            try:
                await asyncio.wait_for(session.lock.acquire(), self._lock_wait)
            except TimeoutError:
                raise ServerError.of(
                    SESSION_IS_LOCKED, f"Session {session_id} is locked by a concurrent client"
                ) from None
            if not session.closed:
                break
            session.lock.release()  # expired or evicted while we waited: start a new one
        try:
            session.timeout = idle_timeout
            yield session
        finally:
            session.last_used = time.monotonic()
            session.lock.release()

    async def _get(self, session_id: str, *, idle_timeout: float, check: bool) -> Session:
        session = self._sessions.get(session_id)
        if session is not None:
            self._sessions.move_to_end(session_id)
            return session
        if check:
            raise ServerError.of(SESSION_NOT_FOUND, f"Session {session_id} not found")
        pending = self._creating.get(session_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._creating[session_id] = future
        try:
            await self._make_room()
            session = Session(session_id, await self._open(), idle_timeout)
            self._sessions[session_id] = session
            future.set_result(session)
            return session
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must log it
            raise
        finally:
            del self._creating[session_id]

    async def _make_room(self) -> None:
        if len(self._sessions) < self._max:
            return
        for session in list(self._sessions.values()):
            if not session.lock.locked():
                log.debug("closing least recently used session %s", session.id)
                await self._drop(session)
                return
        raise ServerError.of(
            TOO_MANY_SIMULTANEOUS_QUERIES, f"Too many simultaneous sessions ({self._max})"
        )

    async def _drop(self, session: Session) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        session.closed = True
        await self._close(session.conn)

    async def close(self, session_id: str) -> None:
        """Close a session now (``close_session=1``); the caller must not hold it."""
        session = self._sessions.get(session_id)
        if session is not None:
            async with session.lock:
                await self._drop(session)

    async def expire(self) -> int:
        """Close the sessions idle for longer than their timeout; returns how many."""
        now = time.monotonic()
        expired = [s for s in self._sessions.values() if s.expired(now)]
        for session in expired:
            await self._drop(session)
        return len(expired)

    async def close_all(self) -> None:
        """Close every session (at shutdown, after in-flight requests ended)."""
        for session in list(self._sessions.values()):
            await self._drop(session)
