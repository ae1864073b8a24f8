"""The manager's reports, computed in SQLite over the call store.

Every method takes a period ``[since, until)`` in unix seconds (use :meth:`Reports.period`
to turn local dates into one) and returns frozen dataclasses ready for a page, JSON
(``dataclasses.asdict``) or CSV. Days, weekdays and hours are those of the box's time zone,
daylight-saving changes included: the local time of a call is computed inside SQL from the
zone's UTC offsets over the period.

Definitions (shown on the pages through :data:`FORMULAS`):
- a call is *missed* when it is inbound, unanswered and its status is one of
  :data:`~firmware.store.calls.MISSED_STATUSES`; it is *returned* when the customer's
  missed entry was closed by a later connected call;
- *answered by an agent*: an inbound call whose ``answered_by`` is the agent's extension;
  *made*: outbound with ``from_extension`` the agent's (internal calls count in neither);
- queue KPIs count the calls whose ``queue`` is that queue (the queue that handled the call
  last);
- only ended calls and closed agent-state periods are counted, except the current state
  period of each agent (counted up to now) and the call lists (call log, target, outgoing).

The figures come from the summary tables of the call store (see :mod:`firmware.store.calls`)
plus the raw rows at the partial hours/days at the edges of the period, so they are exact.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import math
import re
import sqlite3
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from firmware.store.calls import (AB_EDGES, AGENT_DAYS_COLS, CALL_HOURS_COLS, DIRECTIONS, HS_EDGES, MISSED_STATUSES,
                                   RING_DAYS_COLS, SL_EDGES, STATUSES, TG_EDGES, Call, CallStore, _call,
                                   agent_days_select, call_hours_select, ring_days_select)

__all__ = [
    "Reports", "ReportError", "CallFilter", "CallPage", "MissedCall", "MissedCallsReport", "OpenMissed",
    "AgentPerformance", "WeekdayHour", "QueueKpi", "DayCount", "DayTrend", "WaitBucket",
    "OutgoingSummary", "FORMULAS", "CSV_COLUMNS",
]

_MISSED_SQL = "(" + ", ".join(f"'{s}'" for s in MISSED_STATUSES) + ")"
MAX_PAGE = 1000

FORMULAS: dict[str, str] = {
    "answer_rate": "answered / offered",
    "asa": "sum(wait of answered calls) / answered",
    "abandon_rate": "(abandoned - short abandons) / (offered - short abandons)",
    "short_abandon": "abandoned within short_abandon_s seconds of arriving",
    "service_level": "answered within service_level_s seconds / (offered - short abandons)",
    "aht": "(sum(talk time) + sum(wrap-up time)) / answered",
    "missed": "inbound calls not answered (missed, abandoned, busy, no answer, failed, overflow, voicemail)",
    "returned": "a later call with the same number was connected (inbound or outbound)",
    "avg_wait_for_agent": "sum(wait of calls the agent answered) / calls the agent answered",
    "long_outgoing": "outgoing calls of the agent with talk time >= long_call_s",
    "short_answered": "calls the agent answered that lasted less than short_call_s",
    "ring_answer_rate": "rings the agent answered / rings offered to the agent",
    "target_call": "talk time >= min_talk_s",
}
"""KPI name -> its formula as shown on the web page."""

CSV_COLUMNS = ("started", "direction", "caller", "caller_name", "callee", "external_number", "did", "trunk",
               "queue", "answered_by", "status", "wait_s", "ring_s", "talk_s", "hold_s", "hangup_side",
               "hangup_cause", "recording", "disposition", "note", "id")


class ReportError(ValueError):
    """A report request that cannot be answered (bad date range, unknown status...)."""


@dataclass(frozen=True)
class CallFilter:
    """Filters of the call log (all optional)."""

    since: float | None = None
    """Start of the period (unix seconds, inclusive)."""
    until: float | None = None
    """End of the period (exclusive)."""
    number: str = ""
    """Digits contained in the customer's, caller's or callee's number."""
    extension: str = ""
    """Calls from, to or answered by this extension."""
    agent: str = ""
    """Calls answered by this agent."""
    queue: str = ""
    direction: str = ""
    status: tuple[str, ...] = ()
    """Any of these statuses; ``("missed",)`` also matches every missed-like status when
    ``missed_like`` is set."""
    missed_like: bool = False
    """Treat status "missed" as all of MISSED_STATUSES (inbound only)."""
    min_talk_s: float | None = None
    campaign: str = ""


@dataclass(frozen=True)
class CallPage:
    """A page of calls, newest first."""

    calls: list[Call]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class MissedCall:
    """One missed call of the missed-calls report."""

    call_id: str
    started_at: float
    number: str
    caller_name: str
    queue: str
    did: str
    trunk: str
    status: str
    wait_s: float
    returned: bool
    """The customer was reached afterwards."""
    returned_at: float | None
    callback_s: float | None
    """Seconds from the first missed call to the connected call that closed the entry."""


@dataclass(frozen=True)
class MissedCallsReport:
    calls: list[MissedCall]
    total: int
    not_returned: int
    """How many of the period's missed calls are still not returned."""


@dataclass(frozen=True)
class OpenMissed:
    """A customer who called, was missed, and has not been reached yet."""

    number: str
    first_missed_at: float
    last_missed_at: float
    count: int
    waiting_s: float
    """Now minus the first missed call: how long the customer has been waiting for a call back."""
    queue: str
    last_call_id: str


