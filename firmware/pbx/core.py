"""The PBX: joins SIP, modem and media events into calls, and carries out the web page's actions.

`Pbx` implements firmware.api.BoxControl. It owns the registrar, the security policy, the ACD
and the live state; it does no I/O itself: the SIP endpoint, the modem lines and the media
engine are given to it by the composition root (firmware.aio.service). Call flows are
asyncio tasks (one per call) that await what the legs report.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from firmware.api import ControlError
from firmware.config import Destination
from firmware.aio.sysinfo import system_status
from firmware.media import MediaError
from firmware.media.prompts import PromptCache, PromptError
from firmware.pbx.calls import SIP_TO_Q850, Call, Leg, SipLeg
from firmware.pbx.live import LiveAgent, LiveCall, LiveState
from firmware.pbx.numbers import allowed, classify, plan_for
from firmware.pbx.registrar import ContactRequest, Registrar
from firmware.pbx.security import SecurityPolicy
from firmware.pbx.sipua import ALLOW, SUPPORTED, ClientInvite, SipUa
from firmware.sip.auth import DigestServer
from firmware.sip.errors import SipParseError
from firmware.sip.events import Addr, RequestReceived
from firmware.sip.message import SipRequest, make_request
from firmware.sip.uri import Address, SipUri

log = logging.getLogger("firmware.pbx")

ALGORITHM_NAMES = {"md5": "MD5", "sha256": "SHA-256", "sha512-256": "SHA-512-256"}
ONE_CHALLENGE_AGENTS = ("baresip",)
"""User agents whose digest code gives up when any challenge uses an algorithm it does not know
(libre before 2.x fails with ENOSYS on a SHA-256 challenge): they are offered MD5 alone unless
their extension is set to SHA-256 only."""


class CallEvents:
    """Appends events to call records; never lets a store error break a call."""

    def __init__(self, calls: Any) -> None:
        self.calls = calls

    def add(self, call_id: str, type: str, **data: Any) -> None:
        try:
            self.calls.add_event(call_id, type, **data)
        except Exception as e:
            log.error("call event %s not stored: %s", type, e)


class Pbx:
    def __init__(self, *, config: Any, calls: Any, recordings: Any, engine: Any, live: LiveState,
                 data_dir: Path, version: str, started_at: float, clock=time.time,
                 local_address: Any = None) -> None:
        self.config = config
        self.calls = calls
        self.recordings = recordings
        self.engine = engine
        self.live = live
        self.data_dir = Path(data_dir)
        self.version = version
        self.started_at = started_at
        self.clock = clock
        self.events = CallEvents(calls)
        self.local_address = local_address or (lambda peer_ip: None)
        """local_address(peer_ip) -> the box's address towards that peer (injected I/O helper)."""
        self.prompts = PromptCache(self.data_dir / "prompt-cache")
        self.prov = config.current()
        self.rtp_timeout = 60.0
        sec = self.prov.system.security
        self.security = SecurityPolicy(max_failures=sec.ban_attempts, window_s=sec.ban_window_s,
                                       ban_s=sec.ban_time_s, rate_per_s=sec.rate_limit_per_s,
                                       burst=sec.rate_limit_burst, exempt=tuple(sec.exempt_ips),
                                       scanner_agents=tuple(a.lower() for a in sec.scanner_user_agents),
                                       store=calls)
        self.registrar = Registrar(max_expires=self.prov.system.registration_max_s, store=calls)
        self.endpoint: Any = None
        self.ua: SipUa | None = None
        self.digest: DigestServer | None = None
        self.active_calls: dict[str, Call] = {}
        self.ext_legs: dict[str, set[Leg]] = {}
        """Extension -> its legs in progress (ringing or talking)."""
        self.channel_legs: dict[int, Leg] = {}
        self._leg_channels: dict[str, set[int]] = {}
        """Leg id -> the channel ids `_track` put in channel_legs (dropped in leg_ended)."""
        self._ext_busy: dict[str, bool] = {}
        """What the call centre was last told about each extension (see _ext_state_changed)."""
        self._tasks: set[asyncio.Task] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._music: Any = None
        self._beep: Any = None
        self._stopping = False
        self._reg_trusted: set[str] = set()
        self._player_waiters: dict[int, asyncio.Future] = {}
        self.notify: Any = _no_notices
        """notify(event, **data): set by the service to the notifier (SMS, e-mail, webhooks)."""
        self._disk_alarm_at = 0.0
        from firmware.pbx.centre import CallCentre
        from firmware.pbx.features import Features
        from firmware.pbx.trunks import Trunks
        self.centre = CallCentre(self)
        self.features = Features(self)
        self.carrier = Trunks(self)
        from firmware.pbx.blf import Blf
        self.blf = Blf(self)
        """Trunks and modem lines (firmware.pbx.trunks)."""
        self.sip_bind: tuple[str, int] = ("0.0.0.0", 5060)

    # ------------------------------------------------------------------ life cycle
    async def start(self, *, sip_bind: tuple[str, int], demo: bool = False) -> None:
        from firmware.aio.sip_transport import SipEndpoint
        from firmware.sip.overload import OverloadGuard
        from firmware.sip.transaction import TransactionLayer

        self.sip_bind = sip_bind
        self.registrar.load(self.clock())
        self._sync_trusted()
        host = sip_bind[0]
        # No automatic 100 Trying: an unauthenticated INVITE is answered with 401 at once,
        # because cheap phones (pyVoIP among them) take a 100 before the 401 as success and
        # never send their credentials. The PBX sends 100 itself once the caller is known.
        # Under overload new calls and registrations get 503 + Retry-After; calls in progress
        # keep going (firmware.sip.overload).
        layer = TransactionLayer(auto_trying=False, accept_request=self._accept_request,
                                 overload=OverloadGuard())
        self.endpoint = await SipEndpoint.create(
            sip_bind, on_event=self._on_sip_event, accept_source=self._accept_source, layer=layer,
            advertise=None if host in ("0.0.0.0", "", "::") else host)
        self.endpoint.trusted_source = self.security.is_trusted
        self.sip_bind = (host, self.endpoint.local_addr[1])
        system = self.prov.system
        self.ua = SipUa(self.endpoint, on_request=self._on_request, media_address=self._media_address,
                        session_expires=system.session_expires_s, min_se=system.min_se_s)
        self.digest = DigestServer(system.realm, self.config.secret,
                                   algorithms=tuple(ALGORITHM_NAMES[a] for a in system.auth_algorithms))
        self._every(1.0, self._tick)
        self._every(5.0, self.security.reload)
        self._every(30.0, self.centre.reconcile)
        self._every(float(system.nat_keepalive_s), self._keepalive)
        self.config.subscribe(self._config_changed)
        self.centre.configure()
        self._refresh_agents()
        await self.carrier.start()

    def _every(self, seconds: float, fn: Any) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            if self._stopping:
                return
            try:
                fn()
            except Exception:
                log.exception("periodic %s failed", getattr(fn, "__name__", fn))
            self._timers.append(loop.call_later(seconds, run))
        self._timers.append(loop.call_later(seconds, run))

    async def stop(self) -> None:
        self._stopping = True
        for t in self._timers:
            t.cancel()
        try:
            await self.carrier.stop()
        except Exception:
            log.exception("stopping trunks")
        self.blf.stop()
        for call in list(self.active_calls.values()):
            call.end(cause=16)
            self._finish_call(call, "system")
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.endpoint is not None:
            await asyncio.sleep(0.05)  # let the BYEs leave
            await self.endpoint.close()
        self.calls.flush()

    def spawn(self, coro: Any, name: str = "") -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name or None)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("task %s failed", name, exc_info=t.exception())
        task.add_done_callback(done)
        return task

    @property
    def prov(self) -> Any:
        """The provisioning model in force (firmware.config.Provisioning)."""
        return self._prov

    @prov.setter
    def prov(self, prov: Any) -> None:
        self._prov = prov
        self._ext_index: dict[str, Any] = {e.number: e for e in reversed(prov.extensions)}
        self._resolved: dict[str, Any] = {}

    def extension(self, number: str) -> Any:
        """The provisioned extension with this number, or None (an index, not a scan)."""
        return self._ext_index.get(number)

    def resolve(self, destination: str) -> Destination:
        """``prov.resolve(destination)``, remembered until the configuration changes."""
        hit = self._resolved.get(destination)
        if hit is None:
            try:
                hit = self._prov.resolve(destination)
            except ValueError as e:
                hit = e
            if len(self._resolved) < 4096:
                self._resolved[destination] = hit
        if isinstance(hit, ValueError):
            raise ValueError(*hit.args)
        return hit

    def _config_changed(self, change: Any) -> None:
        self.prov = self.config.current()
        self._ext_busy.clear()
        self.centre.configure()
        self._refresh_agents()

    # ------------------------------------------------------------------ SIP plumbing
    def _media_address(self, peer_ip: str) -> str:
        """The box's address in SDP for a peer: the bound address, or (bound to every
        interface) the one the peer is reached from, so a box with a LAN and a loopback or
        VPN address offers each phone an address it can send to."""
        host = self.sip_bind[0]
        if host not in ("0.0.0.0", "", "::"):
            return host
        return self.local_address(peer_ip) or self.endpoint.advertised_host

    def _accept_source(self, ip: str) -> bool:
        return self.security.accept_source(ip, time.monotonic())

    def _accept_request(self, request: SipRequest, source: Addr) -> bool:
        return not self.security.is_scanner(request.user_agent)

    def _on_sip_event(self, ev: Any) -> None:
        assert self.ua is not None
        self.ua.handle_event(ev)

    def _respond(self, ev: RequestReceived, status: int, reason: str | None = None, **kw: Any) -> None:
        assert self.ua is not None
        self.ua.respond(ev, status, reason, **kw)

    def _on_request(self, ev: RequestReceived) -> None:
        m = ev.request.method
        if m == "REGISTER":
            self._on_register(ev)
        elif m == "INVITE":
            self._on_invite(ev)
        elif m == "OPTIONS":
            self._respond(ev, 200, headers=[("Allow", ALLOW), ("Supported", SUPPORTED), ("Accept", "application/sdp")])
        elif m == "SUBSCRIBE":
            self.blf.on_subscribe(ev)
        elif m in ("BYE", "INFO", "UPDATE", "PRACK", "NOTIFY", "REFER"):
            self._respond(ev, 481, "Call/Transaction Does Not Exist")
        else:
            self._respond(ev, 405, headers=[("Allow", ALLOW)])

    def _authenticate(self, ev: RequestReceived, username_hint: str | None = None) -> str | None:
        """The extension that signed the request, or None after answering with a challenge."""
        assert self.digest is not None
        req = ev.request
        now = self.clock()
        result = self.digest.verify(req, self._credentials, now)
        if result.ok and result.username is not None:
            ext = self.extension(result.username)
            algs = ext.auth_algorithms if ext is not None and ext.auth_algorithms else None
            if algs and result.algorithm not in {ALGORITHM_NAMES[a] for a in algs}:
                result = type(result)(False, "unsupported algorithm", result.username)
            else:
                self.security.auth_succeeded(ev.source.host)
                return result.username
        if result.failed_attempt:
            ban = self.security.auth_failed(ev.source.host, time.monotonic())
            log.warning("authentication failed from %s for %r: %s", ev.source.host, result.username, result.reason)
            if ban is not None:
                log.warning("banned %s: %s", ban.ip, ban.reason)
                self.notify("ban", ip=ban.ip, reason=ban.reason, until=ban.until)
        algs = None
        claimed = result.username
        if not claimed:
            # before any credentials: the account the request claims (To of a REGISTER, else
            # From). Only an extension set to its own algorithms gets a different challenge;
            # unknown users and default extensions get the same one.
            addr = req.to_addr if req.method == "REGISTER" else req.from_addr
            claimed = addr.uri.user if isinstance(addr.uri, SipUri) else None
        if claimed:
            ext = self.extension(claimed)
            if ext is not None and ext.auth_algorithms:
                algs = [ALGORITHM_NAMES[a] for a in ext.auth_algorithms]
        ua = (req.user_agent or "").lower()
        if any(a in ua for a in ONE_CHALLENGE_AGENTS):
            configured = algs or list(self.digest.algorithms)
            algs = ["MD5"] if "MD5" in configured else configured[:1]
        resp = self.digest.challenge(req, now, stale=result.stale, algorithms=algs)
        resp.headers.add("Server", "officebox")
        try:
            # Stateless (RFC 3261 8.2.7): a challenge keeps nothing, so a flood of
            # unauthenticated requests holds no transactions, and the phone's retry is new.
            self.endpoint.send_final_stateless(ev.transaction, resp)
        except Exception:
            pass
        return None

    def _credentials(self, username: str) -> Any:
        try:
            return self.config.sip_credentials(username)
        except Exception:
            return None

    # ------------------------------------------------------------------ REGISTER
    def _on_register(self, ev: RequestReceived) -> None:
        req = ev.request
        aor = req.to_addr.uri.user if isinstance(req.to_addr.uri, SipUri) else None
        user = self._authenticate(ev)
        if user is None:
            return
        if aor != user:
            self._respond(ev, 403, "Forbidden: the account does not match the To address")
            return
        if not req.contact_is_star and any(not isinstance(a.uri, SipUri) for a in req.contacts):
            # a tel:, mailto: or http: binding could never be rung
            self._respond(ev, 400, "Bad Contact: only sip and sips URIs can be registered")
            return
        try:
            contacts = [] if req.contact_is_star else [
                ContactRequest(str(a.uri), _int_or_none(a.get_param("expires")),
                               float(a.get_param("q") or 1.0), a.get_param("+sip.instance") or "")
                for a in req.contacts]
        except (SipParseError, ValueError) as e:
            self._respond(ev, 400, f"Bad Contact: {e}")
            return
        if not contacts and not req.contact_is_star:
            # a query: list the bindings
            res_bindings = self.registrar.lookup(aor, self.clock())
            self._respond(ev, 200, headers=[("Contact", f"<{b.contact}>;expires={int(b.expires_at - self.clock())}")
                                            for b in res_bindings])
            return
        before = self.registrar.lookup(aor, self.clock())
        res = self.registrar.register(aor, contacts, wildcard=req.contact_is_star, header_expires=req.expires,
                                      call_id=req.call_id, cseq=req.cseq.seq, transport=ev.source.transport,
                                      source_ip=ev.source.host, source_port=ev.source.port,
                                      user_agent=req.user_agent or "", now=self.clock(),
                                      nat=behind_nat(req, ev.source))
        if res.status == 423:
            self._respond(ev, 423, headers=[("Min-Expires", str(res.min_expires))])
            return
        if res.status != 200:
            self._respond(ev, res.status, res.reason)
            return
        now = self.clock()
        self._respond(ev, 200, headers=[("Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}")
                                        for b in res.bindings] + [("Date", _http_date())])
        # Only this extension's bindings changed (expiries are the tick's): re-deriving the
        # trusted addresses from every binding on each REGISTER was O(phones).
        if {b.source_ip for b in before} != {b.source_ip for b in res.bindings}:
            self._sync_trusted()
        if bool(before) != bool(res.bindings):
            self.centre.registered_changed(aor, not before)
            self._refresh_agent(aor)

    def _tick(self) -> None:
        gone = self.registrar.expire(self.clock())
        if gone:
            self._sync_trusted()
            for b in gone:
                if not self.registrar.is_registered(b.aor, self.clock()):
                    self.centre.registered_changed(b.aor, False)
            self._refresh_agents()

    def _sync_trusted(self) -> None:
        """Registered phones' addresses get the trusted rate limit (see SecurityPolicy)."""
        now_ips = {b.source_ip for b in self.registrar.all(self.clock())}
        for ip in now_ips - self._reg_trusted:
            self.security.trust(ip)
        for ip in self._reg_trusted - now_ips:
            self.security.untrust(ip)
        self._reg_trusted = now_ips

    def _keepalive(self) -> None:
        """Keep NAT bindings of phones open, and check they are reachable (qualify)."""
        now = self.clock()
        for b in self.registrar.all(now):
            dest = Addr(*b.target)
            if b.nat:
                self.endpoint.send_keepalive(dest)
            self._qualify(b, dest)

    def _qualify(self, b: Any, dest: Addr) -> None:
        assert self.ua is not None
        req = make_request("OPTIONS", b.contact, from_addr=Address(self.endpoint.contact_uri("qualify")),
                           to_addr=Address(SipUri(host=dest.host, user=b.aor, port=dest.port)))
        t0 = time.monotonic()

        def done(ev: Any) -> None:
            from firmware.sip.events import ResponseReceived
            ok = isinstance(ev, ResponseReceived)
            self.registrar.set_reachable(b.aor, b.key, ok, (time.monotonic() - t0) * 1000 if ok else None)
        self.ua.request(req, dest, done)

    # ------------------------------------------------------------------ INVITE
    def _on_invite(self, ev: RequestReceived) -> None:
        req = ev.request
        if self.carrier.on_invite(ev):
            return
        if "100rel" in req.require:
            self._respond(ev, 420, headers=[("Unsupported", "100rel")])
            return
        se = req.session_expires
        if se is not None and se.delta < self.prov.system.min_se_s:
            self._respond(ev, 422, headers=[("Min-SE", str(self.prov.system.min_se_s))])
            return
        user = self._authenticate(ev)
        if user is None:
            return
        ext = self.extension(user)
        if ext is None:
            self._respond(ev, 403)
            return
        if len(self.ext_legs.get(user, ())) >= ext.max_calls:
            self._respond(ev, 486, "Busy Here: too many calls on this extension")
            return
        self._respond(ev, 100)
        dialed = req.uri.user if isinstance(req.uri, SipUri) and req.uri.user else ""
        try:
            leg = SipLeg(self, role="caller", number=user, name=ext.name, extension=user, peer=ev.source)
        except MediaError as e:
            log.error("no media for a new call: %s", e)
            self._respond(ev, 503, "Service Unavailable", headers=[("Retry-After", "5")])
            return
        leg.user_agent = req.user_agent or ""
        if not leg.take_invite(ev):
            return
        self._track(leg)
        record_id = self.calls.begin_call(direction="internal", caller_number=user, caller_name=ext.name,
                                          callee_number=dialed, from_extension=user)
        call = Call(self, leg, direction="internal", record_id=record_id)
        self.active_calls[call.id] = call
        self.calls.add_leg(call.id, kind="sip", endpoint=f"{user}@{ev.source.host}", role="caller", leg_id=leg.id)
        self.call_changed(call)
        self.spawn(self._run_call(call, dialed), name=f"call {call.id}")

    def new_inbound_call(self, leg: Leg, *, trunk: str, did: str = "", caller_name: str = "") -> Call:
        """A call that came in from the outside on a trunk (GSM, FXO or SIP provider): its call
        record and live-board entry. The trunk code then runs `route_inbound()`."""
        self._track(leg)
        record_id = self.calls.begin_call(direction="inbound", caller_number=leg.number,
                                          caller_name=caller_name or leg.name, callee_number=did,
                                          did=did, trunk=trunk)
        call = Call(self, leg, direction="inbound", record_id=record_id)
        self.active_calls[call.id] = call
        self.calls.add_leg(call.id, kind=leg.kind, endpoint=f"{trunk}:{leg.number}", role="caller", leg_id=leg.id)
        self.call_changed(call)
        return call

    def route_inbound(self, call: Call, destination: str) -> asyncio.Task:
        """Run an inbound call to the destination its route gave (an extension, queue, menu...)."""
        return self.spawn(self._run_call(call, destination, origin="trunk"), name=f"call {call.id}")

    def new_outbound_call(self, leg: Leg, *, number: str) -> Call:
        """A call the box itself starts from an extension (click-to-call, callbacks): `leg` is
        the staff member's leg (already created); the record is outbound to `number`."""
        self._track(leg)
        record_id = self.calls.begin_call(direction="outbound", caller_number=leg.number, callee_number=number,
                                          from_extension=leg.extension)
        call = Call(self, leg, direction="outbound", record_id=record_id)
        self.active_calls[call.id] = call
        self.calls.add_leg(call.id, kind=leg.kind, endpoint=leg.number, role="agent", leg_id=leg.id)
        self.call_changed(call)
        return call

    async def _run_call(self, call: Call, dialed: str, origin: str = "extension") -> None:
        try:
            await self.route(call, dialed, origin=origin)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s failed", call.id)
            call.caller.hangup(41)
        finally:
            if call.caller.state != "ended" and not call.caller.answered and call.peer is None:
                call.caller.hangup(call.caller.cause or 31)
            if call.peer is not None or call.caller.answered:
                await call.done
            if call.ended_at is None:
                call.end()
            self._finish_call(call)

    # ------------------------------------------------------------------ routing
    async def route(self, call: Call, dialed: str, origin: str) -> None:
        """Send a new call where `dialed` leads. `origin`: extension (a desk phone dialled) or
        trunk (an outside call whose inbound route gave `dialed`)."""
        caller = call.caller
        prov = self.prov
        if origin == "extension" and self.features.matches(dialed):
            await self.features.run(call, dialed)
            return
        try:
            dest = self.resolve(dialed)
        except ValueError:
            if origin == "extension" and _looks_external(dialed):
                dest = Destination("external", dialed)
            else:
                self.events.add(call.id, "route", result=f"{dialed}: no such number")
                self._reject(caller, 404, "Not Found")
                call.status = "failed"
                return
        if dest.kind == "external" and origin == "extension":
            if not self._may_dial(call, dest.target):
                return
        await self.goto(call, dest)

    def _may_dial(self, call: Call, number: str) -> bool:
        """Permission class of the calling extension against the number (toll fraud guard)."""
        prov = self.prov
        ext = call.caller.extension
        cls = classify(number, plan_for(prov.system.country_code or "48"), {e.number for e in prov.extensions})
        if ext and allowed(prov.extension_permissions(ext), cls):
            return True
        self.events.add(call.id, "route", result=f"denied: {cls} calls not allowed for {ext or 'this caller'}")
        self._reject(call.caller, 403, f"Forbidden: {cls} calls are not allowed for this extension")
        call.status = "rejected"
        return False

    async def goto(self, call: Call, dest: Any, *, depth: int = 0) -> str:
        """Carry the call to a resolved destination (firmware.config.Destination). Returns the
        outcome; when nobody answers the caller is released with the matching status."""
        if depth > 8:
            self.events.add(call.id, "route", result="destination loop")
            self._reject(call.caller, 482, "Loop Detected")
            return "failed"
        kind, target = dest.kind, dest.target
        self.events.add(call.id, "route", result=str(dest))
        if kind == "extension":
            ext = self.extension(target)
            if call.direction == "internal" and call.caller.extension:
                self.calls.update_call(call.id, to_extension=target)
            else:
                self.calls.update_call(call.id, to_extension=target)
            outcome = await self.dial_extension(call, ext)
            if outcome in ("answered", "cancelled") or call.caller.state == "ended":
                return outcome
            if ext.no_answer and ext.no_answer != "hangup" and outcome in ("no_answer", "offline", "busy"):
                try:
                    nxt = self.resolve(ext.no_answer)
                except ValueError:
                    nxt = None
                if nxt is not None:
                    self.events.add(call.id, "route", result=f"{target} {outcome}: to {ext.no_answer}")
                    return await self.goto(call, nxt, depth=depth + 1)
            self._release(call, outcome)
            return outcome
        if kind == "queue":
            return await self.centre.queue(call, target, depth=depth)
        if kind == "ivr":
            return await self.centre.menu(call, target, depth=depth)
        if kind == "messagebox":
            return await self.centre.message_box(call, target)
        if kind == "timecondition":
            tc = self.prov.timecondition(target)
            mode = tc.override
            from firmware.pbx.timecond import TimeCondition as Tc
            cond = Tc(tc.number, tuple(tc.hours), tuple(tc.holidays), tc.open, tc.closed,
                      self.prov.system.timezone)
            chosen = cond.destination(time.time(), mode)
            self.events.add(call.id, "route", result=f"time condition {target}: "
                            f"{'open' if chosen == tc.open else 'closed'}")
            return await self.goto(call, self.resolve(chosen), depth=depth + 1)
        if kind == "external":
            outcome = await self.carrier.dial_external(call, target)
            if outcome not in ("answered", "cancelled") and call.caller.state != "ended":
                self._release(call, outcome)
            return outcome
        if kind == "hangup":
            if call.caller.answered:
                call.caller.hangup(16)
            else:
                self._reject(call.caller, 480, "Temporarily Unavailable")
            call.status = call.status or ("missed" if call.direction == "inbound" else "failed")
            return "hangup"
        self._reject(call.caller, 404, "Not Found")
        return "failed"

    def _reject(self, leg: Leg, status: int, reason: str | None = None) -> None:
        if isinstance(leg, SipLeg):
            leg.reject(status, reason)
        else:
            leg.hangup(SIP_TO_Q850.get(status, 31))

    _RELEASE = {"busy": (486, "busy"), "rejected": (603, "rejected"), "no_answer": (480, "no_answer"),
                "offline": (480, "no_answer"), "failed": (503, "failed"), "congestion": (503, "failed"),
                "no_route": (404, "failed"), "denied": (403, "rejected")}

    def _release(self, call: Call, outcome: str) -> None:
        """Nobody took the call: release the caller with the status that says why."""
        code, status = self._RELEASE.get(outcome, (480, "no_answer"))
        if call.direction == "inbound" and status in ("no_answer", "busy", "rejected"):
            status = "missed"
        call.status = call.status or status
        if call.caller.state == "ended":
            return
        if call.caller.answered:
            call.caller.hangup(SIP_TO_Q850.get(code, 16))
        else:
            self._reject(call.caller, code)

    async def dial_extension(self, call: Call, ext: Any, *, timeout: float | None = None,
                             role: str = "callee") -> str:
        """Ring every registered phone of `ext` in parallel; the first to answer talks with the
        caller. Returns the outcome: answered, busy, no_answer, offline, rejected, failed or
        cancelled (the caller gave up). Never releases the caller: the destination logic does."""
        caller = call.caller
        now = self.clock()
        if ext.dnd:
            return "busy"
        busy = [l for l in self.ext_legs.get(ext.number, ()) if l.call is not call]
        if busy and (not ext.call_waiting or len(busy) >= ext.max_calls):
            return "busy"
        bindings = self.registrar.lookup(ext.number, now)
        if not bindings:
            return "offline"
        try:
            legs = [self._invite_binding(call, ext, b, role=role) for b in bindings]
        except MediaError as e:
            log.error("no media to ring %s: %s", ext.number, e)
            return "failed"
        return await self._wait_first_answer(call, legs, timeout or float(ext.no_answer_timeout))

    def make_agent_leg(self, ext: Any, b: Any, role: str = "callee") -> SipLeg:
        """A leg to one registered phone of an extension (not started yet)."""
        return SipLeg(self, role=role, number=ext.number, name=ext.name, extension=ext.number, peer=Addr(*b.target))

    def start_agent_leg(self, call: Call, leg: SipLeg, *, display: str = "", from_number: str = "",
                        binding: Any = None) -> None:
        """Send the INVITE of a leg made by make_agent_leg (the phone shows `display`)."""
        assert self.ua is not None
        if leg not in call.legs:
            call.add_leg(leg)
        caller = call.caller
        number = from_number or (caller.number if caller is not leg else leg.number)
        b = binding or next((x for x in self.registrar.lookup(leg.extension, self.clock())
                             if Addr(*x.target) == leg.peer), None)
        contact = b.contact if b is not None else f"sip:{leg.extension}@{leg.peer.host}:{leg.peer.port}"
        from_addr = Address(SipUri(host=self.endpoint.advertised_host, user=number),
                            display_name=display or (caller.name if caller is not leg else "") or number)
        to_addr = Address(SipUri(host=self.endpoint.advertised_host, user=leg.extension))
        session = ClientInvite(self.ua, target=SipUri.parse(contact), dest=leg.peer, from_addr=from_addr,
                               to_addr=to_addr, listener=leg, max_forwards=call.max_forwards)
        leg.session = session
        prefer = getattr(caller, "pt", None) if caller is not leg else None
        body = session.sdp.offer(leg.channel.local_port, leg.offer_codecs(prefer)).serialize()
        session.start(body)
        self._track(leg)
        if leg is not call.caller:
            self.calls.add_leg(call.id, kind="sip", endpoint=f"{leg.extension}@{leg.peer.host}", role=leg.role,
                               leg_id=leg.id)

    def _invite_binding(self, call: Call, ext: Any, b: Any, role: str = "callee", acd_offer: bool = False) -> SipLeg:
        leg = self.make_agent_leg(ext, b, role)
        leg.acd_offer = acd_offer
        call.add_leg(leg)
        self.start_agent_leg(call, leg, binding=b)
        return leg

    async def _wait_parallel(self, legs: list[Leg], timeout: float) -> Leg | None:
        """The first of `legs` to answer (the others are cancelled), or None."""
        pending = {leg.outcome for leg in legs}
        winner = None
        deadline = asyncio.get_running_loop().time() + timeout
        while pending and winner is None:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                if fut.result() == "answered" and winner is None:
                    winner = next(l for l in legs if l.outcome is fut)
        for leg in legs:
            if leg is not winner and leg.state != "ended":
                leg.cancel('SIP;cause=200;text="Call completed elsewhere"' if winner else None)
        return winner

    async def _wait_first_answer(self, call: Call, legs: list[Leg], timeout: float) -> str:
        """Wait until one of `legs` answers (then cancel the rest and connect it), all fail,
        the caller hangs up, or `timeout` passes."""
        caller = call.caller
        pending = {leg.outcome for leg in legs}
        waiters = pending | {caller.ended, call.pickup}
        deadline = asyncio.get_running_loop().time() + timeout
        results: list[str] = []
        winner: Leg | None = None
        while pending:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            done, _ = await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if caller.ended in done:
                break
            if call.pickup in done:
                winner = call.pickup.result()
                break
            for fut in done:
                pending.discard(fut)
                waiters.discard(fut)
                leg = next(l for l in legs if l.outcome is fut)
                res = fut.result()
                if res == "answered" and winner is None:
                    winner = leg
                else:
                    results.append(res)
            if winner is not None:
                break
        for leg in legs:
            if leg is not winner and leg.state != "ended":
                leg.cancel('SIP;cause=200;text="Call completed elsewhere"' if winner else None)
        if winner is None:
            if caller.state == "ended":
                call.status = "missed" if call.direction == "inbound" else "abandoned"
                return "cancelled"
            if "busy" in results and all(r in ("busy", "rejected", "failed") for r in results):
                return "busy"
            if results and all(r == "rejected" for r in results):
                return "rejected"
            return "no_answer"
        if caller.state == "ended":
            winner.hangup()
            return "cancelled"
        if not caller.answered and isinstance(caller, SipLeg):
            if not caller.answer():
                winner.hangup()
                return "failed"
        elif not caller.answered:
            caller.answer()
        call.talk(winner)
        self.calls.update_call(call.id, answered_at=winner.answered_at, answered_by=winner.extension or winner.number,
                               ring_s=round((winner.answered_at or time.time()) - winner.created_at, 3))
        self.events.add(call.id, "answer", agent=winner.extension,
                        seconds=round((winner.answered_at or time.time()) - call.started_at, 3))
        return "answered"

    # ------------------------------------------------------------------ legs and calls
    def _track(self, leg: Leg) -> None:
        peer = getattr(leg, "peer", None)
        if peer is not None and leg.trusted_host is None:
            leg.trusted_host = peer.host
            self.security.trust(peer.host)
        if leg.extension:
            self.ext_legs.setdefault(leg.extension, set()).add(leg)
            self._ext_state_changed(leg.extension)
        if leg.channel is not None:
            self.channel_legs[leg.channel.id] = leg
            self._leg_channels.setdefault(leg.id, set()).add(leg.channel.id)

    def leg_ended(self, leg: Leg) -> None:
        if leg.trusted_host is not None:
            # only what _track counted: a refused INVITE's leg must not take away the trust
            # its phone's registration gave the address
            self.security.untrust(leg.trusted_host)
            leg.trusted_host = None
        if leg.extension and leg in self.ext_legs.get(leg.extension, ()):
            self.ext_legs[leg.extension].discard(leg)
            self._ext_state_changed(leg.extension)
        for cid in self._leg_channels.pop(leg.id, ()):
            if self.channel_legs.get(cid) is leg:
                del self.channel_legs[cid]
        if leg.call is not None:
            self.calls.update_leg(leg.call.id, leg.id, ended_at=leg.ended_at, answered_at=leg.answered_at,
                                  cause=int(leg.cause or 0), sip_code=leg.sip_code)

    def _ext_state_changed(self, ext: str) -> None:
        busy = any(not (l.acd_offer and not l.answered) for l in self.ext_legs.get(ext, ()))
        if self._ext_busy.get(ext) is not busy:
            # the centre recomputes its timers on every report: tell it only about changes
            self._ext_busy[ext] = busy
            self.centre.extension_busy(ext, busy)
        self._refresh_agent(ext)
        self.blf.changed(ext)

    def leg_answered(self, leg: Leg) -> None:
        if leg.extension:
            self._ext_state_changed(leg.extension)

    def agent_changed(self, ext: str) -> None:
        self._refresh_agent(ext)
        self.blf.changed(ext)

    def schedule_end(self, call: Call, leg: Leg) -> None:
        """One party hung up: end the call (other legs get BYE/CANCEL)."""
        if call.ended_at is not None or call.ended_side:
            return
        call.ended_side = "caller" if leg is call.caller else "callee"
        call.end_cause = leg.cause or 16
        call.end(cause=leg.cause or 16)

    def _finish_call(self, call: Call, side: str | None = None) -> None:
        if call.id not in self.active_calls:
            return
        del self.active_calls[call.id]
        self.live.end_call(call.id)
        caller = call.caller
        status = call.status or ("answered" if call.answered_at else
                                 ("missed" if call.direction == "inbound" else "abandoned"))
        hangup_side = side or call.ended_side or (
            "caller" if caller.hangup_by == "remote" else "callee" if call.peer is not None and call.peer.hangup_by == "remote" else "system")
        cause = call.end_cause or caller.cause or 16
        sip_code = caller.sip_code or (call.peer.sip_code if call.peer is not None else 0)
        self.calls.end_call(call.id, status=status, hangup_side=hangup_side, hangup_cause=int(cause),
                            sip_code=int(sip_code or 0), ended_at=call.ended_at or time.time(),
                            hold_s=round(call.hold_s, 3))
        if call.recording_path:
            self.recordings.finished(call.recording_path)
        self.events.add(call.id, "hangup", result=hangup_side)
        if status == "missed" and call.direction == "inbound" and caller.number:
            self.notify("missed_call", number=caller.number, call_id=call.id, queue=call.queue, trunk=caller.trunk,
                        time=time.strftime("%H:%M", time.localtime(call.started_at)))
        try:
            self.centre.call_finished(call)
        except Exception:
            log.exception("queue bookkeeping after call %s", call.id)
        call.release()

    def call_changed(self, call: Call) -> None:
        if call.ended_at is not None:
            return
        peer = call.peer
        if peer is not None and peer.answered:
            held = any(getattr(l, "held_by_remote", False) for l in (call.caller, peer))
            state = "held" if held else "talking"
        elif call.ringing_legs:
            state = "ringing"
        elif call.queue:
            state = "queued"
        elif call.ivr_path:
            state = "ivr"
        else:
            state = "routing"
        ringing_agent = next((l.extension for l in call.ringing_legs if l.extension), "")
        old = self.live.calls.get(call.id)
        since = old.state_since if old is not None and old.state == state else time.time()
        lc = LiveCall(id=call.id, started_at=call.started_at, state=state, direction=call.direction,
                      caller=call.caller.number, callee=peer.number if peer else "",
                      caller_name=call.caller.name, queue=call.queue,
                      agent=(peer.extension if peer is not None else ringing_agent), trunk=call.caller.trunk,
                      state_since=since, answered_at=call.answered_at, recording=call.recorder is not None)
        if lc != old:
            self.live.put_call(lc)

    # ------------------------------------------------------------------ agents / live board
    def _refresh_agents(self) -> None:
        for ext in self.prov.extensions:
            self._refresh_agent(ext.number)
        for gone in set(self.live.agents) - {e.number for e in self.prov.extensions}:
            self.live.agents.pop(gone, None)

    def _refresh_agent(self, number: str) -> None:
        ext = self.extension(number)
        if ext is None:
            return
        now = self.clock()
        registered = self.registrar.is_registered(number, now)
        legs = self.ext_legs.get(number, set())
        acd = self.centre.agent_state(number)
        reason = ""
        queues: tuple[str, ...] = ()
        if acd is not None:
            state, reason, since, queues = acd
        elif not registered:
            state = "offline"
        elif ext.dnd:
            state = "dnd"
        elif any(l.answered for l in legs):
            state = "in_call"
        elif legs:
            state = "ringing"
        else:
            state = "available"
        cur = self.live.agents.get(number)
        call_id = next((l.call.id for l in legs if l.call is not None), "")
        if cur is None or cur.state != state or cur.registered != registered or cur.call_id != call_id \
                or cur.reason != reason or cur.queues != queues:
            self.live.put_agent(LiveAgent(extension=number, name=ext.name, state=state,
                                          since=now if cur is None or cur.state != state else cur.since,
                                          reason=reason, queues=queues, call_id=call_id, registered=registered))

    # ------------------------------------------------------------------ media
    def on_media_event(self, event: Any) -> None:
        from firmware.media import DtmfReceived, PlayerDone, RecorderError, RtpTimeout
        from firmware.media.events import ChannelError, DleEvent
        if isinstance(event, PlayerDone):
            fut = self._player_waiters.pop(event.player_id, None)
            if fut is not None and not fut.done():
                fut.set_result(event.reason)
            return
        if isinstance(event, DtmfReceived):
            leg = self.channel_legs.get(event.channel_id)
            if leg is not None:
                leg.got_digit(event.digit)
        elif isinstance(event, (DleEvent, ChannelError)):
            # a modem's audio port: V.253 DLE codes and a port that failed go to its leg
            leg = self.channel_legs.get(event.channel_id)
            if leg is not None and hasattr(leg, "on_media_event"):
                leg.on_media_event(event)
        elif isinstance(event, RtpTimeout):
            leg = self.channel_legs.get(event.channel_id)
            if leg is not None and leg.answered and not getattr(leg, "held_by_remote", False) and not leg.held:
                log.info("no RTP from %s for %.0f s: hanging up", leg, self.rtp_timeout)
                leg.hangup(41, 'SIP;cause=408;text="RTP timeout"')
        elif isinstance(event, RecorderError):
            for call in self.active_calls.values():
                if call.recorder is not None and call.recorder.id == event.recorder_id:
                    self.calls.set_recording(call.id, path=call.recording_path, state="failed", note=event.reason)
                    log.error("recording of call %s stopped: %s", call.id, event.reason)
                    call.recorder = None

    def play_music(self, channel: Any, music: str = "default") -> Any:
        """Music on hold into a channel, looped: a WAV file, or the box's own tune."""
        try:
            if music and music != "default":
                return self.engine.play(channel, path=music, loop=True)
            if self._music is None:
                from firmware.pbx.music import music_on_hold_pcm
                self._music = self.engine.load_sound(pcm=music_on_hold_pcm())
            return self.engine.play(channel, sound=self._music, loop=True)
        except Exception as e:
            log.warning("music on hold not played: %s", e)
            return None

    def disk_alarm(self, detail: str) -> None:
        """Recording stopped for lack of space: tell someone, at most once an hour."""
        if time.time() - self._disk_alarm_at > 3600:
            self._disk_alarm_at = time.time()
            self.notify("disk_full", detail=detail)

    def line_down(self, trunk: str, detail: str) -> None:
        """A line (modem or SIP trunk) went out of service (called by firmware.pbx.trunks)."""
        self.notify("trunk_down", trunk=trunk, detail=detail)

    def recording_policy(self, call: Call) -> str:
        """always | never | on_demand: the route's or queue's choice, else the first of the
        parties' extensions that has one, else the box's default."""
        if call.record_policy:
            return call.record_policy
        for leg in (call.peer, call.caller):
            if leg is not None and leg.extension:
                ext = self.extension(leg.extension)
                if ext is not None and ext.record:
                    return ext.record
        return self.prov.system.recording.policy

    def record_on_demand(self, call: Call, leg: Leg) -> None:
        """The record code during a call: start recording, or stop an on-demand recording."""
        if call.recorder is not None:
            if self.recording_policy(call) != "on_demand":
                return  # a policy recording is not the agent's to stop
            try:
                call.recorder.stop()
            except Exception:
                pass
            call.recorder = None
            self.calls.set_recording(call.id, path=call.recording_path, state="complete")
            self.events.add(call.id, "recording_stopped", agent=leg.extension, result="on demand")
            return
        self.events.add(call.id, "record_on_demand", agent=leg.extension)
        self.start_recording(call, forced=True)

    def start_recording(self, call: Call, forced: bool = False) -> None:
        if call.recorder is not None or call.bridge is None:
            return
        policy = self.recording_policy(call)
        if policy == "never" or (policy == "on_demand" and not forced):
            return
        perm = self.recordings.may_record()
        if not perm.allowed:
            self.calls.set_recording(call.id, state="failed", note=perm.reason)
            log.error("recording of call %s not started: %s", call.id, perm.reason)
            self.disk_alarm(perm.reason)
            return
        rel, path = self.recordings.allocate(call.id, started_at=call.started_at, caller=call.caller.number,
                                             callee=call.peer.number if call.peer else "")
        # the customer (the party who is not one of our extensions) goes on the left channel
        customer = call.caller
        if call.peer is not None and call.caller.extension and not call.peer.extension:
            customer = call.peer
        try:
            call.recorder = self.engine.record(call.bridge, path, stereo=True, left=[customer.channel])
        except Exception as e:
            self.calls.set_recording(call.id, state="failed", note=str(e))
            log.error("recording of call %s failed to start: %s", call.id, e)
            return
        call.recording_path = rel
        self.calls.set_recording(call.id, path=rel, state="recording")
        self.events.add(call.id, "recording_started", path=rel)
        self.call_changed(call)

    # ------------------------------------------------------------------ prompts
    def language_of(self, extension: str | None) -> str:
        ext = self.extension(extension) if extension else None
        return (ext.language if ext is not None and ext.language else None) or self.prov.system.language

    async def prompt_path(self, prompt: str, language: str) -> str | None:
        """A ready 8 kHz WAV for a prompt (text spoken by espeak-ng, or a .wav), or None when it
        is missing or failed to generate (the caller then hears beeps, never dead air)."""
        try:
            path = await asyncio.get_running_loop().run_in_executor(
                None, self.prompts.resolve, prompt, language, self.config.prompts_dir)
            return str(path)
        except PromptError as e:
            log.error("prompt %r (%s) unusable: %s", prompt[:40], language, e)
            return None

    def start_player(self, target: Any, *, path: str | None = None, pcm: bytes | None = None,
                     loop: bool = False) -> tuple[Any, asyncio.Future]:
        """Start a player; the future resolves when it ends (finished / stopped / target_gone)."""
        from firmware.media.prompts import beep_pcm
        if path is None and pcm is None:
            pcm = beep_pcm()
        player = self.engine.play(target, path=path, loop=loop) if path else self.engine.play(target, pcm=pcm, loop=loop)
        fut = asyncio.get_running_loop().create_future()
        self._player_waiters[player.id] = fut
        return player, fut

    async def play_prompt(self, leg: Leg, prompt: str, language: str) -> str:
        """Play a prompt into a leg and wait for its end (or the leg's). Returns why it ended."""
        if leg.channel is None or leg.state == "ended":
            return "target_gone"
        path = await self.prompt_path(prompt, language)
        if leg.channel is None:
            return "target_gone"
        player, fut = self.start_player(leg.channel, path=path)
        done, _ = await asyncio.wait({fut, leg.ended}, return_when=asyncio.FIRST_COMPLETED)
        if fut in done:
            return fut.result()
        try:
            player.stop()
        except Exception:
            pass
        return "target_gone"

    async def say(self, leg: Leg, text: str, language: str) -> str:
        return await self.play_prompt(leg, text, language)

    # ------------------------------------------------------------------ features
    def set_dnd(self, extension: str, on: bool) -> None:
        self.config.update("extension", extension, {"dnd": on})
        self.centre.dnd_changed(extension, on)

    def cycle_override(self, number: str | None) -> str:
        """Business-hours override from a phone: to "closed", or back to "auto"."""
        tcs = [t for t in self.prov.timeconditions if number is None or t.number == number]
        if not tcs:
            raise KeyError(f"no time condition {number}")
        mode = "auto" if all(t.override == "closed" for t in tcs) else "closed"
        for t in tcs:
            self.config.update("timecondition", t.number, {"override": mode})
        return mode

    async def set_override(self, timecondition: str, mode: str) -> None:  # BoxControl
        if mode not in ("auto", "open", "closed"):
            raise ControlError(f"override must be auto, open or closed, not {mode!r}")
        if self.prov.timecondition(timecondition) is None:
            raise ControlError(f"no time condition {timecondition}")
        self.config.update("timecondition", timecondition, {"override": mode})

    async def pickup(self, call: Call, target: str | None) -> bool:
        """Answer a call that rings a colleague (*8: my pickup group; **<ext>: that extension)."""
        picker = call.caller
        me = self.extension(picker.extension)
        group = me.pickup_group if me is not None else ""
        best: tuple[float, Call, Leg] | None = None
        for other in self.active_calls.values():
            if other is call or other.peer is not None or other.pickup.done():
                continue
            for leg in other.ringing_legs:
                if not leg.extension or leg.extension == picker.extension or leg.answered:
                    continue
                if target is not None and leg.extension != target:
                    continue
                if target is None and group:
                    theirs = self.extension(leg.extension)
                    if theirs is None or theirs.pickup_group != group:
                        continue
                if best is None or other.started_at < best[0]:
                    best = (other.started_at, other, leg)
        if best is None:
            return False
        _, ringing, _ = best
        if not picker.answer():
            return False
        call.detach(picker)
        ringing.add_leg(picker)
        picker.role = "callee"
        self.calls.add_leg(ringing.id, kind=picker.kind, endpoint=picker.number, role="callee", leg_id=picker.id)
        self.events.add(ringing.id, "pickup", agent=picker.extension)
        self.events.add(call.id, "pickup", result=f"picked up call {ringing.id}")
        ringing.pickup.set_result(picker)
        call.status = "answered"
        call.end()
        return True

    # ------------------------------------------------------------------ transfer (REFER)
    def transfer_requested(self, leg: Leg, request: SipRequest) -> int:
        """REFER from a party of a call: blind transfer (Refer-To a number) or attended transfer
        (Refer-To with Replaces naming the transferor's other call). Returns the REFER status."""
        call = leg.call
        try:
            target = request.refer_to
        except SipParseError:
            return 400
        if call is None or target is None or not isinstance(target.uri, SipUri):
            return 400
        other = call.other(leg)
        if other is None or not other.answered or other.state == "ended":
            return 603
        replaces = _replaces_of(target.uri)
        loop = asyncio.get_running_loop()
        if replaces is not None:
            assert self.ua is not None
            session = self.ua.find_replaced(*replaces)
            leg2 = getattr(session, "listener", None)
            call2 = getattr(leg2, "call", None)
            if call2 is None or call2 is call or leg2 is None:
                return 481
            third = call2.other(leg2)
            if third is None or third.state == "ended":
                return 481
            loop.call_soon(self._attended_transfer, call, leg, other, call2, leg2, third)
            return 202
        number = target.uri.user or ""
        if not number:
            return 400
        if self.extension(number) is None and leg.extension and not self._transfer_allowed(leg, number):
            return 403
        loop.call_soon(lambda: self.spawn(self._blind_transfer(call, leg, other, number), name=f"transfer {call.id}"))
        return 202

    def _transfer_allowed(self, leg: Leg, number: str) -> bool:
        try:
            dest = self.resolve(number)
        except ValueError:
            dest = Destination("external", number) if _looks_external(number) else None
        if dest is None:
            return False
        if dest.kind != "external":
            return True
        cls = classify(number, plan_for(self.prov.system.country_code or "48"), {e.number for e in self.prov.extensions})
        return allowed(self.prov.extension_permissions(leg.extension), cls)

    async def _blind_transfer(self, call: Call, transferor: Leg, stays: Leg, number: str) -> None:
        """The transferor leaves; the party who stays hears ringback while `number` rings."""
        if isinstance(transferor, SipLeg) and transferor.session is not None:
            transferor.session.notify_refer(100, "Trying", final=False)
        self.events.add(call.id, "transfer", agent=transferor.extension, result=f"blind to {number}")
        call.detach(transferor)
        if call.peer is transferor or call.caller is transferor:
            pass
        call.caller, call.peer = stays, None
        call.answered_at = call.answered_at
        if call.recorder is not None:
            try:
                call.recorder.stop()
            except Exception:
                pass
            call.recorder = None
        if isinstance(transferor, SipLeg) and transferor.session is not None:
            transferor.session.notify_refer(200, "OK", final=True)
        # RFC 5589: the transferor hangs up after the final NOTIFY; make sure it does
        self.spawn(self._hangup_later(transferor, 4.0))
        ring = None
        if stays.channel is not None:
            try:
                ring = self.engine.play_tone(stays.channel, "ringback", country=self._tone_country())
                ring._leg = stays
                call.players.append(ring)
            except Exception:
                ring = None
        try:
            dest = self.resolve(number)
        except ValueError:
            dest = Destination("external", number)
        await self.goto(call, dest)

    async def _hangup_later(self, leg: Leg, seconds: float) -> None:
        done, _ = await asyncio.wait({leg.ended}, timeout=seconds)
        if not done:
            leg.hangup(16)

    def _tone_country(self) -> str:
        return {"48": "pl", "7": "ru", "359": "bg", "44": "uk", "1": "us"}.get(self.prov.system.country_code, "eu")

    def _attended_transfer(self, call1: Call, transferor: Leg, stays: Leg, call2: Call, transferor2: Leg,
                           third: Leg) -> None:
        """Connect the party of call 1 with the party of call 2; the transferor leaves both."""
        if isinstance(transferor, SipLeg) and transferor.session is not None:
            transferor.session.notify_refer(200, "OK", final=True)
        self.events.add(call1.id, "transfer", agent=transferor.extension, result=f"attended to {third.number}")
        self.events.add(call2.id, "transfer", agent=transferor.extension, result=f"joined with call {call1.id}")
        for c, t in ((call1, transferor), (call2, transferor2)):
            c.detach(t)
            if c.recorder is not None:
                try:
                    c.recorder.stop()
                except Exception:
                    pass
                c.recorder = None
        call2.detach(third)
        call1.caller = stays
        call1.add_leg(third)
        third.role = "callee"
        if not third.answered and isinstance(third, SipLeg):
            # transferring while the third party still rings: they are connected when they answer
            call1.peer = third
        else:
            call1.talk(third)
        call1.peer = third
        self.calls.update_call(call1.id, answered_by=third.extension or third.number)
        call2.status = "answered"
        call2.end()
        for t in (transferor, transferor2):
            self.spawn(self._hangup_later(t, 4.0))

    # ------------------------------------------------------------------ BoxControl
    def bans(self) -> list[dict[str, Any]]:
        return [{"ip": b.ip, "reason": b.reason, "banned_at": b.banned_at, "until": b.until}
                for b in self.security.bans()]

    def lift_ban(self, ip: str) -> bool:
        return self.security.lift(ip)

    def registrations(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [{"extension": b.aor, "contact": b.contact, "source": f"{b.source_ip}:{b.source_port}",
                 "transport": b.transport, "user_agent": b.user_agent, "expires_at": b.expires_at,
                 "reachable": b.reachable, "rtt_ms": b.rtt_ms, "nat": b.nat} for b in self.registrar.all(now)]

    async def agent_queue(self, extension: str, queue: str, logged_in: bool) -> None:
        await self.centre.agent_queue(extension, queue, logged_in)

    async def agent_status(self, extension: str, status: str, reason: str = "") -> None:
        await self.centre.agent_status(extension, status, reason)

    async def listen(self, call_id: str, manager_extension: str, mode: str) -> None:
        await self.centre.listen(call_id, manager_extension, mode)

    async def originate(self, agent_extension: str, number: str, *, note: str = "") -> str:
        """Click-to-call: ring the agent's desk phone, then dial `number` with the agent's rights."""
        ext = self.extension(agent_extension)
        if ext is None:
            raise ControlError(f"no extension {agent_extension}")
        number = number.strip().replace(" ", "").replace("-", "")
        if not number or not _looks_external(number) and self.extension(number) is None:
            raise ControlError(f"{number!r} is not a number the box can dial")
        bindings = self.registrar.lookup(agent_extension, self.clock())
        if not bindings:
            raise ControlError(f"extension {agent_extension} has no registered phone")
        legs = [self.make_agent_leg(ext, b, role="caller") for b in bindings]
        call = self.new_outbound_call(legs[0], number=number)
        if self.extension(number) is not None:
            call.direction = "internal"
            self.calls.update_call(call.id, direction="internal", to_extension=number)
        if note:
            self.calls.set_note(call.id, note=note)
        for leg, b in zip(legs, bindings):
            self.start_agent_leg(call, leg, display=f"Call {number}", from_number=number, binding=b)
        self.spawn(self._run_originate(call, legs, number), name=f"originate {call.id}")
        return call.id

    async def _run_originate(self, call: Call, legs: list[Leg], number: str) -> None:
        try:
            winner = await self._wait_parallel(legs, timeout=30)
            if winner is None:
                call.status = "failed"
                self.events.add(call.id, "route", result="the agent's phone did not answer")
                call.end()
                return
            for leg in legs:
                if leg is not winner:
                    call.detach(leg)
            call.caller = winner
            winner.role = "caller"
            self.events.add(call.id, "originate", agent=winner.extension, result="agent answered")
            winner.on_digit_hook = None
            dest = self.extension(number)
            if dest is not None:
                outcome = await self.goto(call, Destination("extension", number))
            else:
                if not self._may_dial(call, number):
                    call.end()
                    return
                outcome = await self.carrier.dial_external(call, number)
                if outcome not in ("answered", "cancelled"):
                    call.status = {"busy": "busy", "no_answer": "no_answer"}.get(outcome, "failed")
                    if winner.state != "ended":
                        winner.hangup(16)
            if call.peer is not None and call.peer.answered:
                await call.done
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("click-to-call %s failed", call.id)
        finally:
            if call.ended_at is None:
                call.end()
            self._finish_call(call)

    def trunks(self) -> list[dict[str, Any]]:
        return self.carrier.status()

    async def modem_test(self, trunk: str) -> dict[str, Any]:
        return await self.carrier.modem_test(trunk)

    async def modem_ussd(self, trunk: str, code: str) -> str:
        return await self.carrier.ussd(trunk, code)

    async def send_sms(self, trunk: str, number: str, text: str) -> None:
        await self.carrier.send_sms(trunk, number, text)

    def system_status(self) -> dict[str, Any]:
        st = system_status(str(self.data_dir), self.started_at, self.version)
        st["recording_alarm"] = self.recordings.alarm
        es = self.engine.stats()
        st["engine"] = {"channels": es.channels, "bridges": es.bridges, "players": es.players,
                        "recorders": es.recorders, "ticks_missed": es.ticks_missed, "cpu_s": es.cpu_s}
        st["calls_in_progress"] = len(self.active_calls)
        st["registered_phones"] = len(self.registrar.all(self.clock()))
        return st

    async def prompt_preview(self, text: str, language: str) -> bytes:
        try:
            path = await asyncio.get_running_loop().run_in_executor(None, self.prompts.speak, text, language)
        except PromptError as e:
            raise ControlError(str(e)) from None
        return Path(path).read_bytes()


def _no_notices(event: str, **data: Any) -> None:
    """Notices go nowhere until the service connects the notifier."""


def _replaces_of(uri: SipUri) -> tuple[str, str, str] | None:
    """(call-id, our tag, their tag) from a Refer-To URI's ?Replaces= header (RFC 3891)."""
    from urllib.parse import unquote
    for name, value in uri.headers:
        if name.lower() == "replaces":
            parts = unquote(value).split(";")
            params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            if "to-tag" in params and "from-tag" in params:
                return parts[0], params["to-tag"], params["from-tag"]
    return None


def _looks_external(number: str) -> bool:
    import re
    return re.fullmatch(r"\+?[0-9]{3,20}", number) is not None


def behind_nat(req: SipRequest, source: Addr) -> bool:
    """Whether a phone sits behind NAT (then we answer and call it at its source address):
    its Via names another address than the one the request came from, or its Contact holds a
    private address that is not the source (the tests of common SIP proxies' NAT helpers)."""
    via = req.top_via
    if ":" in via.host:
        sent_by = via.sent_by
        host, _, port = sent_by.rpartition(":") if sent_by.count(":") == 1 or sent_by.endswith("]") \
            else (sent_by, "", "")
        host = host.strip("[]") or sent_by
        try:
            vport = int(port) if port else 5060
        except ValueError:
            vport = 5060
    else:
        host, vport = via.host, via.port or 5060
    if host != source.host or vport != source.port:
        return True
    for a in req.contacts:
        uri = a.uri
        if isinstance(uri, SipUri):
            private = _private_ip(uri.host)
            if private is not None and private != source.host:
                return True
    return False


_date_memo: list = [None, ""]


def _http_date() -> str:
    """The Date header value for now (RFC 3261 20.17), formatted once per second."""
    now = int(time.time())
    if _date_memo[0] != now:
        _date_memo[0] = now
        _date_memo[1] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
    return _date_memo[1]


_private_memo: dict[str, str | None] = {}


def _private_ip(host: str) -> str | None:
    """The address of ``host`` when it is a private, non-loopback IP literal, else None."""
    try:
        return _private_memo[host]
    except KeyError:
        pass
    import ipaddress
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
        found = str(ip) if ip.is_private and not ip.is_loopback else None
    except ValueError:
        found = None
    if len(_private_memo) >= 4096:
        _private_memo.clear()
    _private_memo[host] = found
    return found


def _int_or_none(v: str | None) -> int | None:
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"bad expires value {v!r}") from None
