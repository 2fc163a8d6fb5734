"""Label matchers that select what a rule applies to, with Alertmanager's semantics.

A matcher is ``name op value`` with ``op`` one of ``=`` (equal), ``!=`` (not equal), ``=~``
(regex matches) and ``!~`` (regex does not match). The value may be double-quoted with JSON
escapes (``district=~"long-xuyen|chau-doc"``) or bare (``device_kind=air_quality``).

Semantics, as in Prometheus and Alertmanager:

* A missing label has the value ``""``: ``ward=""`` selects subjects without a ward and
  ``ward!=""`` those with one; ``ward!="my-binh"`` also selects subjects without a ward.
* Regexes are Python ``re`` syntax and **fully anchored** (``=~"long"`` does not match
  ``long-xuyen``; write ``=~"long.*"``).
* A rule selects a subject when **all** its matchers match.

Bad matcher text (unknown operator, bad label name, unterminated quote, invalid regex) raises
:class:`ValueError` with the text in the message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

Op = Literal["=", "!=", "=~", "!~"]

LABEL_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCHER: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; construct with :meth:`parse` or directly (regex compiled here)."""

    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not LABEL_NAME.fullmatch(self.name):
            raise ValueError(f"bad label name {self.name!r} in matcher")
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"unknown matcher operator {self.op!r}; use =, !=, =~ or !~")
        if self.op in ("=~", "!~"):
            try:
                compiled = re.compile(self.value)
            except re.error as exc:
                raise ValueError(
                    f"invalid regex {self.value!r} for label {self.name!r}: {exc}"
                ) from None
            object.__setattr__(self, "_regex", compiled)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse ``name op value``; ``ValueError`` if it is not a matcher."""
        match = _MATCHER.fullmatch(text)
        if match is None:
            raise ValueError(f"bad matcher {text!r}: expected name=value, !=, =~ or !~")
        name, op, raw = match.groups()
        value = raw
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError(
                    f"bad matcher {text!r}: unterminated or bad quoted value"
                ) from None
            if not isinstance(value, str):
                raise ValueError(f"bad matcher {text!r}: value must be a string")
        return cls(name, op, value)  # type: ignore[arg-type]  # op is one of the four

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher (missing label = ``""``)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value, ensure_ascii=False)}"


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher matches ``labels`` (true for no matchers)."""
    return all(m.matches(labels) for m in matchers)