@dataclass(frozen=True)
class AgentPerformance:
    """One agent over a period (seed reports and the tricks of seed 003)."""

    agent: str
    answered: int
    """Calls the agent answered."""
    made: int
    """Outgoing calls the agent placed."""
    made_connected: int
    """Outgoing calls that were answered."""
    unique_customers: int
    """Distinct customer numbers among answered and made calls."""
    unique_answered_customers: int
    avg_wait_s: float | None
    """Average time customers waited before this agent answered."""
    long_outgoing: int
    """Outgoing calls with talk time of at least ``long_call_s``."""
    unique_outgoing_customers: int
    """Distinct customers the agent called."""
    talk_s: float
    """Talk time of answered and made calls."""
    avg_talk_s: float | None
    wrapup_s: float
    rings_offered: int
    rings_answered: int
    rings_missed: int
    """Offered rings the agent let ring out or rejected."""
    rings_caller_hung_up: int
    """Rings that ended because the caller gave up while this agent's phone rang."""
    avg_ring_to_answer_s: float | None
    """How long the agent let the phone ring before answering, on average."""
    short_answered: int
    """Answered calls shorter than ``short_call_s`` (answer-and-hang-up)."""
    short_hung_up_by_agent: int
    """Of those, the ones the agent hung up."""
    state_s: dict[str, float] = field(default_factory=dict)
    """Seconds in each state (available, in_call, wrapup, paused, dnd, ringing, offline)."""
    pause_reasons_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WeekdayHour:
    """Calls by local weekday (0 = Monday) and hour."""

    calls: list[list[int]]
    """7 x 24 inbound+outbound calls."""
    inbound: list[list[int]]
    missed: list[list[int]]
    answered: list[list[int]]


@dataclass(frozen=True)
class QueueKpi:
    """KPIs of one queue (formulas in :data:`FORMULAS`)."""

    queue: str
    offered: int
    answered: int
    abandoned: int
    short_abandoned: int
    overflowed: int
    answered_within_sl: int
    answer_rate: float | None
    asa_s: float | None
    abandon_rate: float | None
    service_level: float | None
    aht_s: float | None
    service_level_s: int
    short_abandon_s: int
    formulas: dict[str, str] = field(default_factory=lambda: {k: FORMULAS[k] for k in (
        "answer_rate", "asa", "abandon_rate", "service_level", "aht")})


@dataclass(frozen=True)
class DayCount:
    day: str
    """Local date, ISO (2026-11-23)."""
    total: int
    answered: int
    missed: int
    inbound: int
    outbound: int


@dataclass(frozen=True)
class DayTrend:
    day: str
    offered: int
    asa_s: float | None
    """Average speed of answer of queue calls that day."""
    abandon_rate: float | None


@dataclass(frozen=True)
class WaitBucket:
    lo_s: int
    hi_s: int | None
    """None: this bucket is open-ended."""
    answered: int
    abandoned: int


@dataclass(frozen=True)
class OutgoingSummary:
    calls: int
    connected: int
    long_calls: int
    unique_customers: int
    talk_s: float
    page: CallPage


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _ratio(a: float, b: float) -> float | None:
    return None if not b else a / b


