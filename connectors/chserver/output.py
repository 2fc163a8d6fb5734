"""Writing a response the way ClickHouse's HTTP interface does.

Three shapes, chosen by the handler:

* :meth:`Responder.complete` - a result already in memory (non-streamable formats such
  as JSON or Parquet, DDL, inserts): sent with Content-Length.
* :meth:`Responder.spooled` - ``wait_end_of_query=1`` (what clickhouse-connect's
  ``query()`` sends): the whole result is produced first, into memory up to
  ``buffer_size`` and a temporary file beyond, so an error still becomes a clean HTTP 500
  and the summary header is final.
* :meth:`Responder.streamed` - otherwise: headers go out with the first chunk and the rest
  follows as the engine produces it. An error after that point is written into the body
  as ClickHouse 25.11+ does (``__exception__`` block tagged with the value of the
  ``X-ClickHouse-Exception-Tag`` header), which clickhouse-connect turns into an exception.

Error responses are never compressed, so every client can read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

from aiohttp import web

from connectors.chserver.compression import Encoder, encoder
from connectors.chserver.engine import Result, ResultStream
from connectors.chserver.errors import QUERY_WAS_CANCELLED, ServerError
from connectors.chserver.protocol import Stats, content_type

log = logging.getLogger(__name__)
Run = Callable[..., Awaitable[Any]]
SLICE = 1 << 20


def error_response(err: ServerError, headers: dict[str, str], version: str) -> web.Response:
    """ClickHouse's error response: status, ``X-ClickHouse-Exception-Code``, message body."""
    out = {
        **headers,
        "X-ClickHouse-Exception-Code": str(err.code),
        "Content-Type": "text/plain; charset=UTF-8",
    }
    return web.Response(status=err.status, body=err.body(version).encode(), headers=out)


def exception_block(err: ServerError, tag: str) -> bytes:
    """The in-body error marker that clickhouse-connect 0.10+/1.x parses mid-stream."""
    message = err.message.encode()
    return (
        b"__exception__\r\n"
        + tag.encode()
        + b"\r\n"
        + message
        + b"\n"
        + str(len(message)).encode()
        + b" "
        + tag.encode()
        + b"\r\n__exception__\r\n"
    )


class Responder:
    """Sends one query's result; ``base`` holds the headers every response carries."""

    def __init__(
        self,
        request: web.Request,
        base: dict[str, str],
        run: Run,
        *,
        encoding: str | None,
        zlib_level: int,
    ) -> None:
        self._request = request
        self._base = base
        self._run = run
        self._encoding = encoding
        self._zlib_level = zlib_level
        # once headers are sent, a later failure can only go into the body
        self.response: web.StreamResponse | None = None

    @property
    def prepared(self) -> bool:
        return self.response is not None

    async def _prepare(self, resp: web.StreamResponse) -> None:
        self.response = resp
        await resp.prepare(self._request)

    def _encoder(self) -> Encoder | None:
        return encoder(self._encoding, self._zlib_level) if self._encoding else None

    def headers(self, stats: Stats, fmt: str | None) -> dict[str, str]:
        out = dict(self._base)
        out["X-ClickHouse-Summary"] = stats.header()
        if fmt is not None:
            out["X-ClickHouse-Format"] = fmt
            out["Content-Type"] = content_type(fmt)
        else:
            out["Content-Type"] = "text/plain; charset=UTF-8"
        if self._encoding:
            out["Content-Encoding"] = self._encoding
        return out

    async def complete(
        self, result: Result | None, stats: Stats, fmt: str | None
    ) -> web.StreamResponse:
        """Send an in-memory result (or an empty body when ``result`` is None)."""
        data = result.data if result is not None else memoryview(b"")
        enc = self._encoder()
        if enc is not None:
            body: bytes | memoryview = await self._run(_compress_all, enc, data)
        else:
            body = data
        resp = web.StreamResponse(status=200, headers=self.headers(stats, fmt))
        resp.content_length = len(body)
        await self._prepare(resp)
        for start in range(0, len(body), SLICE):
            await resp.write(body[start : start + SLICE])
        await resp.write_eof()
        return resp

    async def spooled(self, stream: ResultStream, fmt: str, buffer_size: int) -> web.StreamResponse:
        """Produce the whole result first (memory, then a temp file), then send it.

        A client that disconnects meanwhile cancels the query (ClickHouse's
        ``cancel_http_readonly_queries_on_client_close``): ConnectionResetError is raised.
        """
        spool = tempfile.SpooledTemporaryFile(max_size=buffer_size)  # noqa: SIM115 - closed below
        try:
            enc = self._encoder()
            size = 0
            while (written := await self._run(_spool_next, stream, enc, spool)) is not None:
                size += written
                transport = self._request.transport
                if transport is None or transport.is_closing():
                    raise ConnectionResetError(
                        "the client disconnected before the result was ready"
                    )
            resp = web.StreamResponse(status=200, headers=self.headers(stream.stats, fmt))
            resp.content_length = size
            await self._prepare(resp)
            spool.seek(0)
            while chunk := await self._run(spool.read, SLICE):
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            spool.close()

    async def streamed(self, stream: ResultStream, fmt: str) -> web.StreamResponse:
        """Send chunks as the engine produces them; a later error goes into the body."""
        enc = self._encoder()
        first = await self._run(_next_encoded, stream, enc)  # an error here is a clean 500
        tag = secrets.token_hex(8)
        headers = self.headers(stream.stats, fmt)
        headers["X-ClickHouse-Exception-Tag"] = tag
        resp = web.StreamResponse(status=200, headers=headers)
        resp.enable_chunked_encoding()
        await self._prepare(resp)
        chunk: bytes | None = first
        try:
            while chunk is not None:
                if chunk:
                    await resp.write(chunk)
                chunk = await self._run(_next_encoded, stream, enc)
        except ServerError as err:
            log.warning(
                "query %s failed mid-stream: %s",
                self._base.get("X-ClickHouse-Query-Id"),
                err.first_line(),
            )
            block = exception_block(err, tag)
            await resp.write(enc.compress(block) + enc.flush() if enc is not None else block)
        except asyncio.CancelledError:
            # Shutdown. Uncompressed, the client is told the result is incomplete; a
            # compressed stream just breaks off (its encoder may still be busy in a thread).
            if enc is None:
                cancelled = ServerError.of(QUERY_WAS_CANCELLED, "The server is shutting down")
                with contextlib.suppress(ConnectionError):
                    await resp.write(exception_block(cancelled, tag))
            raise
        await resp.write_eof()
        return resp


def _compress_all(enc: Encoder, data: memoryview) -> bytes:
    out = bytearray()
    for start in range(0, len(data), SLICE):
        out += enc.compress(bytes(data[start : start + SLICE]))
    out += enc.flush()
    return bytes(out)


def _next_encoded(stream: ResultStream, enc: Encoder | None) -> bytes | None:
    """The next chunk, compressed; at the end the encoder's tail once, then None."""
    if stream.done:
        return None
    chunk = stream.next()
    if enc is None:
        return chunk
    if chunk is None:
        return enc.flush()
    return enc.compress(chunk)


def _spool_next(stream: ResultStream, enc: Encoder | None, spool: IO[bytes]) -> int | None:
    """Append the next chunk (or the encoder's tail at the end) to ``spool``; returns the
    bytes written, None once everything is written."""
    if stream.done:
        return None
    chunk = stream.next()
    data = (enc.compress(chunk) if chunk is not None else enc.flush()) if enc is not None else chunk
    if data is None:
        return None
    spool.write(data)
    return len(data)
