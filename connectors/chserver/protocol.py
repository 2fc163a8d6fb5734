"""ClickHouse's HTTP interface: what a request asks for and how a response is labelled (pure).

:func:`parse_request` turns a request's URL parameters and headers into a
:class:`QuerySpec`, following ClickHouse's ``HTTPHandler``: reserved protocol parameters
(``query``, ``database``, ``session_id``, ``param_*`` ...) are interpreted by the server and
every other parameter is a ClickHouse setting for this request only. Bad values raise
:class:`~connectors.chserver.errors.ServerError` with HTTP status 400; nothing here
touches the network or the engine.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from connectors.chserver.errors import BAD_ARGUMENTS, UNKNOWN_SETTING, ServerError

# Parameters ClickHouse reserves for the protocol: never passed to the engine as settings.
PROTOCOL_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "user",
        "password",
        "quota_key",
        "query_id",
        "stacktrace",
        "role",
        "buffer_size",
        "wait_end_of_query",
        "session_id",
        "session_timeout",
        "session_check",
        "close_session",
        "client_protocol_version",
        "compress",
        "decompress",
    }
)
# Settings that only steer the HTTP layer: this server implements them itself.
HTTP_SETTINGS = frozenset(
    {
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_wait_end_of_query",
        "http_response_buffer_size",
        "http_native_compression_disable_checksumming_on_decompress",
    }
)
PARAM_PREFIX = "param_"
DEFAULT_FORMAT = "TabSeparated"
DEFAULT_SESSION_TIMEOUT = 60.0
MAX_SESSION_TIMEOUT = 3600.0
DEFAULT_BUFFER_SIZE = 32 * 1024 * 1024
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = frozenset({"1", "true", "True", "TRUE", "yes", "on"})


@dataclass(frozen=True)
class Credentials:
    """Who the request claims to be (the password never appears in repr or logs)."""

    user: str
    password: str = field(repr=False)
    supplied: bool = True


@dataclass(frozen=True)
class ExternalTable:
    """An external data table of a multipart request (``<name>_format`` etc.)."""

    name: str
    format: str
    structure: str

    def create_sql(self) -> str:
        """The statement that creates the table on the request's connection."""
        return f"CREATE TEMPORARY TABLE {quote_identifier(self.name)} ({self.structure})"


@dataclass(frozen=True)
class QuerySpec:
    """Everything a request asks for except the statement text in its body."""

    query: str
    query_id: str
    default_format: str = DEFAULT_FORMAT
    database: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    session_id: str | None = None
    session_timeout: float = DEFAULT_SESSION_TIMEOUT
    session_check: bool = False
    close_session: bool = False
    wait_end_of_query: bool = False
    compress_response: bool | None = None
    zlib_level: int = 3
    buffer_size: int = DEFAULT_BUFFER_SIZE
    native_compression: bool = False
    external_params: dict[str, str] = field(default_factory=dict)
    credentials: Credentials = field(default_factory=lambda: Credentials("default", "", False))

    def external_table(self, name: str) -> ExternalTable:
        """The declared shape of the multipart file ``name`` (ClickHouse's defaults:
        TabSeparated; ``<name>_types`` names the columns ``_1``, ``_2``...)."""
        fmt = self.external_params.get(f"{name}_format", "TabSeparated")
        structure = self.external_params.get(f"{name}_structure")
        types = self.external_params.get(f"{name}_types")
        if structure is None and types is not None:
            parts = split_types(types)
            structure = ", ".join(f"_{i} {t}" for i, t in enumerate(parts, start=1))
        if not structure:
            raise ServerError.of(
                BAD_ARGUMENTS,
                f"Neither structure nor types have not been provided for external table {name}. "
                f"Use fields {name}_structure or {name}_types to do so.",
                400,
            )
        return ExternalTable(name, fmt, structure)


