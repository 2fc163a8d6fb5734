"""multipart/form-data requests as ClickHouse clients send them (pure: bytes in, parts out).

A query sent with external tables (ClickHouse's "external data", which clickhouse-connect
sends as a form) is one ``multipart/form-data`` body: text fields (``query``, ``param_*``,
settings, ``<table>_structure``) and one file per external table. The server reads the body
whole (it is bounded by the application's ``client_max_size``) and :func:`parse_form` cuts it
with ``bytes.find``: a 13 MiB sink batch costs one copy of each file, where aiohttp's
streaming part reader spent about 25 ms of CPU (half the request) searching every chunk for
the boundary.

Guarantees:

* A file's bytes are exactly those between its headers and the next delimiter
  (``CRLF--boundary``), whatever they contain; text fields are decoded with their declared
  charset (UTF-8 by default).
* Anything that is not a well-formed form (no boundary, no closing delimiter, a part without
  a name or with a ``Content-Transfer-Encoding`` other than the identity ones, a nested
  multipart) raises :class:`FormError` with what is wrong; nothing is guessed.
"""

from __future__ import annotations

from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value
from typing import Final

#: Largest request body read whole (a form: query + external tables). aiohttp's 1 MiB default
#: would refuse the external data of an ordinary sink batch, which a ClickHouse server accepts.
MAX_FORM: Final = 512 << 20
_IDENTITY: Final = frozenset({"", "binary", "8bit", "7bit"})
_HEADERS_END: Final = b"\r\n\r\n"


class FormError(ValueError):
    """The body is not a multipart/form-data form this server can read."""


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/form-data`` Content-Type header."""
    msg = Message()
    msg["Content-Type"] = content_type
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 70:
        raise FormError("multipart/form-data without a valid boundary")
    return boundary


def parse_form(
    content_type: str, body: bytes | bytearray
) -> tuple[list[tuple[str, str]], list[tuple[str, bytes]]]:
    """Text fields ``(name, value)`` and files ``(name, data)`` of a form, in body order.

    ``content_type`` is the request's Content-Type header (with the boundary). Raises
    :class:`FormError`.
    """
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    separator = b"\r\n" + delimiter
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, bytes]] = []
    # the first delimiter starts the body or follows a preamble's line break
    if body.startswith(delimiter) and _ends_delimiter(body, len(delimiter)):
        pos = len(delimiter)
    else:
        at = body.find(separator)
        if at < 0:
            raise FormError("multipart body without its boundary")
        pos = _next_delimiter(body, separator, at) + len(separator)
    view = memoryview(body)  # a part's content is copied once, from here
    while not body.startswith(b"--", pos):  # else the closing delimiter (then an epilogue)
        start = body.find(b"\r\n", pos) + 2  # _ends_delimiter found this line break
        end_headers = body.find(_HEADERS_END, start - 2)
        if end_headers < 0:
            raise FormError("multipart part without the blank line after its headers")
        headers = BytesHeaderParser().parsebytes(body[start:end_headers])
        content_start = end_headers + 4
        content_end = _next_delimiter(body, separator, content_start)
        _add_part(headers, bytes(view[content_start:content_end]), fields, files)
        pos = content_end + len(separator)
    return fields, files


def _ends_delimiter(body: bytes | bytearray, at: int) -> bool:
    """Whether the boundary text ending at ``at`` is a delimiter: followed by ``--`` (the
    last one) or by optional spaces and a line break; otherwise it is data."""
    if body.startswith(b"--", at):
        return True
    eol = body.find(b"\r\n", at)
    return eol >= 0 and not body[at:eol].strip(b" \t")


def _next_delimiter(body: bytes | bytearray, separator: bytes, start: int) -> int:
    """Where the next delimiter (``CRLF--boundary``) at or after ``start`` begins."""
    at = body.find(separator, start)
    while at >= 0 and not _ends_delimiter(body, at + len(separator)):
        at = body.find(separator, at + 1)
    if at < 0:
        raise FormError("multipart body not closed by its boundary")
    return at


def _add_part(
    headers: Message,
    content: bytes,
    fields: list[tuple[str, str]],
    files: list[tuple[str, bytes]],
) -> None:
    if headers.get_content_maintype() == "multipart":
        raise FormError("nested multipart parts are not supported")
    encoding = str(headers.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding not in _IDENTITY:
        raise FormError(f"unsupported Content-Transfer-Encoding {encoding!r}")
    if headers.get_content_disposition() != "form-data":
        raise FormError("multipart part is not form-data")
    param = headers.get_param("name", header="content-disposition")
    name = collapse_rfc2231_value(param) if param is not None else ""
    if not name:
        raise FormError("unnamed multipart part")
    if headers.get_filename() is not None:
        files.append((name, content))
        return
    charset = headers.get_content_charset() or "utf-8"
    try:
        fields.append((name, content.decode(charset)))
    except (LookupError, UnicodeDecodeError) as exc:
        raise FormError(f"form field {name!r} is not valid {charset}: {exc}") from None
