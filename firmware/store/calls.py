"""Call records, call events, agent states, missed calls, registrations and bans in SQLite.

Built for an SD card that loses power: WAL journal with ``synchronous=FULL`` (every commit
is fsynced; never OFF), an integrity check (``PRAGMA quick_check``) at open that moves a
damaged database aside, salvages what it can read and starts a new one
(:attr:`CallStore.recovery` says what happened), and one writer.

Writes come from the asyncio thread at up to hundreds per second and never wait for the
disk: every write method validates its arguments at once (raising :class:`CallStoreError`),
then queues the change. The writer thread applies queued changes in one transaction every
``commit_interval`` seconds (default 50 ms) or every ``max_batch`` changes, whichever comes
first (group commit). With ``writer="process"`` (what the box uses) the thread only hands
each batch to a process of its own that runs the statements, so that the writer's Python
work does not take the interpreter lock from the event loop. :meth:`CallStore.flush` blocks
until everything queued before it is committed to disk: a call that ended before
``flush()`` returned survives a power cut.
Reads use separate connections (one per thread) and see committed data.

Schema (``PRAGMA user_version = 1``; times are unix seconds as floats, text columns
default to ``''`` so that filters need no NULL handling):

``calls``: one row per call.
    ``id`` text uuid (time-ordered, RFC 9562 version 7); ``started_at``, ``answered_at``
    (the customer/callee connected to a person), ``ended_at``; ``direction`` inbound |
    outbound | internal; ``caller_number``, ``caller_name``, ``callee_number`` (as
    dialled), ``did``, ``trunk``;
    ``external_number`` (the customer's number, normalised: ``+<cc>...`` when the country
    code is known); ``from_extension``, ``to_extension``; ``answered_by`` (extension of the
    person who answered: agent or callee); ``queue`` (the queue that handled the call
    last); ``ivr_path`` (menus and keys, e.g. ``500:1>510:2``); ``status`` in_progress |
    answered | missed | abandoned | busy | no_answer | failed | rejected | overflow |
    voicemail; ``wait_s`` (until answered, or until the caller gave up), ``ring_s``
    (ringing of the phone that answered), ``talk_s`` (answered to end, hold included),
    ``hold_s``, ``wrapup_s`` (agent's after-call work); ``hangup_side`` caller | callee |
    system; ``hangup_cause`` (Q.850), ``sip_code``; ``recording_path`` (relative to the data
    dir), ``recording_state`` none | recording | complete | interrupted | deleted | failed,
    ``recording_note`` (why deleted or failed); ``interrupted`` (1: the box lost power
    mid-call); dialer fields ``campaign``, ``attempt``, ``dial_result``; agent's
    ``disposition``, ``note``, ``tags`` (comma separated); ``updated_at``.
``call_legs``: (call_id, leg_id) kind sip | gsm | fxo | siptrunk, endpoint, role caller |
    callee | agent | listener, started_at, answered_at, ended_at, cause, sip_code.
``call_events``: id, call_id, ts, type, agent, queue, result, seconds, data (JSON).
    Types used: route, ivr_choice, queue_enter (data.position), queue_leave (result =
    reason), agent_ring (agent, result answered | no_answer | busy | rejected |
    caller_hangup | other_answered, seconds), answer, transfer, hold, unhold, wrapup,
    callback_requested, callback_result, recording_started, recording_stopped, overflow,
    hangup. Any other type is stored as well.
``agent_states``: id, agent, state offline | available | ringing | in_call | wrapup |
    paused | dnd, reason, started_at, ended_at (NULL while current). Every change of an
    agent's state with its time.
``missed_calls``: one open entry per customer number (unique while ``closed_at`` is NULL):
    first_missed_at, last_missed_at, count, last_call_id, queue, closed_at,
    closed_by_call, callback_s (closed_at - first_missed_at), closed_direction;
    ``missed_call_links`` (missed_id, call_id) lists every missed call of an entry.
    An inbound call from an external number that ends unanswered with a status in
    :data:`MISSED_STATUSES` opens (or extends) the entry; any call with that number that
    gets connected (inbound or outbound, ``answered_at`` set) closes it.
``registrations``: (extension, key = instance or contact) contact, transport, source_ip,
    source_port, expires_at, call_id, cseq, user_agent, instance, path, q, nat, reachable,
    rtt_ms, registered_at, last_qualify_ok (the registrar's bindings, kept across restarts).
``bans``: ip, reason, banned_at, until.
``meta``: key/value; ``last_alive`` is the time of the last commit (the best estimate of
    when the box lost power).

Summary tables for the reports, kept up to date by the writer in the same transaction as the
rows they summarise (and rebuilt by :func:`rebuild_summaries` after a salvage). They only
count ended calls and closed state periods, in UTC buckets (any local day or hour of a
whole-hour time zone is a union of UTC hours; the reports add the partial hours/days at the
edges of a period from the raw rows):
``call_hours`` (hour = started_at // 3600, direction, queue): n, answered, missed,
    abandoned, overflow, wait_ans, handle_ans, sl_N (answered within N s, N in
    :data:`SL_EDGES`), ab_N (abandoned within N s, N in :data:`AB_EDGES`).
``agent_days`` (day = started_at // 86400, agent, kind answered (inbound) | made (outbound)): n, connected,
    wait_sum, talk_sum, wrapup_sum, tg_N (talk >= N s), hs_N (agent hung up, talk < N s).
``agent_ring_days`` (day of the ring, agent): offered, answered, missed, caller_hangup,
    ans_secs, ans_n.
``agent_state_days`` (day, agent, state, reason): seconds of closed periods in that day.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import queue
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

log = logging.getLogger("firmware.store.calls")

__all__ = [
    "CallStore", "CallStoreError", "StoreRecovery", "Call", "Leg", "Event", "AgentState",
    "MissedEntry", "Registration", "normalize_number", "DIRECTIONS", "STATUSES",
    "MISSED_STATUSES", "HANGUP_SIDES", "RECORDING_STATES", "AGENT_STATES", "LEG_KINDS",
    "LEG_ROLES", "SCHEMA_VERSION", "SL_EDGES", "AB_EDGES", "TG_EDGES", "HS_EDGES", "rebuild_summaries",
    "call_hours_select", "agent_days_select", "ring_days_select", "split_days",
]

SCHEMA_VERSION = 1
DIRECTIONS = ("inbound", "outbound", "internal")
STATUSES = ("in_progress", "answered", "missed", "abandoned", "busy", "no_answer", "failed",
            "rejected", "overflow", "voicemail")
MISSED_STATUSES = ("missed", "abandoned", "busy", "no_answer", "failed", "overflow", "voicemail")
"""Statuses of an unanswered inbound call that the customer should be called back for."""
HANGUP_SIDES = ("caller", "callee", "system")
RECORDING_STATES = ("none", "recording", "complete", "interrupted", "deleted", "failed")
AGENT_STATES = ("offline", "available", "ringing", "in_call", "wrapup", "paused", "dnd")
LEG_KINDS = ("sip", "gsm", "fxo", "siptrunk")
LEG_ROLES = ("caller", "callee", "agent", "listener")


class CallStoreError(ValueError):
    """A write the store refuses (unknown field, bad value), or a store that cannot write."""


def normalize_number(number: str, country_code: str = "", trunk_prefix: str = "") -> str:
    """The customer's number in one canonical form, so calls in and out match.

    Spaces, dashes, dots and brackets go; ``00`` becomes ``+``; with ``country_code``
    ("48") a national number becomes ``+48...`` (after removing ``trunk_prefix``, "0" in
    BG, "8" in RU). Anything else (``anonymous``, short codes) is kept as given.
    """
    if not number:
        return ""
    n = re.sub(r"[\s\-.()/]", "", str(number))
    if not re.fullmatch(r"\+?[0-9*#]+", n):
        return n
    if n.startswith("00"):
        return "+" + n[2:]
    if n.startswith("+") or not country_code:
        return n
    if trunk_prefix:
        if n.startswith(trunk_prefix) and len(n) > 6:
            return "+" + country_code + n[len(trunk_prefix):]
        return n
    if n.startswith(country_code) and len(n) > 9 + len(country_code) - 1:
        return "+" + n
    if len(n) >= 7:
        return "+" + country_code + n
    return n


@dataclass(frozen=True)
class StoreRecovery:
    """What happened when the database failed its integrity check at open."""

    reason: str
    """The error or quick_check output."""
    damaged_path: str
    """Where the damaged database was moved (kept for inspection)."""
    salvaged: dict[str, int] = field(default_factory=dict)
    """Rows copied from the damaged database into the new one, per table."""


@dataclass(frozen=True)
class Leg:
    """One leg of a call (a phone, a trunk channel, a listener)."""

    call_id: str
    leg_id: str
    kind: str = ""
    endpoint: str = ""
    role: str = ""
    started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    cause: int | None = None
    sip_code: int | None = None


@dataclass(frozen=True)
class Event:
    """One entry of a call's timeline."""

    call_id: str
    ts: float
    type: str
    agent: str = ""
    queue: str = ""
    result: str = ""
    seconds: float | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int = 0