def parse_request(
    params: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    *,
    multipart: bool = False,
) -> QuerySpec:
    """Interpret URL parameters (in order; later ones win) and request headers.

    ``multipart`` says whether the body is multipart/form-data, where ``<name>_format``,
    ``<name>_types`` and ``<name>_structure`` describe external tables instead of being
    settings. Raises ServerError (400) for malformed protocol values and setting names.
    """
    values: dict[str, str] = {}
    settings: dict[str, str] = {}
    bound: dict[str, str] = {}
    external: dict[str, str] = {}
    for name, value in params:
        if not name:
            continue
        if name.startswith(PARAM_PREFIX):
            bound[name[len(PARAM_PREFIX) :]] = value
        elif name in PROTOCOL_PARAMS or name in HTTP_SETTINGS:
            values[name] = value
        elif multipart and name.endswith(("_format", "_types", "_structure")):
            external[name] = value
        else:
            if not _SETTING_NAME.match(name):
                raise ServerError.of(UNKNOWN_SETTING, f"Unknown setting '{name}'", 400)
            settings[name] = value
    header = _HeaderView(headers)
    database = values.get("database") or header.get("X-ClickHouse-Database") or None
    default_format = (
        values.get("default_format") or header.get("X-ClickHouse-Format") or DEFAULT_FORMAT
    )
    wait = values.get("wait_end_of_query") or values.get("http_wait_end_of_query") or "0"
    return QuerySpec(
        query=values.get("query", ""),
        query_id=values.get("query_id") or str(uuid.uuid4()),
        default_format=default_format,
        database=database,
        settings=settings,
        params=bound,
        session_id=values.get("session_id") or None,
        session_timeout=_session_timeout(values.get("session_timeout")),
        session_check=_flag(values.get("session_check")),
        close_session=_flag(values.get("close_session")),
        wait_end_of_query=_flag(wait),
        compress_response=(
            _flag(values["enable_http_compression"])
            if "enable_http_compression" in values
            else None
        ),
        zlib_level=_int(values, "http_zlib_compression_level", 3, 1, 9),
        buffer_size=_int(values, "buffer_size", DEFAULT_BUFFER_SIZE, 0, 1 << 40),
        native_compression=_flag(values.get("compress")) or _flag(values.get("decompress")),
        external_params=external,
        credentials=credentials(values, header),
    )


class _HeaderView:
    """Case-insensitive lookup over a plain mapping of headers."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._lower = {k.lower(): v for k, v in headers.items()}

    def get(self, name: str) -> str | None:
        return self._lower.get(name.lower())


def credentials(values: Mapping[str, str], headers: _HeaderView | Mapping[str, str]) -> Credentials:
    """The user and password of a request: HTTP Basic auth, the ``X-ClickHouse-User`` /
    ``X-ClickHouse-Key`` headers, or the ``user``/``password`` URL parameters (ClickHouse's
    precedence). Without any: user ``default``, empty password, ``supplied=False``."""
    view = headers if isinstance(headers, _HeaderView) else _HeaderView(headers)
    auth = view.get("Authorization")
    if auth and auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ServerError.of(
                BAD_ARGUMENTS, "Malformed Basic authorization header", 400
            ) from exc
        user, _, password = decoded.partition(":")
        return Credentials(user or "default", password)
    header_user = view.get("X-ClickHouse-User")
    if header_user is not None:
        return Credentials(header_user or "default", view.get("X-ClickHouse-Key") or "")
    if "user" in values or "password" in values:
        return Credentials(values.get("user") or "default", values.get("password", ""))
    return Credentials("default", "", supplied=False)


def authenticated(claimed: Credentials, user: str | None, password: str | None) -> bool:
    """Whether ``claimed`` may use a server configured with ``user``/``password``.

    Without a configured user every request is accepted (like a fresh ClickHouse whose
    ``default`` user has no password). Comparison is constant-time.
    """
    if user is None:
        return True
    same_user = hmac.compare_digest(claimed.user.encode(), user.encode())
    same_password = hmac.compare_digest(claimed.password.encode(), (password or "").encode())
    return same_user and same_password


def split_types(types: str) -> list[str]:
    """Split ``"UInt8, Array(Tuple(String, Int8))"`` at top-level commas."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in types:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    tail = "".join(current).strip()
    if tail:
        parts.append(tail)
    return parts


def _flag(value: str | None) -> bool:
    return value is not None and value.strip() in _TRUE


