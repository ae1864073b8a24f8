"""Route decisions for calls to and from the carrier (sans-I/O: no sockets, no clock of its own).

Inbound (``[[route.inbound]]``, ``[route] blacklist``, ``[route] default``)
    A call from a trunk is first checked against the blacklist (caller patterns), then the
    inbound routes are tried in order: trunk name ("*" any), called number (DID) pattern and
    caller pattern must all match; the first match wins. A call that matches nothing goes to
    ``route.default`` -- it is never dropped silently. Numbers are compared in every form the
    carrier may use: as presented, normalised to ``+<country code>...`` and national (with
    the trunk prefix), so ``did = "+48221234567"`` matches a provider that sends
    ``48221234567`` or ``221234567``.

Outbound (``[[route.outbound]]``)
    The first route whose pattern matches the dialled number gives the number sent to the
    trunks (``strip`` leading digits, then ``prepend``) and the trunks in failover order.

Failover
    Each trunk attempt ends with an outcome. A called party's answer, BUSY, NO ANSWER or
    rejection is final (another trunk would reach the same busy person); so is a number the
    network says does not exist. Everything that says "this trunk cannot carry the call now"
    moves on to the next trunk: no network, congestion, no free channel, the SIM's minutes
    used up, a modem not ready or reset, SIP 5xx/408/timeouts, a provider refusing our account.
"""
from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from firmware.config import InboundRoute, OutboundRoute, Routes, match_pattern

__all__ = [
    "FAILOVER_OUTCOMES",
    "FINAL_OUTCOMES",
    "InboundDecision",
    "OutboundPlan",
    "billed_minutes",
    "combine_failures",
    "day_start",
    "is_final",
    "match_inbound",
    "modem_dial_outcome",
    "number_forms",
    "pattern_matches",
    "plan_outbound",
    "sip_failure_outcome",
    "trunk_unavailable",
]

FINAL_OUTCOMES = frozenset({"answered", "busy", "no_answer", "rejected", "cancelled", "no_route"})
"""Attempt outcomes that end the call's trunk search (see the module docstring)."""

FAILOVER_OUTCOMES = frozenset({"no_network", "congestion", "no_channel", "minutes_exhausted",
                               "unavailable", "failed"})
"""Attempt outcomes after which the next trunk of the route is tried."""


@dataclass(frozen=True)
class InboundDecision:
    """Where an inbound call goes and why (the reason goes into the call's route event)."""

    destination: str
    """A destination string (extension, queue, ivr number, ``messagebox:N``, ``hangup``...)."""
    reason: str
    """Human-readable explanation, e.g. ``route "GSM line"`` or ``no inbound route: default``."""
    route: InboundRoute | None = None
    """The route that matched; None for the default and for blacklisted callers."""
    blacklisted: bool = False
    """True: reject the call (SIP 403 / a modem hang-up) and record it as rejected."""


@dataclass(frozen=True)
class OutboundPlan:
    """How a dialled external number leaves the box."""

    route: OutboundRoute
    number: str
    """The number sent to the trunks (after strip and prepend)."""
    trunks: tuple[str, ...]
    """Trunk names in failover order."""


def number_forms(number: str, country_code: str = "", trunk_prefix: str = "") -> tuple[str, ...]:
    """Every form a carrier may give one number in: as presented, international
    (``+<cc>...``), without ``+`` (``<cc>...``) and national (``<trunk prefix>...``).

    ``number_forms("0221234567", "48", "0")`` -> ``("0221234567", "+48221234567",
    "48221234567", "221234567")``. Without a country code only the presented form (and the
    same without a leading ``+``) is known.
    """
    n = "".join(c for c in (number or "").strip() if c not in " -()./")
    if not n:
        return ()
    intl: list[str] = []
    if n.startswith("+"):
        intl.append(n)
    elif n.startswith("00") and len(n) > 4:
        intl.append("+" + n[2:])
    elif n.isdigit() and len(n) >= 6 and country_code:
        # a bare digit string is either <cc><national> or national: keep both readings
        if n.startswith(country_code) and len(n) > len(country_code) + 5:
            intl.append("+" + n)
        if trunk_prefix and n.startswith(trunk_prefix):
            intl.append("+" + country_code + n[len(trunk_prefix):])
        else:
            intl.append("+" + country_code + n)
    forms: list[str] = [n]
    for i in intl:
        forms += [i, i[1:]]
        if country_code and i.startswith("+" + country_code):
            national = i[1 + len(country_code):]
            forms.append(national)
            if trunk_prefix:
                forms.append(trunk_prefix + national)
    seen: list[str] = []
    for f in forms:
        if f and f not in seen:
            seen.append(f)
    return tuple(seen)


def pattern_matches(pattern: str, forms: Sequence[str]) -> bool:
    """True when ``pattern`` ("*" = anything, even an unknown number) matches any form.
    A pattern the config check would reject matches nothing."""
    if pattern == "*":
        return True
    for f in forms:
        try:
            if match_pattern(pattern, f):
                return True
        except ValueError:
            return False
    return False