class Reports:
    """Reports over a :class:`~firmware.store.calls.CallStore` in the box's time zone.

    ``use_summaries=False`` computes everything from the raw rows (slow on big stores; the
    tests use it to check that the summaries give exactly the same answers).
    """

    def __init__(self, calls: CallStore, *, timezone: str = "UTC", clock: Callable[[], float] = time.time,
                 use_summaries: bool = True) -> None:
        self.calls = calls
        self.clock = clock
        self.use_summaries = use_summaries
        self.configure(timezone=timezone)

    def _q(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        try:
            return self.calls.query(sql, params)
        except sqlite3.OperationalError as e:
            if "no query solution" not in str(e):
                raise
            return self.calls.query(re.sub(r" INDEXED BY \w+", "", sql), params)

    def configure(self, *, timezone: str) -> None:
        """Change the time zone (config store subscribers call this)."""
        try:
            self.tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ReportError(f"unknown time zone {timezone!r}") from None
        self.timezone = timezone

    # ------------------------------------------------------------------ periods and local time

    def period(self, first_day: _dt.date | str, last_day: _dt.date | str | None = None) -> tuple[float, float]:
        """Local days ``first_day``..``last_day`` (inclusive) as ``(since, until)`` unix seconds."""
        try:
            a = _dt.date.fromisoformat(first_day) if isinstance(first_day, str) else first_day
            b = a if last_day is None else (_dt.date.fromisoformat(last_day) if isinstance(last_day, str) else last_day)
        except ValueError as e:
            raise ReportError(f"bad date: {e}") from None
        if b < a:
            raise ReportError("the period ends before it starts")
        since = _dt.datetime.combine(a, _dt.time(), self.tz).timestamp()
        until = _dt.datetime.combine(b + _dt.timedelta(days=1), _dt.time(), self.tz).timestamp()
        return since, until

    def local(self, ts: float) -> _dt.datetime:
        """Local date and time of a unix time."""
        return _dt.datetime.fromtimestamp(ts, self.tz)

    def _offsets(self, since: float, until: float) -> list[tuple[float, int]]:
        """[(from_ts, utc offset seconds)] covering [since, until)."""
        def off(t: float) -> int:
            return int(_dt.datetime.fromtimestamp(t, self.tz).utcoffset().total_seconds())  # type: ignore[union-attr]
        out = [(since, off(since))]
        t = since
        while t < until:
            nxt = min(t + 86400.0, until)
            if off(nxt) != out[-1][1]:
                lo, hi = t, nxt
                while hi - lo > 1:
                    mid = (lo + hi) / 2
                    if off(mid) == out[-1][1]:
                        lo = mid
                    else:
                        hi = mid
                out.append((float(math.ceil(lo)) if off(math.ceil(lo)) != out[-1][1] else float(int(hi)), off(hi)))
            t = nxt
        return out

    def _local_expr(self, col: str, since: float, until: float) -> str:
        offs = self._offsets(since, until)
        if len(offs) == 1:
            return f"({col} + {offs[0][1]})"
        parts = " ".join(f"WHEN {col} < {offs[i + 1][0]!r} THEN {offs[i][1]}" for i in range(len(offs) - 1))
        return f"({col} + CASE {parts} ELSE {offs[-1][1]} END)"

    @staticmethod
    def _check_period(since: float, until: float) -> None:
        if isinstance(since, bool) or isinstance(until, bool) or not isinstance(since, (int, float)) \
                or not isinstance(until, (int, float)):
            raise ReportError("the period needs start and end times")
        if until <= since:
            raise ReportError("the period ends before it starts")
        if until - since > 366 * 5 * 86400:
            raise ReportError("the period is longer than five years")

    def _split(self, since: float, until: float, unit: int) -> tuple[tuple[int, int] | None, list[tuple[float, float]]]:
        """Whole summary units inside the period, and the raw windows at its edges."""
        if not self.use_summaries:
            return None, [(since, until)]
        u0, u1 = math.ceil(since / unit), math.floor(until / unit)
        if u0 >= u1:
            return None, [(since, until)]
        edges = []
        if since < u0 * unit:
            edges.append((since, float(u0 * unit)))
        if u1 * unit < until:
            edges.append((float(u1 * unit), until))
        return (u0, u1), edges

    # ------------------------------------------------------------------ call summaries by hour

    def _hour_rows(self, since: float, until: float, where: str, params: dict[str, Any],
                   select: str, group: str) -> tuple[list[sqlite3.Row], Callable[[int], int]]:
        """Aggregate ``call_hours``-shaped rows of the period; returns rows and a function mapping
        a row's hour bucket to the local unix time of its start."""
        offs = self._offsets(since, until)
        whole_hours = all(o % 3600 == 0 for _, o in offs)
        parts: list[str] = []
        p: dict[str, Any] = {"sign": 1, **params}
        if whole_hours:
            full, edges = self._split(since, until, 3600)
            if full is not None:
                parts.append(f"SELECT hour, direction, queue, {', '.join(CALL_HOURS_COLS)} FROM call_hours "
                             f"WHERE hour >= :h0 AND hour < :h1")
                p.update(h0=full[0], h1=full[1])
            for i, (a, b) in enumerate(edges):
                parts.append(call_hours_select(f"started_at >= :a{i} AND started_at < :b{i}"))
                p.update({f"a{i}": a, f"b{i}": b})
            starts = [o[0] for o in offs]
            values = [o[1] for o in offs]

            def local_of(hour: int) -> int:
                t = hour * 3600
                return t + values[max(0, bisect_right(starts, t) - 1)]
        else:
            parts.append(call_hours_select("started_at >= :a0 AND started_at < :b0",
                                           hour=f"CAST({self._local_expr('started_at', since, until)} / 3600 AS INTEGER)"))
            p.update(a0=since, b0=until)

            def local_of(hour: int) -> int:
                return hour * 3600
        rows = self._q(f"SELECT {select} FROM ({' UNION ALL '.join(parts)}) WHERE {where} "
                                f"GROUP BY {group}", p)
        return rows, local_of

    # ------------------------------------------------------------------ missed calls

    def missed_calls(self, since: float, until: float, *, queue: str = "", limit: int = 200,
                     offset: int = 0) -> MissedCallsReport:
        """Missed inbound calls of the period, newest first, each saying whether it was returned."""
        self._check_period(since, until)
        limit, offset = _page(limit, offset)
        where = f"c.started_at >= ? AND c.started_at < ? AND c.direction = 'inbound' AND c.status IN {_MISSED_SQL}"
        params: list[Any] = [since, until]
        if queue:
            where += " AND c.queue = ?"
            params.append(queue)
        q = self._q
        head = q(f"SELECT count(*), sum(CASE WHEN m.closed_at IS NULL THEN 1 ELSE 0 END) FROM calls c "
                 f"INDEXED BY calls_missed LEFT JOIN missed_call_links l ON l.call_id = c.id "
                 f"LEFT JOIN missed_calls m ON m.id = l.missed_id WHERE {where}", params)[0]
        rows = q(f"SELECT c.id, c.started_at, c.external_number, c.caller_number, c.caller_name, c.queue, c.did, "
                 f"c.trunk, c.status, c.wait_s, m.closed_at, m.callback_s FROM calls c INDEXED BY calls_missed "
                 f"LEFT JOIN missed_call_links l ON l.call_id = c.id LEFT JOIN missed_calls m ON m.id = l.missed_id "
                 f"WHERE {where} ORDER BY c.started_at DESC LIMIT ? OFFSET ?", [*params, limit, offset])
        out = [MissedCall(r[0], r[1], r[2] or r[3], r[4], r[5], r[6], r[7], r[8], r[9] or 0.0,
                          r[10] is not None, r[10], r[11]) for r in rows]
        return MissedCallsReport(out, head[0] or 0, head[1] or 0)

    def missed_not_returned(self, *, now: float | None = None, limit: int = 500) -> list[OpenMissed]:
        """Customers still waiting for a call back, longest waiting first."""
        t = self.clock() if now is None else now
        rows = self._q("SELECT number, first_missed_at, last_missed_at, count, queue, last_call_id "
                                "FROM missed_calls WHERE closed_at IS NULL ORDER BY first_missed_at LIMIT ?",
                                (min(int(limit), 10_000),))
        return [OpenMissed(r[0], r[1], r[2], r[3], max(0.0, t - r[1]), r[4], r[5]) for r in rows]

    # ------------------------------------------------------------------ agents

    def agent_performance(self, since: float, until: float, *, long_call_s: int = 30, short_call_s: int = 5,
                          agents: Sequence[str] | None = None) -> list[AgentPerformance]:
        """Per-agent figures for the period (agents with any activity, or the ones given).

        Thresholds in :data:`~firmware.store.calls.TG_EDGES` (long) and
        :data:`~firmware.store.calls.HS_EDGES` (short) come from the summaries; other values
        are counted from the raw rows (slower on big stores).
        """
        self._check_period(since, until)
        for v, name in ((long_call_s, "long_call_s"), (short_call_s, "short_call_s")):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 86400:
                raise ReportError(f"{name} must be a number of seconds between 1 and 86400")
        q = self._q
        full, edges = self._split(since, until, 86400)
        parts, p = [], {"sign": 1}
        if full is not None:
            parts.append(f"SELECT day, agent, kind, {', '.join(AGENT_DAYS_COLS)} FROM agent_days "
                         f"WHERE day >= :d0 AND day < :d1")
            p.update(d0=full[0], d1=full[1])
        for i, (a, b) in enumerate(edges):
            parts.append(agent_days_select(f"started_at >= :a{i} AND started_at < :b{i}"))
            p.update({f"a{i}": a, f"b{i}": b})
        sums = ", ".join(f"sum({c}) AS {c}" for c in AGENT_DAYS_COLS)
        calls = {(r["agent"], r["kind"]): r for r in q(
            f"SELECT agent, kind, {sums} FROM ({' UNION ALL '.join(parts)}) GROUP BY agent, kind", p)}
        rparts = []
        if full is not None:
            rparts.append(f"SELECT day, agent, {', '.join(RING_DAYS_COLS)} FROM agent_ring_days "
                          f"WHERE day >= :d0 AND day < :d1")
        for i, _ in enumerate(edges):
            rparts.append(ring_days_select(f"ts >= :a{i} AND ts < :b{i}"))
        rsums = ", ".join(f"sum({c}) AS {c}" for c in RING_DAYS_COLS)
        rings = {r["agent"]: r for r in q(f"SELECT agent, {rsums} FROM ({' UNION ALL '.join(rparts)}) GROUP BY agent", p)}
        pp = (since, until)
        in_where = ("answered_by != '' AND direction = 'inbound' AND answered_at IS NOT NULL "
                    "AND started_at >= ? AND started_at < ? AND external_number != ''")
        out_where = ("direction = 'outbound' AND from_extension != '' AND started_at >= ? AND started_at < ? "
                     "AND external_number != ''")
        uniq_in = {r[0]: r[1] for r in q(
            f"SELECT answered_by, count(DISTINCT external_number) FROM calls INDEXED BY calls_agent_in "
            f"WHERE {in_where} GROUP BY answered_by", pp)}
        uniq_out = {r[0]: r[1] for r in q(
            f"SELECT from_extension, count(DISTINCT external_number) FROM calls INDEXED BY calls_agent_out "
            f"WHERE {out_where} GROUP BY from_extension", pp)}
        both = {r[0]: r[1] for r in q(
            f"SELECT o.from_extension, count(*) FROM (SELECT DISTINCT from_extension, external_number FROM calls "
            f"INDEXED BY calls_agent_out WHERE {out_where}) o WHERE EXISTS (SELECT 1 FROM calls i "
            f"INDEXED BY calls_agent_in WHERE i.answered_by != '' AND i.direction = 'inbound' "
            f"AND i.answered_at IS NOT NULL AND i.answered_by = o.from_extension "
            f"AND i.external_number = o.external_number AND i.started_at >= ? AND i.started_at < ?) "
            f"GROUP BY o.from_extension", (*pp, *pp))}
        uniq = {a: uniq_in.get(a, 0) + uniq_out.get(a, 0) - both.get(a, 0) for a in set(uniq_in) | set(uniq_out)}
        long_raw = short_raw = None
        if long_call_s not in TG_EDGES:
            long_raw = {r[0]: int(r[1] or 0) for r in q(
                "SELECT from_extension, sum(coalesce(talk_s, 0) >= ?) FROM calls INDEXED BY calls_out "
                "WHERE direction = 'outbound' AND started_at >= ? AND started_at < ? AND status != 'in_progress' "
                "AND from_extension != '' GROUP BY from_extension", (long_call_s, *pp))}
        if short_call_s not in HS_EDGES:
            short_raw = {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in q(
                "SELECT answered_by, sum(coalesce(talk_s, 0) < ?), sum(hangup_side = 'callee' AND coalesce(talk_s, 0) < ?) "
                "FROM calls INDEXED BY calls_agent_in WHERE answered_by != '' AND direction = 'inbound' "
                "AND answered_at IS NOT NULL AND started_at >= ? AND started_at < ? AND status != 'in_progress' "
                "GROUP BY answered_by", (short_call_s, short_call_s, *pp))}
        states, reasons = self._state_seconds(since, until)
        names = ({a for a, _ in calls} | set(rings) | set(states)) if agents is None else set(agents)
        out = []
        zero: dict[str, float] = {c: 0.0 for c in AGENT_DAYS_COLS}
        for a in sorted(names):
            an = calls.get((a, "answered")) or zero
            md = calls.get((a, "made")) or zero
            rg = rings.get(a)
            n_an, n_md, con = int(an["n"]), int(md["n"]), int(md["connected"])
            talk = float(an["talk_sum"]) + float(md["talk_sum"])
            out.append(AgentPerformance(
                agent=a, answered=n_an, made=n_md, made_connected=con, unique_customers=uniq.get(a, 0),
                unique_answered_customers=uniq_in.get(a, 0), avg_wait_s=_ratio(float(an["wait_sum"]), n_an),
                long_outgoing=(long_raw.get(a, 0) if long_raw is not None else int(md[f"tg_{long_call_s}"])),
                unique_outgoing_customers=uniq_out.get(a, 0),
                talk_s=talk, avg_talk_s=_ratio(talk, n_an + con),
                wrapup_s=float(an["wrapup_sum"]) + float(md["wrapup_sum"]),
                rings_offered=int(rg["offered"]) if rg else 0, rings_answered=int(rg["answered"]) if rg else 0,
                rings_missed=int(rg["missed"]) if rg else 0, rings_caller_hung_up=int(rg["caller_hangup"]) if rg else 0,
                avg_ring_to_answer_s=_ratio(float(rg["ans_secs"]), float(rg["ans_n"])) if rg else None,
                short_answered=(short_raw.get(a, (0, 0))[0] if short_raw is not None
                                else n_an - int(an[f"tg_{short_call_s}"])),
                short_hung_up_by_agent=(short_raw.get(a, (0, 0))[1] if short_raw is not None
                                        else int(an[f"hs_{short_call_s}"])),
                state_s=states.get(a, {}), pause_reasons_s=reasons.get(a, {})))
        return out

    def _state_seconds(self, since: float, until: float) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
        q = self._q
        totals: dict[tuple[str, str, str], float] = {}

        def add(agent: str, state: str, reason: str, secs: float) -> None:
            if secs > 0:
                totals[(agent, state, reason)] = totals.get((agent, state, reason), 0.0) + secs
        full, edges = self._split(since, until, 86400)
        if full is not None:
            for r in q("SELECT agent, state, reason, sum(seconds) FROM agent_state_days WHERE day >= ? AND day < ? "
                       "GROUP BY agent, state, reason", full):
                add(r[0], r[1], r[2], float(r[3] or 0))
        agents = [r[0] for r in q("SELECT DISTINCT agent FROM agent_state_days")] + \
                 [r[0] for r in q("SELECT agent FROM agent_states INDEXED BY agent_states_open WHERE ended_at IS NULL")]
        agents = sorted(set(agents))
        for a, b in edges:
            seen: set[int] = set()
            rows = q("SELECT id, agent, state, reason, started_at, ended_at FROM agent_states INDEXED BY agent_states_time "
                     "WHERE started_at >= ? AND started_at < ? AND ended_at IS NOT NULL", (a, b))
            for ag in agents:
                rows += q("SELECT id, agent, state, reason, started_at, ended_at FROM agent_states "
                          "INDEXED BY agent_states_agent WHERE agent = ? AND started_at < ? "
                          "ORDER BY started_at DESC LIMIT 1", (ag, a))
            for rid, ag, state, reason, start, end in rows:
                if end is None or rid in seen or end <= a:
                    continue
                seen.add(rid)
                add(ag, state, reason, min(end, b) - max(start, a))
        now = min(self.clock(), until)
        for ag, state, reason, start in q("SELECT agent, state, reason, started_at FROM agent_states "
                                          "INDEXED BY agent_states_open WHERE ended_at IS NULL AND started_at < ?",
                                          (until,)):
            add(ag, state, reason, now - max(start, since))
        states: dict[str, dict[str, float]] = {}
        reasons: dict[str, dict[str, float]] = {}
        for (ag, state, reason), secs in sorted(totals.items()):
            states.setdefault(ag, {})
            states[ag][state] = states[ag].get(state, 0.0) + secs
            if state in ("paused", "dnd") and reason:
                reasons.setdefault(ag, {})
                reasons[ag][reason] = reasons[ag].get(reason, 0.0) + secs
        return states, reasons

    # ------------------------------------------------------------------ time grids

    def weekday_hour(self, since: float, until: float, *, queue: str = "") -> WeekdayHour:
        """Calls by local weekday x hour, with missed and answered calls, for shift planning."""
        self._check_period(since, until)
        where, params = "direction != 'internal'", {}
        if queue:
            where += " AND queue = :queue"
            params["queue"] = queue
        rows, local_of = self._hour_rows(
            since, until, where, params,
            "hour, sum(n), sum(CASE WHEN direction = 'inbound' THEN n ELSE 0 END), sum(missed), sum(answered)", "hour")
        grid = [[[0] * 24 for _ in range(7)] for _ in range(4)]
        for hour, n, inb, missed, answered in rows:
            local = local_of(int(hour))
            wd, h = (local // 86400 + 3) % 7, (local % 86400) // 3600
            for g, v in zip(grid, (n, inb, missed, answered)):
                g[wd][h] += int(v or 0)
        return WeekdayHour(*grid)

    def calls_per_day(self, since: float, until: float) -> list[DayCount]:
        """Calls per local day: total, answered, missed, inbound, outbound (days without calls included)."""
        self._check_period(since, until)
        rows, local_of = self._hour_rows(
            since, until, "direction != 'internal'", {},
            "hour, sum(n), sum(answered), sum(missed), sum(CASE WHEN direction = 'inbound' THEN n ELSE 0 END), "
            "sum(CASE WHEN direction = 'outbound' THEN n ELSE 0 END)", "hour")
        by_day: dict[int, list[int]] = {}
        for hour, *vals in rows:
            acc = by_day.setdefault(local_of(int(hour)) // 86400, [0] * 5)
            for i, v in enumerate(vals):
                acc[i] += int(v or 0)
        return [DayCount(day, *by_day.get(d, [0] * 5)) for d, day in self._days(since, until)]

    def _days(self, since: float, until: float) -> list[tuple[int, str]]:
        first = self.local(since).date()
        last = self.local(until - 1).date()
        out = []
        d = first
        while d <= last:
            out.append(((d - _dt.date(1970, 1, 1)).days, d.isoformat()))
            d += _dt.timedelta(days=1)
        return out

    def trend(self, since: float, until: float, *, queue: str = "", short_abandon_s: int = 5) -> list[DayTrend]:
        """Average speed of answer and abandon rate of queue calls per local day."""
        self._check_period(since, until)
        if isinstance(short_abandon_s, bool) or not isinstance(short_abandon_s, (int, float)) or short_abandon_s < 0:
            raise ReportError("short_abandon_s must be a number of seconds")
        summarised = short_abandon_s == 0 or short_abandon_s in AB_EDGES
        ab = "0" if not summarised or short_abandon_s == 0 else f"ab_{short_abandon_s}"
        where, params = "direction = 'inbound' AND queue != ''", {}
        if queue:
            where += " AND queue = :queue"
            params["queue"] = queue
        rows, local_of = self._hour_rows(since, until, where, params,
                                         f"hour, sum(n), sum(answered), sum(wait_ans), sum(abandoned), sum({ab})", "hour")
        by_day: dict[int, list[float]] = {}
        for hour, *vals in rows:
            acc = by_day.setdefault(local_of(int(hour)) // 86400, [0.0] * 5)
            for i, v in enumerate(vals):
                acc[i] += float(v or 0)
        if not summarised:
            sql = ("SELECT started_at FROM calls INDEXED BY calls_queue_wait WHERE direction = 'inbound' "
                   "AND queue != '' AND started_at >= ? AND started_at < ? AND status = 'abandoned' "
                   "AND coalesce(wait_s, 0) < ?")
            args: list[Any] = [since, until, short_abandon_s]
            if queue:
                sql += " AND queue = ?"
                args.append(queue)
            for (t,) in self._q(sql, args):
                day = (int(t) + int(self.local(t).utcoffset().total_seconds())) // 86400  # type: ignore[union-attr]
                by_day.setdefault(day, [0.0] * 5)[4] += 1
        out = []
        for d, day in self._days(since, until):
            n, answered, wait, abandoned, short = by_day.get(d, [0.0] * 5)
            out.append(DayTrend(day, int(n), _ratio(wait, answered), _ratio(abandoned - short, n - short) if n else None))
        return out

    def wait_distribution(self, since: float, until: float, *, bucket_s: int = 10, max_s: int = 300,
                          queue: str = "") -> list[WaitBucket]:
        """How long queue callers waited: answered and abandoned calls per wait bucket."""
        self._check_period(since, until)
        if not isinstance(bucket_s, int) or not isinstance(max_s, int) or bucket_s <= 0 or max_s <= 0 \
                or max_s // bucket_s > 500:
            raise ReportError("bucket_s and max_s must be positive whole seconds, at most 500 buckets")
        top = max_s // bucket_s
        where = ("direction = 'inbound' AND queue != '' AND started_at >= ? AND started_at < ? "
                 "AND status != 'in_progress'")
        params: list[Any] = [since, until]
        if queue:
            where += " AND queue = ?"
            params.append(queue)
        rows = self._q(
            f"SELECT min(CAST(coalesce(wait_s, 0) / ? AS INTEGER), ?) AS b, "
            f"sum(answered_at IS NOT NULL), sum(status = 'abandoned') FROM calls INDEXED BY calls_queue_wait "
            f"WHERE {where} GROUP BY b", [bucket_s, top, *params])
        by = {int(r[0]): r for r in rows}
        return [WaitBucket(b * bucket_s, (b + 1) * bucket_s if b < top else None,
                           int(by[b][1] or 0) if b in by else 0, int(by[b][2] or 0) if b in by else 0)
                for b in range(top + 1)]

    # ------------------------------------------------------------------ queues

    def queue_kpis(self, since: float, until: float, *, thresholds: Mapping[str, tuple[int, int]] | None = None,
                   service_level_s: int = 20, short_abandon_s: int = 5) -> list[QueueKpi]:
        """KPIs per queue. ``thresholds`` maps a queue to (service_level_s, short_abandon_s)
        (the queues' settings); other queues use the keyword defaults. Thresholds in
        :data:`~firmware.store.calls.SL_EDGES` / :data:`~firmware.store.calls.AB_EDGES` come
        from the summaries, others from the raw rows."""
        self._check_period(since, until)
        th = dict(thresholds or {})
        for sl, sa in [*th.values(), (service_level_s, short_abandon_s)]:
            for v, name in ((sl, "service level"), (sa, "short abandon")):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 86400:
                    raise ReportError(f"{name} must be a number of seconds")
        sums = ", ".join(f"sum({c})" for c in CALL_HOURS_COLS)
        rows, _ = self._hour_rows(since, until, "direction = 'inbound' AND queue != ''", {}, f"queue, {sums}", "queue")
        raw: dict[str, tuple[int, int]] | None = None
        if any(sl not in SL_EDGES or (sa and sa not in AB_EDGES)
               for sl, sa in [*th.values(), (service_level_s, short_abandon_s)]):
            values = ", ".join("(?, ?, ?)" for _ in th) or "(NULL, NULL, NULL)"
            raw = {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in self._q(
                f"WITH t(queue, sl, sa) AS (VALUES {values}) SELECT c.queue, "
                f"sum(c.answered_at IS NOT NULL AND coalesce(c.wait_s, 0) <= coalesce(t.sl, ?)), "
                f"sum(c.status = 'abandoned' AND coalesce(c.wait_s, 0) < coalesce(t.sa, ?)) "
                f"FROM calls c INDEXED BY calls_queue_wait LEFT JOIN t ON t.queue = c.queue "
                f"WHERE c.direction = 'inbound' AND c.queue != '' AND c.started_at >= ? AND c.started_at < ? "
                f"AND c.status != 'in_progress' GROUP BY c.queue",
                [*(x for k, (a, b) in th.items() for x in (k, a, b)), service_level_s, short_abandon_s, since, until])}
        out = []
        for r in sorted(rows, key=lambda r: r[0]):
            v = dict(zip(CALL_HOURS_COLS, (float(x or 0) for x in r[1:])))
            sl, sa = th.get(r[0], (service_level_s, short_abandon_s))
            offered, answered, abandoned = int(v["n"]), int(v["answered"]), int(v["abandoned"])
            if raw is not None:
                within, short = raw.get(r[0], (0, 0))
            else:
                short = int(v[f"ab_{sa}"]) if sa else 0
                within = int(v[f"sl_{sl}"])
            base = offered - short
            out.append(QueueKpi(
                queue=r[0], offered=offered, answered=answered, abandoned=abandoned, short_abandoned=short,
                overflowed=int(v["overflow"]), answered_within_sl=within, answer_rate=_ratio(answered, offered),
                asa_s=_ratio(v["wait_ans"], answered), abandon_rate=_ratio(abandoned - short, base),
                service_level=_ratio(within, base), aht_s=_ratio(v["handle_ans"], answered),
                service_level_s=int(sl), short_abandon_s=int(sa)))
        return out

    # ------------------------------------------------------------------ call lists

    def _where(self, f: CallFilter) -> tuple[str, list[Any], str | None]:
        clauses: list[str] = []
        params: list[Any] = []
        index = None
        if f.since is not None:
            clauses.append("started_at >= ?")
            params.append(float(f.since))
        if f.until is not None:
            clauses.append("started_at < ?")
            params.append(float(f.until))
        if f.since is not None and f.until is not None and f.until <= f.since:
            raise ReportError("the period ends before it starts")
        if f.number:
            digits = "".join(ch for ch in f.number if ch.isdigit())
            if not digits:
                raise ReportError(f"number filter {f.number!r} has no digits")
            if len(digits) >= 7:
                clauses.append("(external_number = ? OR external_number = ? OR caller_number = ? OR callee_number = ?)")
                params += [self.calls._norm(f.number), "+" + digits, f.number.strip(), f.number.strip()]
            else:
                like = "%" + digits + "%"
                clauses.append("(external_number LIKE ? OR caller_number LIKE ? OR callee_number LIKE ?)")
                params += [like, like, like]
        if f.extension:
            clauses.append("(from_extension = ? OR to_extension = ? OR answered_by = ?)")
            params += [f.extension] * 3
        if f.agent:
            clauses.append("answered_by = ? AND answered_by != ''")
            params.append(f.agent)
            index = "calls_answered_by"
        if f.queue:
            clauses.append("queue = ? AND queue != ''")
            params.append(f.queue)
            index = index or "calls_queue"
        if f.direction:
            if f.direction not in DIRECTIONS:
                raise ReportError(f"direction must be one of {', '.join(DIRECTIONS)}")
            clauses.append("direction = ?")
            params.append(f.direction)
        if f.status:
            statuses = set(f.status)
            bad = statuses - set(STATUSES)
            if bad:
                raise ReportError(f"unknown status {sorted(bad)[0]!r} (one of {', '.join(STATUSES)})")
            if f.missed_like and "missed" in statuses:
                others = sorted(statuses - {"missed"})
                clauses.append(f"((direction = 'inbound' AND status IN {_MISSED_SQL})"
                               f" OR status IN ({', '.join('?' * len(others))}))")
                params += others
            else:
                clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
                params += sorted(statuses)
        if f.min_talk_s is not None:
            clauses.append("talk_s >= ?")
            params.append(float(f.min_talk_s))
        if f.campaign:
            clauses.append("campaign = ?")
            params.append(f.campaign)
        return (" AND ".join(clauses) or "1=1"), params, index

    def call_log(self, f: CallFilter = CallFilter(), *, limit: int = 50, offset: int = 0) -> CallPage:
        """Calls matching the filters, newest first, one page (at most 1000 rows)."""
        limit, offset = _page(limit, offset)
        where, params, index = self._where(f)
        hint = f" INDEXED BY {index}" if index else ""
        total = self._q(f"SELECT count(*) FROM calls{hint} WHERE {where}", params)[0][0]
        rows = self._q(f"SELECT * FROM calls{hint} WHERE {where} ORDER BY started_at DESC, id DESC "
                                f"LIMIT ? OFFSET ?", [*params, limit, offset])
        return CallPage([_call(r) for r in rows], total, limit, offset)

    def target_calls(self, since: float, until: float, *, min_talk_s: float = 60, direction: str = "",
                     limit: int = 50, offset: int = 0) -> CallPage:
        """Calls long enough to show real interest (talk time >= ``min_talk_s``)."""
        self._check_period(since, until)
        return self.call_log(CallFilter(since=since, until=until, min_talk_s=min_talk_s, direction=direction),
                             limit=limit, offset=offset)

    def outgoing_calls(self, since: float, until: float, *, extension: str = "", long_call_s: float = 30,
                       limit: int = 50, offset: int = 0) -> OutgoingSummary:
        """Outgoing calls (optionally of one extension) with a summary and one page of calls."""
        self._check_period(since, until)
        where = "direction = 'outbound' AND started_at >= ? AND started_at < ? AND status != 'in_progress'"
        params: list[Any] = [since, until]
        if extension:
            where += " AND from_extension = ?"
            params.append(extension)
        r = self._q(
            f"SELECT count(*), sum(answered_at IS NOT NULL), sum(coalesce(talk_s, 0) >= ?), "
            f"count(DISTINCT NULLIF(external_number, '')), sum(coalesce(talk_s, 0)) FROM calls INDEXED BY calls_out "
            f"WHERE {where}", [long_call_s, *params])[0]
        page = self.call_log(CallFilter(since=since, until=until, direction="outbound", extension=extension),
                             limit=limit, offset=offset)
        return OutgoingSummary(r[0] or 0, r[1] or 0, r[2] or 0, r[3] or 0, float(r[4] or 0), page)

    def call_log_csv(self, f: CallFilter = CallFilter(), *, chunk: int = 1000) -> Iterator[str]:
        """The filtered call log as CSV text chunks (header first), local times, streamable."""
        where, params, index = self._where(f)
        hint = f" INDEXED BY {index}" if index else ""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(CSV_COLUMNS)
        yield buf.getvalue()
        cols = ("started_at, direction, caller_number, caller_name, callee_number, external_number, did, trunk, "
                "queue, answered_by, status, wait_s, ring_s, talk_s, hold_s, hangup_side, hangup_cause, "
                "CASE WHEN recording_state IN ('complete', 'interrupted') THEN recording_path ELSE '' END, "
                "disposition, note, id")
        last: tuple[float, str] | None = None
        offs = None
        while True:
            buf.seek(0)
            buf.truncate()
            extra, p2 = "", list(params)
            if last is not None:
                extra = " AND (started_at < ? OR (started_at = ? AND id < ?))"
                p2 += [last[0], last[0], last[1]]
            rows = self._q(f"SELECT {cols} FROM calls{hint} WHERE {where}{extra} "
                                    f"ORDER BY started_at DESC, id DESC LIMIT ?", [*p2, chunk])
            if not rows:
                return
            if offs is None or rows[-1][0] < offs[0][0]:
                offs = self._offsets(rows[-1][0], rows[0][0] + 1)
            starts = [o[0] for o in offs]
            for r in rows:
                t = r[0]
                o = offs[max(0, bisect_right(starts, t) - 1)][1]
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t + o))
                w.writerow([stamp, *(_csv_safe(x) for x in r[1:11]), _fmt(r[11]), _fmt(r[12]), _fmt(r[13]),
                            _fmt(r[14]), r[15], "" if r[16] is None else r[16],
                            *(_csv_safe(x) for x in r[17:])])
            last = (rows[-1][0], rows[-1][-1])
            yield buf.getvalue()


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def _csv_safe(v: Any) -> Any:
    """Neutralise spreadsheet formulas (=, @, +/- not followed by a number) in CSV cells."""
    if isinstance(v, str) and v:
        if v[0] in "=@\t\r" or (v[0] in "+-" and not v[1:].replace(".", "").isdigit()):
            return "'" + v
    return v


def _page(limit: int, offset: int) -> tuple[int, int]:
    try:
        limit, offset = int(limit), int(offset)
    except (TypeError, ValueError):
        raise ReportError("limit and offset must be whole numbers") from None
    if limit < 1 or offset < 0:
        raise ReportError("limit must be at least 1 and offset not negative")
    return min(limit, MAX_PAGE), offset
