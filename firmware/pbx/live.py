"""What is happening right now: calls in progress, callers waiting, agents' states.

The PBX updates this registry as calls move; the web page's live board reads snapshots and
listens for changes. Pure data, no I/O.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

CALL_STATES = ("routing", "ivr", "queued", "ringing", "talking", "held", "ended")
AGENT_STATES = ("offline", "available", "ringing", "in_call", "wrapup", "paused", "dnd")


@dataclass(frozen=True)
class LiveCall:
    id: str
    """Call record id (the same id as in the call store)."""
    started_at: float
    """Unix seconds."""
    state: str
    """One of CALL_STATES."""
    direction: str
    """inbound | outbound | internal"""
    caller: str
    callee: str
    caller_name: str = ""
    queue: str = ""
    agent: str = ""
    """Extension of the staff member talking or being rung."""
    trunk: str = ""
    state_since: float = 0.0
    answered_at: float | None = None
    recording: bool = False


@dataclass(frozen=True)
class LiveAgent:
    extension: str
    name: str
    state: str
    """One of AGENT_STATES."""
    since: float
    reason: str = ""
    queues: tuple[str, ...] = ()
    """Queues the agent is logged in to."""
    call_id: str = ""
    registered: bool = False


@dataclass(frozen=True)
class LiveQueue:
    number: str
    name: str
    waiting: tuple[tuple[str, str, float], ...] = ()
    """(call id, caller number, waiting since unix seconds), in queue order."""


@dataclass
class LiveState:
    calls: dict[str, LiveCall] = field(default_factory=dict)
    agents: dict[str, LiveAgent] = field(default_factory=dict)
    queues: dict[str, LiveQueue] = field(default_factory=dict)
    version: int = 0
    _listeners: dict[int, Callable[[int], None]] = field(default_factory=dict)
    _ids: Any = field(default_factory=itertools.count)

    # -- updates (from the PBX) ----------------------------------------------------------
    def put_call(self, call: LiveCall) -> None:
        self.calls[call.id] = call
        self._changed()

    def update_call(self, call_id: str, now: float, **changes: Any) -> None:
        c = self.calls.get(call_id)
        if c is None:
            return
        if "state" in changes and changes["state"] != c.state:
            changes.setdefault("state_since", now)
        self.calls[call_id] = replace(c, **changes)
        self._changed()

    def end_call(self, call_id: str) -> None:
        if self.calls.pop(call_id, None) is not None:
            self._changed()

    def put_agent(self, agent: LiveAgent) -> None:
        self.agents[agent.extension] = agent
        self._changed()

    def update_agent(self, extension: str, now: float, **changes: Any) -> None:
        a = self.agents.get(extension)
        if a is None:
            return
        if "state" in changes and changes["state"] != a.state:
            changes.setdefault("since", now)
        self.agents[extension] = replace(a, **changes)
        self._changed()

    def put_queue(self, queue: LiveQueue) -> None:
        self.queues[queue.number] = queue
        self._changed()

    # -- reads (from the web page) -------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "calls": [asdict(c) for c in sorted(self.calls.values(), key=lambda c: c.started_at)],
            "agents": [asdict(a) for a in sorted(self.agents.values(), key=lambda a: a.extension)],
            "queues": [asdict(q) for q in sorted(self.queues.values(), key=lambda q: q.number)],
        }

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call `callback(version)` after every change; returns an unsubscribe function."""
        key = next(self._ids)
        self._listeners[key] = callback
        return lambda: self._listeners.pop(key, None)

    def _changed(self) -> None:
        self.version += 1
        for cb in list(self._listeners.values()):
            cb(self.version)