def match_inbound(routes: Routes, *, trunk: str, did: str, caller: str, country_code: str = "",
                  trunk_prefix: str = "") -> InboundDecision:
    """Decide where an inbound call goes (see the module docstring). ``caller`` is "" when
    the number was withheld or unavailable; ``did`` is "" when the trunk gives none (GSM)."""
    callers = number_forms(caller, country_code, trunk_prefix)
    dids = number_forms(did, country_code, trunk_prefix)
    for pat in routes.blacklist:
        if callers and pattern_matches(pat, callers):
            return InboundDecision("hangup", f"caller {caller} blacklisted ({pat})", None, True)
    for i, r in enumerate(routes.inbound):
        if r.trunk not in ("*", trunk):
            continue
        if r.did != "*" and not pattern_matches(r.did, dids):
            continue
        if r.caller != "*" and not pattern_matches(r.caller, callers):
            continue
        label = r.name or f"#{i + 1}"
        return InboundDecision(r.destination, f"inbound route {label}: {r.destination}", r)
    return InboundDecision(routes.default, f"no inbound route matched (trunk {trunk}, DID {did or '-'}, "
                                           f"caller {caller or 'withheld'}): default {routes.default}")


def plan_outbound(routes: Iterable[OutboundRoute], dialled: str) -> OutboundPlan | None:
    """The first route matching ``dialled``, with the number to send; None when none matches."""
    for r in routes:
        try:
            if not match_pattern(r.pattern, dialled):
                continue
        except ValueError:
            continue
        number = r.prepend + dialled[r.strip:]
        return OutboundPlan(r, number, tuple(r.trunks))
    return None


def is_final(outcome: str) -> bool:
    """True when no other trunk should be tried after this attempt outcome."""
    return outcome in FINAL_OUTCOMES


def sip_failure_outcome(status: int) -> str:
    """The attempt outcome of a SIP final response >= 300 from a provider (RFC 3398 spirit).

    404/484/485/604 say the number does not exist (final, "no_route"); 486/600 busy,
    480 unreachable subscriber, 403/603 the called party or network refused -- all final.
    401/407 (our credentials refused), 408, 5xx and other 4xx are the trunk's problem:
    try the next one.
    """
    if status in (404, 484, 485, 604):
        return "no_route"
    if status in (486, 600):
        return "busy"
    if status == 480:
        return "no_answer"
    if status in (603,):
        return "rejected"
    if status == 487:
        return "cancelled"
    if status == 403:
        return "unavailable"  # providers answer 403 for "no credit"/"account blocked" too
    if status in (401, 407):
        return "unavailable"
    if status in (408,) or 500 <= status < 600:
        return "congestion" if status in (503, 502, 504) else "failed"
    return "failed"


def modem_dial_outcome(status: str, alerted: bool) -> str:
    """The attempt outcome of a modem `DialResult.status`.

    ``alerted``: the far end was ringing before the call ended (then a NO CARRIER is the
    called party going away, not a network failure).
    """
    if status == "answered":
        return "answered"
    if status in ("busy", "no_answer", "rejected"):
        return status
    if status == "invalid_number":
        return "no_route"
    if status == "no_carrier":
        return "no_answer" if alerted else "no_network"
    if status == "no_dialtone":
        return "no_network"
    if status == "congestion":
        return "congestion"
    return "failed"


def trunk_unavailable(*, kind: str, in_use: int, max_calls: int, minutes_used: int = 0,
                      minutes_per_day: int = 0, ready: bool = True, registered: bool = True) -> str | None:
    """Why a trunk cannot take one more call now (an attempt outcome), or None when it can."""
    if not ready:
        return "unavailable"
    if kind == "gsm" and not registered:
        return "no_network"
    if in_use >= max_calls:
        return "no_channel"
    if minutes_per_day and minutes_used >= minutes_per_day:
        return "minutes_exhausted"
    return None


def billed_minutes(periods: Iterable[tuple[float, float | None]], now: float) -> int:
    """Talk minutes as a carrier bills them: each call's (answered_at, ended_at) rounded up
    to whole minutes; a call still in progress (ended_at None) counts up to ``now``."""
    total = 0
    for answered, ended in periods:
        seconds = max(0.0, (ended if ended is not None else now) - answered)
        if seconds > 0:
            total += math.ceil(seconds / 60.0)
    return total


def day_start(now: float, timezone: str = "UTC") -> float:
    """Unix time of the local midnight that began the day containing ``now``."""
    try:
        tz = ZoneInfo(timezone)
    except (ValueError, KeyError, OSError):
        tz = ZoneInfo("UTC")
    local = _dt.datetime.fromtimestamp(now, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


_OUTCOME_ORDER = ("no_channel", "minutes_exhausted", "congestion", "no_network", "unavailable", "failed")


def combine_failures(outcomes: Sequence[str]) -> str:
    """The call's outcome when every trunk of the route failed over: "congestion" when some
    trunk was merely full or congested (try later), else "failed"."""
    if any(o in ("no_channel", "minutes_exhausted", "congestion") for o in outcomes):
        return "congestion"
    return "failed" if outcomes else "no_route"
