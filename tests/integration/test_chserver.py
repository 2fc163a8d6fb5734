"""The embedded ClickHouse server, driven as a real ClickHouse: clickhouse-connect and raw HTTP.

Each server runs as its own subprocess (``python -m connectors.chserver``) on a free port
from 18123 up with a fresh data directory, and is stopped by pid with SIGTERM at the end;
a clean exit (code 0) is part of what the tests check.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import clickhouse_connect
import lz4.frame
import pytest
import zstandard
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.external import ExternalData

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "CHSERVER_TEST_PASSWORD"
_used_ports: set[int] = set()


def _free_port() -> int:
    for port in range(18123, 18300):
        if port in _used_ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port in 18123-18299")


@dataclass
class Server:
    """One running server subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> Client:
        client: Client = clickhouse_connect.get_client(host="127.0.0.1", port=self.port, **kwargs)
        return client

    def stop(self) -> int:
        """SIGTERM by pid, bounded wait, SIGKILL as a last resort; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def start_server(data_dir: Path, *, user: str | None = None, password: str | None = None) -> Server:
    port = _free_port()
    log = data_dir.parent / f"{data_dir.name}.log"
    argv = [
        sys.executable,
        "-m",
        "connectors.chserver",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
    ]
    env = dict(os.environ)
    if user is not None:
        argv += ["--user", user, "--password-env", PASSWORD_ENV]
        env[PASSWORD_ENV] = password or ""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    server = Server(proc, port, data_dir, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chserver exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if http(server, "GET", "/ping")[2] == b"Ok.\n":
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"chserver did not answer /ping:\n{log.read_text()}")


def http(
    server: Server,
    method: str,
    path: str = "/",
    params: dict[str, str] | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request; returns status, headers and the (undecoded) body."""
    url = server.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback test server
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("chserver") / "data")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("chserver-auth") / "data", user="ioc", password="s3cr3t"
    )
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def db(server: Server) -> str:
    """A fresh database for one test."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    server.client().command(f"CREATE DATABASE {name}")
    return name


# --- raw HTTP ----------------------------------------------------------------------------


def test_ping_root_and_replicas_status(server: Server) -> None:
    for path in ("/ping", "/", "/replicas_status"):
        assert http(server, "GET", path)[::2] == (200, b"Ok.\n")


def test_query_in_url_body_or_both(server: Server) -> None:
    status, headers, body = http(server, "GET", params={"query": "SELECT 1 + 1"})
    assert (status, body) == (200, b"2\n")
    assert headers["X-ClickHouse-Format"] == "TabSeparated"
    assert headers["X-ClickHouse-Timezone"]
    assert headers["X-ClickHouse-Server-Display-Name"]
    assert json.loads(headers["X-ClickHouse-Summary"])["result_rows"] == "1"
    assert http(server, "POST", body=b"SELECT 'body'")[2] == b"body\n"
    assert http(server, "GET", body=b"SELECT 'get body'")[2] == b"get body\n"
    # ClickHouse joins the URL part and the body with a newline
    assert http(server, "POST", params={"query": "SELECT 40 +"}, body=b"2")[2] == b"42\n"
    qid = str(uuid.uuid4())
    assert (
        http(server, "GET", params={"query": "SELECT 1", "query_id": qid})[1][
            "X-ClickHouse-Query-Id"
        ]
        == qid
    )


def test_default_format_and_format_clause(server: Server) -> None:
    status, headers, body = http(
        server,
        "POST",
        params={"default_format": "JSONEachRow"},
        body=b"SELECT number AS n FROM numbers(3)",
    )
    assert status == 200
    assert [json.loads(line) for line in body.splitlines()] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    status, headers, body = http(server, "POST", body=b"SELECT 7 AS x, 'a' AS s FORMAT JSON")
    doc = json.loads(body)
    assert doc["data"] == [{"x": 7, "s": "a"}]
    assert doc["rows"] == 1
    assert headers["X-ClickHouse-Format"] == "JSON"
    assert headers["Content-Type"].startswith("application/json")


def test_error_is_500_with_exception_code(server: Server) -> None:
    status, headers, body = http(server, "POST", body=b"SELECT * FROM no_such_db.no_such_table")
    assert status == 500
    assert headers["X-ClickHouse-Exception-Code"] in ("60", "81")
    assert body.startswith(b"Code: ")
    assert b"(version " in body
    status, headers, body = http(server, "POST", body=b"SELEC 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "62")
    status, headers, _ = http(server, "POST", params={"max_threadz": "1"}, body=b"SELECT 1")
    assert headers["X-ClickHouse-Exception-Code"] == "115"  # unknown setting


def test_get_is_readonly(server: Server, db: str) -> None:
    status, headers, body = http(
        server, "GET", params={"query": f"CREATE TABLE {db}.x (a UInt8) ENGINE = Memory"}
    )
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "164")
    assert b"method GET implies readonly" in body


def test_inline_inserts(server: Server, db: str) -> None:
    http(
        server,
        "POST",
        body=f"CREATE TABLE {db}.t (a UInt32, s String) ENGINE = MergeTree ORDER BY a".encode(),
    )
    status, headers, _ = http(
        server,
        "POST",
        body=f'INSERT INTO {db}.t FORMAT JSONEachRow\n{{"a":1,"s":"x"}}\n{{"a":2}}'.encode(),
    )
    assert status == 200
    assert json.loads(headers["X-ClickHouse-Summary"])["written_rows"] == "2"
    assert (
        http(server, "POST", body=f"INSERT INTO {db}.t VALUES (3, 'z'), (4, 'w')".encode())[0]
        == 200
    )
    assert (
        http(
            server, "POST", params={"query": f"INSERT INTO {db}.t FORMAT CSV"}, body=b"5,v\n6,u\n"
        )[0]
        == 200
    )
    assert (
        http(
            server,
            "POST",
            body=f"INSERT INTO {db}.t SELECT number + 10, 'q' FROM numbers(4)".encode(),
        )[0]
        == 200
    )
    status, _, body = http(server, "POST", body=f"SELECT count(), sum(a) FROM {db}.t".encode())
    assert body == b"10\t67\n"
    status, headers, body = http(
        server, "POST", body=f"INSERT INTO {db}.t FORMAT CSV\nnot,a,row\n".encode()
    )
    assert status == 500
    assert headers["X-ClickHouse-Exception-Code"]
    assert http(server, "POST", body=f"SELECT count() FROM {db}.t".encode())[2] == b"10\n"


def _compress(encoding: str, data: bytes) -> bytes:
    if encoding == "lz4":
        return bytes(lz4.frame.compress(data[:10])) + bytes(lz4.frame.compress(data[10:]))
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if encoding == "gzip":
        return gzip.compress(data)
    return zlib.compress(data)


def _decompress(encoding: str, data: bytes) -> bytes:
    if encoding == "lz4":
        return bytes(lz4.frame.decompress(data))
    if encoding == "zstd":
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    if encoding == "gzip":
        return gzip.decompress(data)
    return zlib.decompress(data)


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip", "deflate"])
def test_raw_request_and_response_compression(server: Server, db: str, encoding: str) -> None:
    http(
        server,
        "POST",
        body=f"CREATE TABLE {db}.c (n UInt64) ENGINE = MergeTree ORDER BY n".encode(),
    )
    data = "".join(f"{i}\n" for i in range(5000)).encode()
    body = _compress(encoding, f"INSERT INTO {db}.c FORMAT TSV\n".encode() + data)
    status, _, _ = http(server, "POST", body=body, headers={"Content-Encoding": encoding})
    assert status == 200
    query = f"SELECT n FROM {db}.c ORDER BY n".encode()
    status, headers, raw = http(
        server,
        "POST",
        params={"enable_http_compression": "1"},
        body=query,
        headers={"Accept-Encoding": encoding},
    )
    assert headers.get("Content-Encoding") == encoding
    assert _decompress(encoding, raw) == data
    status, headers, raw = http(
        server,
        "POST",
        params={"enable_http_compression": "0"},
        body=query,
        headers={"Accept-Encoding": encoding},
    )
    assert "Content-Encoding" not in headers
    assert raw == data


def test_abandoned_insert_writes_nothing(server: Server, db: str) -> None:
    http(
        server,
        "POST",
        body=f"CREATE TABLE {db}.a (n UInt32) ENGINE = MergeTree ORDER BY n".encode(),
    )
    data = "".join(f"{i}\n" for i in range(10_000)).encode()
    statement = f"INSERT INTO {db}.a FORMAT TSV\n".encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {len(statement) + len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + statement + data[: len(data) // 2])  # then the client vanishes
    assert http(server, "POST", body=f"SELECT count() FROM {db}.a".encode())[2] == b"0\n"
    status, _, _ = http(server, "POST", body=statement + data)
    assert status == 200
    assert http(server, "POST", body=f"SELECT count() FROM {db}.a".encode())[2] == b"10000\n"


def test_corrupt_compressed_body_is_rejected(server: Server) -> None:
    status, headers, _ = http(
        server, "POST", body=b"not zstd at all", headers={"Content-Encoding": "zstd"}
    )
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "271")


def test_settings_stay_with_their_request(server: Server) -> None:
    def max_threads(params: dict[str, str] | None = None) -> bytes:
        return http(server, "POST", params=params, body=b"SELECT getSetting('max_threads')")[2]

    default = max_threads()
    for _ in range(3):  # whatever pooled connection answers, it must not keep the setting
        assert max_threads({"max_threads": "3"}) == b"3\n"
        assert max_threads() == default
    assert http(server, "POST", body=b"SET max_threads = 5")[0] == 200
    assert {max_threads() for _ in range(5)} == {default}


# --- clickhouse-connect ------------------------------------------------------------------

ALL_TYPES = [
    ("s", "String"),
    ("lc", "LowCardinality(String)"),
    ("f64", "Float64"),
    ("f32", "Float32"),
    ("u8", "UInt8"),
    ("u16", "UInt16"),
    ("u32", "UInt32"),
    ("u64", "UInt64"),
    ("i32", "Int32"),
    ("i64", "Int64"),
    ("t64", "DateTime64(3, 'UTC')"),
    ("t", "DateTime('UTC')"),
    ("d", "Date"),
    ("n", "Nullable(Float64)"),
    ("b", "Bool"),
    ("arr", "Array(String)"),
    ("m", "Map(String, String)"),
    ("id", "UUID"),
    ("e", "Enum8('ok' = 1, 'alarm' = 2)"),
    ("dec", "Decimal(10, 2)"),
]


def test_every_platform_type_round_trips(server: Server, db: str) -> None:
    client = server.client(database=db)
    columns = ", ".join(f"{name} {kind}" for name, kind in ALL_TYPES)
    client.command(f"CREATE TABLE all_types ({columns}) ENGINE = MergeTree ORDER BY u32")
    base = dt.datetime(2026, 11, 28, 7, 30, 15, 123000, tzinfo=dt.UTC)
    rows: list[list[Any]] = [
        [
            f"str {i} ü",
            ["hanoi", "hue"][i % 2],
            i * 0.25,
            float(i) / 2,
            255 - i,
            65535 - i,
            4_000_000_000 + i,
            2**64 - 1 - i,
            -(2**31) + i,
            -(2**63) + i,
            base + dt.timedelta(milliseconds=i),
            base.replace(microsecond=0) + dt.timedelta(seconds=i),
            dt.date(2026, 1, 1) + dt.timedelta(days=i),
            None if i % 3 == 0 else i / 3,
            i % 2 == 0,
            [f"a{i}", "", "b"],
            {"k": str(i), "zone": "q1"},
            uuid.UUID(int=i + 1),
            ["ok", "alarm"][i % 2],
            Decimal(i) / 4,
        ]
        for i in range(200)
    ]
    names = [name for name, _ in ALL_TYPES]
    summary = client.insert("all_types", rows, column_names=names)
    assert summary.written_rows == 200
    got = client.query(f"SELECT {', '.join(names)} FROM all_types ORDER BY u32").result_rows
    assert len(got) == 200
    for sent, back in zip(rows, got, strict=True):
        expected = list(sent)
        expected[10] = sent[10].replace(tzinfo=None)  # naive UTC, clickhouse-connect's default
        expected[11] = sent[11].replace(tzinfo=None)
        assert list(back) == expected


def test_command_query_and_parameters(server: Server) -> None:
    client = server.client()
    assert client.command("SELECT 1") == 1
    assert client.command("SELECT 1, 'a'") == ["1", "a"]
    assert client.command("SELECT 1 WHERE 0") == ""  # a result set with no rows
    assert client.query(
        "SELECT {x:String} AS x, {n:UInt8} AS n", parameters={"x": "it's", "n": 7}
    ).result_rows == [("it's", 7)]
    assert client.query("SELECT %(x)s AS x", parameters={"x": "client side"}).result_rows == [
        ("client side",)
    ]
    big = "x" * 10_000  # too long for the URL: clickhouse-connect sends a multipart form
    assert client.query("SELECT length({p:String})", parameters={"p": big}).result_rows == [
        (10_000,)
    ]
    result = client.query("SELECT number, toString(number) FROM numbers(10)")
    assert result.column_names == ("number", "toString(number)")
    assert result.result_rows[-1] == (9, "9")


def test_external_data_tables(server: Server) -> None:
    ext = ExternalData(
        file_name="ids.csv", data=b"1,a\n2,b\n3,c\n", fmt="CSV", structure=["id UInt32", "s String"]
    )
    result = server.client().query("SELECT sum(id), groupArray(s) FROM ids", external_data=ext)
    assert result.result_rows == [(6, ["a", "b", "c"])]


def test_external_tables_larger_than_aiohttp_s_default_form_limit(server: Server) -> None:
    """An external table of several MiB (a sink batch sends about 15 MiB) is read whole."""
    rows = b"".join(b'{"id":%d,"s":"%s"}\n' % (i, b"x" * 200) for i in range(20_000))
    assert len(rows) > 4 << 20
    ext = ExternalData(
        file_name="big", data=rows, fmt="JSONEachRow", structure="id UInt32, s String"
    )
    got = server.client().query("SELECT count(), sum(id) FROM big", external_data=ext)
    assert got.result_rows == [(20_000, sum(range(20_000)))]


@pytest.mark.parametrize("compress", [False, "lz4", "zstd", "gzip", True])
def test_insert_and_select_with_each_compression(
    server: Server, db: str, compress: bool | str
) -> None:
    client = server.client(database=db, compress=compress)
    client.command(
        "CREATE TABLE c (id UInt32, s String, ts DateTime64(3, 'UTC')) "
        "ENGINE = MergeTree ORDER BY id"
    )
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows: list[list[Any]] = [
        [i, f"v{i}" * (i % 7), now + dt.timedelta(seconds=i)] for i in range(20_000)
    ]
    for start in range(0, len(rows), 5000):  # several blocks per insert, several inserts
        client.insert("c", rows[start : start + 5000], column_names=["id", "s", "ts"])
    got = client.query("SELECT id, s, ts FROM c ORDER BY id").result_rows
    assert [list(r) for r in got] == [[i, s, ts.replace(tzinfo=None)] for i, s, ts in rows]


def test_errors_reach_the_client(server: Server) -> None:
    client = server.client()
    with pytest.raises(DatabaseError) as info:
        client.query("SELECT * FROM system.no_such_table")
    assert "UNKNOWN_TABLE" in str(info.value)
    assert "60" in str(info.value)
    with pytest.raises(DatabaseError, match="395"):
        client.query("SELECT throwIf(number = 3, 'boom') FROM numbers(10)")
    assert client.command("SELECT 'still fine'") == "still fine"


@pytest.mark.parametrize("compress", [False, "lz4", "zstd"])
def test_streamed_results_and_a_mid_stream_error(server: Server, compress: bool | str) -> None:
    client = server.client(compress=compress)
    total = 0
    with client.query_row_block_stream("SELECT number FROM numbers(1000000)") as stream:
        for block in stream:
            total += sum(row[0] for row in block)
    assert total == 999_999 * 1_000_000 // 2
    with (
        pytest.raises(DatabaseError, match="boom"),
        client.query_row_block_stream(
            "SELECT throwIf(number = 700000, 'boom') FROM numbers(1000000)"
        ) as stream,
    ):
        for _ in stream:
            pass
    assert client.command("SELECT 2") == 2


def test_insert_deduplication_token(server: Server, db: str) -> None:
    client = server.client(database=db)
    client.command(
        "CREATE TABLE d (id UInt32, v String) ENGINE = MergeTree ORDER BY id "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    rows = [[i, f"v{i}"] for i in range(10)]
    for _ in range(2):
        client.insert(
            "d", rows, column_names=["id", "v"], settings={"insert_deduplication_token": "batch-1"}
        )
    assert client.command("SELECT count() FROM d") == 10
    client.insert(
        "d", rows, column_names=["id", "v"], settings={"insert_deduplication_token": "batch-2"}
    )
    assert client.command("SELECT count() FROM d") == 20
    # Settings stay with their request: without a token, identical data is deduplicated by
    # its hash; disabling deduplication for one request does not disable it for the next.
    # (Engine 26.x: insert_deduplicate counts only under
    # deduplicate_insert = 'backward_compatible_choice'.)
    for _ in range(2):
        client.insert("d", rows, column_names=["id", "v"])
    assert client.command("SELECT count() FROM d") == 30
    off = {"deduplicate_insert": "backward_compatible_choice", "insert_deduplicate": 0}
    client.insert("d", rows, column_names=["id", "v"], settings=off)
    client.insert("d", rows, column_names=["id", "v"], settings={"deduplicate_insert": "disable"})
    assert client.command("SELECT count() FROM d") == 50
    client.insert("d", rows, column_names=["id", "v"])
    assert client.command("SELECT count() FROM d") == 50


def test_database_parameter(server: Server, db: str) -> None:
    client = server.client(database=db)
    client.command("CREATE TABLE here (a UInt8) ENGINE = Memory")
    client.insert("here", [[1], [2]], column_names=["a"])
    assert client.command("SELECT currentDatabase()") == db
    assert client.command(f"SELECT count() FROM {db}.here") == 2
    assert server.client().command("SELECT currentDatabase()") == "default"
    assert (
        http(server, "POST", params={"database": db}, body=b"SELECT count() FROM here")[2] == b"2\n"
    )
    assert http(server, "POST", body=b"SELECT currentDatabase()")[2] == b"default\n"
    header = {"X-ClickHouse-Database": db}
    assert http(server, "POST", body=b"SELECT count() FROM here", headers=header)[2] == b"2\n"


def test_sessions_keep_state_and_requests_keep_theirs(server: Server, db: str) -> None:
    session = server.client(session_id=f"s-{uuid.uuid4()}")
    other = server.client(session_id=f"s-{uuid.uuid4()}")
    default = other.command("SELECT getSetting('max_threads')")
    session.command("SET max_threads = 3")
    assert session.command("SELECT getSetting('max_threads')") == 3
    assert session.query(
        "SELECT getSetting('max_threads')", settings={"max_threads": 5}
    ).result_rows == [(5,)]
    assert session.command("SELECT getSetting('max_threads')") == 3
    assert other.command("SELECT getSetting('max_threads')") == default
    session.command("CREATE TEMPORARY TABLE tmp (a UInt8)")
    session.command("INSERT INTO tmp VALUES (1), (2)")
    assert session.command("SELECT count() FROM tmp") == 2
    with pytest.raises(DatabaseError):
        other.command("SELECT count() FROM tmp")
    session.command(f"USE {db}")
    assert session.command("SELECT currentDatabase()") == db
    status, headers, _ = http(
        server,
        "POST",
        params={"session_id": f"missing-{uuid.uuid4()}", "session_check": "1"},
        body=b"SELECT 1",
    )
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "372")


def test_session_expires(server: Server) -> None:
    sid = f"short-{uuid.uuid4()}"
    params = {"session_id": sid, "session_timeout": "1"}
    assert http(server, "POST", params=params, body=b"SELECT 1")[0] == 200
    check = {**params, "session_check": "1"}
    assert http(server, "POST", params=check, body=b"SELECT 1")[0] == 200  # it exists
    codes = []
    for idle in (2.5, 5.0, 10.0):  # a check touches the session: wait longer than its timeout
        time.sleep(idle)
        codes.append(
            http(server, "POST", params=check, body=b"SELECT 1")[1].get(
                "X-ClickHouse-Exception-Code"
            )
        )
        if codes[-1] == "372":
            break
    assert codes[-1] == "372", codes


def test_concurrent_clients(server: Server, db: str) -> None:
    server.client().command(
        f"CREATE TABLE {db}.conc (worker UInt8, seq UInt32, v Float64) "
        "ENGINE = MergeTree ORDER BY (worker, seq)"
    )
    errors: list[BaseException] = []
    seen: dict[int, list[Any]] = {}

    def work(worker: int) -> None:
        try:
            client = server.client(database=db, compress="lz4" if worker % 2 else False)
            counts = []
            for batch in range(20):
                rows = [[worker, batch * 100 + i, float(i)] for i in range(100)]
                client.insert("conc", rows, column_names=["worker", "seq", "v"])
                counts.append(client.command(f"SELECT count() FROM conc WHERE worker = {worker}"))
            seen[worker] = counts
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    for worker in range(8):
        assert seen[worker] == [100 * (b + 1) for b in range(20)]
    assert server.client().command(f"SELECT count(), uniqExact(worker, seq) FROM {db}.conc") == [
        "16000",
        "16000",
    ]


def test_million_row_insert_round_trips(server: Server, db: str) -> None:
    client = server.client(database=db)
    client.command(
        "CREATE TABLE big (id UInt64, v Float64, tag LowCardinality(String)) "
        "ENGINE = MergeTree ORDER BY id"
    )
    n = 1_000_000
    ids = list(range(n))
    values = [i * 0.5 for i in ids]
    tags = [f"sensor-{i % 97}" for i in ids]
    summary = client.insert(
        "big", [ids, values, tags], column_names=["id", "v", "tag"], column_oriented=True
    )
    assert summary.written_rows == n
    assert client.command("SELECT count(), sum(id), sum(v), uniqExact(tag) FROM big") == [
        str(n),
        str(sum(ids)),
        f"{sum(values):.0f}",
        "97",
    ]


# --- authentication and lifecycle ----------------------------------------------------------


def test_credentials_are_required_when_configured(secured: Server) -> None:
    assert http(secured, "GET", "/ping")[2] == b"Ok.\n"
    with pytest.raises(DatabaseError) as info:
        secured.client(username="ioc", password="wrong")
    assert "516" in str(info.value)
    with pytest.raises(DatabaseError, match="AUTHENTICATION_FAILED"):
        secured.client()
    assert secured.client(username="ioc", password="s3cr3t").command("SELECT 1") == 1
    status, headers, _ = http(secured, "POST", body=b"SELECT 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")
    ok = http(
        secured,
        "POST",
        body=b"SELECT 1",
        headers={"X-ClickHouse-User": "ioc", "X-ClickHouse-Key": "s3cr3t"},
    )
    assert ok[::2] == (200, b"1\n")
    assert (
        http(secured, "POST", params={"user": "ioc", "password": "s3cr3t"}, body=b"SELECT 1")[2]
        == b"1\n"
    )
    assert b"s3cr3t" not in secured.log.read_bytes()


def test_shutdown_finishes_in_flight_work_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir)
    result: list[Any] = []
    try:
        client = first.client()
        client.command("CREATE TABLE default.kept (a UInt32) ENGINE = MergeTree ORDER BY a")
        client.insert("default.kept", [[i] for i in range(1234)], column_names=["a"])
        slow = "SELECT sum(sleepEachRow(0.5) + number) FROM numbers(6) SETTINGS max_block_size = 1"
        worker = threading.Thread(target=lambda: result.append(first.client().command(slow)))
        worker.start()
        running = "SELECT count() FROM system.processes WHERE query LIKE '%sleepEachRow(0.5)%'"
        while client.command(running) != 2:  # the slow query and this probe itself
            assert worker.is_alive(), result
    finally:
        assert first.stop() == 0, first.log.read_text()[-3000:]
    worker.join(timeout=60)
    assert result == [15]  # SIGTERM let the in-flight query finish
    assert "stopped" in first.log.read_text()
    with pytest.raises(urllib.error.URLError):  # no longer listening
        http(first, "GET", "/ping")
    second = start_server(data_dir)
    try:
        assert second.client().command("SELECT count(), sum(a) FROM default.kept") == [
            "1234",
            str(sum(range(1234))),
        ]
    finally:
        assert second.stop() == 0
