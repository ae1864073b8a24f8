"""Calls and their legs: the B2BUA.

A `Call` is one conversation as the call record sees it: the leg that started it (a desk
phone, a GSM/FXO line or a SIP trunk) and the legs the box adds (the phone that answers,
agents, a manager listening). Each leg has its own media channel in the engine; the call
bridges them. Media is always anchored in the box: every SDP carries the box's address.

Legs are driven by call flows (coroutines in firmware.pbx.core) through awaitable helpers:
`await leg.outcome` (answered / busy / no answer / failed / cancelled), `await leg.ended`,
`await leg.digit(timeout)`.
"""
from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import time
from typing import Any

from firmware.sip.errors import SdpError, SipError, SipParseError
from firmware.sip.events import Addr
from firmware.sip.message import SipRequest, SipResponse
from firmware.sip.sdp import PCMA, PCMU, TELEPHONE_EVENT, Codec, SessionDescription

log = logging.getLogger("firmware.pbx.calls")

_ids = itertools.count(1)

# SIP status -> (outcome, Q.850 cause) for failed outbound legs (RFC 3398 section 8.2.6.1)
SIP_TO_Q850 = {400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102, 410: 22,
               413: 127, 414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127, 480: 18, 481: 41,
               482: 25, 483: 25, 484: 28, 485: 1, 486: 17, 487: 127, 488: 65, 500: 41, 501: 79, 502: 38,
               503: 41, 504: 102, 505: 127, 580: 47, 600: 17, 603: 21, 604: 1, 606: 58}
Q850_TO_SIP = {1: 404, 3: 404, 16: 200, 17: 486, 18: 480, 19: 480, 20: 480, 21: 403, 22: 410, 27: 502,
               28: 484, 31: 480, 34: 503, 38: 503, 41: 503, 42: 503, 47: 503, 58: 488, 65: 488, 88: 488,
               102: 504, 127: 500}


def outcome_of(status: int) -> str:
    if status in (486, 600):
        return "busy"
    if status in (480, 408):
        return "no_answer"
    if status == 487:
        return "cancelled"
    if status in (403, 603):
        return "rejected"
    return "failed"


def codec_choice(sdp: SessionDescription) -> tuple[int, int | None, tuple[str, int] | None, str]:
    """(voice payload type 0/8, telephone-event pt, remote (ip, port), remote direction) of an
    answer or offer. Raises SdpError (488) when it has no PCMU/PCMA."""
    m = sdp.audio()
    if m is None or not m.port:
        raise SdpError("no audio stream", 488)
    pt = None
    te = None
    for c in m.codecs:
        if pt is None and c.key in (PCMU.key, PCMA.key):
            pt = 0 if c.key == PCMU.key else 8
        if te is None and c.name.lower() == "telephone-event" and c.clock_rate == 8000:
            te = c.payload_type
    if pt is None:
        raise SdpError("no common codec (PCMU or PCMA)", 488)
    if te is not None and not 96 <= te <= 127:
        te = None
    remote = sdp.remote_rtp()
    direction = sdp.direction_of(m)
    conn = sdp.connection_for(m)
    if conn is not None and conn.address in ("0.0.0.0", "::") and direction == "sendrecv":
        direction = "sendonly"
    return pt, te, remote, direction


def q850_cause(msg: SipRequest | SipResponse | None, default: int) -> int:
    """The Q.850 cause of a message's Reason header (RFC 3326), or `default` (also when the
    header is malformed: a bad Reason must not stop a hang-up)."""
    if msg is None:
        return default
    try:
        reasons = msg.reasons
    except SipParseError:
        return default
    for r in reasons:
        if r.protocol.lower() == "q.850" and r.cause:
            return r.cause
    return default