@dataclass(frozen=True)
class Call:
    """A call record (a row of ``calls``); ``legs`` and ``events`` only from :meth:`CallStore.get_call`."""

    id: str
    started_at: float
    direction: str
    answered_at: float | None = None
    ended_at: float | None = None
    caller_number: str = ""
    caller_name: str = ""
    callee_number: str = ""
    did: str = ""
    trunk: str = ""
    external_number: str = ""
    from_extension: str = ""
    to_extension: str = ""
    answered_by: str = ""
    queue: str = ""
    ivr_path: str = ""
    status: str = "in_progress"
    wait_s: float | None = None
    ring_s: float | None = None
    talk_s: float | None = None
    hold_s: float | None = None
    wrapup_s: float | None = None
    hangup_side: str = ""
    hangup_cause: int | None = None
    sip_code: int | None = None
    recording_path: str = ""
    recording_state: str = "none"
    recording_note: str = ""
    interrupted: bool = False
    campaign: str = ""
    attempt: int | None = None
    dial_result: str = ""
    disposition: str = ""
    note: str = ""
    tags: str = ""
    updated_at: float = 0.0
    legs: tuple[Leg, ...] = ()
    events: tuple[Event, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (legs and events as lists of dicts)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("legs", "events")}
        d["legs"] = [leg.__dict__.copy() for leg in self.legs]
        d["events"] = [ev.__dict__.copy() for ev in self.events]
        return d


@dataclass(frozen=True)
class AgentState:
    """One period of an agent in one state."""

    agent: str
    state: str
    reason: str
    started_at: float
    ended_at: float | None


@dataclass(frozen=True)
class MissedEntry:
    """A customer who called and was not reached (one entry per number until reached)."""

    id: int
    number: str
    first_missed_at: float
    last_missed_at: float
    count: int
    last_call_id: str
    queue: str
    call_ids: tuple[str, ...] = ()
    closed_at: float | None = None
    closed_by_call: str = ""
    callback_s: float | None = None
    closed_direction: str = ""


@dataclass(frozen=True)
class Registration:
    """A desk phone's registration: one contact of an extension (RFC 3261 10.3 binding)."""

    extension: str
    """The address of record (extension number)."""
    contact: str
    """Contact URI as the phone sent it."""
    key: str = ""
    """What identifies the binding: the +sip.instance, else the contact (default)."""
    transport: str = "udp"
    source_ip: str = ""
    source_port: int = 0
    """Where the REGISTER came from (requests to the phone go there: NAT)."""
    expires_at: float = 0.0
    call_id: str = ""
    cseq: int = 0
    user_agent: str = ""
    instance: str = ""
    path: str = ""
    """Path header (RFC 3327) when a proxy sits in front."""
    q: float = 1.0
    nat: bool = False
    reachable: bool | None = None
    """Result of the last qualify (OPTIONS) probe."""
    rtt_ms: float | None = None
    registered_at: float | None = None
    last_qualify_ok: float | None = None
    """When the phone last answered a qualify probe."""


_REG_FIELDS = {f.name for f in fields(Registration)}


_CALL_COLUMNS = {f.name for f in fields(Call)} - {"legs", "events", "updated_at"}
_CALL_TEXT = {"caller_number", "caller_name", "callee_number", "did", "trunk", "external_number",
              "from_extension", "to_extension", "answered_by", "queue", "ivr_path", "status",
              "hangup_side", "recording_path", "recording_state", "recording_note", "campaign",
              "dial_result", "disposition", "note", "tags", "direction", "id"}
_CALL_FLOAT = {"started_at", "answered_at", "ended_at", "wait_s", "ring_s", "talk_s", "hold_s", "wrapup_s"}
_CALL_INT = {"hangup_cause", "sip_code", "attempt"}
_LEG_COLUMNS = {f.name for f in fields(Leg)} - {"call_id", "leg_id"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    answered_at REAL,
    ended_at REAL,
    direction TEXT NOT NULL,
    caller_number TEXT NOT NULL DEFAULT '',
    caller_name TEXT NOT NULL DEFAULT '',
    callee_number TEXT NOT NULL DEFAULT '',
    did TEXT NOT NULL DEFAULT '',
    trunk TEXT NOT NULL DEFAULT '',
    external_number TEXT NOT NULL DEFAULT '',
    from_extension TEXT NOT NULL DEFAULT '',
    to_extension TEXT NOT NULL DEFAULT '',
    answered_by TEXT NOT NULL DEFAULT '',
    queue TEXT NOT NULL DEFAULT '',
    ivr_path TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'in_progress',
    wait_s REAL, ring_s REAL, talk_s REAL, hold_s REAL, wrapup_s REAL,
    hangup_side TEXT NOT NULL DEFAULT '',
    hangup_cause INTEGER,
    sip_code INTEGER,
    recording_path TEXT NOT NULL DEFAULT '',
    recording_state TEXT NOT NULL DEFAULT 'none',
    recording_note TEXT NOT NULL DEFAULT '',
    interrupted INTEGER NOT NULL DEFAULT 0,
    campaign TEXT NOT NULL DEFAULT '',
    attempt INTEGER,
    dial_result TEXT NOT NULL DEFAULT '',
    disposition TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at, direction, status, answered_at, wait_s, talk_s);
CREATE INDEX IF NOT EXISTS calls_external ON calls(external_number, started_at);
CREATE INDEX IF NOT EXISTS calls_answered_by ON calls(answered_by, started_at) WHERE answered_by != '';
CREATE INDEX IF NOT EXISTS calls_from_ext ON calls(from_extension, started_at) WHERE from_extension != '';
CREATE INDEX IF NOT EXISTS calls_to_ext ON calls(to_extension, started_at) WHERE to_extension != '';
CREATE INDEX IF NOT EXISTS calls_queue ON calls(queue, started_at) WHERE queue != '';
CREATE INDEX IF NOT EXISTS calls_open ON calls(status) WHERE status = 'in_progress';
CREATE INDEX IF NOT EXISTS calls_recording ON calls(recording_path) WHERE recording_path != '';
CREATE INDEX IF NOT EXISTS calls_campaign ON calls(campaign, started_at) WHERE campaign != '';

