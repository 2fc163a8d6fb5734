"""Durations as written in rule files: ``90s``, ``5m``, ``1h30m``, ``2d``, ``500ms``.

The syntax is Prometheus's: one or more ``<integer><unit>`` parts, units ``w d h m s ms``, each
at most once and from the largest to the smallest (``1h30m``, not ``30m1h``). A bare number
(``"5"`` or ``5``), a space (``"5 min"``), a sign or a fraction is refused with
:class:`ValueError`, because a rule file that says ``for: 5`` is ambiguous and must not run.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

_UNITS: Final = (
    ("w", timedelta(weeks=1)),
    ("d", timedelta(days=1)),
    ("h", timedelta(hours=1)),
    ("m", timedelta(minutes=1)),
    ("s", timedelta(seconds=1)),
    ("ms", timedelta(milliseconds=1)),
)
_SYNTAX: Final = re.compile(
    r"(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?"
    r"(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?"
)
EXAMPLES: Final = "e.g. 90s, 5m, 1h, 1h30m, 2d"


def parse_duration(text: object) -> timedelta:
    """Parse a duration string; ``ValueError`` naming the bad text otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"bad duration {text!r}: write a string with a unit ({EXAMPLES})")
    match = _SYNTAX.fullmatch(text)
    if not text or match is None or not any(match.groupdict().values()):
        raise ValueError(f"bad duration {text!r} ({EXAMPLES})")
    total = timedelta(0)
    for unit, size in _UNITS:
        part = match.group(unit)
        if part is not None:
            total += int(part) * size
    return total


def format_duration(value: timedelta) -> str:
    """Render a duration in the same syntax, largest units first; ``0s`` for zero.

    Negative durations are rendered with a leading ``-`` (for display only; the parser refuses
    them). Sub-millisecond parts are dropped.
    """
    if value < timedelta(0):
        return "-" + format_duration(-value)
    remaining = value // timedelta(milliseconds=1)
    parts: list[str] = []
    for unit, size in _UNITS:
        count, remaining = divmod(remaining, size // timedelta(milliseconds=1))
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