_FLIP = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class Leg:
    """One party of a call (see the module docstring)."""

    kind = ""

    def __init__(self, pbx: Any, *, role: str, number: str, name: str = "", extension: str = "",
                 trunk: str = "") -> None:
        self.pbx = pbx
        self.id = f"L{next(_ids)}"
        self.call: Call | None = None
        self.role = role
        """caller | callee | agent | listener"""
        self.number = number
        """The party's number: an extension, or the external number."""
        self.name = name
        self.extension = extension
        """Extension number when the party is one of the office's phones."""
        self.trunk = trunk
        self.channel: Any = None
        self.state = "new"
        """new | ringing | answered | ended"""
        self.created_at = time.time()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.cause = 0
        self.sip_code = 0
        self.hangup_by = ""
        """"" | "remote" | "local"""
        self.trusted_host: str | None = None
        """The peer address this leg counts in the security policy's trusted sources while the
        PBX tracks it (None for a leg refused before it was tracked)."""
        self.held = False
        loop = asyncio.get_running_loop()
        self.outcome: asyncio.Future[str] = loop.create_future()
        """Resolves to answered / busy / no_answer / failed / rejected / cancelled (outbound legs)."""
        self.ended: asyncio.Future[None] = loop.create_future()
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.on_digit_hook: Any = None
        self.acd_offer = False
        """True while this leg rings an agent for a queue caller (the ACD tracks it)."""
        """Called with each digit before it is queued (feature codes during a call)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.role} {self.number} {self.state}>"

    # -- to implement -----------------------------------------------------------------
    def ring(self) -> None: ...
    def answer(self) -> bool:
        return False
    def hangup(self, cause: int = 16, reason: str = "") -> None: ...
    def hold_media(self, held: bool) -> None: ...
    def send_dtmf(self, digit: str, duration_ms: int = 160) -> None:
        if self.channel is not None:
            try:
                self.channel.send_dtmf(digit, duration_ms)
            except Exception as e:
                log.debug("dtmf %s on %s not sent: %s", digit, self, e)

    # -- common -------------------------------------------------------------------------
    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    async def digit(self, timeout: float) -> str | None:
        try:
            return await asyncio.wait_for(self.digits.get(), timeout)
        except asyncio.TimeoutError:
            return None

    def got_digit(self, digit: str) -> None:
        if self.on_digit_hook is not None and self.on_digit_hook(digit):
            return
        self.digits.put_nowait(digit)
        if self.call is not None:
            self.call.on_leg_digit(self, digit)

    def _set_outcome(self, value: str) -> None:
        if not self.outcome.done():
            self.outcome.set_result(value)

    def _finish(self, by: str, cause: int = 16, sip_code: int = 0) -> None:
        """The leg is over (either side ended it)."""
        if self.state == "ended":
            return
        self.state = "ended"
        self.ended_at = time.time()
        self.hangup_by = self.hangup_by or by
        self.cause = self.cause or cause
        self.sip_code = self.sip_code or sip_code
        self._set_outcome("failed" if not self.answered else "answered")
        if self.channel is not None:
            try:
                self.channel.close()
            except Exception:
                pass
            self.channel = None
        if not self.ended.done():
            self.ended.set_result(None)
        self.pbx.leg_ended(self)
        if self.call is not None:
            self.call.on_leg_ended(self)

    def release(self) -> None:
        """The leg's call is over and recorded: drop its references back to the call and to
        hooks (see `Call.release`)."""
        self.call = None
        self.on_digit_hook = None


class SipLeg(Leg):
    """A leg that is a SIP dialog (a desk phone, or a SIP trunk to a provider)."""

    kind = "sip"

    def __init__(self, pbx: Any, *, role: str, number: str, peer: Addr, **kw: Any) -> None:
        super().__init__(pbx, role=role, number=number, **kw)
        if self.trunk:
            self.kind = "siptrunk"
        self.peer = peer
        self.session: Any = None
        self.channel = pbx.engine.rtp_channel()
        self.pt = 0
        self.te: int | None = None
        self.remote: tuple[str, int] | None = None
        self.remote_direction = "sendrecv"
        self.dtmf_mode = "rfc4733"
        self.user_agent = ""

    def release(self) -> None:
        super().release()
        if self.session is not None and self.session.listener is self:
            # late messages of the dialog (a 2xx after CANCEL, a retransmitted BYE) are still
            # answered by the session; there is no leg left to tell
            self.session.listener = None

    # -- media ---------------------------------------------------------------------------
    def _configure(self) -> None:
        if self.channel is None or self.remote is None:
            return
        direction = _FLIP.get(self.remote_direction, "sendrecv")
        self.channel.configure(remote=self.remote, payload_type=self.pt, telephone_event_pt=self.te,
                               signalling_ip=self.peer.host, direction=direction,
                               inactivity_timeout_s=self.pbx.rtp_timeout)

    def offer_codecs(self, prefer: int | None = None) -> list[Codec]:
        return [PCMA, PCMU] if prefer == 8 else [PCMU, PCMA]

    def take_invite(self, ev: Any) -> bool:
        """Become the leg of an INVITE that called the box, checked before anyone rings. False
        after a refusal was sent (400 when no dialog can come of the request, 488 for an offer
        the engine cannot use) and the leg was ended, its channel closed."""
        from firmware.pbx.sipua import ServerInvite
        if ev.request.max_forwards == 0:
            # RFC 3261 16.3 step 3: it may not be forwarded again (a loop through trunks or
            # another box); the box's own INVITEs carry the caller's Max-Forwards less one
            self.pbx.ua.respond(ev, 483, "Too Many Hops")
            self._finish("local", 25, 483)
            return False
        session = None
        try:
            session = self.session = ServerInvite(self.pbx.ua, ev, self)
            if session.offer is not None:
                self.check_remote(codec_choice(session.offer)[2])
        except SipError as e:
            status = e.status_hint if e.status_hint and 400 <= e.status_hint < 700 else 400
            reason = f"Not Acceptable Here: {e}" if status == 488 else str(e)
            if session is not None:
                session.reject(status, reason)
            else:
                self.pbx.ua.respond(ev, status, reason)
            self._finish("local", 65 if status == 488 else SIP_TO_Q850.get(status, 31), status)
            return False
        return True

    def check_remote(self, remote: tuple[str, int] | None) -> None:
        """Refuse (SdpError, 488) an SDP address the engine cannot send to: a host name, or an
        address of the other IP family than this leg's channel."""
        if remote is None or self.channel is None:
            return
        try:
            ip = ipaddress.ip_address(remote[0])
        except ValueError:
            raise SdpError(f"unusable media address {remote[0][:40]!r}", 488) from None
        if (ip.version == 6) != (":" in self.channel.local_ip):
            raise SdpError(f"media address {remote[0]} is of the other IP family", 488)

    def take_sdp(self, sdp: SessionDescription) -> None:
        pt, te, remote, direction = codec_choice(sdp)
        self.check_remote(remote)
        self.pt, self.te, self.remote_direction = pt, te, direction
        if remote is not None:
            self.remote = remote
        self._configure()

    def current_sdp(self) -> bytes:
        """Our SDP as an offer (session refresh, re-INVITE without hold change)."""
        direction = "sendonly" if self.held else "sendrecv"
        codecs = self.offer_codecs(self.pt)
        return self.session.sdp.offer(self.channel.local_port if self.channel else 9, codecs,
                                      direction=direction).serialize()

    def hold_media(self, held: bool) -> None:
        """The box puts this leg on hold (re-INVITE sendonly) or resumes it."""
        if self.session is None or self.state != "answered" or self.held == held:
            return
        self.held = held
        body = self.current_sdp()

        def done(sdp: SessionDescription | None, status: int) -> None:
            if sdp is not None:
                try:
                    self.take_sdp(sdp)
                except SdpError:
                    pass
        self.session.reinvite(body, done)

    # -- SessionListener ------------------------------------------------------------------
    def on_provisional(self, status: int, sdp: SessionDescription | None) -> None:
        if sdp is not None:
            try:
                self.take_sdp(sdp)
            except SdpError:
                sdp = None
        self.state = "ringing"
        if self.call is not None:
            self.call.on_leg_ringing(self, early_media=sdp is not None and status == 183)

    def on_answered(self, sdp: SessionDescription | None) -> None:
        if sdp is not None:
            try:
                self.take_sdp(sdp)
            except SdpError as e:
                log.warning("%s answered with unusable SDP: %s", self, e)
                self.hangup(65, "SIP;cause=488")
                return
        self.state = "answered"
        self.answered_at = time.time()
        self._set_outcome("answered")
        self.pbx.leg_answered(self)
        if self.call is not None:
            self.call.on_leg_answered(self)

    def on_failed(self, status: int, reason: str, response: SipResponse | None) -> None:
        self.sip_code = status
        cause = q850_cause(response, SIP_TO_Q850.get(status, 31))
        self._set_outcome(outcome_of(status))
        self._finish("remote", cause, status)

    def on_cancelled(self, reason: str) -> None:
        self.cause = 127 if not reason else 16
        self._set_outcome("cancelled")
        self._finish("remote", 16, 487)

    def on_bye(self, request: SipRequest | None) -> None:
        self._finish("remote" if request is not None else "local", q850_cause(request, 16))

    def on_reoffer(self, sdp: SessionDescription | None) -> bytes:
        if sdp is None:
            return self.current_sdp()
        answer = self.session.sdp.answer(sdp, self.channel.local_port if self.channel else 9,
                                         supported=self.offer_codecs(self.pt))
        self.check_remote(answer.remote)
        was_held = self.held_by_remote
        self.pt = 0 if answer.codec.key == PCMU.key else 8
        self.te = answer.telephone_event.payload_type if answer.telephone_event else None
        self.remote = answer.remote
        self.remote_direction = answer.remote_direction
        self._configure()
        if self.call is not None and was_held != self.held_by_remote:
            self.call.on_leg_hold(self, self.held_by_remote)
        return answer.sdp.serialize()

    @property
    def held_by_remote(self) -> bool:
        return self.remote_direction in ("sendonly", "inactive")

    def on_ack_sdp(self, sdp: SessionDescription) -> None:
        try:
            self.take_sdp(sdp)
        except SdpError:
            self.hangup(65)

    def on_info(self, request: SipRequest) -> int:
        digit = _info_digit(request)
        if digit is None:
            return 200
        self.got_digit(digit)
        if self.call is not None:
            self.call.relay_digit(self, digit)
        return 200

    def on_refer(self, request: SipRequest) -> int:
        if self.call is None:
            return 603
        return self.pbx.transfer_requested(self, request)

    # -- actions ----------------------------------------------------------------------------
    def ring(self) -> None:
        if self.session is not None and self.session.role == "uas" and self.state == "new":
            self.state = "ringing"
            self.session.ring(180)

    def early_media(self) -> None:
        """183 with our SDP: the caller hears what the box plays before answering."""
        if self.session is None or self.session.role != "uas" or self.answered:
            return
        offer = self.session.offer
        if offer is None:
            self.ring()
            return
        if self.state != "early":
            self.state = "early"
            self.session.ring(183, self._answer_body())

    def _answer_body(self) -> bytes:
        offer = self.session.offer
        port = self.channel.local_port if self.channel else 9
        if offer is None:
            return self.session.sdp.offer(port, self.offer_codecs()).serialize()
        ans = self.session.sdp.answer(offer, port)
        self.check_remote(ans.remote)
        self.pt = 0 if ans.codec.key == PCMU.key else 8
        self.te = ans.telephone_event.payload_type if ans.telephone_event else None
        self.remote, self.remote_direction = ans.remote, ans.remote_direction
        self._configure()
        return ans.sdp.serialize()

    def answer(self) -> bool:
        if self.session is None or self.session.role != "uas" or self.state in ("answered", "ended"):
            return self.answered
        try:
            body = self._answer_body()
        except SdpError as e:
            self.session.reject(488, str(e))
            self._finish("local", 65, 488)
            return False
        if not self.session.answer(body):
            return False
        self.state = "answered"
        self.answered_at = time.time()
        self._set_outcome("answered")
        self.pbx.leg_answered(self)
        return True

    def reject(self, status: int, reason: str | None = None, headers: list[tuple[str, str]] | None = None) -> None:
        if self.session is not None and self.session.role == "uas":
            self.session.reject(status, reason, headers)
        self._finish("local", SIP_TO_Q850.get(status, 31), status)

    def hangup(self, cause: int = 16, reason: str = "") -> None:
        if self.state == "ended":
            return
        self.hangup_by = self.hangup_by or "local"
        s = self.session
        if s is not None:
            if s.role == "uas":
                if self.answered:
                    s.bye(reason or None)
                else:
                    s.reject(Q850_TO_SIP.get(cause, 480) if cause != 16 else 480)
            else:
                s.hangup(reason or None)
        self._finish("local", cause)

    def cancel(self, reason: str | None = None) -> None:
        """Stop ringing this (outbound) leg; `reason` is a Reason header value."""
        if self.state == "ended":
            return
        self.hangup_by = "local"
        if self.session is not None and self.session.role == "uac":
            self.session.cancel(reason)
        self._set_outcome("cancelled")
        self._finish("local", 16, 487)


