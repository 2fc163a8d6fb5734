"""paho-mqtt with buffered socket I/O: one ``recv`` for many packets, one ``send`` for many acks.

paho reads every packet with at least three ``recv`` calls (command byte, length, body) and
writes every packet (each PUBACK) with its own ``send``. At thousands of messages a second
those system calls dominate the bridge's MQTT side, and each one releases the GIL, so the
bridge thread queues behind kafka-python's sender thread five times per message. Profiling
``iocstream bench bridge_throughput`` showed the bridge thread spending most of its time
there, not in decoding.

:class:`BufferedSocket` wraps the connected socket (plain TCP or TLS) that paho uses:

* ``recv`` serves paho's small reads from a buffer filled by one ``recv`` of up to
  :data:`READ_SIZE` bytes; ``pending()`` reports buffered bytes, which paho (and the
  bridge's loop) treat like TLS's buffered bytes: readable without waiting on ``select``.
* ``send`` appends to an output buffer and returns at once; :meth:`BufferedSocket.flush`
  writes it with as few ``send`` calls as the kernel allows, so the PUBACKs of one Kafka
  round trip leave in one segment. The owner must call ``flush`` whenever it has finished
  a round of work (the bridge does on every loop turn) and wait for writability when
  :attr:`BufferedSocket.want_flush` stays true. The buffer flushes by itself beyond
  :data:`FLUSH_AT` bytes, and ``close`` flushes what is left (best effort, 1 s at most), so
  a DISCONNECT still reaches the broker.
* A write error is kept and raised by the next ``recv``; paho then reports the connection
  lost and the bridge reconnects, exactly as if paho had seen the error itself.

Nothing changes in what is sent or in which order: bytes leave in the order paho wrote them,
only later by at most one loop turn. In particular a PUBACK still leaves only after paho's
``ack`` was called, which the bridge does only after Kafka acknowledged the message's records.

:class:`BufferedClient` is a paho ``Client`` that wraps its sockets so. It overrides paho's
``_create_socket`` (paho-mqtt 2.2, pinned), the one place paho creates the socket it then
uses only through the small ``SocketLike`` protocol (``recv``, ``send``, ``close``,
``fileno``, ``setblocking``, plus ``pending``), the same protocol paho's own WebSocket
wrapper implements. It is meant for a caller that drives paho with ``loop_read``,
``loop_write`` and ``loop_misc`` (paho's external-loop API) and flushes, as the bridge does;
under paho's own ``loop``/``loop_start`` nothing would flush the output buffer.
"""

from __future__ import annotations

import ssl
from typing import Any, Final

import paho.mqtt.client as mqtt

READ_SIZE: Final = 64 * 1024
"""Bytes asked of the kernel per ``recv``: hundreds of typical telemetry messages."""
FLUSH_AT: Final = 64 * 1024
"""Output bytes that make ``send`` flush at once instead of waiting for ``flush``."""
_WOULD_BLOCK: Final = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class BufferedSocket:
    """A connected (TCP or TLS) socket with read-ahead and write-behind buffers."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._inner_pending = getattr(sock, "pending", None)  # TLS (or WebSocket) buffering
        self._in = b""
        self._pos = 0
        self._out = bytearray()
        self._error: OSError | None = None

    # -- reading ------------------------------------------------------------------------
    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes: buffered ones first, else one ``recv`` of the kernel.

        Raises what the socket raises (``BlockingIOError`` when nothing is there), or the
        error a previous write met.
        """
        if self._error is not None:
            raise self._error
        pos = self._pos
        if pos < len(self._in):
            end = pos + size
            self._pos = end
            return self._in[pos:end]
        data: bytes = self.sock.recv(max(size, READ_SIZE))
        if len(data) > size:
            self._in, self._pos = data, size
            return data[:size]
        self._in, self._pos = b"", 0
        return data

    def pending(self) -> int:
        """Bytes readable without waiting: this buffer's and the TLS layer's."""
        buffered = max(len(self._in) - self._pos, 0)
        inner = self._inner_pending() if self._inner_pending is not None else 0
        return buffered + int(inner)

    # -- writing ------------------------------------------------------------------------
    def send(self, data: bytes | bytearray) -> int:
        """Take all of ``data`` for sending (by :meth:`flush`, or now beyond FLUSH_AT)."""
        self._out += data
        if len(self._out) >= FLUSH_AT:
            self.flush()
        return len(data)

    @property
    def want_flush(self) -> bool:
        """True while taken bytes wait for the socket to become writable."""
        return bool(self._out) and self._error is None

    def flush(self) -> None:
        """Write buffered output as far as the socket takes it now (never blocks)."""
        out = self._out
        while out and self._error is None:
            try:
                sent = self.sock.send(out)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                self._error = exc
                out.clear()
                return
            del out[:sent]

    # -- the rest of the socket protocol ------------------------------------------------
    def fileno(self) -> int:
        return int(self.sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        """Write what is left (blocking, 1 s at most, errors ignored), then close."""
        try:
            if self._out and self._error is None:
                self.sock.settimeout(1.0)
                self.sock.sendall(self._out)
        except (OSError, ValueError):
            pass
        finally:
            self._out.clear()
            self.sock.close()

    def __getattr__(self, name: str) -> Any:
        # anything else paho may ask of its socket (getpeercert, ...) is the socket's
        return getattr(self.sock, name)


class BufferedClient(mqtt.Client):
    """A paho client whose connections are :class:`BufferedSocket` (see the module docstring)."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def buffered_socket(self) -> BufferedSocket | None:
        """The current connection's socket, or None while there is no connection."""
        sock = self.socket()
        return sock if isinstance(sock, BufferedSocket) else None
