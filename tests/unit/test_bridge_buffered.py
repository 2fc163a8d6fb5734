"""The bridge's buffered MQTT socket: fewer system calls, same bytes in the same order."""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connectors.bridge.buffered import FLUSH_AT, READ_SIZE, BufferedClient, BufferedSocket


class FakeSocket:
    """Records calls; ``recv`` hands out ``incoming`` chunks, ``send`` takes ``accept`` bytes."""

    def __init__(self, incoming: list[bytes] | None = None, accept: int | None = None) -> None:
        self.incoming = list(incoming or [])
        self.accept = accept
        self.recv_sizes: list[int] = []
        self.sent = bytearray()
        self.send_calls = 0
        self.fail_send: OSError | None = None
        self.blocked = False
        self.closed = False

    def recv(self, size: int) -> bytes:
        self.recv_sizes.append(size)
        if not self.incoming:
            raise BlockingIOError
        return self.incoming.pop(0)

    def send(self, data: bytes | bytearray) -> int:
        self.send_calls += 1
        if self.fail_send is not None:
            raise self.fail_send
        if self.blocked:
            raise BlockingIOError
        n = len(data) if self.accept is None else min(self.accept, len(data))
        self.sent += data[:n]
        return n

    def sendall(self, data: bytes | bytearray) -> None:
        self.sent += data

    def settimeout(self, _timeout: float | None) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_small_reads_are_served_from_one_kernel_read() -> None:
    fake = FakeSocket([b"\x30\x05hello\x30\x03abc"])
    sock = BufferedSocket(fake)
    assert sock.recv(1) == b"\x30"
    assert sock.pending() == 11
    assert sock.recv(1) == b"\x05"
    assert sock.recv(5) == b"hello"
    assert sock.recv(1) == b"\x30"
    assert sock.recv(100) == b"\x03abc"  # no more than is buffered, no kernel call
    assert fake.recv_sizes == [READ_SIZE]
    assert sock.pending() == 0
    with pytest.raises(BlockingIOError):
        sock.recv(1)  # empty buffer: one kernel read, which finds nothing
    assert fake.recv_sizes == [READ_SIZE, READ_SIZE]


def test_end_of_stream_is_passed_on() -> None:
    sock = BufferedSocket(FakeSocket([b""]))
    assert sock.recv(1) == b""


def test_pending_includes_the_tls_layers_buffer() -> None:
    fake: Any = FakeSocket([b"ab"])
    fake.pending = lambda: 7
    sock = BufferedSocket(fake)
    assert sock.pending() == 7
    sock.recv(1)
    assert sock.pending() == 8


def test_writes_wait_for_flush_and_keep_their_order() -> None:
    fake = FakeSocket()
    sock = BufferedSocket(fake)
    for mid in range(1, 101):
        assert sock.send(struct.pack("!BBH", 0x40, 2, mid)) == 4
    assert fake.send_calls == 0
    assert sock.want_flush
    sock.flush()
    assert fake.send_calls == 1
    assert bytes(fake.sent) == b"".join(struct.pack("!BBH", 0x40, 2, m) for m in range(1, 101))
    assert not sock.want_flush


def test_partial_and_blocked_writes_keep_the_rest() -> None:
    fake = FakeSocket(accept=3)
    sock = BufferedSocket(fake)
    sock.send(b"abcdefgh")
    fake.blocked = True
    sock.flush()
    assert fake.sent == b""
    assert sock.want_flush
    fake.blocked = False
    sock.flush()
    assert fake.sent == b"abcdefgh"  # 3 + 3 + 2 bytes
    assert fake.send_calls == 4


def test_a_large_output_flushes_by_itself() -> None:
    fake = FakeSocket()
    sock = BufferedSocket(fake)
    sock.send(b"x" * (FLUSH_AT - 1))
    assert fake.send_calls == 0
    sock.send(b"y")
    assert len(fake.sent) == FLUSH_AT


def test_a_write_error_surfaces_on_the_next_read() -> None:
    fake = FakeSocket([b"data"])
    fake.fail_send = BrokenPipeError("gone")
    sock = BufferedSocket(fake)
    sock.send(b"ack")
    sock.flush()
    assert not sock.want_flush
    with pytest.raises(BrokenPipeError):
        sock.recv(1)


def test_close_writes_what_is_left() -> None:
    fake = FakeSocket()
    fake.blocked = True
    sock = BufferedSocket(fake)
    sock.send(b"\xe0\x00")  # DISCONNECT
    sock.flush()
    sock.close()
    assert fake.sent == b"\xe0\x00"
    assert fake.closed


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    yield server
    server.close()


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def _publish(mid: int, topic: str, payload: bytes) -> bytes:
    name = topic.encode()
    body = struct.pack("!H", len(name)) + name + struct.pack("!H", mid) + b"\x00" + payload
    assert len(body) < 128
    return bytes([0x32, len(body)]) + body  # QoS 1, MQTT 5 (empty properties)


def test_paho_reads_a_burst_and_acks_in_one_write(listener: socket.socket) -> None:
    """A whole paho round trip over a real loopback socket, without a broker."""
    client = BufferedClient(
        CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True
    )
    received: list[mqtt.MQTTMessage] = []
    client.on_message = lambda _c, _u, m: received.append(m)
    client.connect(*listener.getsockname())
    conn, _addr = listener.accept()
    try:
        sock = client.buffered_socket()
        assert isinstance(sock, BufferedSocket)
        conn.settimeout(5)
        assert sock.want_flush  # CONNECT waits for the flush
        sock.flush()
        assert _read_exactly(conn, 1) == b"\x10"
        conn.recv(4096)  # rest of CONNECT
        conn.sendall(b"\x20\x03\x00\x00\x00")  # CONNACK, MQTT 5, no properties
        conn.sendall(b"".join(_publish(m, f"ioc/d/k/dev{m}/telemetry", b"{}") for m in (1, 2, 3)))
        while len(received) < 3:
            if not sock.pending():
                select.select([sock], [], [], 5)
            assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
        assert [m.mid for m in received] == [1, 2, 3]
        assert received[2].topic == "ioc/d/k/dev3/telemetry"
        for m in received:
            client.ack(m.mid, m.qos)
        sock.flush()
        acks = _read_exactly(conn, 12)
        assert acks == b"".join(struct.pack("!BBH", 0x40, 2, m) for m in (1, 2, 3))
    finally:
        client.disconnect()
        conn.close()
