"""The configuration model of the box and its provisioning file (TOML).

One model for everything the box is told: ``load_provisioning(path)`` reads a provisioning
file into frozen dataclasses (:class:`Provisioning` and the classes below it), the config
store (``firmware.store.config``) keeps the same model in TinyDB and the web settings pages
edit it through the same validators.

Every semantic problem is reported at once, sorted by line, as ``file:line: message`` at the
line of the offending key (or of the table header when a required key is missing).
``tomllib`` gives no positions, so :func:`toml_positions` scans the text for the line of every
table header, array-of-tables element, key, inline-table key and array element.

Validation works on the raw TOML-shaped dict (``{"extension": [{"number": "201"}], ...}``)
and produces issues keyed by a path such as ``("queue", 0, "members", 2)``; the loader turns
the path into a line, the config store turns it into a field name beside a web form.

Passwords are never invented here: an extension or user without a password keeps
``password=None`` and the config store generates one when it seeds (see
``ConfigStore.provision``), returning it once to be printed.
"""
from __future__ import annotations

import ast
import collections.abc
import dataclasses
import datetime as _dt
import difflib
import inspect
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import tomllib
import types
import typing
import wave
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ConfigIssue", "ProvisioningError", "Provisioning", "System", "Security", "Recording",
    "FeatureCodes", "Smtp", "Extension", "User", "Trunk", "QueueMember", "Queue", "Ivr",
    "TimeCondition", "InboundRoute", "OutboundRoute", "Routes", "Notification", "Destination",
    "load_provisioning", "parse_provisioning", "build_provisioning", "check_file",
    "validate_raw", "to_raw", "toml_positions", "TomlPositions", "password_problem",
    "generate_password", "compile_pattern", "match_pattern", "parse_hours", "parse_port_range",
    "parse_hostport", "field_docs", "SECTIONS", "LANGUAGES", "PERMISSIONS", "STRATEGIES",
    "ROLES", "TRUNK_TYPES", "GSM_MODELS", "FXO_MODELS", "AUTH_ALGORITHMS", "RECORD_POLICIES",
]

LANGUAGES = ("en", "pl", "ru", "bg")
"""Languages of the box's own prompts and web page."""
PERMISSIONS = ("internal", "local", "mobile", "international", "premium")
"""Outbound call classes, from the least to the most expensive."""
STRATEGIES = ("ringall", "linear", "rrmemory", "leastrecent", "fewestcalls", "random", "wrandom")
ROLES = ("admin", "manager", "agent")
TRUNK_TYPES = ("gsm", "fxo", "sip")
GSM_MODELS = ("sim800", "sim7600", "ec25", "huawei")
FXO_MODELS = ("voicemodem",)
AUTH_ALGORITHMS = ("md5", "sha256", "sha512-256")
"""SIP digest algorithms (RFC 7616 / RFC 8760 names, lower case)."""
RECORD_POLICIES = ("always", "never", "on_demand")
SIP_TRANSPORTS = ("udp", "tcp", "tls")
DTMF_MODES = ("rfc4733", "info", "inband")
NOTIFY_KINDS = ("sms", "email", "webhook")
NOTIFY_EVENTS = ("missed_call", "voicemail", "trunk_down", "disk_full", "ban")
SERVICE_LEVELS = (10, 15, 20, 30, 45, 60, 90, 120, 180, 300)
"""Service-level thresholds the reports count directly (seconds)."""
SHORT_ABANDONS = (0, 3, 5, 10, 15, 20, 30)
"""Short-abandon thresholds the reports count directly (seconds)."""

DEFAULT_SCANNER_USER_AGENTS = (
    "friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sipsak", "sundayddr", "iwar",
    "sivus", "gulp", "smap", "vaxsipuseragent", "vaxipuseragent", "siparmyknife",
    "friendly-request", "pplsip", "sip-vicious", "nmap", "masscan",
)
"""Lower-case substrings of User-Agent headers whose requests are dropped silently."""

_NUMBER_RE = re.compile(r"^[0-9]{2,8}$")
_EXTERNAL_RE = re.compile(r"^\+?[0-9]{3,20}$")
_DTMF_RE = re.compile(r"^[0-9*#]$")
_FEATURE_RE = re.compile(r"^[*#][0-9*#]{1,7}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --------------------------------------------------------------------------- issues


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a provisioning file (or in a web form)."""

    path: str
    """The file the problem is in ("" for a web form)."""
    line: int
    """1-based line of the offending key or of its table header; 0 when unknown."""
    message: str
    """What is wrong and, where possible, how to fix it."""
    key: tuple = ()
    """Where in the TOML structure, e.g. ``("queue", 0, "members", 2)``."""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class ProvisioningError(Exception):
    """A provisioning file has problems; ``issues`` lists all of them, sorted by line."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


# --------------------------------------------------------------------------- TOML positions


class TomlPositions:
    """Line numbers of the parts of one TOML document, keyed by structure path.

    A path is a tuple of table/key names and array indices, exactly as in the dict that
    ``tomllib`` returns: ``("system", "language")``, ``("extension", 1)`` (the header of the
    second ``[[extension]]``), ``("ivr", 0, "options", "1")``, ``("queue", 0, "members", 2)``.
    """

    def __init__(self, lines: dict[tuple, int]) -> None:
        self.lines = lines

    def line_of(self, path: tuple) -> int:
        """Line of ``path``, or of its closest ancestor that has one; 0 when none does."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return 0

    def __contains__(self, path: tuple) -> bool:
        return tuple(path) in self.lines


class _Scanner:
    _BARE = re.compile(r"[A-Za-z0-9_-]+")
    _ESC = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}

    def __init__(self, text: str) -> None:
        self.t = text
        self.n = len(text)
        self.i = 0
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[tuple, int] = {}
        self.aot: dict[tuple, int] = {}

    def line(self, i: int) -> int:
        return bisect_left(self.newlines, i) + 1

    def mark(self, path: tuple, i: int, *, overwrite: bool = True) -> None:
        ln = self.line(i)
        if overwrite or path not in self.lines:
            self.lines[path] = ln
        for k in range(1, len(path)):
            self.lines.setdefault(path[:k], ln)

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.t[j] if j < self.n else ""

    def skip_ws(self, newlines: bool = False) -> None:
        while self.i < self.n:
            c = self.t[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#" and newlines:
                while self.i < self.n and self.t[self.i] != "\n":
                    self.i += 1
            else:
                break

    def skip_line(self) -> None:
        while self.i < self.n and self.t[self.i] != "\n":
            self.i += 1

    def key(self) -> tuple:
        parts: list[str] = []
        while True:
            self.skip_ws()
            c = self.peek()
            if c == '"':
                parts.append(self.basic_string())
            elif c == "'":
                parts.append(self.literal_string())
            else:
                m = self._BARE.match(self.t, self.i)
                if not m:
                    break
                parts.append(m.group())
                self.i = m.end()
            self.skip_ws()
            if self.peek() == ".":
                self.i += 1
                continue
            break
        return tuple(parts)

    def basic_string(self) -> str:
        if self.t.startswith('"""', self.i):
            self.i += 3
            out = []
            while self.i < self.n:
                if self.t.startswith('"""', self.i):
                    self.i += 3
                    extra = 0
                    while self.peek() == '"' and extra < 2:
                        self.i += 1
                        extra += 1
                    return "".join(out) + '"' * extra
                c = self.t[self.i]
                if c == "\\":
                    self.i += 1
                    if self.peek() in " \t\r\n":
                        self.skip_ws(newlines=True)
                        continue
                    out.append(self.escape())
                    continue
                out.append(c)
                self.i += 1
            return "".join(out)
        self.i += 1
        out = []
        while self.i < self.n and self.t[self.i] not in '"\n':
            if self.t[self.i] == "\\":
                self.i += 1
                out.append(self.escape())
            else:
                out.append(self.t[self.i])
                self.i += 1
        self.i += 1
        return "".join(out)

    def escape(self) -> str:
        c = self.peek()
        self.i += 1
        if c in self._ESC:
            return self._ESC[c]
        if c in "uU":
            width = 4 if c == "u" else 8
            digits = self.t[self.i:self.i + width]
            self.i += width
            try:
                return chr(int(digits, 16))
            except ValueError:
                return ""
        return c

    def literal_string(self) -> str:
        if self.t.startswith("'''", self.i):
            start = self.i + 3
            end = self.t.find("'''", start)
            end = self.n if end < 0 else end
            self.i = end + 3
            extra = 0
            while self.peek() == "'" and extra < 2:
                self.i += 1
                extra += 1
            return self.t[start:end] + "'" * extra
        start = self.i + 1
        end = self.t.find("'", start)
        end = self.n if end < 0 else end
        self.i = end + 1
        return self.t[start:end]

    def resolve(self, names: tuple) -> tuple:
        path: tuple = ()
        for name in names:
            path += (name,)
            if path in self.aot:
                path += (self.aot[path],)
        return path

    def value(self, path: tuple) -> None:
        c = self.peek()
        if c == '"':
            self.basic_string()
        elif c == "'":
            self.literal_string()
        elif c == "[":
            self.i += 1
            idx = 0
            while self.i < self.n:
                self.skip_ws(newlines=True)
                if self.peek() in ("]", ""):
                    self.i += 1
                    return
                self.mark(path + (idx,), self.i)
                self.value(path + (idx,))
                idx += 1
                self.skip_ws(newlines=True)
                if self.peek() == ",":
                    self.i += 1
        elif c == "{":
            self.i += 1
            while self.i < self.n:
                self.skip_ws(newlines=True)
                if self.peek() in ("}", ""):
                    self.i += 1
                    return
                start = self.i
                names = self.key()
                if not names:
                    self.i += 1
                    continue
                self.mark(path + names, start)
                self.skip_ws()
                if self.peek() == "=":
                    self.i += 1
                self.skip_ws()
                self.value(path + names)
                self.skip_ws(newlines=True)
                if self.peek() == ",":
                    self.i += 1
        else:
            while self.i < self.n and self.t[self.i] not in ",]}\n#":
                self.i += 1

    def run(self) -> dict[tuple, int]:
        current: tuple = ()
        while self.i < self.n:
            self.skip_ws(newlines=True)
            if self.i >= self.n:
                break
            start = self.i
            if self.t.startswith("[[", self.i):
                self.i += 2
                names = self.key()
                base = self.resolve(names[:-1]) + names[-1:]
                idx = self.aot.get(base, -1) + 1
                self.aot[base] = idx
                current = base + (idx,)
                self.mark(base, start, overwrite=False)
                self.mark(current, start)
                self.skip_line()
            elif self.peek() == "[":
                self.i += 1
                names = self.key()
                current = self.resolve(names)
                self.mark(current, start)
                self.skip_line()
            else:
                names = self.key()
                if not names:
                    self.skip_line()
                    continue
                self.mark(current + names, start)
                self.skip_ws()
                if self.peek() == "=":
                    self.i += 1
                self.skip_ws()
                self.value(current + names)
                self.skip_ws()
                if self.peek() == "#":
                    self.skip_line()
        return self.lines


def toml_positions(text: str) -> TomlPositions:
    """Scan TOML ``text`` (already known to parse) for the line of every part of it."""
    return TomlPositions(_Scanner(text).run())


# --------------------------------------------------------------------------- small validators


_COMMON_PASSWORDS = frozenset("""
password passw0rd password1 password12 password123 password1234 password12345 passwort
admin administrator admin123 admin1234 root toor secret letmein welcome changeme default
qwerty qwertyuiop qwertyuiopasdf qwertyuiop123 asdfghjkl zxcvbnm 1qaz2wsx 1qaz2wsx3edc
1q2w3e4r 1q2w3e4r5t6y iloveyou trustno1 monkey dragon football baseball master sunshine
princess shadow superman batman michael abc123 abcdef abcdefgh abcdefghijkl abcd1234
letmein123 welcome123 changeme123 voip sip asterisk freepbx 3cx officebox pbx phone
telefon haslo haslo123 parol parola pass pass1234 test test1234 testtest guest user
""".split())


def password_problem(password: str, *, number: str | None = None, name: str | None = None) -> str | None:
    """Why ``password`` is too weak for a SIP extension or a web user, or None when it is fine.

    Refused: shorter than 12 characters, all digits, one repeated character, equal to the
    extension number or the user name, or a common password (also with digits or
    punctuation added at the end, e.g. ``Password2024!``).
    """
    if not isinstance(password, str):
        return "password must be text"
    if len(password) < 12:
        return f"password is too short ({len(password)} characters; at least 12 are needed)"
    if password.isdigit():
        return "password is all digits; mix letters and digits (at least 12 characters)"
    if len(set(password)) == 1:
        return "password repeats one character"
    low = password.lower()
    if number and low in (number.lower(), number.lower() * 2):
        return "password equals the extension number"
    if name and low == name.lower():
        return "password equals the user name"
    stem = re.sub(r"[0-9\W_]+$", "", low)
    if low in _COMMON_PASSWORDS or stem in _COMMON_PASSWORDS or low.rstrip("!.?") in _COMMON_PASSWORDS:
        return "password is a common password that attackers try first"
    return None


def generate_password() -> str:
    """A strong random password: 24 URL-safe characters, 144 bits from ``secrets``."""
    while True:
        pw = secrets.token_urlsafe(18)
        if password_problem(pw) is None:
            return pw


_PATTERN_CLASSES = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}


