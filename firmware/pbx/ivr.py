"""Voice menus (IVR): a sans-I/O state machine per caller.

Fed with digits (from RFC 4733, SIP INFO or the in-band detector: the PBX does not care
which), "prompt finished" and time; returns actions: play a prompt, stop it, go to a
destination, hang up. Digits barge in: pressing a key while the greeting plays stops it.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Menu:
    number: str
    prompt: str
    """Text spoken by espeak-ng, or a .wav path."""
    language: str = "en"
    options: tuple[tuple[str, str], ...] = ()
    """(digits, destination): extension, queue, another menu, external number, hangup."""
    timeout: float = 5.0
    """Seconds to wait for a digit after the prompt ends."""
    invalid: str = "hangup"
    """Where the caller goes after `retries` invalid entries or timeouts."""
    retries: int = 3
    invalid_prompt: str = ""
    timeout_prompt: str = ""
    direct_dial: bool = True
    """Callers may dial an extension number directly from the menu."""
    interdigit: float = 2.0
    """Seconds to wait for the next digit of a multi-digit entry."""


@dataclass(frozen=True)
class Play:
    prompt: str
    language: str
    kind: str
    """menu | invalid | timeout"""


@dataclass(frozen=True)
class StopPlay:
    pass


@dataclass(frozen=True)
class Goto:
    destination: str
    digits: str
    """What the caller pressed ("" after timeouts/invalid entries)."""
    reason: str
    """option | direct | invalid | timeout"""


@dataclass
class MenuSession:
    menu: Menu
    extensions: frozenset[str] = frozenset()
    """Numbers callers may dial directly (extensions, queues, menus)."""
    digits: str = ""
    playing: bool = False
    deadline: float | None = None
    failures: int = 0
    done: bool = False
    choices: list[tuple[float, str, str]] = field(default_factory=list)
    """(time, digits, outcome) for the call record."""

    def start(self, now: float) -> list:
        self.playing = True
        self.deadline = None
        return [Play(self.menu.prompt, self.menu.language, "menu")]

    # -- inputs -----------------------------------------------------------------------
    def prompt_done(self, now: float) -> list:
        if self.done:
            return []
        self.playing = False
        if self.digits:
            self.deadline = now + self.menu.interdigit
        else:
            self.deadline = now + self.menu.timeout
        return []

    def digit(self, d: str, now: float) -> list:
        if self.done or d not in "0123456789*#ABCD":
            return []
        out: list = []
        if self.playing:
            out.append(StopPlay())
            self.playing = False
        if d == "#" and self.digits:
            return out + self._resolve(now, terminated=True)
        self.digits += d
        if self._complete(self.digits):
            return out + self._resolve(now)
        self.deadline = now + self.menu.interdigit
        return out

    def get_timer(self) -> float | None:
        return None if self.done or self.playing else self.deadline

    def handle_timer(self, now: float) -> list:
        if self.done or self.deadline is None or now < self.deadline:
            return []
        if self.digits:
            return self._resolve(now, terminated=True)
        self.choices.append((now, "", "timeout"))
        return self._fail(now, "timeout")

    # -- internals ----------------------------------------------------------------------
    def _options(self) -> dict[str, str]:
        return dict(self.menu.options)

    def _complete(self, digits: str) -> bool:
        """True when no longer entry could match, so we can act without waiting."""
        opts = self._options()
        candidates = set(opts)
        if self.menu.direct_dial:
            candidates |= self.extensions
        if digits in candidates and not any(c != digits and c.startswith(digits) for c in candidates):
            return True
        if not any(c.startswith(digits) for c in candidates):
            return True  # invalid already: no need to wait
        return False

    def _resolve(self, now: float, terminated: bool = False) -> list:
        digits, self.digits = self.digits, ""
        opts = self._options()
        if digits in opts:
            self.done = True
            self.choices.append((now, digits, opts[digits]))
            return [Goto(opts[digits], digits, "option")]
        if self.menu.direct_dial and digits in self.extensions:
            self.done = True
            self.choices.append((now, digits, digits))
            return [Goto(digits, digits, "direct")]
        self.choices.append((now, digits, "invalid"))
        return self._fail(now, "invalid")

    def _fail(self, now: float, why: str) -> list:
        self.failures += 1
        if self.failures >= self.menu.retries:
            self.done = True
            return [Goto(self.menu.invalid, "", why)]
        out: list = []
        extra = self.menu.invalid_prompt if why == "invalid" else self.menu.timeout_prompt
        if extra:
            out.append(Play(extra, self.menu.language, why))
        out.append(Play(self.menu.prompt, self.menu.language, "menu"))
        self.playing = True
        self.deadline = None
        return out
