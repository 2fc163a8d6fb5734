"""Reading a request's text and data: the ``query`` URL parameter, then the body.

ClickHouse treats ``query=<beginning>`` plus the POST body as one text (a newline in
between). For an INSERT with inline data, only the statement is text; everything after it
is data that goes to the engine as it arrives. :class:`RequestBody` reads just enough of
the (decompressed) body to find where the statement ends, then hands the rest out in
batches of raw, still-compressed bytes, which the caller decodes with :meth:`decode` in
the thread pool next to the engine call. Nothing is buffered beyond one batch.

Limits: a statement (the text before inline data) may be at most ``MAX_STATEMENT`` bytes
and a query without inline data at most ``MAX_QUERY`` bytes; beyond that the request fails
with SYNTAX_ERROR (ClickHouse: "Max query size exceeded").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import StreamReader

from connectors.chserver.compression import Decoder
from connectors.chserver.errors import SYNTAX_ERROR, ServerError
from connectors.chserver.statement import NEED_MORE, WHOLE_QUERY, InsertData, locate_insert_data

MAX_STATEMENT = 1 << 20
MAX_QUERY = 16 << 20
BATCH = 1 << 20


@dataclass(frozen=True)
class Head:
    """The request's statement: ``query`` (all text) or ``insert`` plus the first data."""

    query: bytes
    insert: InsertData | None = None
    data: bytes = b""


class RequestBody:
    """The text and data of one request, read once, front to back."""

    def __init__(
        self, query_param: str, content: StreamReader | None, decoder: Decoder | None
    ) -> None:
        self._prefix = (query_param + "\n").encode() if query_param else b""
        self._content = content
        self._decoder = decoder
        self._eof = content is None

    async def _read_raw(self, limit: int = BATCH) -> bytes:
        """Up to about ``limit`` raw bytes (at least one network chunk); b'' at the end."""
        if self._eof or self._content is None:
            return b""
        first = await self._content.readany()
        if not first:
            self._eof = True
            return b""
        out = bytearray(first)
        while len(out) < limit:  # take what has already arrived, without waiting
            more = self._content.read_nowait(limit - len(out))
            if not more:
                break
            out += more
        return bytes(out)

    def decode(self, raw: bytes) -> bytes:
        """Decompress one raw batch (blocking work: call it in the thread pool)."""
        return self._decoder.feed(raw) if self._decoder is not None and raw else raw

    def finish(self) -> None:
        """Check the compressed body ended cleanly (raises CANNOT_DECOMPRESS if not)."""
        if self._decoder is not None:
            self._decoder.finish()

    async def head(self) -> Head:
        """Read until the statement is complete.

        Returns the whole text for a query without inline data (the body read entirely) or
        the INSERT statement, its input format and the data bytes read past it.
        """
        buf = bytearray(self._prefix)
        while True:
            answer = locate_insert_data(bytes(buf), self._eof)
            if isinstance(answer, InsertData):
                return Head(
                    query=bytes(buf[: answer.data_start]),
                    insert=answer,
                    data=bytes(buf[answer.data_start :]),
                )
            if answer is WHOLE_QUERY:
                break
            assert answer is NEED_MORE
            if len(buf) > MAX_STATEMENT:
                raise _too_large(MAX_STATEMENT)
            buf += self.decode(await self._read_raw(64 * 1024))
        while not self._eof:
            buf += self.decode(await self._read_raw())
            if len(buf) > MAX_QUERY:
                raise _too_large(MAX_QUERY)
        self.finish()
        return Head(query=bytes(buf))

    async def batches(self) -> AsyncIterator[bytes]:
        """The rest of the body in raw (not yet decoded) batches of about 1 MiB."""
        while True:
            raw = await self._read_raw()
            if not raw:
                return
            yield raw


def _too_large(limit: int) -> ServerError:
    return ServerError.of(
        SYNTAX_ERROR, f"Max query size exceeded: the statement is longer than {limit} bytes", 413
    )
