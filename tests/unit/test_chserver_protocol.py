"""The embedded ClickHouse server's pure logic: request parsing, SQL boundaries, codecs."""

from __future__ import annotations

import asyncio
import base64
import gzip
import zlib
from typing import Any

import lz4.frame
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from connectors.chserver.compression import RESPONSE_ENCODINGS, decoder, encoder
from connectors.chserver.errors import ServerError
from connectors.chserver.protocol import (
    Credentials,
    Stats,
    authenticated,
    choose_encoding,
    content_type,
    parse_request,
    set_statement,
    split_types,
)
from connectors.chserver.sessions import SessionRegistry
from connectors.chserver.statement import (
    NEED_MORE,
    WHOLE_QUERY,
    InsertData,
    changes_connection,
    locate_insert_data,
    output_format,
    statement_kind,
)

# --- request parameters ------------------------------------------------------------------


def test_protocol_params_are_not_settings_and_the_rest_are() -> None:
    spec = parse_request(
        [
            ("query", "SELECT 1"),
            ("database", "ioc"),
            ("default_format", "JSON"),
            ("session_id", "s1"),
            ("session_timeout", "120"),
            ("session_check", "1"),
            ("query_id", "q-1"),
            ("wait_end_of_query", "1"),
            ("enable_http_compression", "1"),
            ("send_progress_in_http_headers", "1"),
            ("client_protocol_version", "54405"),
            ("param_x", "42"),
            ("insert_deduplication_token", "tok"),
            ("max_threads", "2"),
        ],
        {},
    )
    assert spec.query == "SELECT 1"
    assert spec.database == "ioc"
    assert spec.default_format == "JSON"
    assert (spec.session_id, spec.session_timeout, spec.session_check) == ("s1", 120.0, True)
    assert spec.query_id == "q-1"
    assert spec.wait_end_of_query is True
    assert spec.compress_response is True
    assert spec.params == {"x": "42"}
    assert spec.settings == {"insert_deduplication_token": "tok", "max_threads": "2"}


def test_defaults_and_headers() -> None:
    spec = parse_request([], {"X-ClickHouse-Database": "db2", "x-clickhouse-format": "Native"})
    assert spec.database == "db2"
    assert spec.default_format == "Native"
    assert spec.query == ""
    assert spec.compress_response is None  # the engine's default decides
    assert spec.session_id is None
    assert len(spec.query_id) == 36  # generated uuid
    plain = parse_request([], {})
    assert plain.default_format == "TabSeparated"
    assert plain.database is None


def test_later_parameters_win_and_empty_names_are_ignored() -> None:
    spec = parse_request([("", "x"), ("max_threads", "1"), ("max_threads", "3")], {})
    assert spec.settings == {"max_threads": "3"}


@pytest.mark.parametrize("value", ["abc", "-1", "100000"])
def test_bad_session_timeout_is_a_400(value: str) -> None:
    with pytest.raises(ServerError) as info:
        parse_request([("session_timeout", value)], {})
    assert info.value.status == 400
    assert info.value.code == 36


def test_setting_names_must_be_identifiers() -> None:
    with pytest.raises(ServerError) as info:
        parse_request([("max threads; DROP", "1")], {})
    assert info.value.code == 115
    assert info.value.name == "UNKNOWN_SETTING"


def test_external_table_params_only_in_multipart_requests() -> None:
    params = [
        ("t_structure", "a UInt8, b String"),
        ("u_types", "UInt8, Array(Tuple(String, Int8))"),
    ]
    assert parse_request(params, {}).settings == dict(params)
    spec = parse_request([*params, ("u_format", "CSV")], {}, multipart=True)
    assert spec.settings == {}
    t = spec.external_table("t")
    assert (t.format, t.structure) == ("TabSeparated", "a UInt8, b String")
    assert t.create_sql() == "CREATE TEMPORARY TABLE `t` (a UInt8, b String)"
    u = spec.external_table("u")
    assert (u.format, u.structure) == ("CSV", "_1 UInt8, _2 Array(Tuple(String, Int8))")
    with pytest.raises(ServerError):
        spec.external_table("missing")


def test_split_types_respects_nesting() -> None:
    assert split_types("UInt8, Map(String, Array(Int8)),String") == [
        "UInt8",
        "Map(String, Array(Int8))",
        "String",
    ]
    assert split_types("") == []


