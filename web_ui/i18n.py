"""Languages of the web page: English, Polish, Russian, Bulgarian.

Catalogs are JSON files in web_ui/i18n/<lang>.json mapping a key to a string with `{name}`
placeholders, or to a dict of CLDR plural forms (one/few/many/other). Numbers, dates and
durations are formatted per locale by `Translator`, with hand-written rules for the four
languages (no locale database is needed on the box).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CATALOGS = Path(__file__).resolve().parent / "i18n"
LANGUAGES = ("en", "pl", "ru", "bg")
LANGUAGE_NAMES = {"en": "English", "pl": "Polski", "ru": "Русский", "bg": "Български"}
NBSP = "\u00a0"


@dataclass(frozen=True)
class LocaleRules:
    thousands: str
    decimal: str
    date: str
    """strftime-like pattern with {d} {m} {mon} {y} ({mon} = short month name)."""
    percent: str
    """Pattern with {n}."""


RULES = {
    "en": LocaleRules(",", ".", "{d} {mon} {y}", "{n}%"),
    "pl": LocaleRules(NBSP, ",", "{d:02d}.{m:02d}.{y}", "{n}%"),
    "ru": LocaleRules(NBSP, ",", "{d:02d}.{m:02d}.{y}", "{n}" + NBSP + "%"),
    "bg": LocaleRules(NBSP, ",", "{d:02d}.{m:02d}.{y}" + NBSP + "г.", "{n}%"),
}


def plural_form(lang: str, n: float) -> str:
    """CLDR plural category of `n` for `lang` (integers; fractions are 'other')."""
    if n != int(n):
        return "other"
    n = abs(int(n))
    if lang in ("en", "bg"):
        return "one" if n == 1 else "other"
    if lang == "pl":
        if n == 1:
            return "one"
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return "few"
        return "many"
    if lang == "ru":
        if n % 10 == 1 and n % 100 != 11:
            return "one"
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return "few"
        return "many"
    return "other"


@lru_cache(maxsize=None)
def catalog(lang: str) -> dict[str, Any]:
    """The messages of one language (cached)."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}")
    with open(CATALOGS / f"{lang}.json", encoding="utf-8") as f:
        return json.load(f)


def negotiate(accept_language: str | None, default: str = "en") -> str:
    """The best of our languages for an Accept-Language header (q-values honoured)."""
    best, best_q = default, -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        lang = tag.strip().lower()[:2]
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best


def zone(name: str | None) -> tzinfo:
    """A time zone by IANA name; UTC when unknown or empty."""
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


class Translator:
    """Messages and formatting for one language and time zone."""

    def __init__(self, lang: str, tz: tzinfo | None = None) -> None:
        self.lang = lang if lang in LANGUAGES else "en"
        self.tz = tz or timezone.utc
        self.rules = RULES[self.lang]
        self._cat = catalog(self.lang)

    def __call__(self, key: str, **kw: Any) -> str:
        """The message `key`, with `{placeholders}` filled from `kw`."""
        msg = self._cat.get(key)
        if msg is None:
            msg = catalog("en").get(key, key)
        if isinstance(msg, dict):
            msg = msg.get(plural_form(self.lang, kw.get("count", 0)), msg.get("other", key))
        if kw:
            return msg.format(**{k: self.num(v) if isinstance(v, int) and not isinstance(v, bool)
                                 and k == "count" else v for k, v in kw.items()})
        return msg

    def has(self, key: str) -> bool:
        return key in self._cat

    # -- numbers ----------------------------------------------------------------------
    def num(self, value: float | int | None, digits: int = 0) -> str:
        """Grouped number with `digits` decimals ('1,234.5' / '1 234,5')."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        text = f"{value:,.{digits}f}"
        return text.replace(",", "\x00").replace(".", self.rules.decimal).replace("\x00", self.rules.thousands)

    def pct(self, ratio: float | None, digits: int = 1) -> str:
        """A ratio 0..1 as a percentage."""
        if ratio is None:
            return "–"
        return self.rules.percent.format(n=self.num(ratio * 100, digits))

    # -- dates and times -----------------------------------------------------------------
    def local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.tz)

    def date(self, ts: float | None) -> str:
        if ts is None:
            return "–"
        d = self.local(ts)
        return self.rules.date.format(d=d.day, m=d.month, y=d.year, mon=self("month.%d" % d.month))

    def time(self, ts: float | None, seconds: bool = False) -> str:
        if ts is None:
            return "–"
        return self.local(ts).strftime("%H:%M:%S" if seconds else "%H:%M")

    def datetime(self, ts: float | None, seconds: bool = False) -> str:
        if ts is None:
            return "–"
        return f"{self.date(ts)} {self.time(ts, seconds)}"

    def weekday(self, index: int) -> str:
        """Short weekday name, 0 = Monday."""
        return self("weekday.%d" % index)

    def duration(self, seconds: float | None) -> str:
        """'45 s', '3 min 05 s', '2 h 07 min' in the language's units."""
        if seconds is None:
            return "–"
        s = int(round(max(seconds, 0)))
        h, rem = divmod(s, 3600)
        m, sec = divmod(rem, 60)
        uh, um, us = self("unit.h"), self("unit.min"), self("unit.s")
        if h:
            return f"{h}{NBSP}{uh} {m:02d}{NBSP}{um}"
        if m:
            return f"{m}{NBSP}{um} {sec:02d}{NBSP}{us}"
        return f"{sec}{NBSP}{us}"

    def clock(self, seconds: float | None) -> str:
        """Compact 'm:ss' / 'h:mm:ss' for tables and live timers."""
        if seconds is None:
            return "–"
        s = int(max(seconds, 0))
        h, rem = divmod(s, 3600)
        m, sec = divmod(rem, 60)
        return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
