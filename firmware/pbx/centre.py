"""The call centre: queues (ACD), voice menus, message boxes and live listening.

Queues are decided by the sans-I/O `Acd` (firmware.pbx.acd); this module carries its actions
out with real call legs: it rings agents' phones, plays the entry announcement, position and
expected-wait announcements and the periodic message over music on hold, connects the first
agent who answers, sends callers to the overflow destination, and calls back the callers who
asked for it. Voice menus run `MenuSession` (firmware.pbx.ivr) against the caller's digits.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from firmware.api import ControlError
from firmware.pbx.acd import (Acd, AgentStateChanged, Announce, CallbackReady, Connect, Overflow, QueueSettings,
                              RingAgents, StopRinging)
from firmware.pbx.calls import Call, Leg, SipLeg
from firmware.pbx.ivr import Goto, Menu, MenuSession, Play, StopPlay
from firmware.pbx.live import LiveQueue
from firmware.pbx.phrases import phrase

log = logging.getLogger("firmware.pbx.centre")

CALLBACK_ATTEMPTS = 3
"""Tries to reach a customer who asked to be called back."""
CALLBACK_RETRY_S = 120.0
"""Seconds between those tries."""


@dataclass
class QueueEntry:
    """A caller in a queue (the coroutine `CallCentre.queue` waits on `result`)."""

    call: Call
    queue: Any
    language: str
    result: asyncio.Future
    """'answered' | 'abandoned' | 'callback' | ('overflow', destination, reason)"""
    music: Any = None
    speaking: bool = False
    pending: list = field(default_factory=list)
    """Announcements waiting for the current one to finish."""
    task: asyncio.Task | None = None


class CallCentre:
    def __init__(self, pbx: Any) -> None:
        self.pbx = pbx
        self.acd = Acd(on_agent_state=self._agent_state)
        self.entries: dict[str, QueueEntry] = {}
        self.offers: dict[tuple[str, str], list[Leg]] = {}
        """(call id, agent) -> the agent's phones ringing for that caller."""
        self.callbacks: dict[str, dict[str, Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._queues: set[str] = set()

    # ------------------------------------------------------------------ configuration
    def configure(self) -> None:
        prov = self.pbx.prov
        now = time.time()
        for ext in prov.extensions:
            self.acd.add_agent(ext.number, ext.name, registered=self.pbx.registrar.is_registered(ext.number, now),
                               now=now)
            self.acd.set_dnd(ext.number, bool(ext.dnd), now)
        wanted = set()
        for q in prov.queues:
            wanted.add(q.number)
            self.acd.configure_queue(QueueSettings(
                number=q.number, name=q.name, strategy=q.strategy,
                members=tuple(m.extension for m in q.members),
                penalties=tuple((m.extension, m.penalty) for m in q.members),
                agent_timeout=float(q.agent_timeout), retry=float(q.retry), wrapup=float(q.wrapup),
                wrapup_max=max(float(q.wrapup), 120.0), max_wait=float(q.max_wait), overflow=q.overflow,
                max_callers=q.max_callers, joinempty=q.joinempty, leavewhenempty=q.leavewhenempty,
                announce_position_every=float(q.announce_position_every_s),
                periodic_message_every=float(q.periodic_message_every_s) if q.periodic_message else 0.0,
                callback_digit=q.callback, autopause_after=q.autopause_after_rings), now)
        for gone in self._queues - wanted:
            self._execute(self.acd.remove_queue(gone, now))
        self._queues = wanted
        self._publish_queues()
        self._rearm()

    def reconcile(self) -> None:
        """Align the ACD's idea of every agent with the calls that really exist, so nobody stays
        stuck "ringing" or "in a call" after a lost event (run periodically by the PBX)."""
        actual: dict[str, str] = {}
        for ext, legs in self.pbx.ext_legs.items():
            live = [l for l in legs if l.state != "ended"]
            # any call but a queue offer still ringing makes the agent busy (ring-in-use off),
            # as Pbx._ext_state_changed tells the ACD
            if any(not (l.acd_offer and not l.answered) for l in live):
                actual[ext] = "in_call"
            elif live:
                actual[ext] = "ringing"
        self._execute(self.acd.reconcile(actual, time.time()))

    def registered_changed(self, extension: str, registered: bool) -> None:
        self._execute(self.acd.set_registered(extension, registered, time.time()))

    def dnd_changed(self, extension: str, on: bool) -> None:
        self._execute(self.acd.set_dnd(extension, on, time.time()))

    def extension_busy(self, extension: str, busy: bool) -> None:
        self._execute(self.acd.extension_busy(extension, busy, time.time()))

    def agent_state(self, extension: str) -> tuple[str, str, float, tuple[str, ...]] | None:
        """(state, reason, since, queues) of a queue agent, None for extensions in no queue."""
        a = self.acd.agents.get(extension)
        if a is None or not a.queues:
            return None
        return a.state, a.state_reason, a.state_since, tuple(sorted(a.queues))

    def _agent_state(self, ch: AgentStateChanged) -> None:
        try:
            self.pbx.calls.agent_state(ch.agent, ch.state, ch.reason, at=ch.at)
        except Exception as e:
            log.error("agent state not stored: %s", e)
        self.pbx.agent_changed(ch.agent)

    # ------------------------------------------------------------------ agent controls
    def toggle_login(self, extension: str, queue: str | None) -> bool:
        """Feature code *45: returns True when the agent is now logged in."""
        now = time.time()
        a = self.acd.agents.get(extension)
        if queue is not None:
            if self.pbx.prov.queue(queue) is None:
                raise KeyError(f"no queue {queue}")
            if self.acd.is_logged_in(extension, queue):
                self._execute(self.acd.logout(extension, queue, now))
                self.pbx.agent_changed(extension)
                return False
            self._execute(self.acd.login(extension, queue, now))
            self.pbx.agent_changed(extension)
            return True
        if a is not None and a.dynamic:
            for q in list(a.dynamic):
                self._execute(self.acd.logout(extension, q, now))
            return False
        for q in self.pbx.prov.queues:
            if not self.acd.is_logged_in(extension, q.number):
                self._execute(self.acd.login(extension, q.number, now))
        self.pbx.agent_changed(extension)
        return True

    def toggle_pause(self, extension: str, reason: str) -> bool:
        a = self.acd.agents.get(extension)
        now = time.time()
        if a is not None and a.paused:
            self._execute(self.acd.unpause(extension, now))
            return False
        self._execute(self.acd.pause(extension, now, reason))
        return True

    async def agent_queue(self, extension: str, queue: str, logged_in: bool) -> None:
        if self.pbx.prov.extension(extension) is None:
            raise ControlError(f"no extension {extension}")
        if self.pbx.prov.queue(queue) is None:
            raise ControlError(f"no queue {queue}")
        now = time.time()
        try:
            if logged_in:
                self._execute(self.acd.login(extension, queue, now))
            else:
                self._execute(self.acd.logout(extension, queue, now))
        except ValueError as e:
            raise ControlError(str(e)) from None
        self.pbx.agent_changed(extension)

    async def agent_status(self, extension: str, status: str, reason: str = "") -> None:
        if self.pbx.prov.extension(extension) is None:
            raise ControlError(f"no extension {extension}")
        now = time.time()
        if status == "available":
            if self.pbx.prov.extension(extension).dnd:
                self.pbx.set_dnd(extension, False)
            self._execute(self.acd.unpause(extension, now))
        elif status == "paused":
            self._execute(self.acd.pause(extension, now, reason or "paused"))
        elif status == "dnd":
            self.pbx.set_dnd(extension, True)
        else:
            raise ControlError(f"status must be available, paused or dnd, not {status!r}")

    # ------------------------------------------------------------------ the ACD's actions
    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self.acd.get_timer()
        if at is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - time.time())
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._execute(self.acd.handle_timer(time.time()))

    def _execute(self, actions: list) -> None:
        for a in actions:
            try:
                if isinstance(a, RingAgents):
                    self._ring(a)
                elif isinstance(a, StopRinging):
                    self._stop_ringing(a)
                elif isinstance(a, Connect):
                    self._connect(a)
                elif isinstance(a, Overflow):
                    self._overflow(a)
                elif isinstance(a, Announce):
                    self._announce(a)
                elif isinstance(a, CallbackReady):
                    self.pbx.spawn(self._callback(a), name=f"callback {a.call_id}")
            except Exception:
                log.exception("queue action %s failed", a)
        self._publish_queues()
        self._rearm()

    def _ring(self, a: RingAgents) -> None:
        entry = self.entries.get(a.call_id)
        if entry is None:
            for agent in a.agents:
                self._execute(self.acd.agent_failed(a.call_id, agent, time.time(), "unreachable"))
            return
        call = entry.call
        for agent in a.agents:
            ext = self.pbx.prov.extension(agent)
            bindings = self.pbx.registrar.lookup(agent, time.time()) if ext is not None else []
            legs: list[Leg] = []
            for b in bindings:
                try:
                    leg = self.pbx._invite_binding(call, ext, b, role="agent", acd_offer=True)
                except Exception as e:
                    log.error("cannot ring agent %s: %s", agent, e)
                    continue
                legs.append(leg)
            if not legs:
                self.pbx.spawn(self._later_failed(a.call_id, agent, "unreachable"))
                continue
            self.offers[(a.call_id, agent)] = legs
            self.pbx.spawn(self._watch_offer(a.call_id, agent, legs), name=f"offer {a.call_id} {agent}")

    async def _later_failed(self, call_id: str, agent: str, reason: str) -> None:
        await asyncio.sleep(0)
        self._execute(self.acd.agent_failed(call_id, agent, time.time(), reason))

    async def _watch_offer(self, call_id: str, agent: str, legs: list[Leg]) -> None:
        started = time.time()
        pending = {leg.outcome for leg in legs}
        winner: Leg | None = None
        results: list[str] = []
        while pending and winner is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                leg = next(l for l in legs if l.outcome is fut)
                if fut.result() == "answered" and winner is None:
                    winner = leg
                else:
                    results.append(fut.result())
        self.offers.pop((call_id, agent), None)
        for leg in legs:
            if leg is not winner and leg.state != "ended":
                leg.cancel()
        entry = self.entries.get(call_id)
        seconds = round(time.time() - started, 3)
        if winner is not None:
            acts = self.acd.agent_answered(call_id, agent, time.time())
            if entry is not None:
                self.pbx.events.add(call_id, "agent_ring", agent=agent, queue=entry.queue.number,
                                    result="answered", seconds=seconds)
            self._execute(acts)
            if not any(isinstance(x, Connect) and x.agent == agent for x in acts):
                winner.hangup(16, 'SIP;cause=200;text="Call completed elsewhere"')
            return
        if "cancelled" in results:
            return  # StopRinging already told the ACD
        reason = "busy" if "busy" in results else "rejected" if "rejected" in results else "noanswer"
        if entry is not None:
            self.pbx.events.add(call_id, "agent_ring", agent=agent, queue=entry.queue.number,
                                result={"noanswer": "no_answer"}.get(reason, reason), seconds=seconds)
        self._execute(self.acd.agent_failed(call_id, agent, time.time(), reason))

    def _stop_ringing(self, a: StopRinging) -> None:
        entry = self.entries.get(a.call_id)
        for agent in a.agents:
            legs = self.offers.pop((a.call_id, agent), [])
            reason = 'SIP;cause=200;text="Call completed elsewhere"' if a.reason == "answered_elsewhere" else None
            for leg in legs:
                if leg.state != "ended" and not leg.answered:
                    leg.cancel(reason)
                elif leg.answered and a.reason == "answered_elsewhere":
                    leg.hangup(16, reason or "")
            if entry is not None and legs:
                result = {"answered_elsewhere": "other_answered", "caller_left": "caller_hangup",
                          "timeout": "no_answer", "overflow": "caller_hangup"}.get(a.reason, a.reason)
                self.pbx.events.add(a.call_id, "agent_ring", agent=agent, queue=entry.queue.number, result=result,
                                    seconds=round(time.time() - legs[0].created_at, 3))

    def _connect(self, a: Connect) -> None:
        entry = self.entries.pop(a.call_id, None)
        if entry is None:
            return
        call = entry.call
        agent_leg = next((l for l in call.legs if l.extension == a.agent and l.role == "agent" and l.answered
                          and l.state != "ended"), None)
        if agent_leg is None:
            return
        self._silence(entry)
        agent_leg.acd_offer = False
        call.talk(agent_leg)
        # wait_s is the customer's whole wait (menu included); the queue event keeps the queue part
        self.pbx.calls.update_call(call.id, answered_at=agent_leg.answered_at, answered_by=a.agent,
                                   wait_s=round((agent_leg.answered_at or time.time()) - call.started_at, 3),
                                   queue=a.queue,
                                   ring_s=round((agent_leg.answered_at or time.time()) - agent_leg.created_at, 3))
        self.pbx.events.add(call.id, "answer", agent=a.agent, queue=a.queue, seconds=round(a.wait_s, 3))
        self.pbx.events.add(call.id, "queue_leave", queue=a.queue, result="answered", seconds=round(a.wait_s, 3))
        if not entry.result.done():
            entry.result.set_result("answered")

    def _overflow(self, a: Overflow) -> None:
        entry = self.entries.pop(a.call_id, None)
        if entry is None:
            return
        self._silence(entry)
        wait = time.time() - entry.call.started_at
        self.pbx.events.add(a.call_id, "overflow", queue=a.queue, result=a.reason, destination=a.destination)
        self.pbx.events.add(a.call_id, "queue_leave", queue=a.queue, result=f"overflow:{a.reason}",
                            seconds=round(wait, 3))
        if not entry.result.done():
            entry.result.set_result(("overflow", a.destination, a.reason))

    # ------------------------------------------------------------------ announcements and music
    def _announce(self, a: Announce) -> None:
        entry = self.entries.get(a.call_id)
        if entry is None or entry.call.caller.state == "ended":
            return
        q = entry.queue
        lang = entry.language
        texts: list[str] = []
        if a.kind == "entry":
            texts.append(q.announce or phrase("queue_entry", lang))
            if q.callback:
                texts.append(phrase("callback_offer", lang, digit=q.callback))
        elif a.kind == "position":
            texts.append(phrase("position", lang, position=a.position))
            minutes = max(1, round(a.expected_wait_s / 60))
            texts.append(phrase("expected_wait", lang, minutes=minutes))
            if q.callback:
                texts.append(phrase("callback_offer", lang, digit=q.callback))
        elif a.kind == "periodic" and q.periodic_message:
            texts.append(q.periodic_message)
        if texts:
            entry.pending.extend(texts)
            if not entry.speaking:
                entry.speaking = True
                self.pbx.spawn(self._speak(entry), name=f"announce {a.call_id}")

    async def _speak(self, entry: QueueEntry) -> None:
        leg = entry.call.caller
        try:
            while entry.pending and not entry.result.done() and leg.state != "ended":
                text = entry.pending.pop(0)
                self._stop_music(entry)
                await self.pbx.play_prompt(leg, text, entry.language)
        finally:
            entry.speaking = False
            if not entry.result.done() and leg.state != "ended":
                self._start_music(entry)

    def _start_music(self, entry: QueueEntry) -> None:
        if entry.music is None and entry.call.caller.channel is not None:
            entry.music = self.pbx.play_music(entry.call.caller.channel, entry.queue.music)

    def _stop_music(self, entry: QueueEntry) -> None:
        if entry.music is not None:
            try:
                entry.music.stop()
            except Exception:
                pass
            entry.music = None

    def _silence(self, entry: QueueEntry) -> None:
        entry.pending.clear()
        self._stop_music(entry)
        entry.call.stop_players(entry.call.caller)

    def _publish_queues(self) -> None:
        for number in self._queues:
            q = self.pbx.prov.queue(number)
            if q is None:
                continue
            waiting = tuple((c.call_id, c.number, c.entered) for c in self.acd.waiting(number)) \
                if number in self.acd.queues else ()
            cur = self.pbx.live.queues.get(number)
            if cur is None or cur.waiting != waiting or cur.name != q.name:
                self.pbx.live.put_queue(LiveQueue(number, q.name, waiting))

    # ------------------------------------------------------------------ a caller in a queue
    async def queue(self, call: Call, number: str, *, depth: int = 0) -> str:
        q = self.pbx.prov.queue(number)
        caller = call.caller
        lang = q.language or self.pbx.language_of(None)
        if q.record:
            call.record_policy = q.record
        if not caller.answered and not caller.answer():
            return "failed"
        call.queue = number
        self.pbx.calls.update_call(call.id, queue=number, answered_at=None)
        entry = QueueEntry(call, q, lang, asyncio.get_running_loop().create_future())
        self.entries[call.id] = entry
        acts = self.acd.enter(number, call.id, call.caller.number, time.time())
        if any(isinstance(x, Overflow) for x in acts):
            self.entries[call.id] = entry
        self.pbx.events.add(call.id, "queue_enter", queue=number, position=self.acd.position(call.id))
        self.pbx.call_changed(call)

        def digit_hook(d: str) -> bool:
            if q.callback and d == q.callback and call.id in self.acd.callers:
                self.pbx.spawn(self._take_callback(entry), name=f"callback request {call.id}")
                return True
            return False

        caller.on_digit_hook = digit_hook
        self._start_music(entry)
        self._execute(acts)
        done, _ = await asyncio.wait({entry.result, caller.ended}, return_when=asyncio.FIRST_COMPLETED)
        caller.on_digit_hook = None
        if not entry.result.done():
            # the caller hung up while waiting
            self.entries.pop(call.id, None)
            self._silence(entry)
            wait = time.time() - call.started_at
            self.pbx.events.add(call.id, "queue_leave", queue=number, result="abandoned", seconds=round(wait, 3))
            call.status = "abandoned"
            self.pbx.calls.update_call(call.id, wait_s=round(wait, 3))
            self._execute(self.acd.leave(call.id, time.time(), "abandoned"))
            return "cancelled"
        result = entry.result.result()
        if result == "answered":
            return "answered"
        if result == "callback":
            return "cancelled"
        _, destination, reason = result
        call.status = "overflow"
        return await self._overflow_to(call, q, destination, depth)

    async def _overflow_to(self, call: Call, q: Any, destination: str, depth: int) -> str:
        if destination == "mobiles":
            for m in q.members:
                ext = self.pbx.prov.extension(m.extension)
                if ext is None or not ext.mobile or call.caller.state == "ended":
                    continue
                self.pbx.events.add(call.id, "route", result=f"overflow to {ext.number}'s mobile")
                outcome = await self.pbx.carrier.dial_external(call, ext.mobile)
                if outcome in ("answered", "cancelled"):
                    if outcome == "answered":
                        call.status = "answered"
                    return outcome
            self.pbx._release(call, "no_answer")
            return "no_answer"
        try:
            dest = self.pbx.prov.resolve(destination)
        except ValueError:
            self.pbx._release(call, "failed")
            return "failed"
        outcome = await self.pbx.goto(call, dest, depth=depth + 1)
        if outcome == "answered":
            call.status = "answered"
        return outcome

    # ------------------------------------------------------------------ callbacks
    async def _take_callback(self, entry: QueueEntry) -> None:
        call = entry.call
        number = call.caller.number
        self._execute(self.acd.request_callback(call.id, number, time.time()))
        self.callbacks[call.id] = {"number": number, "queue": entry.queue.number, "trunk": call.caller.trunk,
                                   "attempts": 0, "language": entry.language}
        self.pbx.events.add(call.id, "callback_requested", queue=entry.queue.number, number=number,
                            position=self.acd.position(call.id))
        self._silence(entry)
        self.entries.pop(call.id, None)
        await self.pbx.play_prompt(call.caller, phrase("callback_confirmed", entry.language), entry.language)
        # not served yet: a missed call until the callback connects (that closes the missed entry)
        call.status = "missed"
        if not entry.result.done():
            entry.result.set_result("callback")
        call.caller.hangup(16)

    async def _callback(self, a: CallbackReady) -> None:
        """An agent is free for a caller who asked to be called back: ring the agent, then the
        customer through a trunk, and connect them."""
        info = self.callbacks.get(a.call_id, {"number": a.number, "queue": a.queue, "attempts": 0,
                                              "language": self.pbx.language_of(None)})
        ext = self.pbx.prov.extension(a.agent)
        bindings = self.pbx.registrar.lookup(a.agent, time.time()) if ext is not None else []
        if not bindings:
            self._execute(self.acd.agent_failed(a.call_id, a.agent, time.time(), "unreachable"))
            return
        legs = [self.pbx.make_agent_leg(ext, b) for b in bindings]
        placeholder = self.pbx.new_outbound_call(legs[0], number=a.number)
        try:
            await self._run_callback(a, info, legs, placeholder)
        finally:
            if placeholder.ended_at is None:
                placeholder.end()
            self.pbx._finish_call(placeholder)

    async def _run_callback(self, a: CallbackReady, info: dict[str, Any], legs: list[Leg], placeholder: Call) -> None:
        for leg in legs[1:]:
            placeholder.add_leg(leg)
        for leg in legs:
            self.pbx.start_agent_leg(placeholder, leg, display=f"Callback {a.number}")
        winner = await self.pbx._wait_parallel(legs, timeout=30)
        if winner is None:
            placeholder.status = "failed"
            self._execute(self.acd.agent_failed(a.call_id, a.agent, time.time(), "noanswer"))
            return
        for leg in legs:
            if leg is not winner:
                placeholder.detach(leg)
        placeholder.caller = winner
        self._execute(self.acd.agent_answered(a.call_id, a.agent, time.time()))
        self.pbx.calls.update_call(placeholder.id, queue=a.queue, answered_by=a.agent, campaign="callback",
                                   attempt=info["attempts"] + 1)
        self.pbx.events.add(placeholder.id, "callback_result", queue=a.queue, agent=a.agent,
                            result="agent_answered", original_call=a.call_id)
        await self.pbx.play_prompt(winner, phrase("callback_connecting", info["language"]), info["language"])
        outcome = await self.pbx.carrier.dial_external(placeholder, a.number)
        self.pbx.events.add(a.call_id, "callback_result", queue=a.queue, agent=a.agent, result=outcome,
                            callback_call=placeholder.id)
        if outcome != "answered":
            info["attempts"] += 1
            placeholder.status = {"busy": "busy", "no_answer": "no_answer"}.get(outcome, "failed")
            if winner.state != "ended":
                winner.hangup(16)
            self._execute(self.acd.call_ended(a.call_id, a.agent, time.time()))
            if info["attempts"] < CALLBACK_ATTEMPTS:
                asyncio.get_running_loop().call_later(CALLBACK_RETRY_S, self._requeue_callback, a.call_id, info)
            else:
                self.callbacks.pop(a.call_id, None)
            return
        self.callbacks.pop(a.call_id, None)
        placeholder.queue = a.queue
        await placeholder.done
        self._execute(self.acd.call_ended(a.call_id, a.agent, time.time(),
                                          talk_s=time.time() - (placeholder.answered_at or time.time())))

    def _requeue_callback(self, call_id: str, info: dict[str, Any]) -> None:
        """The customer did not answer the callback: keep the promise and try again later."""
        if info["queue"] not in self.acd.queues:
            return
        self._execute(self.acd.enter(info["queue"], call_id, info["number"], time.time(), callback=True))

    # ------------------------------------------------------------------ the end of a queue call
    def call_finished(self, call: Call) -> None:
        if call.id in self.entries:
            entry = self.entries.pop(call.id)
            self._silence(entry)
            self._execute(self.acd.leave(call.id, time.time(), "abandoned"))
        if call.queue and call.peer is not None and call.peer.extension and call.peer.role == "agent":
            talk = (call.ended_at or time.time()) - (call.answered_at or time.time())
            self._execute(self.acd.call_ended(call.id, call.peer.extension, time.time(), talk_s=talk))

    # ------------------------------------------------------------------ voice menus
    async def menu(self, call: Call, number: str, *, depth: int = 0) -> str:
        ivr = self.pbx.prov.ivr(number)
        caller = call.caller
        lang = ivr.language or self.pbx.language_of(None)
        if not caller.answered and not caller.answer():
            return "failed"
        prov = self.pbx.prov
        numbers = frozenset([e.number for e in prov.extensions] + [q.number for q in prov.queues]
                            + [m.number for m in prov.ivrs])
        menu = Menu(number, ivr.prompt, lang, tuple(ivr.options.items()), float(ivr.timeout),
                    ivr.invalid, max(1, ivr.retries), ivr.invalid_prompt or phrase("invalid", lang),
                    ivr.timeout_prompt or phrase("timeout", lang), ivr.direct_dial)
        session = MenuSession(menu, numbers)
        self.pbx.call_changed(call)
        call.ivr_path.append(number)
        while not caller.digits.empty():
            caller.digits.get_nowait()
        queue: list = list(session.start(time.time()))
        player = None
        player_done: asyncio.Future | None = None
        loop = asyncio.get_running_loop()
        while caller.state != "ended":
            # carry out the session's actions
            while queue:
                act = queue.pop(0)
                if isinstance(act, Play):
                    if player is not None:
                        # a second prompt waits for the first (invalid-choice prompt, then the menu)
                        queue.insert(0, act)
                        break
                    path = await self.pbx.prompt_path(act.prompt, act.language)
                    if caller.channel is None:
                        break
                    player, player_done = self.pbx.start_player(caller.channel, path=path)
                elif isinstance(act, StopPlay):
                    if player is not None:
                        try:
                            player.stop()
                        except Exception:
                            pass
                        player, player_done = None, None
                        queue = [x for x in queue if not isinstance(x, Play)]
                elif isinstance(act, Goto):
                    for ts, digits, outcome in session.choices:
                        self.pbx.events.add(call.id, "ivr_choice", ivr=number, digits=digits, result=outcome)
                    path_text = ">".join(call.ivr_path) + (f":{act.digits}" if act.digits else "")
                    self.pbx.calls.update_call(call.id, ivr_path=path_text)
                    if player is not None:
                        try:
                            player.stop()
                        except Exception:
                            pass
                    try:
                        dest = self.pbx.prov.resolve(act.destination)
                    except ValueError:
                        self.pbx._release(call, "failed")
                        return "failed"
                    return await self.pbx.goto(call, dest, depth=depth + 1)
            waiters: set = {caller.ended, asyncio.ensure_future(caller.digits.get())}
            if player_done is not None:
                waiters.add(player_done)
            at = session.get_timer()
            timeout = None if at is None else max(0.0, at - time.time())
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                if w is not caller.ended and w is not player_done and not w.done():
                    w.cancel()
            now = time.time()
            if caller.ended in done:
                break
            if player_done is not None and player_done in done:
                player, player_done = None, None
                if not queue:
                    queue += session.prompt_done(now)
            for w in done:
                if w is not caller.ended and w is not player_done and not w.cancelled() and w.exception() is None:
                    d = w.result()
                    if isinstance(d, str):
                        queue += session.digit(d, now)
            if not done:
                queue += session.handle_timer(now)
        call.status = call.status or ("missed" if call.direction == "inbound" else "abandoned")
        return "cancelled"

    # ------------------------------------------------------------------ message boxes
    async def message_box(self, call: Call, extension: str) -> str:
        caller = call.caller
        lang = self.pbx.language_of(extension)
        if not caller.answered and not caller.answer():
            return "failed"
        self.pbx.calls.update_call(call.id, to_extension=extension)
        await self.pbx.play_prompt(caller, phrase("message_box", lang), lang)
        if caller.state == "ended" or caller.channel is None:
            return "cancelled"
        _, beep = self.pbx.start_player(caller.channel)
        await asyncio.wait({beep, caller.ended}, return_when=asyncio.FIRST_COMPLETED)
        if caller.state == "ended" or caller.channel is None:
            return "cancelled"
        rel, path = self.pbx.recordings.allocate(call.id, started_at=call.started_at, caller=caller.number,
                                                 callee=f"box{extension}")
        perm = self.pbx.recordings.may_record()
        if not perm.allowed:
            caller.hangup(16)
            self.pbx.calls.set_recording(call.id, state="failed", note=perm.reason)
            return "failed"
        rec = self.pbx.engine.record(caller.channel, path, stereo=False)
        call.recorder = rec
        call.recording_path = rel
        self.pbx.calls.set_recording(call.id, path=rel, state="recording")
        self.pbx.events.add(call.id, "recording_started", path=rel, kind="message")
        try:
            await asyncio.wait_for(asyncio.shield(caller.ended), timeout=180)
        except asyncio.TimeoutError:
            caller.hangup(16)
        call.status = "voicemail"
        self.pbx.notify("voicemail", extension=extension, number=caller.number, call_id=call.id,
                        seconds=round(time.time() - (caller.answered_at or time.time())),
                        time=time.strftime("%H:%M", time.localtime(call.started_at)))
        return "voicemail"

    # ------------------------------------------------------------------ listen / whisper / barge
    def find_call_of(self, extension: str) -> tuple[Call, Leg] | None:
        for call in self.pbx.active_calls.values():
            for leg in (call.peer, call.caller):
                if leg is not None and leg.extension == extension and leg.answered and leg.state != "ended" \
                        and call.bridge is not None and leg.role != "listener":
                    return call, leg
        return None

    async def join_call(self, feature_call: Call, agent: str, mode: str) -> bool:
        """A manager's phone (the caller of `feature_call`) joins `agent`'s call."""
        found = self.find_call_of(agent)
        if found is None:
            return False
        target, agent_leg = found
        manager = feature_call.caller
        if not manager.answer():
            return False
        feature_call.detach(manager)
        feature_call.status = "answered"
        feature_call.end()
        self._join(target, agent_leg, manager, mode)
        return True

    def _join(self, target: Call, agent_leg: Leg, manager: Leg, mode: str) -> None:
        target.add_leg(manager)
        manager.role = "listener"
        engine_mode = {"listen": "listen", "whisper": "whisper", "barge": "full"}[mode]
        target.bridge.add(manager.channel, engine_mode, whisper_to=agent_leg.channel if mode == "whisper" else None)
        self.pbx.calls.add_leg(target.id, kind=manager.kind, endpoint=manager.number, role="listener", leg_id=manager.id)
        self.pbx.events.add(target.id, mode, agent=manager.extension, result=agent_leg.extension)

    async def listen(self, call_id: str, manager_extension: str, mode: str) -> None:
        """BoxControl.listen: ring the manager's phone, then join the running call."""
        if mode not in ("listen", "whisper", "barge"):
            raise ControlError(f"mode must be listen, whisper or barge, not {mode!r}")
        target = self.pbx.active_calls.get(call_id)
        if target is None or target.bridge is None or target.peer is None:
            raise ControlError("that call is not in progress")
        ext = self.pbx.prov.extension(manager_extension)
        if ext is None:
            raise ControlError(f"no extension {manager_extension}")
        bindings = self.pbx.registrar.lookup(manager_extension, time.time())
        if not bindings:
            raise ControlError(f"extension {manager_extension} has no registered phone")
        agent_leg = target.peer if target.peer.extension else target.caller
        legs = [self.pbx._invite_binding(target, ext, b, role="listener") for b in bindings]
        outcome = await self.pbx._wait_parallel(legs, timeout=30)
        if outcome is None:
            raise ControlError(f"extension {manager_extension} did not answer")
        if target.ended_at is not None or target.bridge is None:
            outcome.hangup(16)
            raise ControlError("the call ended meanwhile")
        target.legs.remove(outcome)
        self._join(target, agent_leg, outcome, mode)
