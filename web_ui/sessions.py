"""Web sessions and login throttling: pure data structures with an injected clock.

Sessions live in memory (a restart of the box logs everyone out). The cookie carries a
random 256-bit token; the store keys sessions by the token's SHA-256, so the table never
holds a usable cookie value. Each session has its own CSRF synchronizer token.
"""
from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

Clock = Callable[[], float]


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class Session:
    """One browser's session (anonymous until someone logs in)."""

    csrf: str
    created: float
    seen: float
    user: str = ""
    """Login name; empty while anonymous."""
    role: str = ""
    lang: str = ""
    """Language chosen with the switcher (empty: the user's or the box's default)."""
    flash: list[tuple[str, str]] = field(default_factory=list)
    """(kind, message key) shown once on the next page."""
    data: dict[str, str] = field(default_factory=dict)


class SessionStore:
    """Sessions by token, with idle and absolute lifetimes (seconds).

    Anonymous sessions (needed for the CSRF token of the login and setup forms) are capped at
    `max_anonymous`; the oldest are dropped first, so a flood of visitors cannot fill memory.
    """

    def __init__(self, clock: Clock, *, idle_s: float = 12 * 3600, absolute_s: float = 7 * 86400,
                 max_anonymous: int = 5000) -> None:
        self.clock = clock
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self.max_anonymous = max_anonymous
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user: str = "", role: str = "", lang: str = "") -> tuple[str, Session]:
        """A new session; returns (cookie token, session)."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        s = Session(csrf=secrets.token_urlsafe(32), created=now, seen=now, user=user, role=role, lang=lang)
        self._sessions[_key(token)] = s
        if not user:
            self._trim_anonymous()
        return token, s

    def get(self, token: str | None) -> Session | None:
        """The live session for a cookie token (refreshes its idle timer), or None."""
        if not token or len(token) > 200:
            return None
        k = _key(token)
        s = self._sessions.get(k)
        if s is None:
            return None
        now = self.clock()
        if now - s.seen > self.idle_s or now - s.created > self.absolute_s:
            del self._sessions[k]
            return None
        s.seen = now
        self._sessions.move_to_end(k)
        return s

    def login(self, token: str | None, user: str, role: str) -> tuple[str, Session]:
        """Start an authenticated session, replacing the anonymous one (a new token: no
        session fixation). The chosen language carries over."""
        old = self.get(token) if token else None
        if token:
            self.drop(token)
        new_token, s = self.create(user, role, old.lang if old else "")
        return new_token, s

    def drop(self, token: str) -> None:
        self._sessions.pop(_key(token), None)

    def drop_user(self, user: str, keep: Session | None = None) -> int:
        """End every session of `user` (password changed, user deleted), except `keep`."""
        doomed = [k for k, s in self._sessions.items() if s.user == user and s is not keep]
        for k in doomed:
            del self._sessions[k]
        return len(doomed)

    def update_role(self, user: str, role: str) -> None:
        for s in self._sessions.values():
            if s.user == user:
                s.role = role

    def _trim_anonymous(self) -> None:
        anon = [k for k, s in self._sessions.items() if not s.user]
        for k in anon[: max(0, len(anon) - self.max_anonymous)]:
            del self._sessions[k]


@dataclass
class _Failures:
    times: deque = field(default_factory=deque)
    locked_until: float = 0.0


class LoginThrottle:
    """Login rate limiting and lock-out.

    A user name with `max_user_failures` failed attempts within `window_s` is locked for
    `lockout_s`; an address with `max_ip_failures` failures within the window is locked the
    same way (guessing many names from one place). Each further failure while counting
    doubles nothing: the lock simply restarts. `check()` says how many seconds remain.
    """

    def __init__(self, clock: Clock, *, max_user_failures: int = 5, max_ip_failures: int = 20,
                 window_s: float = 900.0, lockout_s: float = 900.0, max_entries: int = 10000) -> None:
        self.clock = clock
        self.max_user = max_user_failures
        self.max_ip = max_ip_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_entries = max_entries
        self._users: OrderedDict[str, _Failures] = OrderedDict()
        self._ips: OrderedDict[str, _Failures] = OrderedDict()

    def check(self, ip: str, user: str = "") -> float:
        """Seconds until this address / user may try again (0: go ahead)."""
        now = self.clock()
        wait = 0.0
        for table, key in ((self._ips, ip), (self._users, user.lower())):
            f = table.get(key) if key else None
            if f and f.locked_until > now:
                wait = max(wait, f.locked_until - now)
        return wait

    def failure(self, ip: str, user: str = "") -> None:
        now = self.clock()
        for table, key, limit in ((self._ips, ip, self.max_ip), (self._users, user.lower(), self.max_user)):
            if not key:
                continue
            f = table.get(key)
            if f is None:
                f = table[key] = _Failures()
                while len(table) > self.max_entries:
                    table.popitem(last=False)
            table.move_to_end(key)
            while f.times and now - f.times[0] > self.window_s:
                f.times.popleft()
            f.times.append(now)
            if len(f.times) >= limit:
                f.locked_until = now + self.lockout_s
                f.times.clear()

    def success(self, ip: str, user: str = "") -> None:
        """A good login clears the user's counter (not the address's: one valid account must
        not reset the count of guesses against others)."""
        self._users.pop(user.lower(), None)