# --- credentials -------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_from_each_source() -> None:
    assert parse_request([], {"Authorization": _basic("ioc", "p:w")}).credentials == Credentials(
        "ioc", "p:w"
    )
    headers = {"X-ClickHouse-User": "ioc", "X-ClickHouse-Key": "secret"}
    assert parse_request([], headers).credentials == Credentials("ioc", "secret")
    url = [("user", "ioc"), ("password", "pw")]
    assert parse_request(url, {}).credentials == Credentials("ioc", "pw")
    none = parse_request([], {}).credentials
    assert (none.user, none.password, none.supplied) == ("default", "", False)


def test_malformed_basic_auth_is_a_400() -> None:
    with pytest.raises(ServerError) as info:
        parse_request([], {"Authorization": "Basic !!!not-base64"})
    assert info.value.status == 400


def test_password_never_in_repr() -> None:
    creds = parse_request([("user", "u"), ("password", "hunter2")], {}).credentials
    assert "hunter2" not in repr(creds)
    assert "hunter2" not in repr(parse_request([("password", "hunter2")], {}))


def test_authentication() -> None:
    assert authenticated(Credentials("anyone", "x"), None, None)
    assert authenticated(Credentials("ioc", "pw"), "ioc", "pw")
    assert not authenticated(Credentials("ioc", "wrong"), "ioc", "pw")
    assert not authenticated(Credentials("other", "pw"), "ioc", "pw")
    assert not authenticated(Credentials("default", "", supplied=False), "ioc", "pw")


# --- response labels ---------------------------------------------------------------------


def test_choose_encoding_follows_client_order_and_skips_refused() -> None:
    have = ("lz4", "zstd", "gzip", "deflate")
    assert choose_encoding("lz4,zstd,gzip,deflate", have) == "lz4"
    assert choose_encoding("br, gzip;q=0.5", have) == "gzip"
    assert choose_encoding("gzip;q=0, deflate", have) == "deflate"
    assert choose_encoding("br", have) is None
    assert choose_encoding(None, have) is None


def test_content_types() -> None:
    assert content_type("TabSeparated").startswith("text/tab-separated-values")
    assert content_type("JSON").startswith("application/json")
    assert content_type("JSONEachRow").startswith("application/x-ndjson")
    assert content_type("Native") == "application/octet-stream"
    assert content_type("CSV").startswith("text/csv")


def test_summary_header_values_are_strings() -> None:
    header = Stats(read_rows=3, written_rows=2, elapsed_ns=5).header()
    assert '"read_rows":"3"' in header
    assert '"written_rows":"2"' in header
    assert '"elapsed_ns":"5"' in header


def test_set_statement_quotes_values_and_rejects_bad_names() -> None:
    sql = set_statement([("insert_deduplication_token", "it's\\x"), ("max_threads", None)])
    assert sql == "SET insert_deduplication_token = 'it\\'s\\\\x', max_threads = DEFAULT"
    with pytest.raises(ServerError):
        set_statement([("a b", "1")])


# --- statements --------------------------------------------------------------------------


def _data(sql: bytes, eof: bool = True) -> InsertData:
    answer = locate_insert_data(sql, eof)
    assert isinstance(answer, InsertData), answer
    return answer


def test_insert_format_data_starts_after_one_newline() -> None:
    text = b"INSERT INTO ioc.readings (a, b) FORMAT Native\n\n\x01\x02"
    found = _data(text)
    assert found.statement == "INSERT INTO ioc.readings (a, b)"
    assert found.format == "Native"
    assert text[found.data_start :] == b"\n\x01\x02"  # only the first newline is skipped


def test_insert_format_with_crlf_spaces_settings_and_no_newline() -> None:
    crlf = _data(b"insert into t settings async_insert=0 format JSONEachRow \t\r\n{}")
    assert crlf.statement == "insert into t settings async_insert=0"
    assert crlf.format == "JSONEachRow"
    assert (
        b"insert into t settings async_insert=0 format JSONEachRow \t\r\n{}"[crlf.data_start :]
        == b"{}"
    )
    inline = b"INSERT INTO t FORMAT CSV 1,2"
    assert inline[_data(inline).data_start :] == b"1,2"


def test_insert_values() -> None:
    text = b"INSERT INTO t (a) VALUES (1), (2)"
    found = _data(text)
    assert (found.statement, found.format) == ("INSERT INTO t (a)", "Values")
    assert text[found.data_start :] == b" (1), (2)"