def _int(values: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = values.get(name)
    if raw is None or raw == "":
        return default
    try:
        number = int(raw)
    except ValueError as exc:
        raise ServerError.of(
            BAD_ARGUMENTS, f"Invalid value '{raw}' of parameter {name}", 400
        ) from exc
    return min(max(number, low), high)


def _session_timeout(raw: str | None) -> float:
    if raw is None or raw == "":
        return DEFAULT_SESSION_TIMEOUT
    try:
        timeout = float(raw)
    except ValueError as exc:
        raise ServerError.of(BAD_ARGUMENTS, f"Invalid session timeout: '{raw}'", 400) from exc
    if timeout < 0 or timeout > MAX_SESSION_TIMEOUT:
        raise ServerError.of(
            BAD_ARGUMENTS,
            f"Session timeout '{raw}' is larger than max_session_timeout: {MAX_SESSION_TIMEOUT:g}. "
            "Maximum session timeout could be modified in configuration file.",
            400,
        )
    return timeout


def quote_identifier(name: str) -> str:
    """``name`` as a back-quoted ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value: str) -> str:
    """``value`` as a single-quoted ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def set_statement(assignments: Sequence[tuple[str, str | None]]) -> str:
    """``SET a = 'v', b = DEFAULT`` for ``[("a", "v"), ("b", None)]``.

    Values are always string literals: ClickHouse converts them to the setting's type, and
    an unquoted number would break String settings (``insert_deduplication_token``).
    """
    parts = []
    for name, value in assignments:
        if not _SETTING_NAME.match(name):
            raise ServerError.of(UNKNOWN_SETTING, f"Unknown setting '{name}'", 400)
        parts.append(f"{name} = {'DEFAULT' if value is None else quote_string(value)}")
    return "SET " + ", ".join(parts)


def choose_encoding(accept_encoding: str | None, available: Sequence[str]) -> str | None:
    """The response encoding for an ``Accept-Encoding`` header: the first listed one this
    server has (the client's order, so clickhouse-connect's ``lz4,zstd,...`` gets lz4);
    entries with ``q=0`` are refused. None when nothing matches."""
    if not accept_encoding:
        return None
    for item in accept_encoding.split(","):
        name, *attrs = (part.strip() for part in item.split(";"))
        if any(_zero_quality(attr) for attr in attrs):
            continue
        if name.lower() in available:
            return name.lower()
    return None


def _zero_quality(attr: str) -> bool:
    key, _, value = attr.partition("=")
    if key.strip().lower() != "q":
        return False
    try:
        return float(value) <= 0
    except ValueError:
        return False


_CONTENT_TYPES: dict[str, str] = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
    "XML": "application/xml; charset=UTF-8",
    "Markdown": "text/markdown; charset=UTF-8",
}


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse sends for output format ``fmt``."""
    if fmt in _CONTENT_TYPES:
        return _CONTENT_TYPES[fmt]
    if fmt.startswith(("TabSeparated", "TSV")):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt.startswith("JSON") and "EachRow" not in fmt:
        return "application/json; charset=UTF-8"
    if fmt.startswith(("JSON", "NDJSON")):
        return "application/x-ndjson; charset=UTF-8"
    if fmt.startswith(("Pretty", "Vertical", "Values", "TSKV", "Template", "Custom", "Raw")):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


@dataclass
class Stats:
    """Counters for ``X-ClickHouse-Summary``."""

    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    result_rows: int = 0
    result_bytes: int = 0
    elapsed_ns: int = 0

    def header(self) -> str:
        """The JSON ClickHouse puts in ``X-ClickHouse-Summary`` (all values are strings)."""
        return json.dumps(
            {
                "read_rows": str(self.read_rows),
                "read_bytes": str(self.read_bytes),
                "written_rows": str(self.written_rows),
                "written_bytes": str(self.written_bytes),
                "total_rows_to_read": str(self.read_rows),
                "result_rows": str(self.result_rows),
                "result_bytes": str(self.result_bytes),
                "elapsed_ns": str(self.elapsed_ns),
            },
            separators=(",", ":"),
        )
