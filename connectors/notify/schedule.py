"""Recurring time windows (mute windows), evaluated in a local time zone (pure).

A window is a set of weekdays and daily time ranges in a time zone (default
``Asia/Ho_Chi_Minh``): ``{name: night, weekdays: [mon, tue, ...], times: [{start: "22:00",
end: "06:00"}]}``. A range whose end is not after its start wraps past midnight and then
belongs to the weekday it *starts* on (Friday 22:00–06:00 covers Saturday 03:00). Without
``weekdays`` every day counts; without ``times`` the whole day. Ranges are half-open
``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_TZ: Final = "Asia/Ho_Chi_Minh"


def _minute(text: object, where: str) -> int:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        raise ValueError(f"{where}: time must be HH:MM, got {text!r}")
    hours, minutes = int(text[:2]), int(text[3:])
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or hours * 60 + minutes > 1440:
        raise ValueError(f"{where}: time out of range: {text!r}")
    return hours * 60 + minutes


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A named recurring window (see the module docstring)."""

    name: str
    weekdays: frozenset[int]
    times: tuple[tuple[int, int], ...]
    tz: ZoneInfo

    @classmethod
    def parse(cls, obj: Mapping[str, Any], where: str) -> TimeWindow:
        """Build from the YAML mapping; ``ValueError`` naming ``where`` on any problem."""
        unknown = set(obj) - {"name", "weekdays", "times", "timezone"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name: required")
        days = obj.get("weekdays", list(WEEKDAYS))
        if not isinstance(days, list) or not all(d in WEEKDAYS for d in days):
            raise ValueError(f"{where}.weekdays: a list of {', '.join(WEEKDAYS)}")
        times = []
        for i, rng in enumerate(obj.get("times", [{"start": "00:00", "end": "24:00"}])):
            if not isinstance(rng, dict) or set(rng) != {"start", "end"}:
                raise ValueError(f"{where}.times[{i}]: needs start and end")
            start = _minute(rng["start"], f"{where}.times[{i}].start")
            end = _minute(rng["end"], f"{where}.times[{i}].end")
            if start == end:
                raise ValueError(f"{where}.times[{i}]: empty range")
            times.append((start, end))
        try:
            tz = ZoneInfo(str(obj.get("timezone", DEFAULT_TZ)))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{where}.timezone: unknown {obj.get('timezone')!r}") from None
        return cls(name, frozenset(WEEKDAYS.index(d) for d in days), tuple(times), tz)

    def active(self, now: datetime) -> bool:
        """Whether ``now`` (aware) falls in the window."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        local = now.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        yesterday = (local - timedelta(days=1)).weekday()
        for start, end in self.times:
            if start < end:
                if local.weekday() in self.weekdays and start <= minute < end:
                    return True
            else:  # wraps past midnight: starts today, or started yesterday
                if local.weekday() in self.weekdays and minute >= start:
                    return True
                if yesterday in self.weekdays and minute < end:
                    return True
        return False