def test_keywords_in_names_strings_and_comments_do_not_count() -> None:
    text = (
        b'INSERT INTO format.values /* FORMAT x */ -- VALUES\n (`format`, "values") FORMAT TSV\n1'
    )
    found = _data(text)
    assert found.format == "TSV"
    assert text[found.data_start :] == b"1"
    quoted = (
        b"INSERT INTO t SETTINGS insert_deduplication_token = 'a FORMAT b\\' VALUES' "
        b"FORMAT RowBinary\nX"
    )
    assert _data(quoted).format == "RowBinary"


def test_statements_without_inline_data() -> None:
    for sql in (
        b"SELECT 1 FORMAT JSON",
        b"INSERT INTO t SELECT * FROM s",
        b"INSERT INTO t (a) WITH 1 AS x SELECT x",
        b"CREATE TABLE t (a UInt8) ENGINE = Memory",
        b"  ",
    ):
        assert locate_insert_data(sql, True) is WHOLE_QUERY, sql


def test_incomplete_statements_ask_for_more() -> None:
    for head in (
        b"INS",
        b"INSERT INTO t FORMAT Nat",
        b"INSERT INTO t FORMAT Native",
        b"INSERT INTO 't",
        b"INSERT /* x",
    ):
        assert locate_insert_data(head, False) is NEED_MORE, head


@given(
    prefix=st.sampled_from(
        [
            b"INSERT INTO t FORMAT Native\n",
            b"INSERT INTO db.t (a, `b c`) SETTINGS x = 'y''z' FORMAT JSONEachRow\r\n",
            b"insert into t values",
            b"INSERT INTO t SELECT 1",
            b"SELECT 'FORMAT' FORMAT TSV",
        ]
    ),
    data=st.binary(max_size=40),
    cut=st.integers(min_value=0, max_value=200),
)
def test_reading_in_pieces_never_changes_the_answer(prefix: bytes, data: bytes, cut: int) -> None:
    text = prefix + data
    full = locate_insert_data(text, True)
    part = locate_insert_data(text[: min(cut, len(text))], cut >= len(text))
    assert part is NEED_MORE or part == full


def test_output_format_clause() -> None:
    assert output_format("SELECT 1\n FORMAT Native") == "Native"
    assert output_format("SELECT 1 FORMAT JSON SETTINGS max_threads = 1;") == "JSON"
    assert output_format("SELECT format FROM t") is None
    assert output_format("SELECT * FROM format(CSV, 'a') ") is None
    assert output_format("SELECT (SELECT 1 FORMAT JSON)") is None
    assert output_format("SELECT 'FORMAT TSV'") is None
    assert output_format("SELECT 1 FORMAT `JSONEachRow`") == "JSONEachRow"


def test_statement_kind_and_state_changes() -> None:
    assert statement_kind("  -- c\n select 1") == "SELECT"
    assert statement_kind("(SELECT 1)") == "("
    assert statement_kind("") == ""
    assert changes_connection("SET max_threads = 1")
    assert changes_connection("use db")
    assert changes_connection("CREATE TEMPORARY TABLE x (a UInt8)")
    assert not changes_connection("CREATE TABLE x (a UInt8) ENGINE = Memory")
    assert not changes_connection("SELECT 1")


# --- errors ------------------------------------------------------------------------------


def test_engine_errors_keep_clickhouse_code_and_text() -> None:
    err = ServerError.from_text(
        "Streaming query failed: Code: 60. DB::Exception: nope. (UNKNOWN_TABLE)"
    )
    assert err.code == 60
    assert err.name == "UNKNOWN_TABLE"
    assert err.message.startswith("Code: 60. DB::Exception")
    assert err.body("26.9").endswith("(UNKNOWN_TABLE) (version 26.9 (chdb))\n")
    odd = ServerError.from_text("something else")
    assert odd.code == 1002
    assert "(version 1.0)" in ServerError.from_text("Code: 1. x (version 1.0)").body("2")


# --- codecs ------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 300 + b"tail"


