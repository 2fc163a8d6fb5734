"""HTTP body codecs: streaming decoders for request bodies, encoders for responses.

Request bodies (``Content-Encoding``): ``lz4`` (LZ4 frame format), ``zstd``, ``gzip``,
``deflate`` (zlib-wrapped, raw deflate accepted too) and ``br`` when the ``brotli`` module
is installed. Decoders accept concatenated frames/members, because clickhouse-connect
compresses every insert block as its own LZ4 or zstd frame. They are incremental: each
``feed`` returns what it could decode, so a large insert is never held whole, compressed or
not. A body that ends inside a frame, or is not valid for its encoding, raises
:class:`ServerError` (CANNOT_DECOMPRESS).

Responses use one frame for the whole body (what clickhouse-connect's streaming readers
expect): lz4 frame, zstd, gzip, zlib-wrapped deflate, and br when available.
"""

from __future__ import annotations

import importlib
import zlib
from typing import Any, Protocol

import lz4.frame
import zstandard

from connectors.chserver.errors import CANNOT_DECOMPRESS, ServerError

try:
    _brotli: Any = importlib.import_module("brotli")
except ImportError:
    _brotli = None

RESPONSE_ENCODINGS: tuple[str, ...] = ("lz4", "zstd", "gzip", "deflate") + (
    ("br",) if _brotli else ()
)
REQUEST_ENCODINGS: tuple[str, ...] = RESPONSE_ENCODINGS


class Decoder(Protocol):
    def feed(self, data: bytes) -> bytes:
        """Decode the next piece of the body."""

    def finish(self) -> None:
        """Check that the body ended at a frame boundary."""


class Encoder(Protocol):
    def compress(self, data: bytes) -> bytes:
        """Encode the next piece of the response."""

    def flush(self) -> bytes:
        """End the stream."""


def _corrupt(encoding: str, detail: object) -> ServerError:
    return ServerError.of(CANNOT_DECOMPRESS, f"Cannot decompress {encoding} request body: {detail}")


class _Lz4Decoder:
    def __init__(self) -> None:
        self._dec = lz4.frame.LZ4FrameDecompressor()
        self._in_frame = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        while data:
            self._in_frame = True
            try:
                out += self._dec.decompress(data)
            except RuntimeError as exc:
                raise _corrupt("lz4", exc) from None
            if not self._dec.eof:
                break
            data = self._dec.unused_data or b""
            self._dec = lz4.frame.LZ4FrameDecompressor()
            self._in_frame = False
        return bytes(out)

    def finish(self) -> None:
        if self._in_frame:
            raise _corrupt("lz4", "the body ends inside a frame")


class _ZstdDecoder:
    def __init__(self) -> None:
        self._ctx = zstandard.ZstdDecompressor()
        self._dec = self._ctx.decompressobj()
        self._in_frame = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        while data:
            self._in_frame = True
            try:
                out += self._dec.decompress(data)
            except zstandard.ZstdError as exc:
                raise _corrupt("zstd", exc) from None
            if not self._dec.eof:
                break
            data = self._dec.unused_data
            self._dec = self._ctx.decompressobj()
            self._in_frame = False
        return bytes(out)

    def finish(self) -> None:
        if self._in_frame:
            raise _corrupt("zstd", "the body ends inside a frame")


class _ZlibDecoder:
    """gzip (``wbits=31``, multi-member) or deflate (zlib-wrapped, raw as a fallback)."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._wbits = 31 if encoding == "gzip" else 15
        self._dec = zlib.decompressobj(self._wbits)
        self._started = False
        self._in_member = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        while data:
            self._in_member = True
            try:
                out += self._dec.decompress(data)
            except zlib.error as exc:
                if self._encoding == "deflate" and not self._started and self._wbits == 15:
                    self._wbits = -15  # raw deflate, as some clients send
                    self._dec = zlib.decompressobj(self._wbits)
                    continue
                raise _corrupt(self._encoding, exc) from None
            self._started = True
            if not self._dec.eof:
                break
            data = self._dec.unused_data
            self._dec = zlib.decompressobj(self._wbits)
            self._in_member = False
        return bytes(out)

    def finish(self) -> None:
        if self._in_member:
            raise _corrupt(self._encoding, "the body ends inside a compressed member")


class _BrotliDecoder:
    def __init__(self) -> None:
        self._dec = _brotli.Decompressor()
        self._fed = False

    def feed(self, data: bytes) -> bytes:
        self._fed = self._fed or bool(data)
        try:
            return bytes(self._dec.process(data))
        except _brotli.error as exc:
            raise _corrupt("br", exc) from None

    def finish(self) -> None:
        if self._fed and not self._dec.is_finished():
            raise _corrupt("br", "the body ends inside the stream")


def decoder(content_encoding: str | None) -> Decoder | None:
    """The decoder for a request's ``Content-Encoding`` (None for identity/absent).

    Raises ServerError (CANNOT_DECOMPRESS, HTTP 415) for an encoding it does not know.
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity", "none"):
        return None
    if encoding == "lz4":
        return _Lz4Decoder()
    if encoding == "zstd":
        return _ZstdDecoder()
    if encoding in ("gzip", "x-gzip"):
        return _ZlibDecoder("gzip")
    if encoding == "deflate":
        return _ZlibDecoder("deflate")
    if encoding == "br" and _brotli is not None:
        return _BrotliDecoder()
    raise ServerError.of(
        CANNOT_DECOMPRESS,
        f"Unknown Content-Encoding of HTTP request: {encoding}; "
        f"supported: {', '.join(REQUEST_ENCODINGS)}",
        415,
    )


class _Lz4Encoder:
    def __init__(self) -> None:
        self._enc = lz4.frame.LZ4FrameCompressor()
        self._header: bytes | None = self._enc.begin()

    def _take_header(self) -> bytes:
        header, self._header = self._header or b"", None
        return header

    def compress(self, data: bytes) -> bytes:
        return self._take_header() + bytes(self._enc.compress(data))

    def flush(self) -> bytes:
        return self._take_header() + bytes(self._enc.flush())


class _ZstdEncoder:
    def __init__(self, level: int) -> None:
        self._enc = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes) -> bytes:
        return bytes(self._enc.compress(data))

    def flush(self) -> bytes:
        return bytes(self._enc.flush())


class _ZlibEncoder:
    def __init__(self, level: int, wbits: int) -> None:
        self._enc = zlib.compressobj(level, zlib.DEFLATED, wbits)

    def compress(self, data: bytes) -> bytes:
        return self._enc.compress(data)

    def flush(self) -> bytes:
        return self._enc.flush()


class _BrotliEncoder:
    def __init__(self) -> None:
        self._enc = _brotli.Compressor(quality=4)

    def compress(self, data: bytes) -> bytes:
        return bytes(self._enc.process(data))

    def flush(self) -> bytes:
        return bytes(self._enc.finish())


def encoder(encoding: str, zlib_level: int = 3) -> Encoder:
    """A response encoder for one of :data:`RESPONSE_ENCODINGS` (ValueError otherwise).
    ``zlib_level`` is ClickHouse's ``http_zlib_compression_level`` (gzip and deflate)."""
    if encoding == "lz4":
        return _Lz4Encoder()
    if encoding == "zstd":
        return _ZstdEncoder(3)
    if encoding == "gzip":
        return _ZlibEncoder(zlib_level, 31)
    if encoding == "deflate":
        return _ZlibEncoder(zlib_level, 15)
    if encoding == "br" and _brotli is not None:
        return _BrotliEncoder()
    raise ValueError(f"unsupported response encoding {encoding!r}")