def _info_digit(request: SipRequest) -> str | None:
    ctype = (request.content_type or "").lower()
    text = request.body.decode("utf-8", "replace").strip()
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            k, _, v = line.partition("=")
            if k.strip().lower() == "signal":
                d = v.strip().upper()
                return d if d in ("0123456789*#ABCD") and len(d) == 1 else None
    elif ctype == "application/dtmf":
        d = text.upper()
        if len(d) == 1 and d in "0123456789*#ABCD":
            return d
    return None


class Call:
    """One conversation with its call record (see the module docstring)."""

    def __init__(self, pbx: Any, caller: Leg, *, direction: str, record_id: str) -> None:
        self.pbx = pbx
        self.id = record_id
        self.caller = caller
        forwards = getattr(getattr(getattr(caller, "session", None), "request", None), "max_forwards", None)
        self.max_forwards = 70 if forwards is None else max(0, forwards - 1)
        """Max-Forwards of the INVITEs this call sends (the caller's INVITE's, less one)."""
        self.direction = direction
        self.legs: list[Leg] = []
        self.peer: Leg | None = None
        """The leg the caller is (or will be) talking to."""
        self.bridge: Any = None
        self.recorder: Any = None
        self.recording_path = ""
        self.players: list[Any] = []
        self.started_at = time.time()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.hold_started: float | None = None
        self.hold_s = 0.0
        self.status = ""
        self.queue = ""
        self.ivr_path: list[str] = []
        self.ringing_legs: set[Leg] = set()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_answer_hook: Any = None
        self.record_policy: str | None = None
        """always | never | on_demand when a route or queue decided; None: the parties' or the box's."""
        self._dtmf_buffers: dict[str, tuple[str, float]] = {}
        self.pickup: asyncio.Future[Leg] = asyncio.get_running_loop().create_future()
        """Resolved with the leg of a colleague who picked the call up while it rang."""
        self.ended_side = ""
        """caller | callee | system: who ended the call."""
        self.end_cause = 0
        self.add_leg(caller)

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.caller.number}->{self.peer.number if self.peer else '?'}>"

    def add_leg(self, leg: Leg) -> None:
        leg.call = self
        self.legs.append(leg)

    def detach(self, leg: Leg) -> None:
        """Take a leg out of this call (it moves to another: pickup, transfer)."""
        if leg in self.legs:
            self.legs.remove(leg)
        self.ringing_legs.discard(leg)
        if self.bridge is not None and leg.channel is not None:
            self._remove_from_bridge(leg)
        self.stop_players(leg)
        leg.call = None

    # -- events from legs -----------------------------------------------------------------
    def on_leg_ringing(self, leg: Leg, early_media: bool) -> None:
        self.ringing_legs.add(leg)
        self.pbx.call_changed(self)
        if leg is self.caller:
            return
        if early_media and not self.caller.answered and isinstance(self.caller, SipLeg):
            # trunk early media (e.g. a provider's announcement) goes to the caller
            self.caller.early_media()
            self.connect_media(leg)
        elif not self.caller.answered:
            self.caller.ring()

    def on_leg_answered(self, leg: Leg) -> None:
        self.ringing_legs.discard(leg)
        self.pbx.call_changed(self)

    def on_leg_hold(self, leg: Leg, held: bool) -> None:
        """A party put the call on hold (its phone sent sendonly/inactive) or resumed."""
        other = self.other(leg)
        if held:
            self.hold_started = time.time()
            self.pbx.events.add(self.id, "hold", agent=leg.extension)
            if other is not None and self.bridge is not None:
                self._remove_from_bridge(leg)
                self.play_music(other)
        else:
            if self.hold_started is not None:
                self.hold_s += time.time() - self.hold_started
                self.hold_started = None
            self.pbx.events.add(self.id, "unhold", agent=leg.extension)
            if other is not None:
                self.stop_players(other)
                self.connect_media(other, leg)
        self.pbx.call_changed(self)

    def on_leg_digit(self, leg: Leg, digit: str) -> None:
        """Digits typed during a conversation: to a trunk leg that carries DTMF outside the
        bridged audio (AT+VTS, SIP INFO, generated tones); the on-demand recording code (e.g. *1)."""
        other = self.other(leg)
        if other is not None and other.answered and hasattr(other, "take_peer_digit"):
            other.take_peer_digit(leg, digit)
        if self.peer is None or not leg.extension:
            return
        text, at = self._dtmf_buffers.get(leg.id, ("", 0.0))
        now = time.time()
        text = (text if now - at < 3 else "") + digit
        self._dtmf_buffers[leg.id] = (text[-6:], now)
        code = self.pbx.prov.system.features.record
        if code and text.endswith(code):
            self._dtmf_buffers[leg.id] = ("", now)
            self.pbx.record_on_demand(self, leg)

    def relay_digit(self, leg: Leg, digit: str) -> None:
        """A digit that did not travel as RTP (SIP INFO) goes to the other party."""
        other = self.other(leg)
        if other is not None and hasattr(other, "take_peer_digit"):
            return  # on_leg_digit passed it on
        if other is not None and other.answered and self.bridge is not None:
            if isinstance(other, SipLeg) and other.dtmf_mode == "info" and other.session is not None:
                other.session.send_info_dtmf(digit)
            else:
                other.send_dtmf(digit)

    def on_leg_ended(self, leg: Leg) -> None:
        if leg not in self.legs:
            return
        self.ringing_legs.discard(leg)
        if self.bridge is not None and leg.channel is not None:
            self._remove_from_bridge(leg)
        self.pbx.call_changed(self)
        if leg is self.caller or (leg is self.peer and leg.answered):
            # one side of a two-party conversation hung up: end the other
            self.pbx.schedule_end(self, leg)

    # -- media -------------------------------------------------------------------------------
    def other(self, leg: Leg) -> Leg | None:
        if leg is self.caller:
            return self.peer
        if leg is self.peer:
            return self.caller
        return None

    def _remove_from_bridge(self, leg: Leg) -> None:
        try:
            if leg.channel is not None:
                self.bridge.remove(leg.channel)
        except Exception:
            pass

    def stop_players(self, leg: Leg | None = None) -> None:
        keep = []
        for p in self.players:
            if leg is None or getattr(p, "_leg", None) is leg:
                try:
                    p.stop()
                except Exception:
                    pass
            else:
                keep.append(p)
        self.players = keep

    def play_music(self, leg: Leg) -> None:
        """Music on hold into one leg, looped."""
        if leg.channel is None:
            return
        self.stop_players(leg)
        p = self.pbx.play_music(leg.channel)
        if p is not None:
            p._leg = leg
            self.players.append(p)

    def connect_media(self, *legs: Leg) -> None:
        """Bridge the caller with `legs` (or the given legs together)."""
        members = list(legs) if len(legs) > 1 else [self.caller, *legs]
        for leg in members:
            self.stop_players(leg)
        if self.bridge is None:
            self.bridge = self.pbx.engine.bridge([])
        current = set()
        for leg in members:
            if leg.channel is None:
                continue
            try:
                self.bridge.add(leg.channel)
            except Exception as e:
                if "bridged" not in str(e).lower() and "busy" not in str(e).lower():
                    current.add(leg.id)
                    log.debug("bridge add %s: %s", leg, e)

    def talk(self, peer: Leg) -> None:
        """The caller and `peer` talk: bridge their media, start the recording."""
        self.peer = peer
        if self.answered_at is None:
            self.answered_at = time.time()
        self.connect_media(peer)
        self.pbx.start_recording(self)
        self.pbx.call_changed(self)

    def end(self, cause: int = 16) -> None:
        for leg in list(self.legs):
            if leg.state != "ended":
                if isinstance(leg, SipLeg) and leg.session is not None and leg.session.role == "uac" \
                        and not leg.answered:
                    leg.cancel()
                else:
                    leg.hangup(cause)
        self.stop_players()
        if self.recorder is not None:
            try:
                self.recorder.stop()
            except Exception:
                pass
        if self.bridge is not None:
            try:
                self.bridge.close()
            except Exception:
                pass
            self.bridge = None
        if self.hold_started is not None:
            self.hold_s += time.time() - self.hold_started
            self.hold_started = None
        self.ended_at = self.ended_at or time.time()
        if not self.done.done():
            self.done.set_result(None)

    def release(self) -> None:
        """The call is over and its record written. A call, its legs and their SIP sessions
        point at each other (leg <-> call, leg <-> session); without these back-references
        reference counting frees a finished call at once, instead of Python's cyclic collector
        later in one long pause of the event loop (tools/bench/results/sip.md, round 4)."""
        for leg in self.legs:
            if leg.call is self and leg.state == "ended":
                leg.release()
        self.ringing_legs.clear()
        self.on_answer_hook = None
        self.players = []
