"""Time conditions: business hours per weekday, holidays, and a manual override.

    hours = ["mon-fri 09:00-18:00", "sat 10:00-14:00"]
    holidays = ["2026-12-24", "12-25", "01-01"]    # a date, or month-day every year
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OVERRIDES = ("auto", "open", "closed")


class TimeSpecError(ValueError):
    pass


_RANGE = re.compile(r"^\s*(?P<days>[a-z]{3}(?:\s*-\s*[a-z]{3})?(?:\s*,\s*[a-z]{3}(?:\s*-\s*[a-z]{3})?)*)\s+"
                    r"(?P<from>\d{1,2}:\d{2})\s*-\s*(?P<to>\d{1,2}:\d{2})\s*$")


def _minutes(hhmm: str, spec: str) -> int:
    h, m = hhmm.split(":")
    hh, mm = int(h), int(m)
    if not (0 <= hh <= 24 and 0 <= mm < 60) or (hh == 24 and mm):
        raise TimeSpecError(f"bad time {hhmm!r} in {spec!r}")
    return hh * 60 + mm


def parse_hours(spec: str) -> list[tuple[int, int, int]]:
    """'mon-fri 09:00-18:00' -> [(weekday, start_min, end_min), ...]"""
    m = _RANGE.match(spec.lower())
    if not m:
        raise TimeSpecError(f"hours {spec!r}: expected like 'mon-fri 09:00-18:00'")
    start, end = _minutes(m["from"], spec), _minutes(m["to"], spec)
    if end <= start:
        raise TimeSpecError(f"hours {spec!r}: the end must be after the start")
    out = []
    for part in m["days"].split(","):
        part = part.strip()
        a, _, b = (x.strip() for x in part.partition("-"))
        if a not in DAYS or (b and b not in DAYS):
            raise TimeSpecError(f"hours {spec!r}: unknown day in {part!r} (use {', '.join(DAYS)})")
        i, j = DAYS.index(a), DAYS.index(b) if b else DAYS.index(a)
        days = list(range(i, j + 1)) if j >= i else list(range(i, 7)) + list(range(0, j + 1))
        out += [(d, start, end) for d in days]
    return out


def parse_holiday(spec: str) -> tuple[int | None, int, int]:
    m = re.fullmatch(r"(?:(\d{4})-)?(\d{2})-(\d{2})", spec.strip())
    if not m:
        raise TimeSpecError(f"holiday {spec!r}: expected YYYY-MM-DD or MM-DD")
    y = int(m[1]) if m[1] else None
    mo, d = int(m[2]), int(m[3])
    try:
        dt.date(y or 2024, mo, d)
    except ValueError:
        raise TimeSpecError(f"holiday {spec!r} is not a date") from None
    return (y, mo, d)


@dataclass(frozen=True)
class TimeCondition:
    number: str
    hours: tuple[str, ...]
    holidays: tuple[str, ...] = ()
    open_destination: str = ""
    closed_destination: str = "hangup"
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        for h in self.hours:
            parse_hours(h)
        for h in self.holidays:
            parse_holiday(h)
        ZoneInfo(self.timezone)

    def is_open(self, when: float, override: str = "auto") -> bool:
        if override == "open":
            return True
        if override == "closed":
            return False
        local = dt.datetime.fromtimestamp(when, ZoneInfo(self.timezone))
        for h in self.holidays:
            y, mo, d = parse_holiday(h)
            if (y is None or y == local.year) and (mo, d) == (local.month, local.day):
                return False
        minute = local.hour * 60 + local.minute
        wd = local.weekday()
        return any(d == wd and s <= minute < e for spec in self.hours for d, s, e in parse_hours(spec))

    def destination(self, when: float, override: str = "auto") -> str:
        return self.open_destination if self.is_open(when, override) else self.closed_destination
