"""The embedded ClickHouse engine (chDB): connections, per-request state, results, inserts.

One process opens the data directory; every chDB connection to it is an independent
ClickHouse session (own ``SET`` settings, current database and temporary tables), and
calls on different connections run in parallel. All calls here are blocking: the HTTP
layer runs them in a thread pool, one request per connection at a time.

Guarantees:

* Every engine failure surfaces as :class:`ServerError` with ClickHouse's own message and
  code; nothing else escapes from a query, insert or fetch.
* :class:`Overrides` keeps a request's database and URL settings to that request (undoing
  them lazily, before a request that needs something else). If undoing fails, the
  connection is marked ``broken`` and the pool closes it instead of reusing it.
* An insert that fails or is abandoned is cancelled: rows the engine has not written yet
  are discarded. As in ClickHouse, an insert is atomic only up to one insert block
  (``min_insert_block_size_rows``, about 1M rows): earlier blocks of a bigger one stay.
* :meth:`Engine.close` closes every connection it knows; chDB flushes when the last one of
  the directory closes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chdb

from connectors.chserver.errors import ServerError
from connectors.chserver.protocol import Stats, quote_identifier, set_statement

log = logging.getLogger(__name__)

_connect: Callable[[str], Any] = chdb.connect
_ENGINE_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, chdb.ChdbError)
_STREAMING_UNSUPPORTED = "Streaming query is not supported"


@dataclass
class Result:
    """A complete query result: the output bytes (a zero-copy view) and its statistics."""

    data: memoryview
    stats: Stats
    keepalive: Any  # the chDB result object that owns ``data``


class Connection:
    """One chDB connection; used by one request at a time."""

    def __init__(self, raw: Any, *, persistent: bool = False) -> None:
        self._raw = raw
        self.broken = False
        self.overrides = Overrides(self, persistent=persistent)
        # Serializes engine calls on this connection, including those of its streams and
        # inserts: a call abandoned by a cancelled request may still be running when the
        # cleanup (cancel, restore, release) arrives from another thread.
        self.lock = threading.RLock()

    def query(
        self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None
    ) -> Result:
        """Run ``sql`` and return its whole output in format ``fmt`` (a FORMAT clause in
        the statement wins, as in ClickHouse)."""
        try:
            with self.lock:
                res = self._raw.query(sql, fmt, params=dict(params or {}))
        except _ENGINE_ERRORS as exc:
            raise ServerError.from_engine(exc) from None
        stats = Stats(
            read_rows=res.rows_read(),
            read_bytes=res.bytes_read(),
            written_rows=res.rows_written(),
            written_bytes=res.bytes_written(),
            elapsed_ns=int(res.elapsed() * 1e9),
        )
        view = res.get_memview().view() if res.size() else memoryview(b"")
        stats.result_bytes = len(view)
        return Result(view, stats, res)

    def command(self, sql: str, params: Mapping[str, str] | None = None) -> bytes:
        """Run ``sql`` and return its TabSeparated output as bytes."""
        return bytes(self.query(sql, "TabSeparated", params).data)

    def stream(
        self, sql: str, fmt: str, params: Mapping[str, str] | None = None
    ) -> ResultStream | None:
        """Start streaming ``sql`` in ``fmt``; None when the engine cannot stream this
        statement (only SELECT-like statements stream) and :meth:`query` must be used."""
        try:
            with self.lock:
                raw = self._raw.send_query(sql, fmt, params=dict(params or {}))
        except _ENGINE_ERRORS as exc:
            if _STREAMING_UNSUPPORTED in str(exc):
                return None
            raise ServerError.from_engine(exc) from None
        return ResultStream(raw, self.lock)

    def insert(self, statement: str, fmt: str) -> Inserter:
        """Begin a streaming insert of data in input format ``fmt`` into ``statement``
        (``INSERT INTO t (a, b)`` with optional SETTINGS, no FORMAT clause)."""
        try:
            with self.lock:
                return Inserter(self._raw.send_insert(statement, fmt), self.lock)
        except _ENGINE_ERRORS as exc:
            raise ServerError.from_engine(exc) from None

    def prepare(
        self, database: str | None, settings: Mapping[str, str], *, bare: bool = False
    ) -> None:
        """Ready the connection for one request: with its ``database`` and URL
        ``settings``, or in its own state (``bare``, for SET/USE statements)."""
        if bare:
            self.overrides.reset()
        else:
            self.overrides.prepare(database, settings)

    def close(self) -> None:
        try:
            with self.lock:
                self._raw.close()
        except _ENGINE_ERRORS:
            log.debug("closing a chDB connection failed", exc_info=True)


class ResultStream:
    """A streaming query result, fetched chunk by chunk (each chunk is whole blocks)."""

    def __init__(self, raw: Any, lock: threading.RLock) -> None:
        self._raw = raw
        self._lock = lock
        self._started = time.monotonic_ns()
        self.stats = Stats()
        self.done = False

    def next(self) -> bytes | None:
        """The next chunk of output, or None at the end. Raises ServerError on failure."""
        if self.done:
            return None
        try:
            with self._lock:
                chunk = self._raw.fetch()
        except _ENGINE_ERRORS as exc:
            self.done = True
            raise ServerError.from_engine(exc) from None
        if chunk is None:
            self.done = True
            self.stats.elapsed_ns = time.monotonic_ns() - self._started
            return None
        data: bytes = chunk.bytes()
        rows = chunk.rows_read()
        self.stats.read_rows += rows
        self.stats.read_bytes += chunk.bytes_read()
        self.stats.result_rows += rows
        self.stats.result_bytes += len(data)
        return data

    def cancel(self) -> None:
        """Stop the query (idempotent; errors are logged, not raised)."""
        if self.done:
            return
        self.done = True
        try:
            with self._lock:
                self._raw.cancel()
        except _ENGINE_ERRORS:
            log.debug("cancelling a streaming query failed", exc_info=True)


class Inserter:
    """A streaming insert: ``append`` data, then ``finish`` to commit or ``cancel``."""

    def __init__(self, raw: Any, lock: threading.RLock) -> None:
        self._raw = raw
        self._lock = lock
        self._open = True

    def append(self, data: bytes) -> None:
        if not data:
            return
        try:
            with self._lock:
                self._raw.append(data)
        except _ENGINE_ERRORS as exc:
            self.cancel()
            raise ServerError.from_engine(exc) from None

    def finish(self) -> Stats:
        """Commit; returns the written counts. Raises ServerError (the rest is discarded)."""
        self._open = False
        try:
            with self._lock:
                res = self._raw.finish()
        except _ENGINE_ERRORS as exc:
            raise ServerError.from_engine(exc) from None
        return Stats(
            written_rows=res.rows_written,
            written_bytes=res.bytes_written,
            elapsed_ns=int(res.elapsed * 1e9),
        )

    def cancel(self) -> None:
        """Abort without committing (idempotent)."""
        if not self._open:
            return
        self._open = False
        try:
            with self._lock:
                self._raw.cancel()
        except _ENGINE_ERRORS:
            log.debug("cancelling an insert failed", exc_info=True)


class Overrides:
    """The per-request database and URL settings in effect on one connection.

    A request's URL settings and ``database`` apply to that request only. Applying and
    undoing them costs engine calls, and most clients send the same ones every time, so
    they are undone lazily: :meth:`prepare` compares what the next request needs with
    what is in effect and only then restores the connection's own state and applies the
    new values. ``persistent`` (session) connections read the values they restore from
    the engine; pooled connections restore ClickHouse's defaults and ``default``.
    """

    def __init__(self, conn: Connection, *, persistent: bool) -> None:
        self._conn = conn
        self._persistent = persistent
        self._settings: dict[str, str] = {}
        self._database: str | None = None
        self._saved: list[tuple[str, str | None]] = []
        self._saved_db: str | None = None

    def matches(self, database: str | None, settings: Mapping[str, str]) -> bool:
        """Whether exactly these overrides are in effect already."""
        return database == self._database and dict(settings) == self._settings

    def prepare(self, database: str | None, settings: Mapping[str, str]) -> None:
        """Make ``database`` current and ``settings`` effective on top of the connection's
        own state. Raises ServerError (e.g. UNKNOWN_SETTING); the connection is then
        back in its own state, or marked ``broken`` if even that failed."""
        if self.matches(database, settings):
            return
        wanted = dict(settings)
        self.reset()
        try:
            if database:
                self._saved_db = self._current_database() if self._persistent else "default"
                self._conn.command(f"USE {quote_identifier(database)}")
                self._database = database
            if wanted:
                self._saved = self._snapshot(list(wanted))
                self._settings = wanted
                self._conn.command(set_statement(list(wanted.items())))
        except ServerError:
            self.reset()
            raise

    def reset(self) -> None:
        """Back to the connection's own state (before a SET/USE statement, or to stop
        overriding). Raises ServerError and marks the connection broken on failure."""
        try:
            if self._saved:
                self._conn.command(set_statement(self._saved))
            if self._saved_db:
                self._conn.command(f"USE {quote_identifier(self._saved_db)}")
        except ServerError:
            self._conn.broken = True
            raise
        finally:
            self._settings, self._saved = {}, []
            self._database, self._saved_db = None, None

    def _current_database(self) -> str:
        return self._conn.command("SELECT currentDatabase()").decode().rstrip("\n")

    def _snapshot(self, names: list[str]) -> list[tuple[str, str | None]]:
        if not self._persistent:
            return [(name, None) for name in names]
        rows = self._conn.command(
            "SELECT name, value, changed FROM system.settings WHERE name IN {names:Array(String)}",
            {"names": "[" + ",".join(_quote(n) for n in names) + "]"},
        )
        current: dict[str, str | None] = {}
        for line in rows.decode().splitlines():
            name, value, changed = line.split("\t")
            current[name] = _unescape(value) if changed == "1" else None
        # a name the engine does not know makes the SET fail: nothing to restore for it
        return [(name, current[name]) for name in names if name in current]


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _unescape(value: str) -> str:
    """Undo TabSeparated escaping of a value."""
    if "\\" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    mapping = {
        "t": "\t",
        "n": "\n",
        "r": "\r",
        "0": "\0",
        "\\": "\\",
        "'": "'",
        "b": "\b",
        "f": "\f",
    }
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append(mapping.get(nxt, nxt))
        else:
            out.append(ch)
    return "".join(out)


class Engine:
    """The chDB engine of one data directory, with a pool of idle connections.

    The first connection (opened here, kept until :meth:`close`) starts the engine, which
    takes a few seconds on a new directory; later connections cost well under a
    millisecond. Thread-safe.
    """

    def __init__(self, data_dir: Path, *, max_idle: int = 16) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self._path = str(data_dir)
        self._lock = threading.Lock()
        self._idle: list[Connection] = []
        self._max_idle = max_idle
        self._closed = False
        try:
            self._anchor = Connection(_connect(self._path))
        except _ENGINE_ERRORS as exc:
            raise ServerError.from_engine(exc) from None
        row = self._anchor.command(
            "SELECT version(), timezone(), getSetting('enable_http_compression')"
        ).decode()
        self.version, self.timezone, compression = row.rstrip("\n").split("\t")
        # chDB's default is 1: compress whenever the client sends Accept-Encoding
        self.http_compression = compression in ("1", "true")

    def open(self, *, persistent: bool = False) -> Connection:
        """A new connection; ``persistent`` for a session's own connection."""
        if self._closed:
            raise RuntimeError("the engine is closed")
        try:
            return Connection(_connect(self._path), persistent=persistent)
        except _ENGINE_ERRORS as exc:
            raise ServerError.from_engine(exc) from None

    def acquire(
        self,
        database: str | None = None,
        settings: Mapping[str, str] | None = None,
        *,
        bare: bool = False,
    ) -> Connection:
        """A pooled connection prepared for a request (see :meth:`Connection.prepare`).

        Prefers an idle connection that already has these overrides. A connection that
        cannot be restored is closed and replaced by a new one. Raises ServerError for a
        request the engine refuses (e.g. an unknown setting); nothing is leaked then.
        """
        settings = settings or {}
        with self._lock:
            conn = next(
                (c for c in reversed(self._idle) if c.overrides.matches(database, settings)), None
            )
            if conn is None and self._idle:
                conn = self._idle[-1]
            if conn is not None:
                self._idle.remove(conn)
        if conn is None:
            conn = self.open()
        try:
            conn.prepare(database, settings, bare=bare)
        except ServerError:
            if not conn.broken:
                self.release(conn)
                raise
            conn.close()
            conn = self.open()
            try:
                conn.prepare(database, settings, bare=bare)
            except ServerError:
                self.release(conn)
                raise
        return conn

    def release(self, conn: Connection) -> None:
        """Return a pooled connection (once no call runs on it any more); a broken one or
        one over the idle cap is closed."""
        with conn.lock:
            pass
        with self._lock:
            if not conn.broken and not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections and the engine's own (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self._anchor.close()
