"""What the server must know about a SQL statement before the engine sees it (pure).

A ClickHouse HTTP request carries one statement, possibly followed by the data of an
INSERT (``INSERT INTO t FORMAT Native\\n<binary>`` or ``INSERT INTO t VALUES (...)``). The
server needs to find where that data starts without parsing SQL, so this module has a small
lexer that understands exactly the token boundaries that matter: whitespace, ``--``/``#``/
``/* */`` comments (nested, like ClickHouse), quoted strings and identifiers with backslash
escapes and doubled quotes, heredocs (``$tag$...$tag$``), parentheses and words. It works
on bytes, so the binary data after the statement is never decoded.

Guarantees:

* :func:`locate_insert_data` either finds the data start, says the statement is a whole
  query (no inline data), or asks for more bytes; it never reads past the statement, and
  it is total: any input gives one of the three answers (garbage is a "whole query" that
  the engine will reject with its own syntax error).
* The data start follows ClickHouse's rule: after ``FORMAT <name>``, skip spaces and tabs,
  then one optional ``\\r`` and one optional ``\\n``; after ``VALUES`` nothing is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

_WORD = re.compile(rb"[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*")
_NUMBER = re.compile(rb"[0-9][0-9A-Za-z_.]*")
_HEREDOC = re.compile(rb"\$([A-Za-z0-9_]*)\$")
_WHITESPACE = frozenset(b" \t\n\r\f\v")

TokenKind = Literal["word", "ident", "string", "number", "punct", "incomplete"]

# Words after which the next word is a name, never a keyword (``INSERT INTO format``).
_NAME_PREFIX: Final = frozenset({"INTO", "TABLE", "FUNCTION", ".", "AS"})
# First keywords of statements that produce a result set.
RESULT_KINDS: Final = frozenset(
    {"SELECT", "WITH", "(", "SHOW", "DESC", "DESCRIBE", "EXPLAIN", "EXISTS", "FROM", "CHECK"}
)
# First keywords allowed over GET (ClickHouse: "method GET implies readonly").
READONLY_KINDS: Final = RESULT_KINDS | {"SET", "USE", ""}


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class InsertData:
    """An INSERT whose data follows it: run ``statement`` with input ``format``."""

    statement: str
    format: str
    data_start: int


class _Answer:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_MORE: Final = _Answer("NEED_MORE")
"""The buffer ends inside the statement: read more bytes and ask again."""
WHOLE_QUERY: Final = _Answer("WHOLE_QUERY")
"""No inline data: the whole request text is the query."""


def tokens(buf: bytes, pos: int = 0) -> Iterator[Token]:
    """The significant tokens of ``buf`` from ``pos``; an unterminated string, identifier,
    heredoc or comment ends the iteration with an ``incomplete`` token."""
    end = len(buf)
    while pos < end:
        c = buf[pos]
        if c in _WHITESPACE:
            pos += 1
        elif buf.startswith(b"--", pos) or (c == 0x23 and buf[pos + 1 : pos + 2] in (b" ", b"!")):
            eol = buf.find(b"\n", pos)
            if eol < 0:
                yield Token("incomplete", pos, end)
                return
            pos = eol + 1
        elif buf.startswith(b"/*", pos):
            close = _comment_end(buf, pos)
            if close < 0:
                yield Token("incomplete", pos, end)
                return
            pos = close
        elif c in b"'\"`":
            close = _quoted_end(buf, pos)
            if close < 0:
                yield Token("incomplete", pos, end)
                return
            yield Token("string" if c == 0x27 else "ident", pos, close)
            pos = close
        elif c == 0x24 and (heredoc := _HEREDOC.match(buf, pos)) is not None:
            close = buf.find(heredoc.group(0), heredoc.end())
            if close < 0:
                yield Token("incomplete", pos, end)
                return
            pos = close + len(heredoc.group(0))
            yield Token("string", heredoc.start(), pos)
        elif (word := _WORD.match(buf, pos)) is not None:
            yield Token("word", pos, word.end())
            pos = word.end()
        elif (number := _NUMBER.match(buf, pos)) is not None:
            yield Token("number", pos, number.end())
            pos = number.end()
        else:
            yield Token("punct", pos, pos + 1)
            pos += 1


def _comment_end(buf: bytes, pos: int) -> int:
    """End of the (nested) block comment starting at ``pos``, or -1 if unterminated."""
    depth = 0
    end = len(buf)
    while pos < end:
        if buf.startswith(b"/*", pos):
            depth += 1
            pos += 2
        elif buf.startswith(b"*/", pos):
            depth -= 1
            pos += 2
            if depth == 0:
                return pos
        else:
            pos += 1
    return -1


def _quoted_end(buf: bytes, pos: int) -> int:
    """End of the quoted token starting at ``pos`` (after its closing quote), or -1."""
    quote = buf[pos]
    pos += 1
    end = len(buf)
    while pos < end:
        c = buf[pos]
        if c == 0x5C:  # backslash escapes the next byte
            pos += 2
        elif c == quote:
            if pos + 1 < end and buf[pos + 1] == quote:  # doubled quote
                pos += 2
            else:
                return pos + 1
        else:
            pos += 1
    return -1


def _upper(buf: bytes, tok: Token) -> str:
    if tok.kind == "word":
        return buf[tok.start : tok.end].decode("ascii", "replace").upper()
    if tok.kind == "punct":
        return chr(buf[tok.start])
    return ""


def statement_kind(sql: str | bytes) -> str:
    """The statement's first keyword in upper case (``SELECT``, ``INSERT``...); ``(`` for a
    parenthesized query; ``""`` for an empty or comment-only text."""
    buf = sql.encode() if isinstance(sql, str) else sql
    for tok in tokens(buf):
        return _upper(buf, tok)
    return ""


def changes_connection(sql: str | bytes) -> bool:
    """Whether the statement may leave state on the connection beyond the request
    (``SET``, ``USE``, temporary tables): such a pooled connection must not be reused."""
    buf = sql.encode() if isinstance(sql, str) else sql
    words = [_upper(buf, tok) for _, tok in zip(range(3), tokens(buf), strict=False)]
    if not words:
        return False
    if words[0] in ("SET", "USE"):
        return True
    return words[0] in ("CREATE", "DROP") and "TEMPORARY" in words[1:]


def output_format(sql: str | bytes) -> str | None:
    """The name in the statement's own trailing ``FORMAT <name>`` clause, if any.

    The clause counts only at nesting depth 0, when FORMAT is not in a name position and
    nothing but a SETTINGS clause or a semicolon follows the name.
    """
    buf = sql.encode() if isinstance(sql, str) else sql
    toks = list(tokens(buf))
    depth = 0
    found: str | None = None
    prev = ""
    for i, tok in enumerate(toks):
        word = _upper(buf, tok)
        if word == "(":
            depth += 1
        elif word == ")":
            depth -= 1
        elif depth == 0 and word == "FORMAT" and prev not in _NAME_PREFIX and i + 1 < len(toks):
            name_tok = toks[i + 1]
            rest = [_upper(buf, t) for t in toks[i + 2 :]]
            if name_tok.kind in ("word", "ident") and (not rest or rest[0] in ("SETTINGS", ";")):
                found = _name_text(buf, name_tok)
        prev = word
    return found


def _name_text(buf: bytes, tok: Token) -> str:
    text = buf[tok.start : tok.end].decode("utf-8", "replace")
    if tok.kind == "ident":
        return text[1:-1]
    return text


def locate_insert_data(buf: bytes, eof: bool) -> InsertData | _Answer:
    """Where the inline data of an INSERT starts in ``buf`` (the request text so far).

    ``eof`` says whether ``buf`` is all there is. Returns :class:`InsertData`,
    :data:`WHOLE_QUERY` (not an INSERT with inline data: SELECT, DDL, ``INSERT ... SELECT``)
    or :data:`NEED_MORE` (only when ``eof`` is false).
    """
    more = WHOLE_QUERY if eof else NEED_MORE
    depth = 0
    prev = ""
    first = True
    stream = tokens(buf)
    for tok in stream:
        if tok.kind == "incomplete":
            return more
        if tok.end == len(buf) and tok.kind in ("word", "number") and not eof:
            return NEED_MORE  # the word may continue in the next chunk
        word = _upper(buf, tok)
        if first:
            if word != "INSERT":
                return WHOLE_QUERY
            first = False
        elif word == "(":
            depth += 1
        elif word == ")":
            depth -= 1
        elif depth <= 0 and word == ";":
            return WHOLE_QUERY
        elif depth <= 0 and prev not in _NAME_PREFIX:
            if word in ("SELECT", "WITH"):
                return WHOLE_QUERY
            if word == "VALUES":
                statement = buf[: tok.start].decode("utf-8", "replace").rstrip()
                return InsertData(statement, "Values", tok.end)
            if word == "FORMAT":
                return _format_data(buf, tok, stream, eof)
        prev = word
    return more


def _format_data(
    buf: bytes, format_tok: Token, stream: Iterator[Token], eof: bool
) -> InsertData | _Answer:
    more = WHOLE_QUERY if eof else NEED_MORE
    name_tok = next(stream, None)
    if name_tok is None or name_tok.kind == "incomplete":
        return more
    if name_tok.kind not in ("word", "ident"):
        return WHOLE_QUERY  # let the engine report the syntax error
    pos = name_tok.end
    end = len(buf)
    while pos < end and buf[pos] in b" \t\f":
        pos += 1
    if pos < end and buf[pos] == 0x0D:
        pos += 1
    if pos < end and buf[pos] == 0x0A:
        pos += 1
    elif pos >= end and not eof:
        return NEED_MORE  # a newline may still follow
    statement = buf[: format_tok.start].decode("utf-8", "replace").rstrip()
    return InsertData(statement, _name_text(buf, name_tok), pos)
