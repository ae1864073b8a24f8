"""Automatic call distribution: queues of waiting callers, agents, strategies.

Sans-I/O: every method takes `now` (seconds) and returns the actions the caller (the PBX)
must carry out: ring these agents, stop ringing those, connect, overflow, announce. The
PBX reports back what happened (an agent answered, did not answer, a caller hung up). One
timer: `get_timer()` / `handle_timer(now)`.

Rules (the seeds' "no caller is lost"):
- Callers are served strictly by arrival (then priority); a caller whose agent does not
  answer stays at the head of the queue with the original position.
- An agent is offered a call only when available: logged in, registered, not paused, not on
  do-not-disturb, not in any call (ring-in-use off), not ringing, not in wrap-up.
- One agent failing (no answer, busy, rejected, hung up before the bridge) never stops the
  other agents ringing for the same caller (ring-all).
- After `autopause_after` consecutive unanswered offers an agent is paused with a reason.
- `reconcile()` corrects any agent the ACD believes ringing/in a call when the PBX says
  otherwise, so nobody stays stuck.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

STRATEGIES = ("ringall", "linear", "rrmemory", "leastrecent", "fewestcalls", "random", "wrandom")


# ---------------------------------------------------------------------------------------
# settings and actions
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueSettings:
    number: str
    name: str = ""
    strategy: str = "ringall"
    members: tuple[str, ...] = ()
    """Static members (always logged in), in order (linear hunting uses this order)."""
    penalties: tuple[tuple[str, int], ...] = ()
    """(extension, penalty): higher penalty = offered less (wrandom) / later (linear)."""
    agent_timeout: float = 15.0
    """Seconds an agent rings before the offer is withdrawn."""
    retry: float = 2.0
    """Seconds before the caller is offered again after nobody answered."""
    wrapup: float = 10.0
    """Seconds of after-call work before the agent is offered the next call."""
    wrapup_max: float = 120.0
    """Cap on wrap-up time (an agent may extend wrap-up, never beyond this)."""
    max_wait: float = 300.0
    """Seconds a caller waits before going to the overflow destination (0 = forever)."""
    overflow: str = "hangup"
    max_callers: int = 0
    """0 = any number of callers may wait."""
    joinempty: bool = True
    """Callers may join while no agent is logged in."""
    leavewhenempty: bool = False
    """Waiting callers overflow when the last agent logs out."""
    announce_position_every: float = 0.0
    """Seconds between position / expected-wait announcements (0 = never)."""
    periodic_message_every: float = 0.0
    """Seconds between the custom periodic message (0 = never)."""
    callback_digit: str = ""
    """Digit a waiting caller presses to be called back instead of waiting ("" = off)."""
    autopause_after: int = 3
    """Consecutive unanswered offers after which an agent is paused (0 = never)."""


@dataclass(frozen=True)
class Action:
    call_id: str


@dataclass(frozen=True)
class RingAgents(Action):
    agents: tuple[str, ...]
    timeout: float
    queue: str


@dataclass(frozen=True)
class StopRinging(Action):
    agents: tuple[str, ...]
    reason: str
    """answered_elsewhere | timeout | caller_left | overflow"""


@dataclass(frozen=True)
class Connect(Action):
    agent: str
    queue: str
    wait_s: float


@dataclass(frozen=True)
class Overflow(Action):
    destination: str
    reason: str
    """max_wait | full | empty | no_agents"""
    queue: str


@dataclass(frozen=True)
class Announce(Action):
    kind: str
    """entry | position | periodic"""
    position: int = 0
    expected_wait_s: float = 0.0


@dataclass(frozen=True)
class CallbackReady(Action):
    """A callback caller reached the head and an agent is free: ring the agent first, then
    dial `number` through a trunk and bridge them."""
    agent: str
    number: str
    queue: str


@dataclass(frozen=True)
class AgentStateChanged:
    agent: str
    state: str
    reason: str
    at: float


# ---------------------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------------------
@dataclass
class Agent:
    ext: str
    name: str = ""
    registered: bool = True
    queues: set[str] = field(default_factory=set)
    """Queues the agent is logged in to (static membership included)."""
    dynamic: set[str] = field(default_factory=set)
    paused: bool = False
    pause_reason: str = ""
    dnd: bool = False
    busy: bool = False
    """In a call of any kind (ring-in-use off)."""
    ringing_for: str | None = None
    connected_to: str | None = None
    wrapup_until: float = 0.0
    last_call_end: float = 0.0
    calls_taken: int = 0
    missed_in_row: int = 0
    state: str = "offline"
    state_reason: str = ""
    state_since: float = 0.0


@dataclass
class Caller:
    call_id: str
    queue: str
    number: str
    entered: float
    seq: int
    priority: int = 0
    ringing: set[str] = field(default_factory=set)
    ring_deadline: float = 0.0
    next_try: float = 0.0
    next_position_at: float = 0.0
    next_periodic_at: float = 0.0
    callback: bool = False
    offered_once: bool = False
    linear_index: int = 0


@dataclass
class Queue:
    settings: QueueSettings
    callers: list[Caller] = field(default_factory=list)
    rr_last: str | None = None
    handle_times: list[float] = field(default_factory=list)

    @property
    def number(self) -> str:
        return self.settings.number


class Acd:
    def __init__(self, *, rng: random.Random | None = None,
                 on_agent_state: Callable[[AgentStateChanged], None] | None = None) -> None:
        self.queues: dict[str, Queue] = {}
        self.agents: dict[str, Agent] = {}
        self.callers: dict[str, Caller] = {}
        self.rng = rng or random.Random()
        self.on_agent_state = on_agent_state
        self._seq = itertools.count()

    # -- configuration -------------------------------------------------------------------
    def configure_queue(self, s: QueueSettings, now: float) -> None:
        if s.strategy not in STRATEGIES:
            raise ValueError(f"unknown queue strategy {s.strategy!r}")
        q = self.queues.get(s.number)
        if q is None:
            self.queues[s.number] = Queue(s)
        else:
            q.settings = s
        for a in self.agents.values():
            if a.ext in s.members:
                a.queues.add(s.number)
            elif s.number in a.queues and s.number not in a.dynamic:
                a.queues.discard(s.number)
        for ext in s.members:
            self._agent(ext).queues.add(s.number)
        for ext in list(self.agents):
            self._update_state(self.agents[ext], now)

    def remove_queue(self, number: str, now: float) -> list[Action]:
        q = self.queues.pop(number, None)
        if q is None:
            return []
        out: list[Action] = []
        for c in list(q.callers):
            out += self._overflow(q, c, "removed", now)
        for a in self.agents.values():
            a.queues.discard(number)
            a.dynamic.discard(number)
            self._update_state(a, now)
        return out

    def add_agent(self, ext: str, name: str = "", registered: bool = True, now: float = 0.0) -> None:
        a = self._agent(ext)
        a.name = name or a.name
        a.registered = registered
        self._update_state(a, now)

    def _agent(self, ext: str) -> Agent:
        a = self.agents.get(ext)
        if a is None:
            a = self.agents[ext] = Agent(ext)
        return a

    # -- agent controls (feature codes, web panel) ----------------------------------------
    def login(self, ext: str, queue: str, now: float) -> list[Action]:
        if queue not in self.queues:
            raise KeyError(f"no queue {queue}")
        a = self._agent(ext)
        a.queues.add(queue)
        a.dynamic.add(queue)
        self._update_state(a, now)
        return self._dispatch(now)

    def logout(self, ext: str, queue: str, now: float) -> list[Action]:
        a = self._agent(ext)
        q = self.queues.get(queue)
        if q is not None and ext in q.settings.members:
            raise ValueError(f"{ext} is a static member of queue {queue}")
        a.queues.discard(queue)
        a.dynamic.discard(queue)
        self._update_state(a, now)
        return self._empty_check(now)

    def is_logged_in(self, ext: str, queue: str) -> bool:
        a = self.agents.get(ext)
        return a is not None and queue in a.queues

    def pause(self, ext: str, now: float, reason: str = "") -> list[Action]:
        a = self._agent(ext)
        a.paused, a.pause_reason = True, reason
        self._update_state(a, now)
        return []

    def unpause(self, ext: str, now: float) -> list[Action]:
        a = self._agent(ext)
        a.paused, a.pause_reason, a.missed_in_row = False, "", 0
        self._update_state(a, now)
        return self._dispatch(now)

    def set_dnd(self, ext: str, on: bool, now: float) -> list[Action]:
        a = self._agent(ext)
        a.dnd = on
        self._update_state(a, now)
        return [] if on else self._dispatch(now)

    def set_registered(self, ext: str, registered: bool, now: float) -> list[Action]:
        a = self._agent(ext)
        if a.registered == registered:
            return []
        a.registered = registered
        self._update_state(a, now)
        return self._dispatch(now) if registered else self._empty_check(now)

    def extension_busy(self, ext: str, busy: bool, now: float) -> list[Action]:
        """The PBX tells whether an extension is in any call (queue or not)."""
        a = self.agents.get(ext)
        if a is None or a.busy == busy:
            return []
        a.busy = busy
        self._update_state(a, now)
        return [] if busy else self._dispatch(now)

    def extend_wrapup(self, ext: str, seconds: float, now: float) -> None:
        a = self._agent(ext)
        cap = max((self.queues[q].settings.wrapup_max for q in a.queues if q in self.queues), default=0.0)
        a.wrapup_until = min(max(a.wrapup_until, now) + seconds, now + cap)
        self._update_state(a, now)

    def end_wrapup(self, ext: str, now: float) -> list[Action]:
        a = self._agent(ext)
        a.wrapup_until = 0.0
        self._update_state(a, now)
        return self._dispatch(now)

    # -- callers ------------------------------------------------------------------------
    def enter(self, queue: str, call_id: str, number: str, now: float, priority: int = 0,
              callback: bool = False) -> list[Action]:
        """A caller joins `queue` (callback=True: a customer to call back, who is not on the line)."""
        q = self.queues[queue]
        s = q.settings
        if s.max_callers and len(q.callers) >= s.max_callers:
            return [Overflow(call_id, s.overflow, "full", queue)]
        if not s.joinempty and not self._logged_in(q):
            return [Overflow(call_id, s.overflow, "empty", queue)]
        c = Caller(call_id, queue, number, now, next(self._seq), priority, callback=callback)
        if callback:
            q.callers.append(c)
            q.callers.sort(key=lambda x: (-x.priority, x.seq))
            self.callers[call_id] = c
            return self._dispatch(now)
        if s.announce_position_every:
            c.next_position_at = now + s.announce_position_every
        if s.periodic_message_every:
            c.next_periodic_at = now + s.periodic_message_every
        c.next_try = now
        q.callers.append(c)
        q.callers.sort(key=lambda x: (-x.priority, x.seq))
        self.callers[call_id] = c
        return [Announce(call_id, "entry", self.position(call_id), self.expected_wait(queue, self.position(call_id)))] \
            + self._dispatch(now)

    def leave(self, call_id: str, now: float, reason: str = "abandoned") -> list[Action]:
        """The caller hung up (or was taken elsewhere) while waiting/ringing."""
        c = self.callers.pop(call_id, None)
        if c is None:
            return []
        q = self.queues.get(c.queue)
        if q is not None and c in q.callers:
            q.callers.remove(c)
        out: list[Action] = []
        if c.ringing:
            out.append(StopRinging(call_id, tuple(sorted(c.ringing)), "caller_left"))
            for ext in c.ringing:
                a = self.agents.get(ext)
                if a is not None and a.ringing_for == call_id:
                    a.ringing_for = None
                    self._update_state(a, now)
        return out + self._dispatch(now)

    def request_callback(self, call_id: str, number: str, now: float) -> list[Action]:
        """The caller pressed the callback digit: they hang up and keep their place."""
        c = self.callers.get(call_id)
        if c is None:
            return []
        c.callback, c.number = True, number or c.number
        out: list[Action] = []
        if c.ringing:
            out.append(StopRinging(call_id, tuple(sorted(c.ringing)), "caller_left"))
            for ext in c.ringing:
                a = self.agents[ext]
                a.ringing_for = None
                self._update_state(a, now)
            c.ringing.clear()
        return out + self._dispatch(now)

    def position(self, call_id: str) -> int:
        c = self.callers.get(call_id)
        if c is None:
            return 0
        return self.queues[c.queue].callers.index(c) + 1

    def expected_wait(self, queue: str, position: int) -> float:
        """Expected wait in seconds: position x average handle time / agents logged in."""
        q = self.queues[queue]
        n = max(1, sum(1 for a in self.agents.values() if queue in a.queues and a.state != "offline"))
        aht = sum(q.handle_times) / len(q.handle_times) if q.handle_times else 120.0
        return position * aht / n

    # -- what agents do -----------------------------------------------------------------
    def agent_answered(self, call_id: str, ext: str, now: float) -> list[Action]:
        c = self.callers.get(call_id)
        a = self._agent(ext)
        if c is None or ext not in c.ringing:
            # The caller left or another agent won the race: the PBX hangs this agent up.
            return [StopRinging(call_id, (ext,), "answered_elsewhere")]
        q = self.queues[c.queue]
        others = tuple(sorted(c.ringing - {ext}))
        for o in others:
            oa = self.agents[o]
            if oa.ringing_for == call_id:
                oa.ringing_for = None
                self._update_state(oa, now)
        c.ringing.clear()
        q.callers.remove(c)
        del self.callers[call_id]
        a.ringing_for = None
        a.connected_to = call_id
        a.busy = True
        a.missed_in_row = 0
        a.calls_taken += 1
        self._update_state(a, now)
        out: list[Action] = []
        if others:
            out.append(StopRinging(call_id, others, "answered_elsewhere"))
        out.append(Connect(call_id, ext, c.queue, now - c.entered))
        return out + self._dispatch(now)

    def agent_failed(self, call_id: str, ext: str, now: float, reason: str = "noanswer") -> list[Action]:
        """The offer to `ext` ended without an answer: noanswer | busy | rejected | unreachable."""
        c = self.callers.get(call_id)
        a = self._agent(ext)
        if a.ringing_for == call_id:
            a.ringing_for = None
        out: list[Action] = []
        if c is not None and ext in c.ringing:
            c.ringing.discard(ext)
            q = self.queues[c.queue]
            if reason in ("noanswer", "rejected"):
                a.missed_in_row += 1
                if q.settings.autopause_after and a.missed_in_row >= q.settings.autopause_after:
                    a.paused = True
                    a.pause_reason = f"auto-pause: {a.missed_in_row} calls not answered"
            if not c.ringing:
                c.next_try = now + q.settings.retry
                c.ring_deadline = 0.0
        self._update_state(a, now)
        return out + self._dispatch(now)

    def call_ended(self, call_id: str, ext: str, now: float, talk_s: float = 0.0) -> list[Action]:
        """A connected queue call ended: the agent goes to wrap-up."""
        a = self._agent(ext)
        if a.connected_to != call_id:
            return []
        a.connected_to = None
        a.busy = False
        a.last_call_end = now
        wrap = 0.0
        q = None
        for qn in a.queues:
            qq = self.queues.get(qn)
            if qq is not None:
                wrap = max(wrap, min(qq.settings.wrapup, qq.settings.wrapup_max))
        if talk_s:
            for qn in a.queues:
                q = self.queues.get(qn)
                if q is not None:
                    q.handle_times.append(talk_s + wrap)
                    del q.handle_times[:-50]
        a.wrapup_until = now + wrap if wrap else 0.0
        self._update_state(a, now)
        return self._dispatch(now)

    def reconcile(self, actual: dict[str, str], now: float) -> list[Action]:
        """`actual[ext]` is what the PBX sees: idle | ringing | in_call. Agents the ACD
        believes ringing/connected but who are idle in reality are released."""
        for ext, a in self.agents.items():
            real = actual.get(ext, "idle")
            changed = False
            if a.ringing_for and real == "idle":
                c = self.callers.get(a.ringing_for)
                if c is not None:
                    c.ringing.discard(ext)
                    if not c.ringing:
                        c.next_try = now
                a.ringing_for = None
                changed = True
            if a.connected_to and real == "idle":
                a.connected_to = None
                a.busy = False
                changed = True
            if a.busy != (real == "in_call") and not a.connected_to:
                a.busy = real == "in_call"
                changed = True
            if changed:
                self._update_state(a, now)
        return self._dispatch(now)

    # -- timers ---------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        times: list[float] = []
        for q in self.queues.values():
            s = q.settings
            for c in q.callers:
                if c.ringing and c.ring_deadline:
                    times.append(c.ring_deadline)
                elif not c.ringing and c.next_try:
                    # only useful if someone could be offered; dispatch re-checks anyway
                    times.append(c.next_try)
                if s.max_wait and not c.callback:
                    times.append(c.entered + s.max_wait)
                if c.next_position_at and not c.callback:
                    times.append(c.next_position_at)
                if c.next_periodic_at and not c.callback:
                    times.append(c.next_periodic_at)
        for a in self.agents.values():
            if a.wrapup_until:
                times.append(a.wrapup_until)
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[Action]:
        out: list[Action] = []
        for a in self.agents.values():
            if a.wrapup_until and a.wrapup_until <= now:
                a.wrapup_until = 0.0
                self._update_state(a, now)
        for q in list(self.queues.values()):
            s = q.settings
            for c in list(q.callers):
                if c.ringing and c.ring_deadline and c.ring_deadline <= now:
                    expired = tuple(sorted(c.ringing))
                    out.append(StopRinging(c.call_id, expired, "timeout"))
                    for ext in expired:
                        out += self.agent_failed(c.call_id, ext, now, "noanswer")
                if c.call_id not in self.callers:
                    continue
                if s.max_wait and not c.callback and now - c.entered >= s.max_wait:
                    out += self._overflow(q, c, "max_wait", now)
                    continue
                if c.next_position_at and c.next_position_at <= now and not c.callback:
                    c.next_position_at = now + s.announce_position_every
                    pos = q.callers.index(c) + 1
                    out.append(Announce(c.call_id, "position", pos, self.expected_wait(q.number, pos)))
                if c.next_periodic_at and c.next_periodic_at <= now and not c.callback:
                    c.next_periodic_at = now + s.periodic_message_every
                    out.append(Announce(c.call_id, "periodic"))
                if not c.ringing and c.next_try and c.next_try <= now:
                    c.next_try = 0.0
        return out + self._dispatch(now)

    # -- internals ------------------------------------------------------------------------
    def _logged_in(self, q: Queue) -> list[Agent]:
        return [a for a in self.agents.values() if q.number in a.queues and a.registered]

    def _empty_check(self, now: float) -> list[Action]:
        out: list[Action] = []
        for q in list(self.queues.values()):
            if q.settings.leavewhenempty and q.callers and not self._logged_in(q):
                for c in list(q.callers):
                    if not c.callback:
                        out += self._overflow(q, c, "empty", now)
        return out + self._dispatch(now)

    def _overflow(self, q: Queue, c: Caller, reason: str, now: float) -> list[Action]:
        out: list[Action] = []
        if c.ringing:
            out.append(StopRinging(c.call_id, tuple(sorted(c.ringing)), "overflow"))
            for ext in c.ringing:
                a = self.agents[ext]
                if a.ringing_for == c.call_id:
                    a.ringing_for = None
                    self._update_state(a, now)
        if c in q.callers:
            q.callers.remove(c)
        self.callers.pop(c.call_id, None)
        out.append(Overflow(c.call_id, q.settings.overflow, reason, q.number))
        return out

    def _available(self, a: Agent, now: float) -> bool:
        return a.state == "available" and a.wrapup_until <= now

    def _pick(self, q: Queue, c: Caller, free: list[Agent]) -> list[Agent]:
        s = q.settings
        if not free:
            return []
        pen = dict(s.penalties)
        order = {ext: i for i, ext in enumerate(s.members)}
        if s.strategy == "ringall":
            best = min(pen.get(a.ext, 0) for a in free)
            return [a for a in free if pen.get(a.ext, 0) == best]
        if s.strategy == "linear":
            free.sort(key=lambda a: (pen.get(a.ext, 0), order.get(a.ext, 1 << 20), a.ext))
            return free[:1]
        if s.strategy == "rrmemory":
            ring = sorted({a.ext for a in self.agents.values() if q.number in a.queues},
                          key=lambda e: (order.get(e, 1 << 20), e))
            start = (ring.index(q.rr_last) + 1) if q.rr_last in ring else 0
            rotated = ring[start:] + ring[:start]
            by_ext = {a.ext: a for a in free}
            for e in rotated:
                if e in by_ext:
                    return [by_ext[e]]
            return []
        if s.strategy == "leastrecent":
            return [min(free, key=lambda a: (a.last_call_end, order.get(a.ext, 1 << 20), a.ext))]
        if s.strategy == "fewestcalls":
            return [min(free, key=lambda a: (a.calls_taken, a.last_call_end, a.ext))]
        if s.strategy == "random":
            return [self.rng.choice(sorted(free, key=lambda a: a.ext))]
        if s.strategy == "wrandom":
            cand = sorted(free, key=lambda a: a.ext)
            weights = [1.0 / (1 + max(0, pen.get(a.ext, 0))) for a in cand]
            return [self.rng.choices(cand, weights)[0]]
        raise ValueError(s.strategy)

    def _dispatch(self, now: float) -> list[Action]:
        """Offer waiting callers (in order, across queues by arrival) to free agents."""
        out: list[Action] = []
        waiting = [c for q in self.queues.values() for c in q.callers
                   if not c.ringing and (not c.next_try or c.next_try <= now)]
        waiting.sort(key=lambda c: (-c.priority, c.entered, c.seq))
        for c in waiting:
            q = self.queues[c.queue]
            # only the head caller(s) of a queue may take agents: nobody overtakes
            ahead = [x for x in q.callers if x is not c and (-x.priority, x.seq) < (-c.priority, c.seq)]
            if any(not x.ringing for x in ahead):
                continue
            free = [a for a in self.agents.values() if q.number in a.queues and self._available(a, now)]
            picked = self._pick(q, c, free)
            if not picked:
                continue
            if c.callback:
                a = picked[0]
                a.ringing_for = c.call_id
                c.ringing = {a.ext}
                c.ring_deadline = 0.0  # the PBX reports the outcome of the callback attempt
                self._update_state(a, now)
                q.rr_last = a.ext
                out.append(CallbackReady(c.call_id, a.ext, c.number, q.number))
                continue
            for a in picked:
                a.ringing_for = c.call_id
                self._update_state(a, now)
            c.ringing = {a.ext for a in picked}
            c.ring_deadline = now + q.settings.agent_timeout
            c.offered_once = True
            q.rr_last = picked[-1].ext
            out.append(RingAgents(c.call_id, tuple(a.ext for a in picked), q.settings.agent_timeout, q.number))
        return out

    def _update_state(self, a: Agent, now: float) -> None:
        if not a.registered or not a.queues:
            st, why = "offline", "" if a.registered else "phone not registered"
        elif a.dnd:
            st, why = "dnd", ""
        elif a.paused:
            st, why = "paused", a.pause_reason
        elif a.connected_to or a.busy:
            st, why = "in_call", ""
        elif a.ringing_for:
            st, why = "ringing", ""
        elif a.wrapup_until > now:
            st, why = "wrapup", ""
        else:
            st, why = "available", ""
        if (st, why) != (a.state, a.state_reason):
            a.state, a.state_reason, a.state_since = st, why, now
            if self.on_agent_state is not None:
                self.on_agent_state(AgentStateChanged(a.ext, st, why, now))

    # -- reads ----------------------------------------------------------------------------
    def waiting(self, queue: str) -> list[Caller]:
        return list(self.queues[queue].callers)

    def agents_of(self, queue: str) -> list[Agent]:
        return sorted((a for a in self.agents.values() if queue in a.queues), key=lambda a: a.ext)


def merge(*groups: Iterable[Action]) -> list[Action]:
    return [a for g in groups for a in g]