def compile_pattern(pattern: str) -> re.Pattern:
    """Compile a dial pattern into a regular expression that must match a whole number.

    Syntax (Asterisk style, an optional leading ``_`` is ignored): digits, ``*``, ``#`` and
    ``+`` match themselves; ``X`` any digit, ``Z`` 1-9, ``N`` 2-9; ``[15-7]`` one digit
    of a set; ``.`` one or more further characters and ``!`` zero or more (both only at the
    end). Raises ``ValueError`` with the reason for a bad pattern.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("empty pattern")
    p = pattern[1:] if pattern.startswith("_") else pattern
    if not p:
        raise ValueError("empty pattern")
    out = []
    i = 0
    while i < len(p):
        c = p[i]
        if c.isdigit() or c in "*#":
            out.append(re.escape(c))
        elif c == "+":
            if i != 0:
                raise ValueError(f"'+' may only start a pattern (position {i + 1})")
            out.append(r"\+")
        elif c.upper() in _PATTERN_CLASSES:
            out.append(_PATTERN_CLASSES[c.upper()])
        elif c == "[":
            j = p.find("]", i)
            if j < 0:
                raise ValueError(f"'[' at position {i + 1} is never closed")
            body = p[i + 1:j]
            if not body:
                raise ValueError(f"empty digit set '[]' at position {i + 1}")
            if not re.fullmatch(r"([0-9](-[0-9])?)+", body):
                raise ValueError(f"digit set '[{body}]' may hold only digits and ranges like 1-5")
            for a, b in re.findall(r"([0-9])-([0-9])", body):
                if a > b:
                    raise ValueError(f"range {a}-{b} in '[{body}]' goes backwards")
            out.append(f"[{body}]")
            i = j
        elif c in ".!":
            if i != len(p) - 1:
                raise ValueError(f"'{c}' may only end a pattern (position {i + 1})")
            out.append(".+" if c == "." else ".*")
        else:
            raise ValueError(f"unexpected character {c!r} at position {i + 1}"
                             " (use digits, X, Z, N, [1-5], '.' or '!')")
        i += 1
    return re.compile("".join(out) + r"\Z")


def match_pattern(pattern: str, number: str) -> bool:
    """True when ``number`` matches the dial ``pattern`` (``"*"`` matches anything)."""
    if pattern == "*":
        return True
    return compile_pattern(pattern).match(number) is not None


def parse_port_range(text: str) -> tuple[int, int]:
    """``"10000-20000"`` -> (10000, 20000); ``ValueError`` unless 1024 <= LO < HI <= 65535
    with room for two calls."""
    lo, sep, hi = str(text).partition("-")
    try:
        a, b = int(lo), int(hi)
    except ValueError:
        raise ValueError(f"port range {text!r} must look like LO-HI, e.g. 10000-20000") from None
    if not sep or not (1024 <= a < b <= 65535) or (b - a) < 3:
        raise ValueError(f"port range {text!r} must be LO-HI with 1024 <= LO < HI <= 65535 "
                         "and room for two calls")
    return a, b


def parse_hostport(text: str) -> tuple[str, int]:
    """``"0.0.0.0:5060"`` / ``"[::1]:5060"`` -> (host, port); ``ValueError`` when malformed."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} must be HOST:PORT, e.g. 0.0.0.0:5060")
    host = host.strip("[]")
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"port must be a number in {text!r}") from None
    if not 1 <= p <= 65535:
        raise ValueError(f"port out of range (1-65535) in {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_RE.match(host):
            raise ValueError(f"{host!r} is not an IP address or host name") from None
    return host, p


def parse_hours(spec: str) -> list[tuple[int, int, int]]:
    """``"mon-fri 09:00-13:00,14:00-18:00"`` -> [(weekday 0=Mon, start minute, end minute), ...].

    Day ranges may wrap (``fri-mon``); ``24:00`` ends a day; a range that crosses midnight
    must be split in two. Raises ``ValueError`` with the reason.
    """
    parts = str(spec).strip().lower().split()
    if len(parts) != 2:
        raise ValueError(f"hours {spec!r} must look like 'mon-fri 09:00-18:00'")
    days_s, times_s = parts
    days: list[int] = []
    for chunk in days_s.split(","):
        a, sep, b = chunk.partition("-")
        if a not in _WEEKDAYS or (sep and b not in _WEEKDAYS):
            raise ValueError(f"unknown weekday in {spec!r} (use mon tue wed thu fri sat sun)")
        ia = _WEEKDAYS.index(a)
        ib = _WEEKDAYS.index(b) if sep else ia
        d = ia
        while True:
            days.append(d)
            if d == ib:
                break
            d = (d + 1) % 7
    out = []
    for rng in times_s.split(","):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", rng)
        if not m:
            raise ValueError(f"time range {rng!r} in {spec!r} must look like 09:00-18:00")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"time {rng!r} in {spec!r} is not a valid time of day")
        s, e = h1 * 60 + m1, h2 * 60 + m2
        if e <= s:
            raise ValueError(f"time range {rng!r} in {spec!r} ends before it starts "
                             "(split a range that crosses midnight in two)")
        out.extend((d, s, e) for d in days)
    return out


