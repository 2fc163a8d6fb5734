"""Label matchers and durations of the notifier's configuration and silences (pure).

Matchers have Alertmanager's semantics (the same as the alert rules'): ``name op value`` with
``op`` one of ``=``, ``!=``, ``=~``, ``!~``; the value bare or double-quoted with JSON escapes;
a missing label is ``""``; regexes are fully anchored. A list of matchers matches when all do.
Bad text raises :class:`ValueError` quoting it.

Durations: ``500ms``, ``30s``, ``5m``, ``4h``, ``1h30m``, ``2d``, ``1w`` (a unit is required).

The labels a notifier matches on are the alert's labels plus ``severity`` and ``state``
(:func:`alert_labels`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from schemas.alerts import AlertState

_MATCHER: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*")
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher (build with :meth:`parse`)."""

    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: object) -> Matcher:
        """Parse ``name op value``; ``ValueError`` quoting the text if it is not one."""
        if not isinstance(text, str):
            raise ValueError(f"matcher must be a string, got {text!r}")
        found = _MATCHER.fullmatch(text)
        if found is None:
            raise ValueError(f"bad matcher {text!r}: expected name=value, !=, =~ or !~")
        name, op, raw = found.groups()
        value = raw
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError(f"bad matcher {text!r}: unterminated or bad quote") from None
            if not isinstance(value, str):
                raise ValueError(f"bad matcher {text!r}: value must be a string")
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad matcher {text!r}: invalid regex: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher (a missing label is ``""``)."""
        actual = labels.get(self.name, "")
        if self.regex is not None:
            hit = self.regex.fullmatch(actual) is not None
            return hit if self.op == "=~" else not hit
        return (actual == self.value) if self.op == "=" else (actual != self.value)

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value, ensure_ascii=False)}"


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher matches."""
    return all(m.matches(labels) for m in matchers)


def parse_matchers(value: object) -> tuple[Matcher, ...]:
    """A list of matcher strings; ``ValueError`` if it is not one."""
    if not isinstance(value, list):
        raise ValueError(f"matchers must be a list of strings, got {value!r}")
    return tuple(Matcher.parse(v) for v in value)


def parse_duration(text: object) -> timedelta:
    """``1h30m`` → ``timedelta``; ``ValueError`` for anything else (a unit is required)."""
    if not isinstance(text, str) or not text or _DURATION.sub("", text.strip()):
        raise ValueError(f"bad duration {text!r}: use e.g. 30s, 5m, 4h, 1h30m, 2d")
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text.strip()))
    return timedelta(seconds=seconds)


def alert_labels(state: AlertState) -> dict[str, str]:
    """What routes, silences and inhibitions match: the labels, ``severity`` and ``state``."""
    return {**state.labels, "severity": state.severity or "", "state": state.state}
