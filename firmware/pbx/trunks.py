"""Trunks: how calls reach the carrier and come in from it (GSM/FXO modems, SIP providers).

`Trunks` is the PBX's gateway to the outside (``pbx.carrier``):

* inbound: a modem's `IncomingCall` or a provider's INVITE becomes a `Call`
  (`Pbx.new_inbound_call`) sent where the inbound routes say (firmware.pbx.routing), or
  rejected when the caller is blacklisted; the call record gets the trunk, the DID and the
  caller's number (normalised by the call store with the system's country code);
* outbound: `dial_external(call, number)` matches the outbound routes, then tries the route's
  trunks in failover order, each within its limits (concurrent calls, a SIM's minutes per
  day counted from the call store's legs), connects the answering trunk leg with
  `call.talk()` and returns the outcome the PBX releases the caller with;
* the modems' other services: SMS (kept, see `store_sms`), USSD, a self-test, and the status
  the web page shows;
* a line that goes out of service (modem not found or lost, SIM blocked, registration failing
  at every server or refused) is reported once per outage through `Pbx.line_down`
  (``trunk_down`` notifications).

Modem lines: firmware.pbx.modemleg. SIP providers: firmware.pbx.siptrunk.

Received SMS are appended to ``<data dir>/sms/inbox.jsonl`` (one JSON object per line,
fsynced before the modem may delete the message from the SIM) and the newest are kept in
`Trunks.sms` for the status page and for `sms_listeners` (notifications).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware.pbx.calls import Leg, SipLeg
from firmware.pbx.modemleg import ModemLeg, ModemTrunk
from firmware.pbx.numbers import allowed
from firmware.pbx.routing import (
    billed_minutes,
    combine_failures,
    day_start,
    is_final,
    match_inbound,
    modem_dial_outcome,
    plan_outbound,
    sip_failure_outcome,
    trunk_unavailable,
)
from firmware.pbx.siptrunk import SipTrunk

log = logging.getLogger("firmware.pbx.trunks")

__all__ = ["MODEM_WATCHDOG", "TONE_COUNTRY", "Trunks"]

MODEM_WATCHDOG: dict[str, Any] = {"ping_interval": 5.0, "ping_timeout": 3.0, "max_misses": 3, "command_timeout": 5.0}
"""Modem supervision (firmware.modem.session.SessionConfig): an idle module is pinged every
5 s and reset after three unanswered commands -- a hung module is back in service well
within 2 minutes (its reboot included)."""

TONE_COUNTRY = {"48": "pl", "359": "bg", "7": "ru", "1": "us", "44": "uk"}
"""System country code -> the country whose ringback tone callers hear."""

SMS_KEEP = 200
SMS_FILE_MAX = 2 * 1024 * 1024

_NEEDS_NO_ANSWER = ("extension", "external", "hangup")
"""Destinations a modem call is routed to without answering it first (the caller hears the
network's ringback until someone answers)."""


class Trunks:
    """All trunks of the box (see the module docstring)."""

    def __init__(self, pbx: Any) -> None:
        self.pbx = pbx
        self.modems: dict[str, ModemTrunk] = {}
        self.sips: dict[str, SipTrunk] = {}
        self.overrides: dict[str, dict[str, Any]] = {}
        """Trunk name -> device/audio_device/imei/scan replacing the configured ones (the
        demo's simulated modem)."""
        self.sms: deque[dict[str, Any]] = deque(maxlen=SMS_KEEP)
        """Newest received SMS: trunk, sender, text, timestamp, received_at, parts, complete."""
        self.sms_listeners: list[Callable[[dict[str, Any]], None]] = []
        """Called with each received SMS after it was stored."""
        self._unsubscribe: Callable[[], None] | None = None
        self._reconciling = False
        self._stopping = False

    # ================================================================== life cycle
    @property
    def sms_path(self) -> Path:
        return Path(self.pbx.data_dir) / "sms" / "inbox.jsonl"

    async def start(self) -> None:
        self._load_sms()
        for cfg in self.pbx.prov.trunks:
            await self._start_trunk(cfg)
        self._unsubscribe = self.pbx.config.subscribe(self._config_changed)

    async def stop(self) -> None:
        self._stopping = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for name in list(self.modems):
            await self._stop_trunk(name)
        for name in list(self.sips):
            await self._stop_trunk(name)

    async def _start_trunk(self, cfg: Any) -> None:
        try:
            if cfg.type == "sip":
                st = SipTrunk(self, cfg)
                self.sips[cfg.name] = st
                await st.start()
            else:
                mt = ModemTrunk(self, cfg, None)
                mt.line = self._make_line(cfg, mt.on_event)
                self.modems[cfg.name] = mt
                await mt.line.start(wait=None)
            log.info("trunk %s (%s) started", cfg.name, cfg.type)
        except Exception:
            log.exception("trunk %s could not start", cfg.name)

    async def _stop_trunk(self, name: str) -> None:
        mt = self.modems.pop(name, None)
        if mt is not None:
            if mt.leg is not None and mt.leg.state != "ended":
                mt.leg.hangup(16)
            try:
                await mt.line.stop()
            except Exception:
                log.exception("stopping modem line %s", name)
        st = self.sips.pop(name, None)
        if st is not None:
            for leg in list(st.legs):
                if leg.state != "ended":
                    leg.hangup(16)
            try:
                await st.stop()
            except Exception:
                log.exception("stopping SIP trunk %s", name)

    def _path(self, p: str) -> str:
        if not p or "://" in p or os.path.isabs(p):
            return p
        return str(Path(self.pbx.data_dir) / p)

    def _make_line(self, cfg: Any, on_event: Callable[[Any], Any]) -> Any:
        from firmware.aio.modem import ModemLine
        from firmware.modem.session import SessionConfig
        ov = self.overrides.get(cfg.name, {})
        device = ov.get("device") or self._path(cfg.device)
        audio = ov.get("audio_device") or self._path(cfg.audio_device)
        imei = ov.get("imei") or cfg.imei or None
        scan = ov.get("scan") or list(cfg.scan) or default_scan(device, imei)
        state_dir = Path(self.pbx.data_dir) / "modems"
        state_dir.mkdir(parents=True, exist_ok=True)
        return ModemLine(cfg.name, cfg.model, device=device or None, audio_device=audio or None,
                         pin=cfg.pin or None, imei=imei, on_event=on_event, scan=scan,
                         config=SessionConfig(**MODEM_WATCHDOG), state_path=str(state_dir / f"{cfg.name}.json"),
                         retry_interval=2.0)

    # ---- configuration changes apply without cutting calls in progress
    def _config_changed(self, change: Any) -> None:
        if self._stopping:
            return
        try:
            self.pbx.spawn(self._reconcile(), name="trunks reconcile")
        except RuntimeError:
            pass

    async def _reconcile(self) -> None:
        if self._reconciling or self._stopping:
            return
        self._reconciling = True
        try:
            wanted = {t.name: t for t in self.pbx.config.current().trunks}
            running: dict[str, Any] = {**self.modems, **self.sips}
            for name, t in running.items():
                if name in wanted and wanted[name] == t.cfg:
                    continue
                busy = t.busy if isinstance(t, ModemTrunk) else t.in_use > 0
                if busy:
                    t.restart_pending = True
                    log.info("trunk %s changed: restarting after its call", name)
                    continue
                await self._stop_trunk(name)
            for name, cfg in wanted.items():
                if name not in self.modems and name not in self.sips:
                    await self._start_trunk(cfg)
        finally:
            self._reconciling = False

    def line_down(self, trunk: Any, detail: str) -> None:
        """A trunk went out of service: tell the PBX (``trunk_down`` notices) once per outage."""
        if getattr(trunk, "down_reported", False) or self._stopping:
            return
        trunk.down_reported = True
        log.error("trunk %s out of service: %s", trunk.name, detail)
        report = getattr(self.pbx, "line_down", None)
        if report is not None:
            try:
                report(trunk.name, detail)
            except Exception:
                log.exception("trunk_down notice for %s", trunk.name)

    def line_up(self, trunk: Any) -> None:
        """A trunk is in service (again): the next outage is reported."""
        if getattr(trunk, "down_reported", False):
            log.info("trunk %s back in service", trunk.name)
        trunk.down_reported = False

    def line_idle(self, trunk: Any) -> None:
        """A trunk's call ended; apply a configuration change that waited for it."""
        if getattr(trunk, "restart_pending", False) and not self._stopping:
            trunk.restart_pending = False
            self._config_changed(None)

    # ================================================================== inbound
    def on_invite(self, ev: Any) -> bool:
        """Take an INVITE that comes from a SIP provider; False when it is not ours.

        A provider is recognised by the source address: one of its servers (IP and port of
        a registering trunk) or an address in its ``allow_ips``.
        """
        src = ev.source
        st = self._trunk_of_source(src.host, src.port)
        if st is None:
            return False
        got = st.inbound_leg(ev)
        if got is None:
            return True
        leg, caller, did = got
        self.inbound(leg, trunk=st.name, did=did, caller=caller, caller_name=leg.name)
        return True

    def _trunk_of_source(self, ip: str, port: int) -> SipTrunk | None:
        """The SIP trunk an INVITE from ip:port belongs to. A registering trunk's server is
        matched by IP and port, or by IP alone when no desk phone registered from that IP
        (providers send from other ports too); ``allow_ips`` by IP."""
        phones: set[str] | None = None
        for st in self.sips.values():
            if not st.cfg.register or ip not in st.addresses.values():
                continue
            if port == st.cfg.port:
                return st
            if phones is None:
                phones = {b.source_ip for b in self.pbx.registrar.all(self.pbx.clock())}
            if ip not in phones:
                return st
        for st in self.sips.values():
            if st.allows_ip(ip):
                return st
        return None

    def modem_incoming(self, mt: ModemTrunk, ev: Any, cid: Any) -> None:
        """A modem rings (IncomingCall): make its leg and call, and route it."""
        number = ev.number or ""
        name = ev.name or (cid.name if cid is not None and cid.name else "") or ""
        try:
            leg = ModemLeg(self.pbx, mt, role="caller", number=number or "anonymous", name=name, proxied=True)
        except Exception as e:  # the engine has no channel left: refuse rather than ring forever
            log.error("%s: incoming call from %s refused, no media: %s", mt.name, number or "a withheld number", e)
            mt.hangup_line()
            return
        mt.leg = leg
        log.info("%s: incoming call from %s%s", mt.name, number or "a withheld number",
                 f" ({name})" if name else "")
        self.inbound(leg, trunk=mt.name, did="", caller=number, caller_name=name)

    def inbound(self, leg: Leg, *, trunk: str, did: str, caller: str, caller_name: str = "") -> None:
        """Record and route a call that came in on `trunk` (see the module docstring)."""
        prov = self.pbx.prov
        system = prov.system
        decision = match_inbound(prov.route, trunk=trunk, did=did, caller=caller,
                                 country_code=system.country_code, trunk_prefix=system.trunk_prefix)
        call = self.pbx.new_inbound_call(leg, trunk=trunk, did=did, caller_name=caller_name)
        self.pbx.events.add(call.id, "route", result=decision.reason, trunk=trunk, did=did)
        call.done.add_done_callback(lambda _f: self._call_over())
        if decision.blacklisted:
            log.info("%s: rejected %s", trunk, decision.reason)
            call.status = "rejected"
            call.ended_side = "system"
            call.end_cause = 21
            if isinstance(leg, SipLeg):
                leg.reject(403, "Forbidden")
            else:
                leg.hangup(21)
            call.end(21)
            self.pbx._finish_call(call, "system")
            return
        if decision.route is None:
            log.warning("%s: %s", trunk, decision.reason)
        elif decision.route.record:
            call.record_policy = decision.route.record
        self.pbx.spawn(self._route_inbound(call, leg, decision.destination), name=f"inbound {call.id}")

    async def _route_inbound(self, call: Any, leg: Leg, destination: str) -> None:
        if isinstance(leg, ModemLeg):
            try:
                kind = self.pbx.prov.resolve(destination).kind
            except ValueError:
                kind = "hangup"
            if kind not in _NEEDS_NO_ANSWER and not await leg.answer_and_wait():
                log.info("%s: the caller left before the call was answered", leg.trunk)
        self.pbx.route_inbound(call, destination)

    def _call_over(self) -> None:
        trunks: list[Any] = [*self.modems.values(), *self.sips.values()]
        for t in trunks:
            busy = t.busy if isinstance(t, ModemTrunk) else t.in_use > 0
            if t.restart_pending and not busy:
                self.line_idle(t)

    # ================================================================== outbound
    async def dial_external(self, call: Any, number: str) -> str:
        """Connect `call` to an outside number through the outbound routes.

        Returns "answered" (the caller talks to the far end), "busy", "no_answer",
        "rejected", "no_route" (no route, or the number does not exist), "cancelled" (the
        caller gave up), "congestion" (every trunk full or congested) or "failed".
        """
        prov = self.pbx.prov
        plan = plan_outbound(prov.route.outbound, number)
        if plan is None:
            self.pbx.events.add(call.id, "route", result=f"no outbound route for {number}")
            return "no_route"
        caller = call.caller
        label = plan.route.name or plan.route.pattern
        if caller.extension and call.direction != "inbound" and \
                not allowed(prov.extension_permissions(caller.extension), plan.route.permission):
            self.pbx.events.add(call.id, "route", result=f"denied: route {label} needs {plan.route.permission}")
            return "rejected"
        self.pbx.events.add(call.id, "route", result=f"outbound route {label}: {plan.number} via {', '.join(plan.trunks)}")
        if call.direction == "internal":
            call.direction = "outbound"
            self.pbx.calls.update_call(call.id, direction="outbound", callee_number=number)
        if call.direction == "outbound":
            # the customer's number as the network knows it (after the route's strip/prepend)
            self.pbx.calls.update_call(call.id, external_number=plan.number)
        call.done.add_done_callback(lambda _f: self._call_over())
        ringback = self._ringback(call)
        failures: list[str] = []
        try:
            for name in plan.trunks:
                if caller.state == "ended":
                    return "cancelled"
                outcome, leg = await self._attempt(call, name, plan.number)
                self.pbx.events.add(call.id, "trunk_attempt", result=outcome, trunk=name, number=plan.number)
                if outcome == "answered" and leg is not None:
                    return self._connect(call, leg, name, ringback)
                if is_final(outcome):
                    return outcome
                failures.append(outcome)
                log.info("call %s: trunk %s cannot take it (%s): next trunk", call.id, name, outcome)
            return combine_failures(failures)
        finally:
            if ringback is not None:
                call.stop_players(caller)

    def _ringback(self, call: Any) -> Any:
        """A caller already answered (click-to-call agent, IVR) hears ringback from the box;
        a ringing SIP caller gets 180 from the leg's progress instead."""
        caller = call.caller
        if not caller.answered or caller.channel is None:
            return None
        country = TONE_COUNTRY.get(self.pbx.prov.system.country_code, "eu")
        try:
            p = self.pbx.engine.play_tone(caller.channel, "ringback", country=country)
        except Exception as e:
            log.debug("no ringback for %s: %s", call.id, e)
            return None
        p._leg = caller
        call.players.append(p)
        return p

    def _connect(self, call: Any, leg: Leg, trunk: str, ringback: Any) -> str:
        caller = call.caller
        if caller.state == "ended":
            leg.hangup(16)
            return "cancelled"
        if not caller.answered and not caller.answer() and isinstance(caller, SipLeg):
            leg.hangup(16)
            return "failed"
        call.talk(leg)
        fields: dict[str, Any] = {"answered_at": leg.answered_at or time.time(),
                                  "ring_s": round((leg.answered_at or time.time()) - leg.created_at, 3)}
        if call.direction != "inbound":
            fields["trunk"] = trunk
        self.pbx.calls.update_call(call.id, **fields)
        self.pbx.events.add(call.id, "answer", result=f"{leg.number} via {trunk}",
                            seconds=round((leg.answered_at or time.time()) - call.started_at, 3))
        return "answered"

    async def _attempt(self, call: Any, name: str, number: str) -> tuple[str, Leg | None]:
        if name in self.modems:
            return await self._attempt_modem(call, self.modems[name], number)
        if name in self.sips:
            return await self._attempt_sip(call, self.sips[name], number)
        log.error("call %s: route names trunk %s, which is not configured", call.id, name)
        return "unavailable", None

    def minutes_today(self, trunk: str, now: float | None = None) -> int:
        """Outgoing talk minutes of `trunk` today (local time), each call rounded up to a
        whole minute, from the call store's legs plus the call in progress."""
        now = time.time() if now is None else now
        start = day_start(now, self.pbx.prov.system.timezone)
        prefix = f"{trunk}:"
        try:
            rows = self.pbx.calls.query(
                "SELECT l.answered_at, l.ended_at FROM calls c JOIN call_legs l ON l.call_id = c.id "
                "WHERE c.started_at >= ? AND l.role = 'callee' AND l.answered_at IS NOT NULL "
                "AND l.answered_at >= ? AND substr(l.endpoint, 1, ?) = ?",
                (start - 86400, start, len(prefix), prefix))
        except Exception as e:
            log.error("minutes of %s not counted: %s", trunk, e)
            rows = []
        periods: list[tuple[float, float | None]] = [(float(r[0]), float(r[1]) if r[1] is not None else now)
                                                     for r in rows]
        mt = self.modems.get(trunk)
        live: list[Leg] = [mt.leg] if mt is not None and mt.leg is not None else []
        live += list(self.sips[trunk].legs) if trunk in self.sips else []
        for leg in live:
            if leg.role == "callee" and leg.answered_at and leg.state != "ended" and leg.answered_at >= start:
                periods.append((leg.answered_at, None))
        return billed_minutes(periods, now)

    async def _attempt_modem(self, call: Any, mt: ModemTrunk, number: str) -> tuple[str, Leg | None]:
        from firmware.modem.errors import ModemBusy, ModemError, ModemNotReady
        st = mt.line.status()
        why = trunk_unavailable(kind=mt.kind, in_use=1 if mt.busy or st.get("in_call") else 0,
                                max_calls=min(1, mt.cfg.max_calls), minutes_used=self.minutes_today(mt.name)
                                if mt.cfg.minutes_per_day else 0, minutes_per_day=mt.cfg.minutes_per_day,
                                ready=mt.line.ready, registered=bool(st.get("registered")))
        if why is not None:
            return why, None
        if mt.line.audio_kind == "none":
            log.warning("%s: %s has no audio port the box can use; the call has no sound",
                        mt.name, mt.cfg.model)
        leg = ModemLeg(self.pbx, mt, role="callee", number=number, proxied=False)
        mt.leg = leg
        call.add_leg(leg)
        self.pbx._track(leg)
        self.pbx.calls.add_leg(call.id, kind=mt.kind, endpoint=f"{mt.name}:{number}", role="callee", leg_id=leg.id)
        dial = asyncio.ensure_future(mt.line.dial(number))
        caller = call.caller
        await asyncio.wait({dial, caller.ended}, return_when=asyncio.FIRST_COMPLETED)
        if not dial.done():
            leg.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(dial), 15)
            except (TimeoutError, ModemError):
                pass
            finally:
                if not dial.done():
                    dial.cancel()
                elif not dial.cancelled():
                    dial.exception()
            return "cancelled", None
        try:
            res = dial.result()
        except ModemBusy as e:
            leg.failed("no_channel", e.q850)
            mt.release(leg)
            return "no_channel", None
        except ModemNotReady as e:
            leg.failed("unavailable", e.q850)
            mt.release(leg)
            return "unavailable", None
        except (ModemError, ValueError) as e:
            log.warning("%s: dial %s failed: %s", mt.name, number, e)
            q = getattr(e, "q850", None)
            outcome = "no_route" if isinstance(e, ValueError) else "failed"
            leg.failed(outcome, q)
            if not mt.line.status().get("in_call"):
                mt.release(leg)
            return outcome, None
        outcome = modem_dial_outcome(res.status, leg.alerted)
        if outcome == "answered":
            if leg.state == "ended":
                return "cancelled", None
            leg.connected_out()
            return "answered", leg
        leg.failed(outcome, res.q850)
        if not mt.line.status().get("in_call"):
            mt.release(leg)
        log.info("%s: %s -> %s (%s, Q.850 %s)", mt.name, number, res.status, res.cause or "-", res.q850)
        return outcome, None

    async def _attempt_sip(self, call: Any, st: SipTrunk, number: str) -> tuple[str, Leg | None]:
        from firmware.media import MediaError
        why = st.usable()
        if why is not None:
            return why, None
        try:
            leg = st.outbound_leg(call, number)
        except MediaError as e:
            log.error("%s: no media for an outgoing call: %s", st.name, e)
            return "congestion", None
        self.pbx._track(leg)
        self.pbx.calls.add_leg(call.id, kind="siptrunk", endpoint=f"{st.name}:{number}", role="callee", leg_id=leg.id)
        caller = call.caller
        await asyncio.wait({leg.outcome, caller.ended}, return_when=asyncio.FIRST_COMPLETED)
        if not leg.outcome.done():
            leg.cancel()
            return "cancelled", None
        result = leg.outcome.result()
        if result == "answered":
            return "answered", leg
        if result == "cancelled":
            return "cancelled", None
        return sip_failure_outcome(leg.sip_code or 503), None

    # ================================================================== SMS, USSD, test
    def _modem(self, trunk: str) -> ModemTrunk:
        from firmware.api import ControlError
        mt = self.modems.get(trunk)
        if mt is None:
            known = ", ".join(self.modems) or "none configured"
            raise ControlError(f"no modem line {trunk!r} (modem lines: {known})")
        return mt

    def store_sms(self, trunk: str, ev: Any) -> None:
        """Keep a received SMS for good (append + fsync) before the modem deletes it."""
        rec = {"trunk": trunk, "sender": ev.sender, "text": ev.text, "timestamp": ev.timestamp,
               "received_at": time.time(), "parts": ev.parts, "complete": ev.complete}
        path = self.sms_path
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.sms.append(rec)
        log.info("%s: SMS from %s (%d part%s, %d characters)", trunk, ev.sender, ev.parts,
                 "" if ev.parts == 1 else "s", len(ev.text))
        if path.stat().st_size > SMS_FILE_MAX:
            self._compact_sms()
        for cb in list(self.sms_listeners):
            try:
                cb(rec)
            except Exception:
                log.exception("SMS listener failed")

    def _load_sms(self) -> None:
        try:
            with open(self.sms_path, encoding="utf-8") as f:
                for text in f:
                    try:
                        self.sms.append(json.loads(text))
                    except ValueError:
                        continue  # a line cut by a power loss
        except FileNotFoundError:
            pass
        except OSError as e:
            log.error("received SMS not loaded from %s: %s", self.sms_path, e)

    def _compact_sms(self) -> None:
        path = self.sms_path
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in self.sms)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def received_sms(self, trunk: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The newest received SMS (of one trunk), newest first."""
        out = [r for r in reversed(self.sms) if trunk is None or r.get("trunk") == trunk]
        return out[:limit]

    async def send_sms(self, trunk: str, number: str, text: str) -> None:
        from firmware.api import ControlError
        from firmware.modem.errors import ModemError
        mt = self._modem(trunk)
        if not mt.cfg.sms:
            raise ControlError(f"trunk {trunk} is not used for SMS (sms = false)")
        number = number.strip().replace(" ", "")
        if not number or not text:
            raise ControlError("an SMS needs a number and a text")
        try:
            refs = await mt.line.send_sms(number, text)
        except (ModemError, ValueError) as e:
            raise ControlError(f"SMS to {number} not sent: {e}") from None
        log.info("%s: SMS to %s sent (%d part%s)", trunk, number, len(refs), "" if len(refs) == 1 else "s")

    async def ussd(self, trunk: str, code: str) -> str:
        from firmware.api import ControlError
        from firmware.modem.errors import ModemError
        mt = self._modem(trunk)
        try:
            return await mt.line.ussd(code.strip())
        except (ModemError, ValueError) as e:
            raise ControlError(f"USSD {code} failed: {e}") from None

    async def modem_test(self, trunk: str) -> dict[str, Any]:
        """Findings of a trunk self-test. Modems: AT answers (the watchdog's last answer),
        SIM, network, signal. SIP trunks: registration and an OPTIONS round trip."""
        from firmware.api import ControlError
        if trunk in self.sips:
            return await self._sip_test(self.sips[trunk])
        mt = self._modem(trunk)
        st = mt.line.status()
        loop = asyncio.get_running_loop()
        last_ok = (st.get("health") or {}).get("last_ok")
        fresh = MODEM_WATCHDOG["ping_interval"] * 3
        if not mt.line.ready:
            at = f"not in service ({(st.get('health') or {}).get('state')})"
        elif last_ok is not None and loop.time() - last_ok <= fresh:
            at = f"ok (answered {loop.time() - last_ok:.0f} s ago)"
        else:
            at = "no answer recently"
        sim = st.get("sim") or {}
        sig = st.get("signal") or {}
        findings = {
            "at": at,
            "sim": sim.get("state") or "unknown",
            "network": f"registered ({st.get('operator') or 'operator unknown'})" if st.get("registered")
            else "not registered",
            "signal": _signal_text(sig) or "unknown",
            "imei": st.get("imei") or "unknown",
            "device": st.get("device"),
        }
        if sim.get("pin_tries") is not None:
            findings["pin_tries"] = sim["pin_tries"]
        if not mt.line.ready and not st.get("device"):
            raise ControlError(f"{trunk}: modem not found")
        return findings

    async def _sip_test(self, st: SipTrunk) -> dict[str, Any]:
        from firmware.sip.message import make_request
        from firmware.sip.uri import Address, SipUri
        dest = st.dest()
        findings: dict[str, Any] = {"server": st.plan.server, "registration":
                                    ("registered" if st.plan.registered else f"not registered ({st.plan.last_error or 'pending'})")
                                    if st.cfg.register else "not used"}
        if dest is None:
            findings["options"] = "server name does not resolve"
            return findings
        req = make_request("OPTIONS", SipUri(host=st.plan.server, port=st.cfg.port if st.cfg.port != 5060 else None),
                           from_addr=Address(SipUri(host=st.plan.server, user=st.cfg.username or None)),
                           to_addr=Address(SipUri(host=st.plan.server)))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        t0 = time.monotonic()

        def done(ev: Any) -> None:
            if not fut.done():
                fut.set_result(ev)
        self.pbx.ua.request(req, dest, done)
        try:
            ev = await asyncio.wait_for(fut, 6.0)
        except TimeoutError:
            findings["options"] = "no answer within 6 s"
            return findings
        resp = getattr(ev, "response", None)
        findings["options"] = f"{resp.status} {resp.reason} in {(time.monotonic() - t0) * 1000:.0f} ms" \
            if resp is not None else type(ev).__name__
        return findings

    # ================================================================== status
    def status(self) -> list[dict[str, Any]]:
        """Every configured trunk, in configuration order (see BoxControl.trunks)."""
        out = []
        for cfg in self.pbx.prov.trunks:
            if cfg.name in self.modems:
                out.append(self._modem_status(self.modems[cfg.name]))
            elif cfg.name in self.sips:
                out.append(self.sips[cfg.name].status())
            else:
                out.append({"name": cfg.name, "type": cfg.type, "model": cfg.model, "health": "not started",
                            "registered": None, "faults": [], "calls": 0})
        return out

    def _modem_status(self, mt: ModemTrunk) -> dict[str, Any]:
        st = mt.line.status()
        sim = st.get("sim") or {}
        faults = st.get("faults") or []
        health = st.get("health") or {}
        return {
            "name": mt.name, "type": mt.kind, "model": mt.cfg.model,
            "device": st.get("device"), "audio_device": st.get("audio_device"),
            "registered": bool(st.get("registered")), "operator": st.get("operator"),
            "registration": (f"registered ({st.get('operator') or 'operator unknown'})" if st.get("registered")
                             else "no network") if mt.kind == "gsm" else ("line ready" if mt.line.ready else "not ready"),
            "signal": _signal_text(st.get("signal") or {}),
            "signal_detail": st.get("signal"),
            "sim": sim.get("state"), "sim_detail": sim,
            "imei": st.get("imei"), "iccid": st.get("iccid"),
            "health": health.get("state"), "resets": health.get("resets"),
            "faults": [f"{f.get('kind')}: {f.get('detail')}" for f in faults[-5:]],
            "last_faults": faults[-10:],
            "calls": 1 if mt.busy else 0, "max_calls": 1,
            "call_state": st.get("call_state"),
            "minutes_today": self.minutes_today(mt.name), "minutes_per_day": mt.cfg.minutes_per_day or None,
            "last_ussd": st.get("last_ussd"),
            "sms_recent": self.received_sms(mt.name, 5),
            "audio": mt.line.audio_kind, "audio_note": st.get("audio_note"),
        }


def _signal_text(sig: dict[str, Any]) -> str | None:
    if not sig or sig.get("rssi") in (None, 99):
        return None
    dbm = sig.get("dbm")
    return f"{dbm} dBm (rssi {sig.get('rssi')})" if dbm is not None else f"rssi {sig.get('rssi')}"


def default_scan(device: str | None, imei: str | None) -> list[str]:
    """Where a modem with a known IMEI is looked for after a reset renamed its ports: the
    folder of its configured port (udev or simulator links), and for ports under /dev the
    stable names of board/common/udev plus the raw USB serial ports."""
    if not imei or not device or "://" in device:
        return []
    folder = os.path.dirname(device) or "."
    if folder == "/dev":
        return ["/dev/pbx-modem-*-at", "/dev/serial/by-path/*", "/dev/ttyUSB*", "/dev/ttyACM*"]
    return [os.path.join(folder, "*")]