CREATE TABLE IF NOT EXISTS call_legs (
    call_id TEXT NOT NULL,
    leg_id TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    endpoint TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL DEFAULT '',
    started_at REAL, answered_at REAL, ended_at REAL,
    cause INTEGER, sip_code INTEGER,
    PRIMARY KEY (call_id, leg_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS call_events (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    ts REAL NOT NULL,
    type TEXT NOT NULL,
    agent TEXT NOT NULL DEFAULT '',
    queue TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '',
    seconds REAL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS call_events_call ON call_events(call_id, ts);
CREATE INDEX IF NOT EXISTS call_events_type ON call_events(type, ts, agent, result, seconds);

CREATE TABLE IF NOT EXISTS agent_states (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL,
    ended_at REAL
);
CREATE INDEX IF NOT EXISTS agent_states_time ON agent_states(started_at, agent, state, ended_at);
CREATE INDEX IF NOT EXISTS agent_states_agent ON agent_states(agent, started_at);
CREATE INDEX IF NOT EXISTS agent_states_open ON agent_states(agent) WHERE ended_at IS NULL;

CREATE TABLE IF NOT EXISTS missed_calls (
    id INTEGER PRIMARY KEY,
    number TEXT NOT NULL,
    first_missed_at REAL NOT NULL,
    last_missed_at REAL NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    last_call_id TEXT NOT NULL DEFAULT '',
    queue TEXT NOT NULL DEFAULT '',
    closed_at REAL,
    closed_by_call TEXT NOT NULL DEFAULT '',
    callback_s REAL,
    closed_direction TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS missed_open ON missed_calls(number) WHERE closed_at IS NULL;
CREATE INDEX IF NOT EXISTS missed_first ON missed_calls(first_missed_at);
CREATE TABLE IF NOT EXISTS missed_call_links (
    missed_id INTEGER NOT NULL,
    call_id TEXT NOT NULL,
    PRIMARY KEY (missed_id, call_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS missed_links_call ON missed_call_links(call_id);

CREATE TABLE IF NOT EXISTS registrations (
    extension TEXT NOT NULL,
    key TEXT NOT NULL,
    contact TEXT NOT NULL,
    transport TEXT NOT NULL DEFAULT 'udp',
    source_ip TEXT NOT NULL DEFAULT '',
    source_port INTEGER NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    cseq INTEGER NOT NULL DEFAULT 0,
    user_agent TEXT NOT NULL DEFAULT '',
    instance TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    q REAL NOT NULL DEFAULT 1.0,
    nat INTEGER NOT NULL DEFAULT 0,
    reachable INTEGER,
    rtt_ms REAL,
    registered_at REAL,
    last_qualify_ok REAL,
    PRIMARY KEY (extension, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS bans (
    ip TEXT PRIMARY KEY,
    reason TEXT NOT NULL DEFAULT '',
    banned_at REAL NOT NULL,
    until REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

SL_EDGES = (10, 15, 20, 30, 45, 60, 90, 120, 180, 300)
"""Service-level thresholds (seconds) the summaries count directly (others are computed from raw rows)."""
AB_EDGES = (3, 5, 10, 15, 20, 30)
"""Short-abandon thresholds (seconds) the summaries count directly."""
TG_EDGES = (3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)
"""Talk-time thresholds (seconds: long/target calls, talk >= N) the summaries count directly."""
HS_EDGES = (3, 5, 10)
"""Short-call thresholds for calls the agent hung up (talk < N)."""

_MISSED_IN = "(" + ", ".join(f"'{x}'" for x in MISSED_STATUSES) + ")"

CALL_HOURS_COLS = (["n", "answered", "missed", "abandoned", "overflow", "wait_ans", "handle_ans"]
                   + [f"sl_{x}" for x in SL_EDGES] + [f"ab_{x}" for x in AB_EDGES])
AGENT_DAYS_COLS = (["n", "connected", "wait_sum", "talk_sum", "wrapup_sum"]
                   + [f"tg_{x}" for x in TG_EDGES] + [f"hs_{x}" for x in HS_EDGES])
RING_DAYS_COLS = ["offered", "answered", "missed", "caller_hangup", "ans_secs", "ans_n"]


def call_hours_select(where: str, hour: str = "CAST(started_at / 3600 AS INTEGER)") -> str:
    """SELECT producing ``call_hours`` rows (hour, direction, queue, counters) from ended calls
    matching ``where`` (named parameters; ``:sign`` multiplies every counter). ``hour`` is the
    bucket expression (UTC hour by default)."""
    sl = ", ".join(f"sum(answered_at IS NOT NULL AND coalesce(wait_s, 0) <= {x}) * :sign AS sl_{x}" for x in SL_EDGES)
    ab = ", ".join(f"sum(status = 'abandoned' AND coalesce(wait_s, 0) < {x}) * :sign AS ab_{x}" for x in AB_EDGES)
    return (f"SELECT {hour} AS hour, direction, queue, count(*) * :sign AS n, "
            f"sum(answered_at IS NOT NULL) * :sign AS answered, "
            f"sum(direction = 'inbound' AND status IN {_MISSED_IN}) * :sign AS missed, "
            f"sum(status = 'abandoned') * :sign AS abandoned, sum(status = 'overflow') * :sign AS overflow, "
            f"sum(CASE WHEN answered_at IS NOT NULL THEN coalesce(wait_s, 0) ELSE 0 END) * :sign AS wait_ans, "
            f"sum(CASE WHEN answered_at IS NOT NULL THEN coalesce(talk_s, 0) + coalesce(wrapup_s, 0) ELSE 0 END)"
            f" * :sign AS handle_ans, {sl}, {ab} "
            f"FROM calls WHERE ended_at IS NOT NULL AND ({where}) GROUP BY 1, 2, 3")


def agent_days_select(where: str) -> str:
    """SELECT producing ``agent_days`` rows (day, agent, kind answered|made, counters)."""
    tg = ", ".join(f"sum(coalesce(talk_s, 0) >= {x}) * :sign AS tg_{x}" for x in TG_EDGES)
    hs = ", ".join(f"sum(hangup_side = 'callee' AND coalesce(talk_s, 0) < {x}) * :sign AS hs_{x}" for x in HS_EDGES)
    common = (f"sum(coalesce(talk_s, 0)) * :sign AS talk_sum, sum(coalesce(wrapup_s, 0)) * :sign AS wrapup_sum, "
              f"{tg}, {hs}")
    return (f"SELECT CAST(started_at / 86400 AS INTEGER) AS day, answered_by AS agent, 'answered' AS kind, "
            f"count(*) * :sign AS n, count(*) * :sign AS connected, sum(coalesce(wait_s, 0)) * :sign AS wait_sum, "
            f"{common} FROM calls WHERE ended_at IS NOT NULL AND answered_by != '' AND direction = 'inbound' "
            f"AND answered_at IS NOT NULL AND ({where}) GROUP BY 1, 2 "
            f"UNION ALL "
            f"SELECT CAST(started_at / 86400 AS INTEGER), from_extension, 'made', count(*) * :sign, "
            f"sum(answered_at IS NOT NULL) * :sign, 0, {common} FROM calls WHERE ended_at IS NOT NULL "
            f"AND direction = 'outbound' AND from_extension != '' AND ({where}) GROUP BY 1, 2")


def ring_days_select(where: str) -> str:
    """SELECT producing ``agent_ring_days`` rows (day, agent, counters) from agent_ring events."""
    return ("SELECT CAST(ts / 86400 AS INTEGER) AS day, agent, count(*) * :sign AS offered, "
            "sum(result = 'answered') * :sign AS answered, "
            "sum(result IN ('no_answer', 'rejected', 'busy')) * :sign AS missed, "
            "sum(result = 'caller_hangup') * :sign AS caller_hangup, "
            "sum(CASE WHEN result = 'answered' THEN coalesce(seconds, 0) ELSE 0 END) * :sign AS ans_secs, "
            "sum(result = 'answered' AND seconds IS NOT NULL) * :sign AS ans_n "
            f"FROM call_events WHERE type = 'agent_ring' AND agent != '' AND ({where}) GROUP BY 1, 2")


def _upsert(table: str, keys: Sequence[str], cols: Sequence[str], select: str) -> str:
    return (f"INSERT INTO {table} ({', '.join([*keys, *cols])}) {select} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(f"{c} = {c} + excluded.{c}" for c in cols))


_SUMMARY_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS call_hours (hour INTEGER NOT NULL, direction TEXT NOT NULL, queue TEXT NOT NULL, "
    f"{', '.join(c + ' REAL NOT NULL DEFAULT 0' for c in CALL_HOURS_COLS)}, "
    f"PRIMARY KEY (hour, direction, queue)) WITHOUT ROWID;\n"
    f"CREATE TABLE IF NOT EXISTS agent_days (day INTEGER NOT NULL, agent TEXT NOT NULL, kind TEXT NOT NULL, "
    f"{', '.join(c + ' REAL NOT NULL DEFAULT 0' for c in AGENT_DAYS_COLS)}, "
    f"PRIMARY KEY (day, agent, kind)) WITHOUT ROWID;\n"
    f"CREATE TABLE IF NOT EXISTS agent_ring_days (day INTEGER NOT NULL, agent TEXT NOT NULL, "
    f"{', '.join(c + ' REAL NOT NULL DEFAULT 0' for c in RING_DAYS_COLS)}, "
    f"PRIMARY KEY (day, agent)) WITHOUT ROWID;\n"
    "CREATE TABLE IF NOT EXISTS agent_state_days (day INTEGER NOT NULL, agent TEXT NOT NULL, state TEXT NOT NULL, "
    "reason TEXT NOT NULL, seconds REAL NOT NULL DEFAULT 0, PRIMARY KEY (day, agent, state, reason)) WITHOUT ROWID;\n"
    f"CREATE INDEX IF NOT EXISTS calls_missed ON calls(started_at, queue) "
    f"WHERE direction = 'inbound' AND status IN {_MISSED_IN};\n"
    "CREATE INDEX IF NOT EXISTS calls_agent_in ON calls(answered_by, external_number, started_at) "
    "WHERE answered_by != '' AND direction = 'inbound' AND answered_at IS NOT NULL;\n"
    "CREATE INDEX IF NOT EXISTS calls_agent_out ON calls(from_extension, external_number, started_at) "
    "WHERE direction = 'outbound' AND from_extension != '';\n"
    "CREATE INDEX IF NOT EXISTS calls_out ON calls(started_at, from_extension, external_number, answered_at, talk_s, status) "
    "WHERE direction = 'outbound';\n"
    "CREATE INDEX IF NOT EXISTS calls_queue_wait ON calls(started_at, queue, wait_s, answered_at, status) "
    "WHERE direction = 'inbound' AND queue != '';\n"
)

_UPSERT_CALL_HOURS = _upsert("call_hours", ("hour", "direction", "queue"), CALL_HOURS_COLS,
                             call_hours_select("id = :id"))
_UPSERT_AGENT_DAYS = _upsert("agent_days", ("day", "agent", "kind"), AGENT_DAYS_COLS, agent_days_select("id = :id"))
_UPSERT_RING_DAYS = _upsert("agent_ring_days", ("day", "agent"), RING_DAYS_COLS, ring_days_select("id = :id"))
_STAT_FIELDS = {"started_at", "answered_at", "ended_at", "direction", "queue", "status", "wait_s", "talk_s",
                "wrapup_s", "hangup_side", "answered_by", "from_extension"}


def split_days(start: float, end: float) -> Iterator[tuple[int, float]]:
    """(UTC day number, seconds) pieces of the interval [start, end)."""
    t = start
    while t < end:
        day = int(t // 86400)
        nxt = min(end, (day + 1) * 86400.0)
        yield day, nxt - t
        t = nxt


def _add_state_days(conn: sqlite3.Connection, agent: str, state: str, reason: str, start: float, end: float,
                    sign: int = 1) -> None:
    for day, secs in split_days(start, end):
        conn.execute("INSERT INTO agent_state_days (day, agent, state, reason, seconds) VALUES (?, ?, ?, ?, ?) "
                     "ON CONFLICT (day, agent, state, reason) DO UPDATE SET seconds = seconds + excluded.seconds",
                     (day, agent, state, reason, sign * secs))


def rebuild_summaries(conn: sqlite3.Connection) -> None:
    """Recompute every summary table from the raw tables (inside the caller's transaction)."""
    for t in ("call_hours", "agent_days", "agent_ring_days", "agent_state_days"):
        conn.execute(f"DELETE FROM {t}")
    conn.execute(f"INSERT INTO call_hours (hour, direction, queue, {', '.join(CALL_HOURS_COLS)}) "
                 f"{call_hours_select('1')}", {"sign": 1})
    conn.execute(f"INSERT INTO agent_days (day, agent, kind, {', '.join(AGENT_DAYS_COLS)}) "
                 f"SELECT * FROM ({agent_days_select('1')}) WHERE 1 "
                 f"ON CONFLICT (day, agent, kind) DO UPDATE SET "
                 + ", ".join(f"{c} = {c} + excluded.{c}" for c in AGENT_DAYS_COLS), {"sign": 1})
    conn.execute(f"INSERT INTO agent_ring_days (day, agent, {', '.join(RING_DAYS_COLS)}) {ring_days_select('1')}",
                 {"sign": 1})
    for agent, state, reason, start, end in conn.execute(
            "SELECT agent, state, reason, started_at, ended_at FROM agent_states WHERE ended_at IS NOT NULL").fetchall():
        _add_state_days(conn, agent, state, reason, start, end)

_TABLES = ("calls", "call_legs", "call_events", "agent_states", "missed_calls",
           "missed_call_links", "registrations", "bans", "meta")


class _Op:
    __slots__ = ("fn", "args", "done", "result", "error", "sync")

    def __init__(self, fn: str | None, args: tuple, sync: bool) -> None:
        self.fn = fn
        self.args = args
        self.sync = sync
        self.done = threading.Event() if sync else None
        self.result: Any = None
        self.error: BaseException | None = None


_STOP = object()


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def new_call_id() -> str:
    """A time-ordered uuid (RFC 9562 version 7: 48 bits of unix milliseconds, then random).
    Calls, their legs and events are keyed by it; a random uuid4 scattered every insert over
    the whole of those indexes, so a busy box's writes slowed down as the store grew."""
    ms = int(time.time() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 64) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


class CallStore:
    """The call-record store of one box (see the module docstring for the schema).

    ``path`` is the SQLite file (e.g. ``<data_dir>/calls.sqlite``). ``clock`` gives unix
    time (injectable for tests); ``country_code``/``trunk_prefix`` feed
    :func:`normalize_number` for ``external_number``. The constructor opens and checks the
    database (see :attr:`recovery`) and starts the writer thread; :meth:`close` stops it.
    ``writer="process"`` runs the statements in a child process (see :class:`_WriterProcess`),
    falling back to the thread when the child cannot start.
    """

    def __init__(self, path: str | os.PathLike, *, commit_interval: float = 0.05, max_batch: int = 500,
                 clock: Callable[[], float] = time.time, country_code: str = "",
                 trunk_prefix: str = "", writer: str = "thread") -> None:
        self.path = str(path)
        self.commit_interval = commit_interval
        self.max_batch = max_batch
        self.clock = clock
        self.country_code = country_code
        self.trunk_prefix = trunk_prefix
        self.recovery: StoreRecovery | None = None
        """Set when the database was damaged at open: what was kept aside and salvaged."""
        self.last_error: str = ""
        """The last write error ("" when writes succeed); writes are retried until they do."""
        if writer not in ("thread", "process"):
            raise CallStoreError("writer must be 'thread' or 'process'")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._open_checked()
        self._backend: _Writer | _WriterProcess = _Writer(conn)
        if writer == "process":
            conn.close()
            try:
                self._backend = _WriterProcess(self.path)
            except (OSError, CallStoreError) as e:
                log.warning("call store: no writer process (%s); writing from a thread", e)
                self._backend = _Writer(_connect(self.path))
        self.writer = "process" if isinstance(self._backend, _WriterProcess) else "thread"
        """Where the changes are written: "process" (a process of its own) or "thread"."""
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._listeners: list[Callable[[str, str], None]] = []
        self._thread = threading.Thread(target=self._writer, name="callstore-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ open / check / recover

    def _open_checked(self) -> sqlite3.Connection:
        reason = ""
        if os.path.exists(self.path):
            try:
                conn = _connect(self.path)
                rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
                if rows == ["ok"]:
                    self._migrate(conn)
                    return conn
                reason = "; ".join(rows[:5])
                conn.close()
            except sqlite3.DatabaseError as e:
                reason = str(e)
                try:
                    conn.close()
                except Exception:
                    pass
            self.recovery = self._recover(reason)
            log.error("call store %s failed its integrity check (%s); damaged file kept at %s, "
                      "salvaged %s", self.path, reason, self.recovery.damaged_path, self.recovery.salvaged)
        conn = _connect(self.path)
        self._migrate(conn)
        if self.recovery is not None:
            self._salvage_into(conn)
            conn.execute("BEGIN")
            rebuild_summaries(conn)
            conn.execute("COMMIT")
        return conn

    def _recover(self, reason: str) -> StoreRecovery:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.clock()))
        damaged = f"{self.path}.damaged-{stamp}"
        n = 1
        while os.path.exists(damaged):
            n += 1
            damaged = f"{self.path}.damaged-{stamp}-{n}"
        os.replace(self.path, damaged)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, damaged + suffix)
        _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        return StoreRecovery(reason=reason, damaged_path=damaged)

    def _salvage_into(self, conn: sqlite3.Connection) -> None:
        assert self.recovery is not None
        salvaged: dict[str, int] = {}
        try:
            src = sqlite3.connect(self.recovery.damaged_path, isolation_level=None)
        except sqlite3.DatabaseError:
            return
        try:
            for table in _TABLES:
                if table == "meta":
                    continue
                try:
                    cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
                    have = {r[1] for r in src.execute(f"PRAGMA table_info({table})")}
                except sqlite3.DatabaseError:
                    continue
                cols = [c for c in cols if c in have]
                if not cols:
                    continue
                sql = f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                count = 0
                conn.execute("BEGIN")
                for row in _read_rows(src, table, cols):
                    try:
                        conn.execute(sql, row)
                        count += 1
                    except sqlite3.DatabaseError:
                        continue
                conn.execute("COMMIT")
                if count:
                    salvaged[table] = count
        finally:
            src.close()
        self.recovery = StoreRecovery(self.recovery.reason, self.recovery.damaged_path, salvaged)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CallStoreError(f"call store schema {version} is newer than this firmware ({SCHEMA_VERSION})")
        conn.executescript(_SCHEMA + _SUMMARY_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # ------------------------------------------------------------------ writer thread (and process)

    def _submit(self, fn: str | None, *args: Any, sync: bool = False,
                timeout: float | None = None) -> Any:
        if self._closed:
            raise CallStoreError("the call store is closed")
        op = _Op(fn, args, sync)
        self._queue.put(op)
        if sync or self._queue.qsize() >= self.max_batch:
            self._wake.set()
        if sync:
            assert op.done is not None
            if not op.done.wait(timeout):
                raise CallStoreError(f"the call store did not commit within {timeout} s"
                                     + (f" (last error: {self.last_error})" if self.last_error else ""))
            if op.error is not None:
                raise op.error
            return op.result
        return None

    def _writer(self) -> None:
        pending: list[_Op] = []
        stop = False
        while not stop:
            if not pending:
                item = self._queue.get()
                if item is _STOP:
                    break
                pending.append(item)
            deadline = time.monotonic() + self.commit_interval
            sync = any(op.sync for op in pending)
            # Collect for commit_interval without being woken by every change (a wake-up per
            # change cost a thread switch and a GIL hand-over each, 13 per call); _submit
            # wakes the writer early for a synchronous change or a full batch.
            while len(pending) < self.max_batch and not sync and not stop:
                while len(pending) < self.max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    pending.append(item)
                    if item.sync:
                        sync = True
                        break
                if stop or sync or len(pending) >= self.max_batch:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(left)
                self._wake.clear()
            if self._commit(pending):
                pending = []
            elif stop:
                break
            else:
                pending = [op for op in pending if op.fn is not None]
                time.sleep(1.0)
        if pending:
            self._commit(pending)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._commit([item])
        self._backend.close()

    def _commit(self, ops: list[_Op]) -> bool:
        ok, changed, error = self._backend.commit(ops, self.clock())
        if not ok:
            self.last_error = error
            log.error("call store write failed (%s); %d change(s) kept in memory and retried", error, len(ops))
            for op in ops:
                op.error = None
                if op.fn is None and op.done is not None:
                    op.error = CallStoreError(f"the call store cannot write: {error}")
                    op.done.set()
            return False
        self.last_error = ""
        for op in ops:
            if op.done is not None:
                op.done.set()
        for kind, key in changed:
            for cb in list(self._listeners):
                try:
                    cb(kind, key)
                except Exception:
                    log.exception("call store listener failed")
        return True

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until every change queued before this call is committed and fsynced."""
        self._submit(None, sync=True, timeout=timeout)

    def close(self) -> None:
        """Commit what is queued, stop the writer and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._wake.set()
        self._thread.join(60)
        with self._readers_lock:
            for c in self._readers:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._readers.clear()

    def __enter__(self) -> "CallStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def subscribe(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``callback(kind, key)`` after commits: ("call", id), ("agent", ext),
        ("missed", number). Runs on the writer thread: hand work over to your loop
        (``loop.call_soon_threadsafe``). Returns a function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    # ------------------------------------------------------------------ reads

    def _read(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise CallStoreError("the call store is closed")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Run a read-only query on this thread's read connection (used by the reports)."""
        return self._read().execute(sql, params).fetchall()

    # ------------------------------------------------------------------ calls: writes

    def _norm(self, number: str) -> str:
        return normalize_number(number, self.country_code, self.trunk_prefix)

    def _check_fields(self, values: dict[str, Any], *, allow_id: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in values.items():
            if k not in _CALL_COLUMNS or (k == "id" and not allow_id):
                raise CallStoreError(f"unknown call field {k!r}")
            if v is None:
                if k in _CALL_TEXT:
                    v = ""
                out[k] = v
                continue
            if k in _CALL_TEXT:
                if k == "tags" and isinstance(v, (list, tuple, set)):
                    v = ",".join(str(t) for t in v)
                if not isinstance(v, str):
                    raise CallStoreError(f"call field {k} must be text, not {type(v).__name__}")
            elif k in _CALL_FLOAT:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise CallStoreError(f"call field {k} must be a number of seconds")
                v = float(v)
            elif k in _CALL_INT:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise CallStoreError(f"call field {k} must be an integer")
            elif k == "interrupted":
                v = 1 if v else 0
            out[k] = v
        if "direction" in out and out["direction"] not in DIRECTIONS:
            raise CallStoreError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if "status" in out and out["status"] not in STATUSES:
            raise CallStoreError(f"status must be one of {', '.join(STATUSES)}")
        if out.get("hangup_side") and out["hangup_side"] not in HANGUP_SIDES:
            raise CallStoreError(f"hangup_side must be one of {', '.join(HANGUP_SIDES)}")
        if "recording_state" in out and out["recording_state"] not in RECORDING_STATES:
            raise CallStoreError(f"recording_state must be one of {', '.join(RECORDING_STATES)}")
        if out.get("external_number"):
            out["external_number"] = self._norm(out["external_number"])
        return out

    def begin_call(self, *, direction: str, call_id: str | None = None, started_at: float | None = None,
                   **fields_: Any) -> str:
        """Record a new call and return its id (a uuid unless ``call_id`` is given).

        ``external_number`` defaults to the normalised caller (inbound) or callee
        (outbound) number. Any column of ``calls`` may be given.
        """
        cid = call_id or new_call_id()
        values = self._check_fields({**fields_, "direction": direction})
        values.setdefault("status", "in_progress")
        if "external_number" not in values:
            if direction == "inbound":
                values["external_number"] = self._norm(values.get("caller_number", ""))
            elif direction == "outbound":
                values["external_number"] = self._norm(values.get("callee_number", ""))
        values["id"] = cid
        values["started_at"] = float(started_at if started_at is not None else self.clock())
        self._submit("_w_begin", values)
        return cid

    def update_call(self, call_id: str, **fields_: Any) -> None:
        """Change columns of a call (e.g. ``answered_at``, ``answered_by``, ``queue``)."""
        values = self._check_fields(fields_)
        if values:
            self._submit("_w_update", call_id, values, False)

    def end_call(self, call_id: str, *, status: str | None = None, hangup_side: str | None = None,
                 hangup_cause: int | None = None, sip_code: int | None = None,
                 ended_at: float | None = None, **fields_: Any) -> None:
        """Close a call. ``status`` defaults to answered (when answered) or missed.

        Derived when not given: ``talk_s`` = ended - answered; ``wait_s`` = answered (or
        ended) - started. An inbound call from an external number ending unanswered with a
        status in :data:`MISSED_STATUSES` opens/extends the number's missed entry; a
        connected call closes it.
        """
        extra = {"status": status, "hangup_side": hangup_side, "hangup_cause": hangup_cause, "sip_code": sip_code}
        values = self._check_fields({**fields_, **{k: v for k, v in extra.items() if v is not None}})
        values["ended_at"] = float(ended_at if ended_at is not None else self.clock())
        self._submit("_w_update", call_id, values, True)

    def add_event(self, call_id: str, type: str, *, ts: float | None = None, agent: str = "",
                  queue: str = "", result: str = "", seconds: float | None = None, **data: Any) -> None:
        """Append an event to the call's timeline (see the module docstring for the types)."""
        if not type or not isinstance(type, str):
            raise CallStoreError("event type must be non-empty text")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))):
            raise CallStoreError("event seconds must be a number")
        try:
            payload = json.dumps(data, separators=(",", ":"), default=str)
        except (TypeError, ValueError) as e:
            raise CallStoreError(f"event data is not JSON-serialisable: {e}") from None
        t = float(ts if ts is not None else self.clock())
        self._submit("_w_event", (call_id, t, type, agent or "", queue or "", result or "",
                                     None if seconds is None else float(seconds), payload))

    def add_leg(self, call_id: str, *, kind: str, endpoint: str = "", role: str, leg_id: str | None = None,
                started_at: float | None = None) -> str:
        """Record a leg of a call (returns its id)."""
        if kind not in LEG_KINDS:
            raise CallStoreError(f"leg kind must be one of {', '.join(LEG_KINDS)}")
        if role not in LEG_ROLES:
            raise CallStoreError(f"leg role must be one of {', '.join(LEG_ROLES)}")
        lid = leg_id or uuid.uuid4().hex[:12]
        t = float(started_at if started_at is not None else self.clock())
        self._submit("_w_leg", call_id, lid, {"kind": kind, "endpoint": endpoint, "role": role, "started_at": t})
        return lid

    def update_leg(self, call_id: str, leg_id: str, **fields_: Any) -> None:
        """Change a leg: ``answered_at``, ``ended_at``, ``cause`` (Q.850; a numeric string is
        accepted, anything else non-numeric is stored as unknown), ``sip_code``, ``endpoint``..."""
        values: dict[str, Any] = {}
        for k, v in fields_.items():
            if k not in _LEG_COLUMNS:
                raise CallStoreError(f"unknown leg field {k!r}")
            if k in ("cause", "sip_code"):
                if isinstance(v, str):
                    v = int(v) if v.strip().isdigit() else None
                if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                    raise CallStoreError(f"leg field {k} must be an integer")
            elif k in ("started_at", "answered_at", "ended_at") and v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise CallStoreError(f"leg field {k} must be a time in seconds")
                v = float(v)
            elif k in ("kind", "role", "endpoint") and not isinstance(v, str):
                raise CallStoreError(f"leg field {k} must be text")
            values[k] = v
        self._submit("_w_leg", call_id, leg_id, values)

    def set_note(self, call_id: str, *, disposition: str | None = None, note: str | None = None,
                 tags: Iterable[str] | str | None = None) -> None:
        """The agent's categorisation of a call after it (kept with the call record)."""
        values: dict[str, Any] = {}
        if disposition is not None:
            values["disposition"] = disposition
        if note is not None:
            values["note"] = note
        if tags is not None:
            values["tags"] = tags if isinstance(tags, str) else ",".join(tags)
        self.update_call(call_id, **values)

    def set_recording(self, call_id: str, *, path: str | None = None, state: str, note: str = "") -> None:
        """Link a recording to a call and/or change its state (see RECORDING_STATES)."""
        values: dict[str, Any] = {"recording_state": state, "recording_note": note}
        if path is not None:
            values["recording_path"] = path
        self.update_call(call_id, **values)

    def recording_deleted(self, path: str, note: str) -> None:
        """Every call linked to recording ``path`` now says it was deleted and why."""
        self._submit("_w_rec_deleted", path, note)

    def agent_state(self, agent: str, state: str, reason: str = "", *, at: float | None = None) -> None:
        """Record that ``agent`` is now in ``state`` (closing the previous state's period)."""
        if state not in AGENT_STATES:
            raise CallStoreError(f"agent state must be one of {', '.join(AGENT_STATES)}")
        if not agent:
            raise CallStoreError("agent must be an extension number")
        t = float(at if at is not None else self.clock())
        self._submit("_w_agent", agent, state, reason or "", t)

    def mark_interrupted_calls(self, timeout: float | None = 60.0) -> list[str]:
        """At start-up: calls still in progress were cut by a power loss or a crash.

        Each becomes ``interrupted`` with ``ended_at`` estimated from its last event (or
        leg, or answer, or start), status answered (when answered) or missed/failed, a
        recording still "recording" becomes "interrupted"; open agent states are closed at
        the last commit before the loss. Returns the ids. Blocks until committed.
        """
        return self._submit("_w_interrupted", sync=True, timeout=timeout)

    def rebuild_summaries(self, timeout: float | None = 300.0) -> None:
        """Recompute the report summaries from the raw tables (after a salvage or an import)."""
        self._submit("_w_rebuild", sync=True, timeout=timeout)

    # ------------------------------------------------------------------ calls: reads

    def get_call(self, call_id: str) -> Call | None:
        """One call with its legs and events (committed data), or None."""
        conn = self._read()
        row = conn.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        if row is None:
            return None
        legs = tuple(Leg(**dict(r)) for r in conn.execute(
            "SELECT * FROM call_legs WHERE call_id = ? ORDER BY started_at, leg_id", (call_id,)))
        events = tuple(_event(r) for r in conn.execute(
            "SELECT * FROM call_events WHERE call_id = ? ORDER BY ts, id", (call_id,)))
        return _call(row, legs, events)

    def calls_in_progress(self) -> list[Call]:
        """Calls not ended yet, oldest first (committed data: at most ``commit_interval`` old)."""
        rows = self._read().execute("SELECT * FROM calls WHERE status = 'in_progress' ORDER BY started_at").fetchall()
        return [_call(r) for r in rows]

    def calls_of_number(self, number: str, limit: int = 20) -> list[Call]:
        """The latest calls with a customer's number (for the agent's pop-up), newest first."""
        rows = self._read().execute("SELECT * FROM calls WHERE external_number = ? ORDER BY started_at DESC LIMIT ?",
                                    (self._norm(number), int(limit))).fetchall()
        return [_call(r) for r in rows]

    def agent_current_states(self) -> dict[str, AgentState]:
        """Each agent's current state (open period)."""
        rows = self._read().execute("SELECT agent, state, reason, started_at, ended_at FROM agent_states "
                                    "WHERE ended_at IS NULL").fetchall()
        return {r["agent"]: AgentState(*r) for r in rows}

    def agent_history(self, agent: str, since: float, until: float) -> list[AgentState]:
        """An agent's state periods overlapping [since, until)."""
        rows = self._read().execute(
            "SELECT agent, state, reason, started_at, ended_at FROM agent_states WHERE agent = ? "
            "AND started_at < ? AND (ended_at IS NULL OR ended_at > ?) ORDER BY started_at",
            (agent, until, since)).fetchall()
        return [AgentState(*r) for r in rows]

    def missed_entries(self, *, open_only: bool = True, number: str | None = None) -> list[MissedEntry]:
        """Missed-call entries (open ones by default), oldest first, with their call ids."""
        sql = "SELECT * FROM missed_calls WHERE 1=1"
        params: list[Any] = []
        if open_only:
            sql += " AND closed_at IS NULL"
        if number is not None:
            sql += " AND number = ?"
            params.append(self._norm(number))
        conn = self._read()
        out = []
        for r in conn.execute(sql + " ORDER BY first_missed_at", params).fetchall():
            ids = tuple(x[0] for x in conn.execute(
                "SELECT l.call_id FROM missed_call_links l JOIN calls c ON c.id = l.call_id "
                "WHERE l.missed_id = ? ORDER BY c.started_at", (r["id"],)))
            out.append(MissedEntry(id=r["id"], number=r["number"], first_missed_at=r["first_missed_at"],
                                   last_missed_at=r["last_missed_at"], count=r["count"],
                                   last_call_id=r["last_call_id"], queue=r["queue"], call_ids=ids,
                                   closed_at=r["closed_at"], closed_by_call=r["closed_by_call"],
                                   callback_s=r["callback_s"], closed_direction=r["closed_direction"]))
        return out

    def recordings(self, *, states: Sequence[str] = ("complete", "interrupted"),
                   before: float | None = None) -> list[tuple[str, str, float]]:
        """(call_id, recording_path, started_at) of calls with a recording, oldest first."""
        sql = (f"SELECT id, recording_path, started_at FROM calls WHERE recording_path != '' "
               f"AND recording_state IN ({', '.join('?' * len(states))})")
        params: list[Any] = list(states)
        if before is not None:
            sql += " AND started_at < ?"
            params.append(before)
        return [tuple(r) for r in self._read().execute(sql + " ORDER BY started_at", params).fetchall()]

    def recording_state_of(self, path: str) -> str | None:
        """The recording state of the call that owns ``path`` (None: no call links it)."""
        r = self._read().execute("SELECT recording_state FROM calls WHERE recording_path = ? LIMIT 1", (path,)).fetchone()
        return r[0] if r else None

    # ------------------------------------------------------------------ registrations

    def save_registration(self, binding: "Registration | dict[str, Any]") -> None:
        """Insert or replace a binding (a :class:`Registration`, or the registrar's dict with
        ``aor`` for the extension; unknown keys are ignored)."""
        if isinstance(binding, Registration):
            values = dict(binding.__dict__)
        else:
            values = {k: v for k, v in binding.items() if k in _REG_FIELDS}
            if "extension" not in values and "aor" in binding:
                values["extension"] = binding["aor"]
        if not values.get("extension") or not values.get("contact"):
            raise CallStoreError("a registration needs an extension (aor) and a contact")
        values["key"] = values.get("key") or values.get("instance") or values["contact"]
        for k in ("nat", "reachable"):
            if values.get(k) is not None:
                values[k] = 1 if values[k] else 0
        self._submit("_w_replace", "registrations", values)

    def delete_registration(self, extension: str, key: str | None = None) -> None:
        """Remove one binding (by its key: instance or contact), or every binding of an extension."""
        if key is None:
            self._submit("_w_sql", "DELETE FROM registrations WHERE extension = ?", (extension,))
        else:
            self._submit("_w_sql", "DELETE FROM registrations WHERE extension = ? AND key = ?", (extension, key))

    def expire_registrations(self, now: float | None = None) -> None:
        """Drop registrations whose ``expires_at`` has passed."""
        t = self.clock() if now is None else now
        self._submit("_w_sql", "DELETE FROM registrations WHERE expires_at <= ?", (t,))

    def registrations(self, extension: str | None = None, *, now: float | None = None) -> list[Registration]:
        """Registrations still valid at ``now`` (all extensions, or one)."""
        t = self.clock() if now is None else now
        sql = "SELECT * FROM registrations WHERE expires_at > ?"
        params: list[Any] = [t]
        if extension is not None:
            sql += " AND extension = ?"
            params.append(extension)
        return [_registration(r) for r in self._read().execute(sql + " ORDER BY extension, key", params)]

    def load_registrations(self) -> list[dict[str, Any]]:
        """Every stored binding as a dict with ``aor`` (for firmware.pbx.registrar.BindingStore)."""
        return [{**r.__dict__, "aor": r.extension} for r in
                (_registration(x) for x in self._read().execute("SELECT * FROM registrations ORDER BY extension, key"))]

    # ------------------------------------------------------------------ bans (firmware.pbx.security.BanStore)

    def load_bans(self) -> list[tuple[str, str, float, float]]:
        """Every stored ban: (ip, reason, banned_at, until)."""
        return [tuple(r) for r in self._read().execute("SELECT ip, reason, banned_at, until FROM bans ORDER BY banned_at")]

    def save_ban(self, ip: str, reason: str, banned_at: float, until: float) -> None:
        """Store (or extend) a ban."""
        self._submit("_w_replace", "bans", {"ip": ip, "reason": reason, "banned_at": float(banned_at),
                                               "until": float(until)})

    def delete_ban(self, ip: str) -> None:
        """Lift a ban."""
        self._submit("_w_sql", "DELETE FROM bans WHERE ip = ?", (ip,))


class _Writer:
    """The write side of a call store: one connection, each batch of changes applied in one
    transaction. Runs on the store's writer thread, or in the writer process."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.now = 0.0
        """The store's clock when the batch was taken: the time stamps of its changes."""

    def _coalesce(self, ops: list[_Op]) -> list[_Op]:
        """``ops`` with each call's plain updates folded into its begin or previous update.

        A call's set-up makes a begin and three updates within milliseconds: one INSERT
        instead of four groups of statements (each a SELECT, an UPDATE and the missed-call
        check). Only asynchronous updates that neither end the call nor set ``ended_at`` are
        folded, and only when nothing but events and legs of that call lies between. The ops
        given are left as they are (a refused batch is redone from them, one by one).
        """
        out: list[_Op] = []
        open_: dict[str, int] = {}
        for op in ops:
            fn = op.fn
            if fn == "_w_update":
                call_id, values, ending = op.args
                at = open_.get(call_id)
                if at is not None and not ending and not op.sync and "ended_at" not in values:
                    target = out[at]
                    if target.fn == "_w_begin":
                        out[at] = _Op(target.fn, ({**target.args[0], **values},), False)
                    else:
                        out[at] = _Op(target.fn, (call_id, {**target.args[1], **values}, False), False)
                    continue
                if ending or op.sync or "ended_at" in values:
                    open_.pop(call_id, None)
                else:
                    open_[call_id] = len(out)
            elif fn == "_w_begin":
                values = op.args[0]
                if op.sync or values.get("ended_at") is not None:
                    open_.pop(values["id"], None)
                else:
                    open_[values["id"]] = len(out)
            elif fn != "_w_event" and fn != "_w_leg":
                open_.clear()
            out.append(op)
        return out

    def _apply(self, ops: list[_Op], changed: list[tuple[str, str]]) -> bool:
        """Run ``ops`` in the open transaction; False (nothing kept) when one is refused."""
        for op in ops:
            if op.fn is None:
                continue
            try:
                op.result = getattr(self, op.fn)(self.conn, *op.args)
            except (sqlite3.Error, CallStoreError, ValueError, TypeError) as e:
                if isinstance(e, sqlite3.Error) and _transient(e):
                    raise
                return False
            if isinstance(op.result, _Changed):
                changed.append((op.result.kind, op.result.key))
        return True

    def _apply_isolated(self, ops: list[_Op], changed: list[tuple[str, str]]) -> None:
        """Run ``ops`` one savepoint each: a refused one is rolled back alone and reported."""
        for op in ops:
            if op.fn is None:
                continue
            conn = self.conn
            conn.execute("SAVEPOINT op")
            try:
                op.result = getattr(self, op.fn)(self.conn, *op.args)
                conn.execute("RELEASE op")
                if isinstance(op.result, _Changed):
                    changed.append((op.result.kind, op.result.key))
            except (sqlite3.Error, CallStoreError, ValueError, TypeError) as e:
                if isinstance(e, sqlite3.Error) and _transient(e):
                    raise
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                op.error = e if isinstance(e, CallStoreError) else CallStoreError(str(e))
                log.error("call store refused a write: %s", e)

    def commit(self, ops: list[_Op], now: float) -> tuple[bool, list[tuple[str, str]], str]:
        """Apply ``ops`` in one transaction: (committed, changed keys, error of a failed batch).
        Sets each op's ``result`` and, for a change refused alone, its ``error``."""
        conn = self.conn
        self.now = now
        changed: list[tuple[str, str]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            # One savepoint per change doubled the statements of a batch: run the batch
            # plainly, and only when a change is refused redo it as given, a savepoint each.
            if not self._apply(self._coalesce(ops), changed):
                conn.execute("ROLLBACK")
                changed.clear()
                conn.execute("BEGIN IMMEDIATE")
                self._apply_isolated(ops, changed)
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_alive', ?)",
                         (repr(self.now),))
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return False, [], str(e)
        return True, changed, ""

    def close(self) -> None:
        self.conn.close()


    def _w_begin(self, conn: sqlite3.Connection, values: dict[str, Any]) -> "_Changed":
        values = dict(values)
        values["updated_at"] = self.now
        cols = ", ".join(values)
        conn.execute(f"INSERT INTO calls ({cols}) VALUES ({', '.join('?' * len(values))})", list(values.values()))
        if values.get("answered_at") is not None:
            self._close_missed(conn, values["id"])
        if values.get("ended_at") is not None:
            self._summaries(conn, values["id"], 1)
            self._maybe_missed(conn, values["id"])
        return _Changed("call", values["id"])

    @staticmethod
    def _summaries(conn: sqlite3.Connection, call_id: str, sign: int) -> None:
        conn.execute(_UPSERT_CALL_HOURS, {"id": call_id, "sign": sign})
        conn.execute(_UPSERT_AGENT_DAYS, {"id": call_id, "sign": sign})

    def _w_update(self, conn: sqlite3.Connection, call_id: str, values: dict[str, Any], ending: bool) -> "_Changed":
        row = conn.execute("SELECT started_at, answered_at, direction, status, external_number, wait_s, "
                           "talk_s, recording_state, ended_at FROM calls WHERE id = ?", (call_id,)).fetchone()
        if row is None:
            raise CallStoreError(f"no call {call_id}")
        started, answered, direction, status, external, wait_s, talk_s, rec_state, was_ended = row
        stats = was_ended is not None and (ending or bool(_STAT_FIELDS & set(values)))
        if stats:
            self._summaries(conn, call_id, -1)
        values = dict(values)
        if "answered_at" in values:
            answered = values["answered_at"]
        if ending:
            ended = values["ended_at"]
            if "status" not in values:
                values["status"] = "answered" if answered is not None else (
                    "missed" if direction == "inbound" else "no_answer")
            if "talk_s" not in values and talk_s is None:
                values["talk_s"] = max(0.0, ended - answered) if answered is not None else 0.0
            if "wait_s" not in values and wait_s is None:
                values["wait_s"] = max(0.0, (answered if answered is not None else ended) - started)
            if rec_state == "recording" and "recording_state" not in values:
                values["recording_state"] = "complete"
        values["updated_at"] = self.now
        conn.execute(f"UPDATE calls SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                     [*values.values(), call_id])
        if stats or (ending and was_ended is None):
            self._summaries(conn, call_id, 1)
        # the row read above already tells whether the missed-call book is concerned: an
        # internal call (no external number) skips both look-ups
        external = values.get("external_number", external)
        direction = values.get("direction", direction)
        if answered is not None:
            self._close_missed(conn, call_id, (external, answered, direction))
        if ending and external and direction == "inbound" and answered is None \
                and values.get("status", status) in MISSED_STATUSES:
            self._maybe_missed(conn, call_id)
        return _Changed("call", call_id)

    def _close_missed(self, conn: sqlite3.Connection, call_id: str,
                      known: tuple[Any, Any, Any] | None = None) -> None:
        row = known if known is not None else conn.execute(
            "SELECT external_number, answered_at, direction FROM calls WHERE id = ?", (call_id,)).fetchone()
        if row is None or not row[0] or row[1] is None:
            return
        number, answered, direction = row
        conn.execute("UPDATE missed_calls SET closed_at = ?, closed_by_call = ?, "
                     "callback_s = max(0, ? - first_missed_at), closed_direction = ? "
                     "WHERE number = ? AND closed_at IS NULL AND first_missed_at <= ?",
                     (answered, call_id, answered, direction, number, answered))

    def _maybe_missed(self, conn: sqlite3.Connection, call_id: str) -> None:
        row = conn.execute("SELECT external_number, direction, status, answered_at, started_at, ended_at, queue "
                           "FROM calls WHERE id = ?", (call_id,)).fetchone()
        number, direction, status, answered, started, ended, q = row
        if not number or direction != "inbound" or answered is not None or status not in MISSED_STATUSES:
            return
        reached = conn.execute("SELECT id, answered_at, direction FROM calls WHERE external_number = ? "
                               "AND answered_at >= ? AND id != ? ORDER BY answered_at LIMIT 1",
                               (number, started, call_id)).fetchone()
        open_row = conn.execute("SELECT id FROM missed_calls WHERE number = ? AND closed_at IS NULL",
                                (number,)).fetchone()
        if open_row is not None:
            mid = open_row[0]
            conn.execute("UPDATE missed_calls SET last_missed_at = max(last_missed_at, ?), count = count + 1, "
                         "last_call_id = ?, queue = CASE WHEN ? != '' THEN ? ELSE queue END WHERE id = ?",
                         (started, call_id, q, q, mid))
        else:
            cur = conn.execute("INSERT INTO missed_calls (number, first_missed_at, last_missed_at, count, "
                               "last_call_id, queue) VALUES (?, ?, ?, 1, ?, ?)", (number, started, started, call_id, q))
            mid = cur.lastrowid
        conn.execute("INSERT OR IGNORE INTO missed_call_links (missed_id, call_id) VALUES (?, ?)", (mid, call_id))
        if reached is not None:
            conn.execute("UPDATE missed_calls SET closed_at = ?, closed_by_call = ?, callback_s = max(0, ? - first_missed_at), "
                         "closed_direction = ? WHERE id = ?", (reached[1], reached[0], reached[1], reached[2], mid))

    def _w_event(self, conn: sqlite3.Connection, row: tuple) -> None:
        cur = conn.execute("INSERT INTO call_events (call_id, ts, type, agent, queue, result, seconds, data) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        if row[2] == "agent_ring" and row[3]:
            conn.execute(_UPSERT_RING_DAYS, {"id": cur.lastrowid, "sign": 1})

    def _w_leg(self, conn: sqlite3.Connection, call_id: str, leg_id: str, values: dict[str, Any]) -> None:
        # one upsert: a new leg is inserted, a known one gets the given columns
        sets = ", ".join(f"{k} = excluded.{k}" for k in values)
        values = {"call_id": call_id, "leg_id": leg_id, **values}
        conn.execute(f"INSERT INTO call_legs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))}) "
                     f"ON CONFLICT (call_id, leg_id) DO {'UPDATE SET ' + sets if sets else 'NOTHING'}",
                     list(values.values()))

    def _w_rec_deleted(self, conn: sqlite3.Connection, path: str, note: str) -> None:
        conn.execute("UPDATE calls SET recording_state = 'deleted', recording_note = ?, updated_at = ? "
                     "WHERE recording_path = ?", (note, self.now, path))

    def _w_agent(self, conn: sqlite3.Connection, agent: str, state: str, reason: str, t: float) -> "_Changed | None":
        cur = conn.execute("SELECT id, state, reason FROM agent_states WHERE agent = ? AND ended_at IS NULL",
                           (agent,)).fetchall()
        if len(cur) == 1 and cur[0][1] == state and cur[0][2] == reason:
            return None
        self._close_states(conn, t, agent)
        conn.execute("INSERT INTO agent_states (agent, state, reason, started_at) VALUES (?, ?, ?, ?)",
                     (agent, state, reason, t))
        return _Changed("agent", agent)

    def _w_interrupted(self, conn: sqlite3.Connection) -> list[str]:
        alive = conn.execute("SELECT value FROM meta WHERE key = 'last_alive'").fetchone()
        last_alive = float(alive[0]) if alive else None
        ids = [r[0] for r in conn.execute("SELECT id FROM calls WHERE status = 'in_progress'")]
        for cid in ids:
            started, answered, direction, rec = conn.execute(
                "SELECT started_at, answered_at, direction, recording_state FROM calls WHERE id = ?", (cid,)).fetchone()
            last_ev = conn.execute("SELECT max(ts) FROM call_events WHERE call_id = ?", (cid,)).fetchone()[0]
            last_leg = conn.execute("SELECT max(max(coalesce(started_at, 0), coalesce(answered_at, 0), "
                                    "coalesce(ended_at, 0))) FROM call_legs WHERE call_id = ?", (cid,)).fetchone()[0]
            ended = max(x for x in (started, answered, last_ev, last_leg) if x is not None)
            status = "answered" if answered is not None else ("missed" if direction == "inbound" else "failed")
            values: dict[str, Any] = {"ended_at": ended, "status": status, "interrupted": 1, "hangup_side": "system"}
            if rec == "recording":
                values["recording_state"] = "interrupted"
                values["recording_note"] = "the box stopped during the call; the file was repaired at start-up"
            self._w_update(conn, cid, values, True)
        end = last_alive if last_alive is not None else self.now
        self._close_states(conn, end)
        return ids

    @staticmethod
    def _close_states(conn: sqlite3.Connection, t: float, agent: str | None = None) -> None:
        sql = "SELECT id, agent, state, reason, started_at FROM agent_states WHERE ended_at IS NULL"
        rows = conn.execute(sql + (" AND agent = ?" if agent is not None else ""),
                            (agent,) if agent is not None else ()).fetchall()
        for rid, ag, state, reason, started in rows:
            end = max(started, t)
            conn.execute("UPDATE agent_states SET ended_at = ? WHERE id = ?", (end, rid))
            _add_state_days(conn, ag, state, reason, started, end)

    @staticmethod
    def _w_rebuild(conn: sqlite3.Connection) -> None:
        rebuild_summaries(conn)

    def _w_replace(self, conn: sqlite3.Connection, table: str, values: dict[str, Any]) -> None:
        conn.execute(f"INSERT OR REPLACE INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                     list(values.values()))

    def _w_sql(self, conn: sqlite3.Connection, sql: str, params: tuple) -> None:
        conn.execute(sql, params)


class _WriterProcess:
    """The writer in a process of its own, so that its Python work between SQLite statements
    no longer takes the interpreter lock from the event loop (a tenth of the loop's time per
    call at 400 calls/s, tools/bench/results/sip.md round 7). The store's writer thread sends
    each batch as one pickled frame on the child's stdin and reads the outcome back; the child
    applies it with the same :class:`_Writer`. A child that dies is started again and the
    batch retried; the child stops when its stdin closes, so it never outlives the box."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.Popen([sys.executable, "-c", "from firmware.store.calls import serve_writer; serve_writer()",
                                 self.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=root)
        self.proc = proc
        try:
            ready = _recv_frame(proc.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as e:
            ready = e
        if ready != "ready":
            code = self._reap()
            raise CallStoreError(f"the writer process did not start (exit status {code})")

    def _reap(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def commit(self, ops: list[_Op], now: float) -> tuple[bool, list[tuple[str, str]], str]:
        if self.proc is None:
            try:
                self._start()
            except (OSError, CallStoreError) as e:
                return False, [], str(e)
        assert self.proc is not None
        try:
            data = pickle.dumps(([(op.fn, op.args) for op in ops], now), pickle.HIGHEST_PROTOCOL)
        except Exception:
            # The public methods only queue plain values; anything else is refused alone
            # instead of holding the whole batch back for ever.
            ops = [op for op in ops if self._picklable(op)]
            data = pickle.dumps(([(op.fn, op.args) for op in ops], now), pickle.HIGHEST_PROTOCOL)
        try:
            _write_frame(self.proc.stdin, data)
            ok, outcomes, changed, error = _recv_frame(self.proc.stdout)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):
            code = self._reap()
            return False, [], f"the call store's writer process stopped (exit status {code})"
        for op, (result, err) in zip(ops, outcomes):
            op.result, op.error = result, err
        return ok, changed, error

    @staticmethod
    def _picklable(op: _Op) -> bool:
        try:
            pickle.dumps((op.fn, op.args))
            return True
        except Exception as e:
            op.error = CallStoreError(f"a change the writer process cannot take: {e}")
            log.error("call store refused a write: %s", op.error)
            return False

    def close(self) -> None:
        code = self._reap()
        if code:
            log.error("the call store's writer process ended with status %s", code)


def _write_frame(f: Any, data: bytes) -> None:
    f.write(struct.pack("!I", len(data)) + data)
    f.flush()


def _send_frame(f: Any, obj: Any) -> None:
    _write_frame(f, pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))


def _recv_frame(f: Any) -> Any:
    head = f.read(4)
    if len(head) < 4:
        raise EOFError("the other side closed the pipe")
    (n,) = struct.unpack("!I", head)
    data = f.read(n)
    if len(data) < n:
        raise EOFError("the other side closed the pipe mid-frame")
    return pickle.loads(data)


def serve_writer() -> None:
    """Main of the call store's writer process (see :class:`_WriterProcess`): batches from
    stdin, outcomes to stdout, until stdin closes. Interrupts are the parent's to handle: a
    Ctrl-C or a service stop reaches the whole process group, and the writer must finish the
    batch it holds and leave when the box closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the frames
    logging.basicConfig(level=logging.INFO, format="call store writer: %(levelname)s %(message)s")
    writer = _Writer(_connect(sys.argv[1]))
    _send_frame(out, "ready")
    try:
        while True:
            try:
                batch, now = _recv_frame(inp)
            except EOFError:
                break
            ops = [_Op(fn, args, False) for fn, args in batch]
            ok, changed, error = writer.commit(ops, now)
            _send_frame(out, (ok, [(op.result, op.error) for op in ops], changed, error))
    finally:
        writer.close()


@dataclass(frozen=True)
class _Changed:
    kind: str
    key: str


_TRANSIENT = {"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN",
              "SQLITE_READONLY", "SQLITE_PROTOCOL", "SQLITE_NOMEM", "SQLITE_INTERRUPT"}


def _transient(e: sqlite3.Error) -> bool:
    """Errors of the disk or of locking (retry the whole batch later), not of one bad write."""
    name = getattr(e, "sqlite_errorname", "") or ""
    if name:
        return "_".join(name.split("_")[:2]) in _TRANSIENT
    text = str(e).lower()
    return any(w in text for w in ("disk", "full", "locked", "busy", "i/o", "readonly", "unable to open"))


def _call(row: sqlite3.Row, legs: tuple[Leg, ...] = (), events: tuple[Event, ...] = ()) -> Call:
    d = dict(row)
    d["interrupted"] = bool(d.get("interrupted"))
    return Call(**d, legs=legs, events=events)


def _registration(row: sqlite3.Row) -> Registration:
    d = dict(row)
    d["nat"] = bool(d.get("nat"))
    if d.get("reachable") is not None:
        d["reachable"] = bool(d["reachable"])
    return Registration(**d)


def _event(row: sqlite3.Row) -> Event:
    d = dict(row)
    try:
        d["data"] = json.loads(d.get("data") or "{}")
    except ValueError:
        d["data"] = {"raw": d.get("data")}
    return Event(**d)


def _read_rows(src: sqlite3.Connection, table: str, cols: list[str]) -> Iterator[tuple]:
    col_sql = ", ".join(cols)
    try:
        hi = src.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
    except sqlite3.DatabaseError:
        hi = None
    if hi is None:
        try:
            yield from src.execute(f"SELECT {col_sql} FROM {table}")
        except sqlite3.DatabaseError:
            return
        return
    step = 500
    for lo in range(0, int(hi) + 1, step):
        try:
            rows = src.execute(f"SELECT {col_sql} FROM {table} WHERE rowid >= ? AND rowid < ?", (lo, lo + step)).fetchall()
        except sqlite3.DatabaseError:
            rows = []
            for rid in range(lo, lo + step):
                try:
                    r = src.execute(f"SELECT {col_sql} FROM {table} WHERE rowid = ?", (rid,)).fetchone()
                except sqlite3.DatabaseError:
                    continue
                if r is not None:
                    rows.append(r)
        yield from rows


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def copy_database(src_path: str, dst_path: str) -> None:
    """A consistent copy of a live call store (SQLite online backup), e.g. for a backup."""
    src = sqlite3.connect(src_path)
    dst = sqlite3.connect(dst_path)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    if not os.path.exists(dst_path):
        raise CallStoreError(f"backup to {dst_path} failed")
    shutil.copymode(src_path, dst_path)