def _frames(encoding: str, parts: list[bytes]) -> bytes:
    """Concatenated frames/members, one per part, as clickhouse-connect sends inserts."""
    if encoding == "lz4":
        return b"".join(lz4.frame.compress(p) for p in parts)
    if encoding == "zstd":
        return b"".join(zstandard.ZstdCompressor().compress(p) for p in parts)
    if encoding == "gzip":
        return b"".join(gzip.compress(p) for p in parts)
    return zlib.compress(b"".join(parts))


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip", "deflate"])
@given(split=st.integers(min_value=1, max_value=5000))
def test_decoders_handle_concatenated_frames_in_any_pieces(encoding: str, split: int) -> None:
    parts = [PAYLOAD[:1000], PAYLOAD[1000:30000], PAYLOAD[30000:]]
    body = _frames(encoding, parts)
    dec = decoder(encoding)
    assert dec is not None
    out = bytearray()
    for start in range(0, len(body), split):
        out += dec.feed(body[start : start + split])
    dec.finish()
    assert bytes(out) == PAYLOAD


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip", "deflate"])
def test_truncated_body_is_an_error(encoding: str) -> None:
    body = _frames(encoding, [PAYLOAD])
    dec = decoder(encoding)
    assert dec is not None
    dec.feed(body[: len(body) // 2])
    with pytest.raises(ServerError) as info:
        dec.finish()
    assert info.value.code == 271


def test_raw_deflate_and_garbage() -> None:
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = raw.compress(PAYLOAD) + raw.flush()
    dec = decoder("deflate")
    assert dec is not None
    assert dec.feed(body) == PAYLOAD
    bad = decoder("zstd")
    assert bad is not None
    with pytest.raises(ServerError):
        bad.feed(b"definitely not zstd")


def test_unknown_and_identity_encodings() -> None:
    assert decoder(None) is None
    assert decoder("identity") is None
    with pytest.raises(ServerError) as info:
        decoder("snappy")
    assert info.value.status == 415


def _decompress(encoding: str, data: bytes) -> bytes:
    if encoding == "lz4":
        return bytes(lz4.frame.decompress(data))
    if encoding == "zstd":
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    if encoding == "gzip":
        return gzip.decompress(data)
    return zlib.decompress(data)


@pytest.mark.parametrize("encoding", RESPONSE_ENCODINGS)
def test_encoders_write_one_stream(encoding: str) -> None:
    enc = encoder(encoding)
    out = b"".join(enc.compress(PAYLOAD[i : i + 7000]) for i in range(0, len(PAYLOAD), 7000))
    out += enc.flush()
    assert _decompress(encoding, out) == PAYLOAD
    with pytest.raises(ValueError, match="unsupported"):
        encoder("snappy")


# --- sessions ----------------------------------------------------------------------------


def _registry(max_sessions: int) -> tuple[SessionRegistry, list[Any], list[Any]]:
    opened: list[Any] = []
    closed: list[Any] = []

    async def open_conn() -> Any:
        conn = object()
        opened.append(conn)
        return conn

    async def close_conn(conn: Any) -> None:
        closed.append(conn)

    registry = SessionRegistry(open_conn, close_conn, max_sessions=max_sessions, lock_wait=0.05)
    return registry, opened, closed


def test_sessions_keep_their_connection_and_evict_the_least_recently_used() -> None:
    async def scenario() -> None:
        registry, opened, closed = _registry(2)
        async with registry.use("a", idle_timeout=60, check=False) as a:
            first = a.conn
        async with registry.use("a", idle_timeout=60, check=True) as again:
            assert again.conn is first
        async with registry.use("b", idle_timeout=60, check=False):
            pass
        async with registry.use("a", idle_timeout=60, check=False):
            pass  # "a" is now the most recently used
        async with registry.use("c", idle_timeout=60, check=False):
            pass
        assert closed == [opened[1]]  # "b" made room
        with pytest.raises(ServerError) as info:
            async with registry.use("b", idle_timeout=60, check=True):
                pass
        assert info.value.code == 372
        await registry.close_all()
        assert sorted(map(id, closed)) == sorted(map(id, opened))

    asyncio.run(scenario())


def test_busy_sessions_are_neither_evicted_nor_shared() -> None:
    async def scenario() -> None:
        registry, _, closed = _registry(1)
        async with registry.use("a", idle_timeout=60, check=False):
            with pytest.raises(ServerError) as full:
                async with registry.use("b", idle_timeout=60, check=False):
                    pass
            assert full.value.code == 202
            with pytest.raises(ServerError) as locked:
                async with registry.use("a", idle_timeout=60, check=False):
                    pass
            assert locked.value.code == 373
        assert closed == []

    asyncio.run(scenario())


def test_idle_sessions_expire_and_busy_ones_do_not() -> None:
    async def scenario() -> None:
        registry, opened, closed = _registry(4)
        async with registry.use("idle", idle_timeout=0, check=False):
            pass
        async with registry.use("busy", idle_timeout=0, check=False):
            await asyncio.sleep(0.01)
            assert await registry.expire() == 1
        assert closed == [opened[0]]
        assert len(registry) == 1

    asyncio.run(scenario())
