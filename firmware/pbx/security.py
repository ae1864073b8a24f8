"""Security policy of the SIP side: brute-force bans, scanner filtering, per-source rate limits.

Sans-I/O: every method takes `now` (seconds, monotonic or wall: the caller is consistent).
Bans are persisted through a small store interface so they survive a restart.
"""
from __future__ import annotations

import ipaddress
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Protocol

DEFAULT_SCANNER_AGENTS = (
    "friendly-scanner", "sipvicious", "sipcli", "vaxsipuseragent", "sip-scan", "sipsak",
    "iwar", "sundayddr", "vaxasip", "pplsip", "voipbuster", "sipptk", "smap", "fpbx",
    "cracker", "sipscan", "siparmyknife", "nmap nse",
)


class BanStore(Protocol):
    """Where bans live between restarts (the call store's `bans` table)."""

    def load_bans(self) -> Iterable[tuple[str, str, float, float]]: ...  # ip, reason, banned_at, until
    def save_ban(self, ip: str, reason: str, banned_at: float, until: float) -> None: ...
    def delete_ban(self, ip: str) -> None: ...


@dataclass(frozen=True)
class Ban:
    ip: str
    reason: str
    banned_at: float
    """Wall-clock time (unix seconds) the ban started."""
    until: float
    """Wall-clock time (unix seconds) the ban ends."""


