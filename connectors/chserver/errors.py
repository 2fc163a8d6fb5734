"""ClickHouse errors as the HTTP interface reports them.

Every failure the server reports is a :class:`ServerError`: a ClickHouse error code, the
message text ClickHouse would print (``Code: 60. DB::Exception: ... (UNKNOWN_TABLE)``) and
the HTTP status. The response body is that text plus the version trailer, and the code goes
into the ``X-ClickHouse-Exception-Code`` header, which is what clickhouse-connect and
clickhouse-go parse. Engine errors keep chDB's own message verbatim.
"""

from __future__ import annotations

import re

_CODE = re.compile(r"Code: (\d+)\.")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]*)\)")

# The codes this server raises itself (names as ClickHouse spells them).
CANNOT_READ_ALL_DATA = (33, "CANNOT_READ_ALL_DATA")
NOT_IMPLEMENTED = (48, "NOT_IMPLEMENTED")
SYNTAX_ERROR = (62, "SYNTAX_ERROR")
BAD_ARGUMENTS = (36, "BAD_ARGUMENTS")
UNKNOWN_SETTING = (115, "UNKNOWN_SETTING")
READONLY = (164, "READONLY")
TOO_MANY_SIMULTANEOUS_QUERIES = (202, "TOO_MANY_SIMULTANEOUS_QUERIES")
NETWORK_ERROR = (210, "NETWORK_ERROR")
CANNOT_DECOMPRESS = (271, "CANNOT_DECOMPRESS")
SESSION_NOT_FOUND = (372, "SESSION_NOT_FOUND")
SESSION_IS_LOCKED = (373, "SESSION_IS_LOCKED")
QUERY_WAS_CANCELLED = (394, "QUERY_WAS_CANCELLED")
AUTHENTICATION_FAILED = (516, "AUTHENTICATION_FAILED")
UNKNOWN_EXCEPTION = (1002, "UNKNOWN_EXCEPTION")


class ServerError(Exception):
    """A ClickHouse exception: ``code``, ClickHouse-style ``message`` and HTTP ``status``."""

    def __init__(self, code: int, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    @classmethod
    def of(cls, kind: tuple[int, str], text: str, status: int = 500) -> ServerError:
        """An error of ``kind`` (one of the constants above) with ClickHouse's message shape."""
        code, name = kind
        text = text.rstrip(".")
        return cls(code, f"Code: {code}. DB::Exception: {text}. ({name})", status)

    @classmethod
    def from_engine(cls, exc: BaseException) -> ServerError:
        """The engine's exception as ClickHouse reports it.

        chDB prefixes some messages ("Streaming query failed: ..."); the text from ``Code:``
        on is kept. A message without a code (never seen in practice) becomes code 1002.
        """
        return cls.from_text(str(exc))

    @classmethod
    def from_text(cls, text: str) -> ServerError:
        start = text.find("Code: ")
        if start > 0:
            text = text[start:]
        text = text.strip()
        match = _CODE.match(text)
        if match is None:
            return cls.of(UNKNOWN_EXCEPTION, text or "unknown engine error")
        return cls(int(match.group(1)), text)

    @property
    def name(self) -> str | None:
        """The symbolic error name (``UNKNOWN_TABLE``), when the message carries one."""
        names = _NAME.findall(self.message)
        return names[-1] if names else None

    def body(self, version: str) -> str:
        """The HTTP response body: the message, the version trailer and a newline."""
        text = self.message
        if "(version " not in text:
            text = f"{text} (version {version} (chdb))"
        return text + "\n"

    def first_line(self) -> str:
        """The message's first line, for logs."""
        return self.message.split("\n", 1)[0][:500]