def _parse_holiday(value: Any) -> str:
    if isinstance(value, _dt.datetime):
        raise ValueError("a holiday is a date, not a date and time")
    if isinstance(value, _dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValueError("a holiday is a date such as 2026-12-25 or 12-25 (every year)")
    if re.fullmatch(r"\d{2}-\d{2}", value):
        try:
            _dt.date(2000, int(value[:2]), int(value[3:]))
        except ValueError:
            raise ValueError(f"{value!r} is not a day of the year") from None
        return value
    try:
        return _dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{value!r} is not a date such as 2026-12-25 or 12-25 (every year)") from None


_espeak_cache: set[str] | None = None


def espeak_languages() -> set[str]:
    """Language codes espeak-ng can speak (``en``, ``pl``, ``en-gb``...); empty without it."""
    global _espeak_cache
    if _espeak_cache is None:
        langs: set[str] = set()
        exe = shutil.which("espeak-ng")
        if exe:
            try:
                out = subprocess.run([exe, "--voices"], capture_output=True, text=True, timeout=20).stdout
            except (OSError, subprocess.SubprocessError):
                out = ""
            for line in out.splitlines()[1:]:
                cols = line.split()
                if len(cols) >= 2:
                    langs.add(cols[1].lower())
                    langs.add(cols[1].lower().split("-")[0])
        _espeak_cache = langs
    return _espeak_cache


def _is_prompt_file(value: str) -> bool:
    return value.lower().endswith(".wav") or "/" in value


def wav_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable prompt (8 kHz, mono, 16-bit PCM WAV), or None."""
    if not path.is_file():
        return f"prompt file {str(path)!r} does not exist"
    try:
        with wave.open(str(path), "rb") as w:
            ch, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
    except (wave.Error, EOFError, OSError) as e:
        return f"prompt file {str(path)!r} is not a PCM WAV file ({e})"
    if (ch, width, rate) != (1, 2, 8000):
        return (f"prompt file {str(path)!r} is {rate} Hz, {ch} channel(s), {8 * width}-bit; "
                "prompts must be 8000 Hz mono 16-bit (sox in.wav -r 8000 -c 1 -b 16 out.wav)")
    return None


# --------------------------------------------------------------------------- the model


def _f(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **meta: Any) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _check_hostport(v: str) -> str | None:
    try:
        parse_hostport(v)
    except ValueError as e:
        return str(e)
    return None


def _check_portrange(v: str) -> str | None:
    try:
        parse_port_range(v)
    except ValueError as e:
        return str(e)
    return None


def _check_tz(v: str) -> str | None:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {v!r} (use a name like Europe/Warsaw or UTC)"
    return None


def _check_realm(v: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", v):
        return "realm must be 1-64 letters, digits, dots, dashes or underscores"
    return None


def _check_net(v: str) -> str | None:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return f"{v!r} is not an IP address or network (e.g. 192.168.1.10 or 10.0.0.0/8)"
    return None


def _check_host(v: str) -> str | None:
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        pass
    if not _HOST_RE.match(v):
        return f"{v!r} is not a host name or IP address"
    return None


def _check_number(v: str) -> str | None:
    if not _NUMBER_RE.match(v):
        return f"number {v!r} must be 2 to 8 digits"
    return None


def _check_external(v: str) -> str | None:
    if not _EXTERNAL_RE.match(v):
        return f"{v!r} is not a phone number (digits with an optional leading +)"
    return None


def _check_name(v: str) -> str | None:
    if not _NAME_RE.match(v):
        return f"name {v!r} must be 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit"
    return None


def _check_feature(v: str) -> str | None:
    if not _FEATURE_RE.match(v):
        return f"feature code {v!r} must start with * or # followed by 1-7 of 0-9 * #"
    return None


def _check_pattern(v: str) -> str | None:
    if v == "*":
        return None
    try:
        compile_pattern(v)
    except ValueError as e:
        return f"bad pattern {v!r}: {e}"
    return None


def _check_dtmf(v: str) -> str | None:
    if v and not _DTMF_RE.match(v):
        return f"{v!r} must be one key of 0-9, * or #"
    return None


def _check_email(v: str) -> str | None:
    return None if _EMAIL_RE.match(v) else f"{v!r} is not an e-mail address"


def _check_pin(v: str) -> str | None:
    return None if re.fullmatch(r"[0-9]{4,8}", v) else "SIM PIN must be 4 to 8 digits"


def _check_imei(v: str) -> str | None:
    if not re.fullmatch(r"[0-9]{15}", v):
        return "IMEI must be 15 digits"
    total = 0
    for i, ch in enumerate(v):
        d = int(ch)
        if i % 2:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return None if total % 10 == 0 else f"IMEI {v} fails its check digit (Luhn)"


def _check_hours(v: str) -> str | None:
    try:
        parse_hours(v)
    except ValueError as e:
        return str(e)
    return None


def _check_holiday(v: Any) -> str | None:
    try:
        _parse_holiday(v)
    except ValueError as e:
        return str(e)
    return None


def _check_url(v: str) -> str | None:
    if not re.fullmatch(r"https?://[^\s/$.?#][^\s]*", v):
        return f"{v!r} is not an http:// or https:// URL"
    return None


@dataclass(frozen=True, kw_only=True)
class Security:
    """SIP brute-force and scanner protection (``[system.security]``)."""

    ban_attempts: int = _f(5, ge=1, le=1000)
    """Failed authentications from one IP within ``ban_window_s`` that get it banned."""
    ban_window_s: int = _f(600, ge=10, le=86400)
    """Window for counting failed authentications, in seconds."""
    ban_time_s: int = _f(3600, ge=60, le=31536000)
    """How long a ban lasts, in seconds."""
    exempt_ips: tuple[str, ...] = _f((), item_check=_check_net)
    """Addresses or networks never banned. Empty by default: loopback is banned like any other."""
    scanner_user_agents: tuple[str, ...] = _f(DEFAULT_SCANNER_USER_AGENTS)
    """Case-insensitive User-Agent substrings whose requests are dropped without an answer."""
    rate_limit_per_s: int = _f(50, ge=1, le=100000)
    """SIP requests per second accepted from one source address (a token bucket)."""
    rate_limit_burst: int = _f(200, ge=1, le=100000)
    """Burst size of the per-source token bucket, in requests."""


@dataclass(frozen=True, kw_only=True)
class Recording:
    """Call recording policy and retention (``[system.recording]``)."""

    policy: str = _f("always", choices=RECORD_POLICIES)
    """Default for every call: always, never, or on_demand (the record feature code)."""
    min_free_mb: int = _f(500, ge=1, le=10_000_000)
    """Free space kept on the data partition, in MiB; the oldest recordings are deleted to keep it."""
    max_age_days: int = _f(0, ge=0, le=36500)
    """Recordings older than this many days are deleted; 0 keeps them while space allows."""


@dataclass(frozen=True, kw_only=True)
class FeatureCodes:
    """Codes dialled from desk phones (``[system.features]``)."""

    pickup: str = _f("*8", check=_check_feature)
    """Pick up a call ringing in the caller's pickup group (any extension)."""
    directed_pickup: str = _f("**", check=_check_feature)
    """Prefix: ``**201`` picks up the call ringing at 201."""
    queue_login: str = _f("*45", check=_check_feature)
    """Toggle log-in to the caller's queues (``*45600``: only queue 600)."""
    queue_pause: str = _f("*46", check=_check_feature)
    """Toggle pause in the caller's queues."""
    dnd_on: str = _f("*78", check=_check_feature)
    """Do not disturb on."""
    dnd_off: str = _f("*79", check=_check_feature)
    """Do not disturb off."""
    record: str = _f("*1", check=_check_feature)
    """During a call (DTMF): start/stop recording where the policy is on_demand."""
    listen: str = _f("*222", check=_check_feature)
    """Prefix + agent extension: listen to the agent's call."""
    whisper: str = _f("*223", check=_check_feature)
    """Prefix + agent extension: talk to the agent only."""
    barge: str = _f("*224", check=_check_feature)
    """Prefix + agent extension: join the call."""
    business_hours_override: str = _f("*60", check=_check_feature)
    """Toggle the override of time conditions (``*60`` + time-condition number for one)."""


@dataclass(frozen=True, kw_only=True)
class Smtp:
    """Mail server for e-mail notifications (``[system.smtp]``)."""

    host: str = _f("", check=lambda v: None if not v else _check_host(v))
    """SMTP server; empty disables e-mail."""
    port: int = _f(587, ge=1, le=65535)
    """SMTP port."""
    starttls: bool = _f(True)
    """Upgrade the connection with STARTTLS."""
    username: str = _f("")
    """Login name, if the server wants one."""
    password: str = _f("", secret=True)
    """Login password."""
    sender: str = _f("", check=lambda v: None if not v else _check_email(v))
    """From address of notification mails (needed for e-mail notifications)."""


@dataclass(frozen=True, kw_only=True)
class System:
    """Box-wide settings (``[system]``)."""

    language: str = _f("en", choices=LANGUAGES)
    """Language of the box's prompts and web page."""
    sip_bind: str = _f("0.0.0.0:5060", check=_check_hostport)
    """SIP address (UDP and TCP), HOST:PORT."""
    web_bind: str = _f("0.0.0.0:8080", check=_check_hostport)
    """Web page address, HOST:PORT."""
    rtp_ports: str = _f("10000-20000", check=_check_portrange)
    """UDP port range for RTP, LO-HI."""
    kernel_relay: bool = _f(True)
    """Relay the audio of established two-party calls inside the Linux kernel (eBPF), as rtpengine does, when the kernel and the box's privileges allow it; false: always in the media engine."""
    timezone: str = _f("UTC", check=_check_tz)
    """IANA time zone of the office (reports, business hours, recording folders)."""
    country_code: str = _f("", check=lambda v: None if re.fullmatch(r"[0-9]{0,4}", v) else "country code must be 1-4 digits, e.g. 48")
    """Country calling code without +, used to normalise customers' numbers ("48"); empty: keep numbers as dialled."""
    trunk_prefix: str = _f("", check=lambda v: None if re.fullmatch(r"[0-9]{0,2}", v) else "trunk prefix must be 0-2 digits, e.g. 0")
    """National trunk prefix replaced by +<country_code> when normalising ("0" in BG, "8" in RU, "" in PL)."""
    realm: str = _f("officebox", check=_check_realm)
    """SIP digest realm. Changing it invalidates stored SIP credentials (passwords must be set again)."""
    auth_algorithms: tuple[str, ...] = _f(("md5", "sha256"), item_choices=AUTH_ALGORITHMS, csv=True, nonempty=True)
    """Digest algorithms offered to phones, in challenge order ("md5,sha256" or a list)."""
    session_expires_s: int = _f(1800, ge=90, le=86400)
    """Session timer (RFC 4028) interval requested for calls, in seconds."""
    min_se_s: int = _f(90, ge=90, le=86400)
    """Smallest session interval accepted (Min-SE), in seconds."""
    nat_keepalive_s: int = _f(25, ge=5, le=600)
    """Keep-alive interval for phones behind NAT, in seconds."""
    registration_max_s: int = _f(3600, ge=60, le=86400)
    """Longest registration accepted from a phone, in seconds."""
    security: Security = _f(Security())
    """Brute-force and scanner protection."""
    recording: Recording = _f(Recording())
    """Recording policy and retention."""
    features: FeatureCodes = _f(FeatureCodes())
    """Feature codes."""
    smtp: Smtp = _f(Smtp())
    """Mail server for notifications."""


@dataclass(frozen=True, kw_only=True)
class Extension:
    """A desk phone or softphone account (``[[extension]]``)."""

    number: str = _f(check=_check_number, digits=True)
    """Extension number (2-8 digits); also the SIP user name."""
    name: str = _f("")
    """Display name."""
    password: str | None = _f(None, secret=True)
    """SIP password; omitted: generated at seeding and printed once. Stored only as digest HA1."""
    permission: tuple[str, ...] = _f(("internal", "local", "mobile"), item_choices=PERMISSIONS, highest_of=PERMISSIONS)
    """Outbound classes allowed: a list, or the highest class (international and premium are off by default)."""
    max_calls: int = _f(2, ge=1, le=20)
    """Concurrent calls of this extension."""
    call_waiting: bool = _f(True)
    """Offer a second call while on a call."""
    dnd: bool = _f(False)
    """Do not disturb at start."""
    no_answer_timeout: int = _f(20, ge=5, le=300)
    """Seconds a direct call rings before going to ``no_answer``."""
    no_answer: str = _f("hangup", destination=True)
    """Where unanswered direct calls go (a destination)."""
    mobile: str = _f("", check=lambda v: None if not v else _check_external(v))
    """The person's mobile number (queue overflow to agents' mobiles)."""
    email: str = _f("", check=lambda v: None if not v else _check_email(v))
    """E-mail for missed-call notifications."""
    auth_algorithms: tuple[str, ...] | None = _f(None, item_choices=AUTH_ALGORITHMS, csv=True, nonempty=True)
    """Digest algorithms for this phone; omitted: the system's."""
    record: str | None = _f(None, choices=RECORD_POLICIES)
    """Recording policy of calls with this extension; omitted: the system's."""
    language: str | None = _f(None, choices=LANGUAGES)
    """Language of prompts played to this phone; omitted: the system's."""
    pickup_group: str = _f("")
    """Extensions sharing a non-empty group name may pick up each other's calls with ``*8``."""


@dataclass(frozen=True, kw_only=True)
class User:
    """A web page login (``[[user]]``)."""

    name: str = _f(check=_check_name)
    """Login name."""
    password: str | None = _f(None, secret=True)
    """Password; omitted: generated at seeding and printed once. Stored only as an scrypt hash."""
    role: str = _f("agent", choices=ROLES)
    """admin (everything), manager (reports, recordings, live board), agent (own panel)."""
    extension: str = _f("", digits=True)
    """The agent's phone (an extension number), optional."""
    language: str | None = _f(None, choices=LANGUAGES)
    """Web page language; omitted: the system's."""


@dataclass(frozen=True, kw_only=True)
class Trunk:
    """A line to the carrier (``[[trunk]]``): GSM module, analog FXO line or SIP provider."""

    name: str = _f(check=_check_name)
    """Trunk name used by routes."""
    type: str = _f(choices=TRUNK_TYPES)
    """gsm, fxo or sip."""
    model: str = _f("", choices=("",) + GSM_MODELS + FXO_MODELS)
    """Modem model (gsm: sim800, sim7600, ec25, huawei; fxo: voicemodem)."""
    device: str = _f("")
    """AT command port: a device path or a pyserial URL (gsm, fxo)."""
    audio_device: str = _f("")
    """Audio port where the model has one (gsm)."""
    pin: str = _f("", secret=True, check=lambda v: None if not v else _check_pin(v))
    """SIM PIN (gsm), if the SIM asks for one."""
    imei: str = _f("", check=lambda v: None if not v else _check_imei(v))
    """IMEI that identifies the module after USB re-enumeration (gsm)."""
    scan: tuple[str, ...] = _f((), item_check=lambda v: None if v.startswith("/") else "scan entries are absolute paths or globs, e.g. /dev/ttyUSB*")
    """Device paths or globs searched for the module (by IMEI) after a reset (gsm, fxo); empty: the udev names, then /dev/ttyUSB* and /dev/ttyACM*."""
    max_calls: int = _f(1, ge=1, le=1000)
    """Concurrent calls (a GSM module or FXO line has one voice channel)."""
    minutes_per_day: int = _f(0, ge=0, le=1440)
    """Outgoing minutes per day on this SIM; 0 means no limit."""
    caller_id: str = _f("", check=lambda v: None if not v else _check_external(v))
    """Caller number presented on outgoing calls (sip: From user unless from_user is set)."""
    sms: bool = _f(True)
    """Use this module for SMS (gsm)."""
    host: str = _f("", check=lambda v: None if not v else _check_host(v))
    """Provider's SIP server (sip)."""
    port: int = _f(5060, ge=1, le=65535)
    """Provider's SIP port (sip)."""
    transport: str = _f("udp", choices=SIP_TRANSPORTS)
    """udp, tcp or tls (sip)."""
    username: str = _f("")
    """Account name at the provider (sip)."""
    auth_username: str = _f("")
    """Digest user name when it differs from ``username`` (sip)."""
    password: str = _f("", secret=True)
    """Account password at the provider (sip). Kept in the config store: the box must answer
    the provider's challenges, whose realm is only known when they arrive."""
    register: bool = _f(False)
    """Register to the provider (sip)."""
    expiry: int = _f(3600, ge=60, le=86400)
    """Registration expiry requested, in seconds (sip)."""
    backup_host: str = _f("", check=lambda v: None if not v else _check_host(v))
    """Second server used when ``host`` fails (sip)."""
    from_user: str = _f("")
    """User part of the From header on outgoing calls (sip); empty: ``caller_id`` or ``username``."""
    dids: tuple[str, ...] = _f((), item_check=_check_external)
    """Numbers the provider delivers on this trunk (sip)."""
    allow_ips: tuple[str, ...] = _f((), item_check=_check_net)
    """Accept calls from these addresses without registration (sip, "by IP")."""
    dtmf: str = _f("rfc4733", choices=DTMF_MODES)
    """How DTMF is carried: rfc4733, info or inband."""


@dataclass(frozen=True, kw_only=True)
class QueueMember:
    """One agent of a queue: ``"201"`` or ``{ extension = "201", penalty = 1 }``."""

    extension: str = _f(digits=True)
    """The agent's extension number."""
    penalty: int = _f(0, ge=0, le=100)
    """0 is rung first; higher penalties only when lower ones are busy (wrandom: weight 1/(1+penalty))."""


@dataclass(frozen=True, kw_only=True)
class Queue:
    """A call queue (ACD) with agents (``[[queue]]``)."""

    number: str = _f(check=_check_number, digits=True)
    """Queue number (dialled internally, used as a destination)."""
    name: str = _f("")
    """Display name."""
    strategy: str = _f("ringall", choices=STRATEGIES)
    """ringall, linear, rrmemory, leastrecent, fewestcalls, random or wrandom."""
    members: tuple[QueueMember, ...] = _f((), members=True)
    """Static members: extension numbers or ``{extension, penalty}`` tables."""
    agent_timeout: int = _f(15, ge=5, le=120)
    """Seconds an agent rings before the next try."""
    retry: int = _f(5, ge=0, le=60)
    """Seconds between ring attempts."""
    wrapup: int = _f(10, ge=0, le=600)
    """After-call work time, in seconds (capped at 600)."""
    max_wait: int = _f(300, ge=0, le=7200)
    """Seconds a caller waits before ``overflow``; 0 waits without limit."""
    overflow: str = _f("hangup", destination=True, allow_mobiles=True)
    """Where callers go after ``max_wait``: a destination, or "mobiles" (the members' mobile numbers)."""
    max_callers: int = _f(0, ge=0, le=1000)
    """Callers waiting at most; 0 means no limit. A full queue sends new callers to ``overflow``."""
    joinempty: bool = _f(True)
    """Callers may join when no agent is logged in."""
    leavewhenempty: bool = _f(False)
    """Waiting callers go to ``overflow`` when the last agent logs out."""
    announce: str = _f("", prompt=True)
    """Entry announcement: text or an 8 kHz WAV path; empty: none."""
    announce_position_every_s: int = _f(60, ge=0, le=3600)
    """Tell callers their position and expected wait this often, in seconds; 0: never."""
    periodic_message: str = _f("", prompt=True)
    """A message repeated while waiting (e.g. about the web shop): text or WAV; empty: none."""
    periodic_message_every_s: int = _f(45, ge=10, le=3600)
    """Interval of ``periodic_message``, in seconds."""
    music: str = _f("default", music=True)
    """Music on hold: "default" (built in) or an 8 kHz WAV path."""
    callback: str = _f("", check=_check_dtmf)
    """Key a caller presses to hang up, keep the place and be called back; empty: no callback."""
    ring_in_use: bool = _f(False)
    """Offer calls to agents already on a call."""
    autopause_after_rings: int = _f(3, ge=0, le=100)
    """Pause an agent after this many unanswered offers in a row; 0: never."""
    record: str | None = _f(None, choices=RECORD_POLICIES)
    """Recording policy for this queue's calls; omitted: the system's."""
    language: str | None = _f(None, choices=LANGUAGES)
    """Language of announcements; omitted: the system's."""
    service_level_s: int = _f(20, choices=SERVICE_LEVELS)
    """Service-level target for reports: answered within this many seconds (10, 15, 20, 30, 45, 60, 90, 120, 180 or 300)."""
    short_abandon_s: int = _f(5, choices=SHORT_ABANDONS)
    """Callers hanging up within this many seconds are short abandons, left out of the abandon rate (0, 3, 5, 10, 15, 20 or 30)."""
    script: str = _f("")
    """Call script shown to agents during this queue's calls."""


@dataclass(frozen=True, kw_only=True)
class Ivr:
    """A voice menu (``[[ivr]]``)."""

    number: str = _f(check=_check_number, digits=True)
    """Menu number (a destination)."""
    name: str = _f("")
    """Display name."""
    prompt: str = _f(prompt=True)
    """Greeting: text spoken with espeak-ng in ``language``, or an 8 kHz mono 16-bit WAV path."""
    language: str | None = _f(None)
    """Language of the text prompts (an espeak-ng language); omitted: the system's."""
    options: dict[str, str] = _f(factory=dict, options=True)
    """Key -> destination, e.g. ``{ "1" = "600", "2" = "601", "0" = "hangup" }``."""
    timeout: int = _f(5, ge=1, le=60)
    """Seconds to wait for a key after the prompt."""
    retries: int = _f(3, ge=0, le=10)
    """Times the menu repeats after invalid input or a timeout before ``invalid``."""
    invalid: str = _f("hangup", destination=True)
    """Where the caller goes when retries are used up."""
    invalid_prompt: str = _f("", prompt=True)
    """Played after a wrong key; empty: a built-in prompt."""
    timeout_prompt: str = _f("", prompt=True)
    """Played when no key was pressed; empty: a built-in prompt."""
    direct_dial: bool = _f(False)
    """Callers may dial an extension number directly."""


@dataclass(frozen=True, kw_only=True)
class TimeCondition:
    """Business hours switch (``[[timecondition]]``)."""

    number: str = _f(check=_check_number, digits=True)
    """Number (a destination)."""
    name: str = _f("")
    """Display name."""
    hours: tuple[str, ...] = _f(("mon-fri 09:00-18:00",), item_check=_check_hours, nonempty=True)
    """Open hours, e.g. ``["mon-fri 09:00-18:00", "sat 10:00-14:00"]`` in the system time zone."""
    holidays: tuple[str, ...] = _f((), item_check=_check_holiday, holiday=True)
    """Closed days: ``2026-12-24`` (that day) or ``12-25`` (every year)."""
    open: str = _f(destination=True)
    """Destination during open hours."""
    closed: str = _f(destination=True)
    """Destination outside open hours and on holidays."""
    override: str = _f("auto", choices=("auto", "open", "closed"))
    """auto follows the hours; open/closed forces a state (also toggled by the feature code)."""

    def is_open(self, at: _dt.datetime) -> bool:
        """Whether the condition is open at ``at`` (an aware datetime in the office's zone)."""
        if self.override != "auto":
            return self.override == "open"
        day = at.date()
        for h in self.holidays:
            if h == day.isoformat() or (len(h) == 5 and h == day.strftime("%m-%d")):
                return False
        minute = at.hour * 60 + at.minute
        wd = at.weekday()
        return any(d == wd and s <= minute < e for spec in self.hours for d, s, e in parse_hours(spec))


@dataclass(frozen=True, kw_only=True)
class InboundRoute:
    """Where calls from the carrier go (``[[route.inbound]]``); the first match wins."""

    trunk: str = _f("*")
    """Trunk name the call arrived on, or "*" for any."""
    did: str = _f("*", check=_check_pattern)
    """Called number (DID) pattern, or "*"."""
    caller: str = _f("*", check=_check_pattern)
    """Caller number pattern, or "*"."""
    destination: str = _f(destination=True)
    """Where matching calls go."""
    record: str | None = _f(None, choices=RECORD_POLICIES)
    """Recording policy of these calls; omitted: the system's."""
    name: str = _f("")
    """Label shown in reports."""


@dataclass(frozen=True, kw_only=True)
class OutboundRoute:
    """How dialled external numbers leave the box (``[[route.outbound]]``); first match wins."""

    pattern: str = _f(check=_check_pattern)
    """Dial pattern, e.g. ``"0X."`` (X digit, Z 1-9, N 2-9, [1-5], . one or more, ! zero or more)."""
    strip: int = _f(0, ge=0, le=20)
    """Digits removed from the front before sending."""
    prepend: str = _f("", check=lambda v: None if re.fullmatch(r"\+?[0-9*#]{0,20}", v) else "prepend may hold only digits, * and # (and a leading +)")
    """Digits added to the front after ``strip``."""
    trunks: tuple[str, ...] = _f(nonempty=True)
    """Trunk names in failover order."""
    permission: str = _f("local", choices=PERMISSIONS)
    """Class an extension needs to use this route."""
    record: str | None = _f(None, choices=RECORD_POLICIES)
    """Recording policy of these calls; omitted: the system's."""
    name: str = _f("")
    """Label shown in reports."""


@dataclass(frozen=True, kw_only=True)
class Routes:
    """``[route]``: inbound and outbound routes and the caller blacklist."""

    inbound: tuple[InboundRoute, ...] = _f(())
    """Inbound routes in order."""
    outbound: tuple[OutboundRoute, ...] = _f(())
    """Outbound routes in order."""
    blacklist: tuple[str, ...] = _f((), item_check=_check_pattern)
    """Caller patterns rejected on every inbound call."""
    default: str = _f("hangup", destination=True)
    """Where inbound calls that match no route go (logged, never dropped silently)."""


@dataclass(frozen=True, kw_only=True)
class Notification:
    """Who is told about events (``[[notification]]``)."""

    kind: str = _f(choices=NOTIFY_KINDS)
    """sms (through a GSM trunk), email, or webhook (signed POST)."""
    target: str = _f()
    """Phone number, e-mail address or URL."""
    events: tuple[str, ...] = _f(("missed_call",), item_choices=NOTIFY_EVENTS, nonempty=True)
    """Events sent: missed_call, voicemail, trunk_down, disk_full, ban."""
    trunk: str = _f("")
    """GSM trunk that sends the SMS (sms); empty: the first GSM trunk with sms = true."""
    secret: str = _f("", secret=True)
    """HMAC-SHA256 key that signs webhook bodies (webhook)."""
    delay_s: int = _f(0, ge=0, le=86400)
    """Wait this long and skip the notice if the caller was reached meanwhile (missed_call), in seconds."""


@dataclass(frozen=True)
class Destination:
    """A resolved destination: what a call is sent to."""

    kind: str
    """extension, queue, ivr, timecondition, messagebox, external, mobiles or hangup."""
    target: str = ""
    """The number (or external number); empty for hangup and mobiles."""

    def __str__(self) -> str:
        if self.kind in ("hangup", "mobiles"):
            return self.kind
        if self.kind in ("messagebox", "external"):
            return f"{self.kind}:{self.target}"
        return self.target


@dataclass(frozen=True, kw_only=True)
class Provisioning:
    """The whole configuration of the box."""

    system: System = _f(System())
    """``[system]``."""
    extensions: tuple[Extension, ...] = _f((), key="extension")
    """``[[extension]]`` tables."""
    users: tuple[User, ...] = _f((), key="user")
    """``[[user]]`` tables."""
    trunks: tuple[Trunk, ...] = _f((), key="trunk")
    """``[[trunk]]`` tables."""
    queues: tuple[Queue, ...] = _f((), key="queue")
    """``[[queue]]`` tables."""
    ivrs: tuple[Ivr, ...] = _f((), key="ivr")
    """``[[ivr]]`` tables."""
    timeconditions: tuple[TimeCondition, ...] = _f((), key="timecondition")
    """``[[timecondition]]`` tables."""
    route: Routes = _f(Routes())
    """``[route]`` with ``[[route.inbound]]`` and ``[[route.outbound]]``."""
    notifications: tuple[Notification, ...] = _f((), key="notification")
    """``[[notification]]`` tables."""

    def extension(self, number: str) -> Extension | None:
        """The extension with this number, or None."""
        return next((e for e in self.extensions if e.number == number), None)

    def queue(self, number: str) -> Queue | None:
        """The queue with this number, or None."""
        return next((q for q in self.queues if q.number == number), None)

    def ivr(self, number: str) -> Ivr | None:
        """The menu with this number, or None."""
        return next((m for m in self.ivrs if m.number == number), None)

    def timecondition(self, number: str) -> TimeCondition | None:
        """The time condition with this number, or None."""
        return next((t for t in self.timeconditions if t.number == number), None)

    def trunk(self, name: str) -> Trunk | None:
        """The trunk with this name, or None."""
        return next((t for t in self.trunks if t.name == name), None)

    def user(self, name: str) -> User | None:
        """The web user with this name, or None."""
        return next((u for u in self.users if u.name == name), None)

    def resolve(self, destination: str) -> Destination:
        """Resolve a destination string; ``ValueError`` with the reason when it goes nowhere."""
        d = _resolve(destination, _Index.of(self), allow_mobiles=True)
        if isinstance(d, str):
            raise ValueError(d)
        return d

    def outbound_route(self, number: str) -> OutboundRoute | None:
        """The first outbound route whose pattern matches ``number``."""
        return next((r for r in self.route.outbound if match_pattern(r.pattern, number)), None)

    def extension_permissions(self, number: str) -> tuple[str, ...]:
        """Permission classes of an extension (empty for an unknown one)."""
        e = self.extension(number)
        return e.permission if e else ()


SECTIONS: dict[str, type] = {
    "system": System,
    "extension": Extension,
    "user": User,
    "trunk": Trunk,
    "queue": Queue,
    "ivr": Ivr,
    "timecondition": TimeCondition,
    "route.inbound": InboundRoute,
    "route.outbound": OutboundRoute,
    "notification": Notification,
}
"""Section name (as in the TOML file and the config store) -> record class. The config store
also has the singleton section ``route`` (:class:`Routes` without its route lists)."""


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a config dataclass (for forms and documentation)."""
    cached = _DOC_CACHE.get(cls)
    if cached is not None:
        return cached
    docs: dict[str, str] = {}
    try:
        tree = ast.parse(inspect.getsource(cls).lstrip())
    except (OSError, TypeError, SyntaxError):
        tree = None
    if tree is not None:
        body = tree.body[0].body  # type: ignore[attr-defined]
        for a, b in zip(body, body[1:]):
            if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
                    and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)
                    and isinstance(b.value.value, str)):
                docs[a.target.id] = inspect.cleandoc(b.value.value)
    _DOC_CACHE[cls] = docs
    return docs


_DOC_CACHE: dict[type, dict[str, str]] = {}


# --------------------------------------------------------------------------- conversion


class _Ctx:
    def __init__(self, base_dir: Path | None, check_files: bool, positions: TomlPositions | None = None) -> None:
        self.positions = positions
        self.issues: list[tuple[tuple, str]] = []
        self.base_dir = base_dir
        self.check_files = check_files
        self.built: list[tuple[Any, tuple]] = []
        self.language = "en"

    def err(self, path: tuple, message: str) -> None:
        self.issues.append((tuple(path), message))


_BAD = object()


def _key_of(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return f"the integer {v}"
    if isinstance(v, float):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the text {v!r}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, (_dt.date, _dt.time)):
        return f"the date/time {v}"
    return type(v).__name__


def _convert(tp: Any, v: Any, path: tuple, ctx: _Ctx, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], v, path, ctx, meta)
    if dataclasses.is_dataclass(tp):
        if meta.get("members") and isinstance(v, str):
            v = {"extension": v}
        if meta.get("members") and isinstance(v, int) and not isinstance(v, bool):
            v = {"extension": str(v)}
        return _build(tp, v, path, ctx)
    if tp is bool:
        if not isinstance(v, bool):
            ctx.err(path, f"must be true or false, not {_type_name(v)}")
            return _BAD
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            ctx.err(path, f"must be a whole number, not {_type_name(v)}")
            return _BAD
        return v
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            ctx.err(path, f"must be a number, not {_type_name(v)}")
            return _BAD
        return float(v)
    if tp is str:
        if meta.get("digits") and isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if meta.get("holiday") and isinstance(v, _dt.date) and not isinstance(v, _dt.datetime):
            return v.isoformat()
        if not isinstance(v, str):
            ctx.err(path, f"must be text in quotes, not {_type_name(v)}")
            return _BAD
        return v
    if origin is tuple:
        item_t = args[0]
        if isinstance(v, str) and meta.get("csv"):
            v = [p.strip() for p in v.split(",") if p.strip()]
        elif isinstance(v, str) and meta.get("highest_of"):
            order = meta["highest_of"]
            if v not in order:
                ctx.err(path, f"must be one of {', '.join(order)} (or a list of them), not {v!r}")
                return _BAD
            v = list(order[:order.index(v) + 1])
        if not isinstance(v, list):
            if isinstance(v, dict) and dataclasses.is_dataclass(item_t) and path and isinstance(path[-1], str):
                name = ".".join(p for p in path if isinstance(p, str))
                ctx.err(path, f"write [[{name}]] (one block per {path[-1]}), not [{name}]")
            else:
                ctx.err(path, f"must be a list, not {_type_name(v)}")
            return _BAD
        out = []
        ok = True
        item_meta = {k: val for k, val in meta.items() if k in ("digits", "members", "holiday")}
        for i, item in enumerate(v):
            r = _convert(item_t, item, path + (i,), ctx, item_meta)
            if r is _BAD:
                ok = False
                continue
            msg = None
            if "item_choices" in meta and r not in meta["item_choices"]:
                msg = f"{r!r} is not one of {', '.join(meta['item_choices'])}"
            elif "item_check" in meta:
                msg = meta["item_check"](r)
            if msg:
                ctx.err(path + (i,), msg)
                ok = False
                continue
            out.append(r)
        if ok and meta.get("nonempty") and not out:
            ctx.err(path, "must not be empty")
            return _BAD
        return tuple(out) if ok else _BAD
    if origin in (collections.abc.Mapping, dict):
        if not isinstance(v, dict):
            ctx.err(path, f"must be a table like {{ \"1\" = \"600\" }}, not {_type_name(v)}")
            return _BAD
        out_m: dict[str, str] = {}
        ok = True
        for k, item in v.items():
            if not isinstance(item, str):
                ctx.err(path + (k,), f"must be text in quotes, not {_type_name(item)}")
                ok = False
                continue
            out_m[k] = item
        return out_m if ok else _BAD
    raise TypeError(f"unsupported field type {tp!r}")


def _build(cls: type, raw: Any, path: tuple, ctx: _Ctx) -> Any:
    if not isinstance(raw, dict):
        ctx.err(path, f"must be a table, not {_type_name(raw)}")
        return _BAD
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    by_key = {_key_of(f): f for f in fields}
    for key in raw:
        if key not in by_key:
            hint = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.6)
            where = f" in [{'.'.join(str(p) for p in path if isinstance(p, str))}]" if path else ""
            msg = f"unknown key {key!r}{where}"
            ctx.err(path + (key,), msg + (f"; did you mean {hint[0]!r}?" if hint else
                                          f"; known keys: {', '.join(sorted(by_key))}"))
    kwargs: dict[str, Any] = {}
    for f in fields:
        key = _key_of(f)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if key not in raw:
            if required:
                ctx.err(path, f"missing required key {key!r}")
                kwargs[f.name] = None
            continue
        meta = f.metadata
        v = _convert(hints[f.name], raw[key], path + (key,), ctx, meta)
        if v is _BAD:
            kwargs[f.name] = None if required else f.default
            continue
        msg = None
        if "choices" in meta and v not in meta["choices"]:
            shown = [c for c in meta["choices"] if c]
            hint = difflib.get_close_matches(str(v), shown, n=1)
            msg = f"{v!r} is not one of {', '.join(shown)}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and (
                ("ge" in meta and v < meta["ge"]) or ("le" in meta and v > meta["le"])):
            msg = f"{v} is out of range ({meta.get('ge', '-inf')} to {meta.get('le', 'inf')})"
        elif "check" in meta and isinstance(v, str):
            msg = meta["check"](v)
        elif meta.get("nonempty") and isinstance(v, tuple) and not v:
            msg = "must not be empty"
        if msg:
            ctx.err(path + (key,), msg)
            kwargs[f.name] = None if required else f.default
            continue
        kwargs[f.name] = v
    obj = cls(**kwargs)
    ctx.built.append((obj, path))
    return obj


# --------------------------------------------------------------------------- cross checks


class _Index:
    def __init__(self) -> None:
        self.numbers: dict[str, str] = {}
        self.extensions: set[str] = set()
        self.trunks: set[str] = set()
        self.outbound: list[OutboundRoute] = []

    @classmethod
    def of(cls, prov: Provisioning) -> "_Index":
        ix = cls()
        for kind, items in (("extension", prov.extensions), ("queue", prov.queues),
                            ("ivr", prov.ivrs), ("timecondition", prov.timeconditions)):
            for it in items:
                if it.number:
                    ix.numbers.setdefault(it.number, kind)
        ix.extensions = {e.number for e in prov.extensions if e.number}
        ix.trunks = {t.name for t in prov.trunks if t.name}
        ix.outbound = [r for r in prov.route.outbound if r.pattern and r.trunks]
        return ix


def _resolve(dest: str, ix: _Index, *, allow_mobiles: bool) -> Destination | str:
    if dest is None:
        return "no destination"
    d = dest.strip()
    if d == "hangup":
        return Destination("hangup")
    if d == "mobiles":
        if allow_mobiles:
            return Destination("mobiles")
        return "'mobiles' (the members' mobile numbers) is only a queue overflow destination"
    kind, sep, target = d.partition(":")
    if sep:
        if kind == "messagebox":
            if target in ix.extensions:
                return Destination("messagebox", target)
            return f"messagebox:{target} names no extension"
        if kind == "external":
            if not _EXTERNAL_RE.match(target):
                return f"{target!r} is not a phone number"
            if not any(match_pattern(r.pattern, target) for r in ix.outbound):
                return f"no outbound route matches the external number {target}"
            return Destination("external", target)
        if kind in ("extension", "queue", "ivr", "timecondition"):
            if ix.numbers.get(target) == kind:
                return Destination(kind, target)
            return f"{kind} {target} does not exist"
        return (f"destination {d!r} has an unknown kind {kind!r} "
                "(use a number, messagebox:N, external:NUMBER, mobiles or hangup)")
    if d.startswith("+"):
        return _resolve("external:" + d, ix, allow_mobiles=allow_mobiles)
    if d in ix.numbers:
        return Destination(ix.numbers[d], d)
    if re.fullmatch(r"[0-9]+", d):
        return (f"destination {d} does not exist (no extension, queue, menu or time condition "
                "has that number; use external:NUMBER for an outside number)")
    return (f"destination {d!r} is not valid (use a number, messagebox:N, external:NUMBER, "
            "mobiles or hangup)")


def _cross_check(prov: Provisioning, ctx: _Ctx) -> None:
    paths = {id(o): p for o, p in ctx.built}
    ix = _Index.of(prov)
    seen: dict[str, tuple] = {}
    for kind, items in (("extension", prov.extensions), ("queue", prov.queues),
                        ("ivr", prov.ivrs), ("timecondition", prov.timeconditions)):
        for it in items:
            if not it.number:
                continue
            p = paths.get(id(it), (kind,))
            if it.number in seen:
                other_kind, other_path = seen[it.number]
                ctx.err(p + ("number",), f"number {it.number} is already used by the {other_kind} "
                                         f"at {_describe(other_path + ('number',), ctx)}")
            else:
                seen[it.number] = (kind, p)
    for kind, items, attr in (("trunk", prov.trunks, "name"), ("user", prov.users, "name")):
        names: dict[str, tuple] = {}
        for it in items:
            v = getattr(it, attr)
            if not v:
                continue
            p = paths.get(id(it), (kind,))
            if v in names:
                ctx.err(p + (attr,), f"{kind} name {v!r} is already used at {_describe(names[v] + (attr,), ctx)}")
            else:
                names[v] = p

    def dest(obj: Any, attr: str, *, mobiles: bool = False) -> None:
        val = getattr(obj, attr)
        if val is None:
            return
        r = _resolve(val, ix, allow_mobiles=mobiles)
        if isinstance(r, str):
            ctx.err(paths.get(id(obj), ()) + (attr,), r)

    sysobj = prov.system
    spath = paths.get(id(sysobj), ("system",))
    if sysobj.sip_bind and sysobj.web_bind:
        try:
            if parse_hostport(sysobj.sip_bind) == parse_hostport(sysobj.web_bind):
                ctx.err(spath + ("web_bind",), "web_bind is the same address as sip_bind (SIP uses TCP too)")
        except ValueError:
            pass
    if sysobj.session_expires_s is not None and sysobj.min_se_s is not None and sysobj.min_se_s > sysobj.session_expires_s:
        ctx.err(spath + ("min_se_s",), "min_se_s is larger than session_expires_s")
    ctx.language = sysobj.language or "en"
    codes: dict[str, str] = {}
    feats = sysobj.features
    for f in dataclasses.fields(FeatureCodes):
        v = getattr(feats, f.name)
        if v in codes:
            ctx.err(paths.get(id(feats), ("system", "features")) + (f.name,),
                    f"feature code {v} is already used by {codes[v]}")
        elif v:
            codes[v] = f.name

    for e in prov.extensions:
        p = paths.get(id(e), ("extension",))
        if e.password is not None:
            msg = password_problem(e.password, number=e.number)
            if msg:
                ctx.err(p + ("password",), f"extension {e.number}: {msg}")
        dest(e, "no_answer")
        if e.no_answer and e.number and e.no_answer.strip() == e.number:
            ctx.err(p + ("no_answer",), "no_answer sends the call back to the same extension")
    for u in prov.users:
        p = paths.get(id(u), ("user",))
        if u.password is not None:
            msg = password_problem(u.password, name=u.name)
            if msg:
                ctx.err(p + ("password",), f"user {u.name}: {msg}")
        if u.extension and u.extension not in ix.extensions:
            ctx.err(p + ("extension",), f"user {u.name}: extension {u.extension} does not exist")
    for t in prov.trunks:
        p = paths.get(id(t), ("trunk",))
        if t.type in ("gsm", "fxo"):
            models = GSM_MODELS if t.type == "gsm" else FXO_MODELS
            if not t.model:
                ctx.err(p, f"trunk {t.name}: missing required key 'model' ({', '.join(models)})")
            elif t.model not in models:
                ctx.err(p + ("model",), f"trunk {t.name}: model {t.model!r} is not a {t.type} model "
                                        f"({', '.join(models)})")
            if not t.device:
                ctx.err(p, f"trunk {t.name}: missing required key 'device' (the AT port)")
            if t.max_calls and t.max_calls > 1:
                ctx.err(p + ("max_calls",), f"trunk {t.name}: a {t.type} line carries one call at a time")
            for k in ("host", "username", "password", "dids", "allow_ips", "backup_host"):
                if getattr(t, k) not in ("", (), None):
                    ctx.err(p + (k,), f"trunk {t.name}: {k!r} applies to sip trunks only")
        elif t.type == "sip":
            if not t.host and not t.allow_ips:
                ctx.err(p, f"trunk {t.name}: missing required key 'host' (the provider's server)")
            if t.register and not (t.username and t.password):
                ctx.err(p + ("register",), f"trunk {t.name}: registration needs username and password")
            for k in ("model", "device", "audio_device", "pin", "imei"):
                if getattr(t, k):
                    ctx.err(p + (k,), f"trunk {t.name}: {k!r} applies to gsm/fxo trunks only")
    for q in prov.queues:
        p = paths.get(id(q), ("queue",))
        seen_m: set[str] = set()
        for m in q.members or ():
            mp = paths.get(id(m), p + ("members",))
            if m.extension is None:
                continue
            if m.extension not in ix.extensions:
                ctx.err(mp, f"queue {q.number}: member {m.extension} is no extension")
            elif m.extension in seen_m:
                ctx.err(mp, f"queue {q.number}: member {m.extension} is listed twice")
            seen_m.add(m.extension)
        dest(q, "overflow", mobiles=True)
        if q.overflow and q.number and q.overflow.strip() == q.number:
            ctx.err(p + ("overflow",), f"queue {q.number} overflows into itself")
        if q.overflow == "mobiles" and q.members:
            with_mobile = [m for m in q.members if (e := prov.extension(m.extension or "")) and e.mobile]
            if not with_mobile:
                ctx.err(p + ("overflow",), f"queue {q.number}: overflow to mobiles, but no member "
                                           "extension has a mobile number")
        if q.callback and not any(t.type for t in prov.trunks):
            ctx.err(p + ("callback",), f"queue {q.number}: callback needs a trunk to call back through")
        lang = q.language or ctx.language
        for attr in ("announce", "periodic_message"):
            _check_prompt(getattr(q, attr), lang, p + (attr,), ctx)
        if q.music and q.music != "default":
            _check_prompt(q.music, lang, p + ("music",), ctx, file_only=True)
    for m in prov.ivrs:
        p = paths.get(id(m), ("ivr",))
        lang = m.language or ctx.language
        for attr in ("prompt", "invalid_prompt", "timeout_prompt"):
            _check_prompt(getattr(m, attr), lang, p + (attr,), ctx)
        for key, target in (m.options or {}).items():
            if not _DTMF_RE.match(key):
                ctx.err(p + ("options", key), f"menu {m.number}: option key {key!r} must be one of 0-9, * or #")
                continue
            r = _resolve(target, ix, allow_mobiles=False)
            if isinstance(r, str):
                ctx.err(p + ("options", key), f"menu {m.number}, key {key}: {r}")
        dest(m, "invalid")
    for tc in prov.timeconditions:
        dest(tc, "open")
        dest(tc, "closed")
    routes = prov.route
    for r in routes.inbound:
        p = paths.get(id(r), ("route", "inbound"))
        if r.trunk is not None and r.trunk != "*" and r.trunk not in ix.trunks:
            ctx.err(p + ("trunk",), f"inbound route: trunk {r.trunk!r} is not defined")
        dest(r, "destination")
    dest(routes, "default")
    for r in routes.outbound:
        p = paths.get(id(r), ("route", "outbound"))
        for i, t in enumerate(r.trunks or ()):
            if t not in ix.trunks:
                ctx.err(p + ("trunks", i), f"outbound route {r.pattern or ''}: trunk {t!r} is not defined")
    for n in prov.notifications:
        p = paths.get(id(n), ("notification",))
        if n.kind == "sms":
            if n.target and _check_external(n.target):
                ctx.err(p + ("target",), _check_external(n.target) or "")
            if n.trunk and n.trunk not in ix.trunks:
                ctx.err(p + ("trunk",), f"notification: trunk {n.trunk!r} is not defined")
            elif not any(t.type == "gsm" and t.sms for t in prov.trunks):
                ctx.err(p + ("kind",), "SMS notifications need a gsm trunk with sms = true")
        elif n.kind == "email":
            if n.target and _check_email(n.target):
                ctx.err(p + ("target",), _check_email(n.target) or "")
            if not prov.system.smtp.host or not prov.system.smtp.sender:
                ctx.err(p + ("kind",), "e-mail notifications need [system.smtp] host and sender")
        elif n.kind == "webhook":
            if n.target and _check_url(n.target):
                ctx.err(p + ("target",), _check_url(n.target) or "")


def _check_prompt(value: str | None, language: str, path: tuple, ctx: _Ctx, *, file_only: bool = False) -> None:
    if not value:
        return
    if file_only or _is_prompt_file(value):
        if not ctx.check_files:
            return
        p = Path(value)
        if not p.is_absolute() and ctx.base_dir is not None:
            p = ctx.base_dir / p
        msg = wav_problem(p)
        if msg:
            ctx.err(path, msg)
        return
    if not ctx.check_files:
        return
    langs = espeak_languages()
    if not langs:
        ctx.err(path, "text prompts need espeak-ng, which is not installed (or give a .wav path)")
    elif language.lower() not in langs:
        ctx.err(path, f"espeak-ng has no voice for language {language!r}; give a .wav path instead")


def _describe(path: tuple, ctx: _Ctx) -> str:
    if ctx.positions is not None and ctx.positions.line_of(path):
        return f"line {ctx.positions.line_of(path)}"
    out = []
    for p in path:
        if isinstance(p, int):
            out.append(f"#{p + 1}")
            break
        out.append(str(p))
    return " ".join(out) if out else "the top level"


# --------------------------------------------------------------------------- public entry points


def validate_raw(raw: Mapping[str, Any], *, base_dir: str | os.PathLike | None = None,
                 check_files: bool = True, positions: TomlPositions | None = None,
                 ) -> tuple[Provisioning, list[tuple[tuple, str]]]:
    """Build the model from a TOML-shaped dict and collect every problem.

    Returns ``(provisioning, issues)`` where each issue is ``(key_path, message)``; the model
    is only trustworthy when ``issues`` is empty (broken fields hold their defaults or None).
    ``base_dir`` resolves relative prompt paths; ``check_files=False`` skips prompt files and
    espeak-ng (for the web forms' quick checks); ``positions`` lets messages that point at
    another part of the file say its line.
    """
    ctx = _Ctx(Path(base_dir) if base_dir is not None else None, check_files, positions)
    prov = _build(Provisioning, dict(raw), (), ctx)
    if prov is _BAD:
        prov = Provisioning()
    _cross_check(prov, ctx)
    return prov, ctx.issues


def build_provisioning(raw: Mapping[str, Any], *, base_dir: str | os.PathLike | None = None,
                       check_files: bool = True, source: str = "") -> Provisioning:
    """Like :func:`validate_raw` but raises :class:`ProvisioningError` on any problem."""
    prov, issues = validate_raw(raw, base_dir=base_dir, check_files=check_files)
    if issues:
        raise ProvisioningError([ConfigIssue(source, 0, m, k) for k, m in issues])
    return prov


def parse_provisioning(text: str, *, source: str = "<string>", base_dir: str | os.PathLike | None = None,
                       check_files: bool = True) -> Provisioning:
    """Parse provisioning TOML text; raises :class:`ProvisioningError` with line-precise issues."""
    issues: list[ConfigIssue] = []
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = getattr(e, "lineno", 0) or 0
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        if not line and m:
            line = int(m.group(1))
        raise ProvisioningError([ConfigIssue(source, line, f"TOML syntax error: {e}")]) from None
    pos = toml_positions(text)
    prov, found = validate_raw(raw, base_dir=base_dir, check_files=check_files, positions=pos)
    if found:
        for key, msg in found:
            issues.append(ConfigIssue(source, pos.line_of(key), msg, key))
        issues.sort(key=lambda i: (i.line, i.message))
        raise ProvisioningError(issues)
    return prov


def load_provisioning(path: str | os.PathLike, *, check_files: bool = True) -> Provisioning:
    """Read a provisioning file into a :class:`Provisioning`.

    Relative prompt paths are relative to the file's folder. Raises
    :class:`ProvisioningError` listing every problem as ``file:line: message``.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ProvisioningError([ConfigIssue(str(path), 0, "file not found")]) from None
    except OSError as e:
        raise ProvisioningError([ConfigIssue(str(path), 0, f"cannot read the file: {e.strerror}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ProvisioningError([ConfigIssue(str(path), line, "the file is not UTF-8 text")]) from None
    return parse_provisioning(text, source=str(path), base_dir=p.resolve().parent, check_files=check_files)


def check_file(path: str) -> list[ConfigIssue]:
    """Every problem of a provisioning file, sorted by line (empty when it is fine)."""
    try:
        load_provisioning(path)
    except ProvisioningError as e:
        return e.issues
    return []


def to_raw(obj: Any) -> Any:
    """The TOML-shaped dict of a model object (defaults included, None values left out)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if v is None:
                continue
            out[_key_of(f)] = to_raw(v)
        return out
    if isinstance(obj, (tuple, list)):
        return [to_raw(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_raw(v) for k, v in obj.items()}
    return obj


def section_records(prov: Provisioning, section: str) -> list[Any]:
    """The record objects of a list section (``"extension"``, ``"route.inbound"``...)."""
    if section == "route.inbound":
        return list(prov.route.inbound)
    if section == "route.outbound":
        return list(prov.route.outbound)
    for f in dataclasses.fields(Provisioning):
        if _key_of(f) == section:
            v = getattr(prov, f.name)
            return list(v) if isinstance(v, tuple) else [v]
    raise KeyError(section)
