"""The web page's four languages: complete catalogs, placeholders, per-locale formatting."""
from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from web_ui.i18n import LANGUAGES, NBSP, Translator, catalog, negotiate, plural_form

PLACEHOLDER = re.compile(r"\{(\w+)\}")
SAME_WORD = {"Administrator"}  # the same word in Polish


def test_every_key_exists_in_all_four_catalogs():
    keys = {lang: set(catalog(lang)) for lang in LANGUAGES}
    for lang in LANGUAGES:
        assert keys[lang] == keys["en"], (lang, sorted(keys["en"] ^ keys[lang])[:20])


@pytest.mark.parametrize("lang", ["pl", "ru", "bg"])
def test_placeholders_match_english_and_text_is_translated(lang):
    en, other = catalog("en"), catalog(lang)
    same = []
    for key, text in en.items():
        assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(other[key])), key
        assert other[key].strip(), key
        if other[key] == text and len(text) > 12 and text not in SAME_WORD:
            same.append(key)
    assert not same, f"{lang}: left in English: {same}"


def test_every_message_key_used_in_the_code_exists():
    from pathlib import Path

    src = "\n".join(p.read_text() for p in Path("web_ui").rglob("*.py"))
    used = set(re.findall(r'\bt\("([a-z_0-9]+\.[a-z_0-9.]+)"', src))
    missing = sorted(k for k in used if k not in catalog("en"))
    assert not missing


def test_numbers_per_locale():
    assert Translator("en").num(1234567.891, 2) == "1,234,567.89"
    assert Translator("pl").num(1234567.891, 2) == f"1{NBSP}234{NBSP}567,89"
    assert Translator("ru").pct(0.125) == f"12,5{NBSP}%"
    assert Translator("bg").pct(0.125) == "12,5%"
    assert Translator("en").pct(None) == "–"


def test_dates_and_durations_per_locale():
    tz = ZoneInfo("Europe/Warsaw")
    ts = datetime(2026, 3, 7, 14, 5, tzinfo=tz).timestamp()
    assert Translator("en", tz).datetime(ts) == "7 Mar 2026 14:05"
    assert Translator("pl", tz).date(ts) == "07.03.2026"
    assert Translator("bg", tz).date(ts) == f"07.03.2026{NBSP}г."
    assert Translator("en").duration(3725) == f"1{NBSP}h 02{NBSP}min"
    assert Translator("ru").duration(125) == f"2{NBSP}мин 05{NBSP}с"
    assert Translator("pl").duration(7) == f"7{NBSP}s"
    assert Translator("en").clock(3725) == "1:02:05"


def test_plural_rules():
    assert [plural_form("pl", n) for n in (1, 2, 5, 12, 22, 25)] == ["one", "few", "many", "many", "few", "many"]
    assert [plural_form("ru", n) for n in (1, 3, 11, 21, 14)] == ["one", "few", "many", "one", "many"]
    assert plural_form("bg", 1) == "one" and plural_form("bg", 2) == "other"


def test_accept_language_negotiation():
    assert negotiate("de-DE,de;q=0.9,ru;q=0.8,en;q=0.5") == "ru"
    assert negotiate("bg") == "bg"
    assert negotiate("fr") == "en"
    assert negotiate(None, default="pl") == "pl"
    assert negotiate("pl;q=abc, en") == "en"