@dataclass
class SecurityPolicy:
    """Decides whether a source may talk to the box at all.

    - An IP that fails authentication more than `max_failures` times within `window_s`
      seconds is banned for `ban_s` seconds (persisted).
    - Requests whose User-Agent looks like a known SIP scanner are dropped silently.
    - Each source may send at most `rate_per_s` messages per second on average (bursts up
      to `burst`); excess is dropped before parsing, so a flood from one IP cannot starve
      registered phones. Addresses the box has a relationship with (registered phones,
      trunks, peers of calls in progress: `trust()`) get `trusted_rate_per_s` instead, since
      one office NAT or one provider carries many calls.
    - `exempt` networks are never banned or rate limited (empty by default: loopback is
      treated like any other address).
    """

    max_failures: int = 5
    window_s: float = 60.0
    ban_s: float = 3600.0
    rate_per_s: float = 50.0
    burst: float = 200.0
    exempt: tuple[str, ...] = ()
    scanner_agents: tuple[str, ...] = DEFAULT_SCANNER_AGENTS
    trusted_rate_per_s: float = 2000.0
    trusted_burst: float = 4000.0
    store: BanStore | None = None
    wall: callable = time.time  # type: ignore[valid-type]
    _failures: dict[str, deque] = field(default_factory=dict)
    _bans: dict[str, Ban] = field(default_factory=dict)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _nets: list = field(default_factory=list)
    _trusted: dict[str, int] = field(default_factory=dict)
    _exempt_memo: dict[str, bool] = field(default_factory=dict)
    _scanner_memo: dict[str, bool] = field(default_factory=dict)
    dropped_rate: int = 0
    dropped_scanner: int = 0
    dropped_banned: int = 0

    def __post_init__(self) -> None:
        self._nets = [ipaddress.ip_network(n, strict=False) for n in self.exempt]
        if self.store is not None:
            now = self.wall()
            for ip, reason, banned_at, until in self.store.load_bans():
                if until > now:
                    self._bans[ip] = Ban(ip, reason, banned_at, until)
                else:
                    self.store.delete_ban(ip)

    def is_exempt(self, ip: str) -> bool:
        memo = self._exempt_memo
        hit = memo.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                hit = False
            else:
                hit = any(addr in n for n in self._nets)
            if len(memo) >= 4096:  # a spoofed flood of sources: bounded memory
                memo.clear()
            memo[ip] = hit
        return hit

    # -- before parsing ------------------------------------------------------------------
    def accept_source(self, ip: str, now: float) -> bool:
        """Called for every datagram / TCP message before it is parsed."""
        if self.is_exempt(ip):
            return True
        if self.is_banned(ip):
            self.dropped_banned += 1
            return False
        trusted = ip in self._trusted
        burst = self.trusted_burst if trusted else self.burst
        rate = self.trusted_rate_per_s if trusted else self.rate_per_s
        tokens, last = self._buckets.get(ip, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[ip] = (tokens, now)
            self.dropped_rate += 1
            return False
        self._buckets[ip] = (tokens - 1.0, now)
        if len(self._buckets) > 10000:  # forget idle sources; bounded memory under a spoofed flood
            for k in [k for k, (t, l) in self._buckets.items() if now - l > 10][:5000]:
                del self._buckets[k]
        return True

    def trust(self, ip: str) -> None:
        """The box talks to `ip` on purpose (a registration, a trunk, a call): count it."""
        self._trusted[ip] = self._trusted.get(ip, 0) + 1

    def is_trusted(self, ip: str) -> bool:
        """Whether `ip` is a registered phone's, a trunk's or a call's address, or exempt."""
        return ip in self._trusted or self.is_exempt(ip)

    def untrust(self, ip: str) -> None:
        n = self._trusted.get(ip, 0) - 1
        if n > 0:
            self._trusted[ip] = n
        else:
            self._trusted.pop(ip, None)

    def is_scanner(self, user_agent: str | None) -> bool:
        if not user_agent:
            return False
        memo = self._scanner_memo
        hit = memo.get(user_agent)
        if hit is None:
            ua = user_agent.lower()
            hit = any(s in ua for s in self.scanner_agents)
            if len(memo) >= 1024:
                memo.clear()
            memo[user_agent] = hit
        if hit:
            self.dropped_scanner += 1
        return hit

    # -- authentication outcomes ---------------------------------------------------------
    def auth_failed(self, ip: str, now: float, reason: str = "authentication failures") -> Ban | None:
        """Record one failed authentication; returns the Ban if this failure caused one."""
        if self.is_exempt(ip):
            return None
        q = self._failures.setdefault(ip, deque())
        q.append(now)
        while q and now - q[0] > self.window_s:
            q.popleft()
        if len(q) > self.max_failures:
            del self._failures[ip]
            return self.ban(ip, f"{reason}: more than {self.max_failures} in {self.window_s:g} s")
        return None

    def auth_succeeded(self, ip: str) -> None:
        self._failures.pop(ip, None)

    # -- bans ----------------------------------------------------------------------------
    def ban(self, ip: str, reason: str, seconds: float | None = None) -> Ban:
        start = self.wall()
        b = Ban(ip, reason, start, start + (self.ban_s if seconds is None else seconds))
        self._bans[ip] = b
        if self.store is not None:
            self.store.save_ban(b.ip, b.reason, b.banned_at, b.until)
        return b

    def lift(self, ip: str) -> bool:
        had = self._bans.pop(ip, None) is not None
        self._failures.pop(ip, None)
        if self.store is not None:
            self.store.delete_ban(ip)
        return had

    def is_banned(self, ip: str) -> bool:
        b = self._bans.get(ip)
        if b is None:
            return False
        if b.until <= self.wall():
            self.lift(ip)
            return False
        return True

    def reload(self) -> None:
        """Re-read the bans from the store (they may have been lifted from the command line)."""
        if self.store is None:
            return
        now = self.wall()
        fresh = {ip: Ban(ip, reason, at, until) for ip, reason, at, until in self.store.load_bans() if until > now}
        # a ban made in the last seconds may still be on its way to the disk: keep it
        for ip, b in self._bans.items():
            if ip not in fresh and b.banned_at > now - 10:
                fresh[ip] = b
        self._bans = fresh

    def bans(self) -> list[Ban]:
        now = self.wall()
        return sorted((b for b in self._bans.values() if b.until > now), key=lambda b: b.banned_at)
