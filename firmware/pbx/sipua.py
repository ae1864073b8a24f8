"""The PBX's SIP user agent: INVITE sessions (both sides of the B2BUA), in-dialog requests,
session timers, and request/response plumbing on top of the transaction layer.

The box is a B2BUA: every call leg is a dialog between the box and one phone, trunk or
provider. `ServerInvite` is a leg that called us, `ClientInvite` a leg we called. Both
report to a `SessionListener` (the call leg in firmware.pbx.calls) and are driven by it.

In-dialog requests are sent to the address the dialog's peer talks from (its "flow"), not to
the host in its Contact: desk phones behind NAT put private addresses there.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from firmware.sip.auth import DigestClient
from firmware.sip.dialog import Dialog, DialogId, DialogTable
from firmware.sip.errors import AuthError, DialogError, SdpError, SipError, SipParseError
from firmware.sip.events import (AckReceived, AckTimeout, Addr, CancelReceived, MessageRejected,
                                 RequestReceived, ResponseReceived, SipEvent, TransactionTimeout,
                                 TransportError)
from firmware.sip.headers import new_tag
from firmware.sip.message import SipRequest, SipResponse, make_request, make_response
from firmware.sip.sdp import SdpSession, SessionDescription, parse_sdp
from firmware.sip.transaction import ClientTransaction, ServerTransaction, State
from firmware.sip.uri import Address, SipUri

log = logging.getLogger("firmware.pbx.sip")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, SUBSCRIBE, REGISTER, MESSAGE"
SUPPORTED = "replaces, timer"
USER_AGENT = "officebox"


class Endpoint(Protocol):
    """What the UA needs from the transport (firmware.aio.sip_transport.SipEndpoint)."""

    advertised_host: str

    def send_request(self, request: SipRequest, dest: Addr) -> ClientTransaction: ...
    def send_response(self, target: ServerTransaction | SipRequest, response: SipResponse) -> None: ...
    def send_stateless(self, message: Any, dest: Addr) -> None: ...
    def cancel(self, invite: ClientTransaction, reason: str | None = None) -> ClientTransaction | None: ...
    def contact_uri(self, user: str | None = None, transport: str = "udp") -> SipUri: ...


class SessionListener(Protocol):
    """What an INVITE session tells its call leg. Methods may be missing: see `_notify`."""

    def on_provisional(self, status: int, sdp: SessionDescription | None) -> None: ...
    def on_answered(self, sdp: SessionDescription | None) -> None: ...
    def on_failed(self, status: int, reason: str, response: SipResponse | None) -> None: ...
    def on_cancelled(self, reason: str) -> None: ...
    def on_bye(self, request: SipRequest | None) -> None: ...
    def on_reoffer(self, sdp: SessionDescription | None) -> bytes: ...
    def on_ack_sdp(self, sdp: SessionDescription) -> None: ...
    def on_info(self, request: SipRequest) -> int: ...
    def on_refer(self, request: SipRequest) -> int: ...
    def on_notify(self, request: SipRequest) -> None: ...


def _sdp_of(msg: SipRequest | SipResponse) -> SessionDescription | None:
    if not msg.body:
        return None
    ctype = (msg.content_type or "").lower()
    if ctype and ctype != "application/sdp":
        return None
    return parse_sdp(msg.body)


class SipUa:
    """Routes transaction-layer events to sessions and to the PBX.

    `on_request(event)` receives new out-of-dialog requests (REGISTER, INVITE, OPTIONS,
    SUBSCRIBE, MESSAGE, ...). `on_rejected(event)` receives malformed-message events (for
    per-source accounting).
    """

    def __init__(self, endpoint: Endpoint, *, on_request: Callable[[RequestReceived], Any],
                 media_address: Callable[[str], str], on_rejected: Callable[[MessageRejected], Any] | None = None,
                 session_expires: int = 1800, min_se: int = 90) -> None:
        self.endpoint = endpoint
        self.on_request = on_request
        self.on_rejected = on_rejected
        self.media_address = media_address
        """Our RTP address as seen from a peer IP (the box's address in SDP)."""
        self.session_expires = session_expires
        self.min_se = min_se
        self.dialogs = DialogTable()
        self.sessions: dict[DialogId, Any] = {}
        """Dialogs the box takes part in -> their session (INVITE sessions, subscriptions)."""
        self.orphan_handlers: dict[str, Callable[[RequestReceived], bool]] = {}
        """Handlers for in-dialog requests of no known dialog (e.g. NOTIFY); True = handled."""
        self.server_invites: dict[ServerTransaction, ServerInvite] = {}
        self.responders: dict[ClientTransaction, Callable[[SipEvent], None]] = {}
        self._purge_at = 256
        self.loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ event routing
    def handle_event(self, ev: SipEvent) -> None:
        try:
            self._dispatch(ev)
        except Exception as e:
            if isinstance(ev, RequestReceived) and isinstance(e, SipError) and (e.status_hint or 0) >= 400:
                # a header or body the handler needed was malformed (a lazily parsed Expires,
                # Event, Session-Expires, SDP...): the peer's fault, answered with the error's code
                log.info("%s from %s refused: %s", ev.request.method, ev.source.host, e)
                self._answer_unanswered(ev, e.status_hint or 400, str(e))
                return
            log.exception("error handling %s", type(ev).__name__)
            if isinstance(ev, RequestReceived):
                self._answer_unanswered(ev, 500, "Server Internal Error")

    def _answer_unanswered(self, ev: RequestReceived, status: int, reason: str) -> None:
        """Give a request whose handling failed its final answer, unless it has one already, so
        the phone does not retransmit it for 32 s and then give up without a cause."""
        txn = ev.transaction
        if ev.request.method == "ACK" or txn is None or txn.state not in (State.TRYING, State.PROCEEDING):
            return
        session = self.server_invites.pop(txn, None)
        if session is not None:
            session.reject(status, reason)
            # the call's leg ends too: it must not count against the extension's calls
            _notify(session.listener, "hangup", 41)
        else:
            self.respond(ev, status, reason)

    def _dispatch(self, ev: SipEvent) -> None:
        if isinstance(ev, RequestReceived):
            req = ev.request
            if req.to_tag:
                self._in_dialog(ev)
            else:
                self.on_request(ev)
        elif isinstance(ev, ResponseReceived):
            handler = self.responders.get(ev.transaction)
            if handler is not None:
                if ev.response.status >= 200 and not (ev.transaction.method == "INVITE" and ev.response.status < 300):
                    self.responders.pop(ev.transaction, None)
                handler(ev)
        elif isinstance(ev, AckReceived):
            dialog = self.dialogs.match_request(ev.request)
            session = self.sessions.get(dialog.id) if dialog else None
            if session is None and ev.transaction is not None:
                session = self.server_invites.get(ev.transaction)
            if session is not None:
                session.on_ack(ev)
        elif isinstance(ev, CancelReceived):
            s = self.server_invites.get(ev.transaction)
            if s is not None:
                s.on_cancel(ev)
        elif isinstance(ev, AckTimeout):
            s = self.server_invites.get(ev.transaction)
            if s is not None:
                s.on_ack_timeout()
        elif isinstance(ev, (TransactionTimeout, TransportError)):
            txn = ev.transaction
            if isinstance(txn, ClientTransaction):
                handler = self.responders.pop(txn, None)
                if handler is not None:
                    handler(ev)
        elif isinstance(ev, MessageRejected):
            if self.on_rejected is not None:
                self.on_rejected(ev)

    def _in_dialog(self, ev: RequestReceived) -> None:
        req = ev.request
        dialog = self.dialogs.match_request(req)
        session = self.sessions.get(dialog.id) if dialog else None
        if session is None:
            handler = self.orphan_handlers.get(req.method)
            if handler is not None and handler(ev):
                return
            self.respond(ev, 481, "Call/Transaction Does Not Exist")
            return
        try:
            dialog.receive_request(req)
        except DialogError as e:
            self.respond(ev, e.status_hint or 500, str(e))
            return
        session.on_request(ev)

    # ------------------------------------------------------------------ helpers
    def respond(self, ev: RequestReceived, status: int, reason: str | None = None, *,
                headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                content_type: str | None = None, to_tag: str | None = None) -> SipResponse:
        resp = make_response(ev.request, status, reason, to_tag=to_tag, headers=headers or (), body=body,
                             content_type=content_type)
        if status >= 200 and status < 300 and ev.request.method in ("INVITE", "SUBSCRIBE", "REFER", "NOTIFY") \
                and "contact" not in resp.headers:
            resp.headers.add("Contact", str(Address(self.contact(ev.source))))
        resp.headers.add("Server", USER_AGENT)
        try:
            self.endpoint.send_response(ev.transaction, resp)
        except Exception as e:  # the transaction may be gone (e.g. CANCELled meanwhile)
            log.debug("response %d not sent: %s", status, e)
        return resp

    def contact(self, peer: Addr, user: str | None = None) -> SipUri:
        return self.endpoint.contact_uri(user, peer.transport)

    def request(self, req: SipRequest, dest: Addr, on_response: Callable[[SipEvent], None] | None = None
                ) -> ClientTransaction | None:
        """Send a request; `on_response` gets ResponseReceived / TransactionTimeout / TransportError."""
        if "user-agent" not in req.headers:
            req.headers.add("User-Agent", USER_AGENT)
        try:
            txn = self.endpoint.send_request(req, dest)
        except Exception as e:
            log.warning("%s to %s not sent: %s", req.method, dest, e)
            if on_response is not None:
                self.loop.call_soon(on_response, TransportError(None, dest, str(e)))  # type: ignore[arg-type]
            return None
        if on_response is not None:
            self.responders[txn] = on_response
            if len(self.responders) >= self._purge_at:
                self._purge_responders()
        return txn

    def _purge_responders(self) -> None:
        """Forget the handlers of transactions the layer ended without a last event: an INVITE
        answered with a 2xx ends quietly 64*T1 later, and its handler held the whole call."""
        for txn in [t for t in self.responders if t.terminated]:
            del self.responders[txn]
        self._purge_at = 2 * len(self.responders) + 256

    def register_session(self, session: Any) -> None:
        assert session.dialog is not None
        if session.dialog.id not in self.sessions:
            self.dialogs.add(session.dialog)
        self.sessions[session.dialog.id] = session

    def forget_session(self, session: Any) -> None:
        d = session.dialog
        if d is not None and self.sessions.get(d.id) is session:
            del self.sessions[d.id]
            self.dialogs.remove(d)

    def find_replaced(self, call_id: str, to_tag: str, from_tag: str) -> "InviteSession | None":
        """The session a Replaces header names (RFC 3891: to-tag is our local tag)."""
        return self.sessions.get(DialogId(call_id, to_tag, from_tag))


def _late_2xx_handler(ua: SipUa, invite: SipRequest, peer: Addr, tag: str,
                      ack: SipRequest) -> Callable[[SipEvent], None]:
    """What an answered INVITE's transaction still needs once the call has its dialog: ACK the
    2xx retransmissions, and ACK then BYE (once) another fork's 2xx (RFC 3261 13.2.2.4)."""
    ended: set[str] = set()
    ack.headers.forget_parsed()  # kept 64*T1 to be resent as it is: its text is enough

    def handle(ev: SipEvent) -> None:
        if not isinstance(ev, ResponseReceived) or not 200 <= ev.response.status < 300:
            return
        resp = ev.response
        if (resp.to_tag or "") == tag:
            ua.endpoint.send_stateless(ack, peer)
            return
        try:
            d = Dialog.from_uac(invite, resp)
        except (DialogError, SipParseError) as e:
            log.warning("bad 2xx to INVITE: %s", e)
            return
        d.receive_response(invite, resp)
        ua.endpoint.send_stateless(d.create_ack(invite), peer)
        if d.remote_tag not in ended:
            ended.add(d.remote_tag)
            bye = d.create_request("BYE", headers=[("Reason", 'SIP;cause=200;text="Call completed elsewhere"')])
            ua.request(bye, peer, lambda e: None)
    return handle


def _notify(listener: Any, name: str, *args: Any, default: Any = None,
            passes: tuple[type[Exception], ...] = ()) -> Any:
    """Call a listener's handler; its failure is logged and gives `default`, except the
    exception types in `passes`, which the caller answers."""
    fn = getattr(listener, name, None)
    if fn is None:
        return default
    try:
        return fn(*args)
    except passes:
        raise
    except Exception:
        log.exception("listener %s.%s failed", type(listener).__name__, name)
        return default


class InviteSession:
    """One INVITE dialog between the box and a peer (either side)."""

    role = ""

    def __init__(self, ua: SipUa, peer: Addr, listener: Any, local_user: str | None = None) -> None:
        self.ua = ua
        self.peer = peer
        """Where in-dialog requests go (the peer's flow)."""
        self.listener = listener
        self.local_user = local_user
        self.dialog: Dialog | None = None
        self.sdp = SdpSession(ua.media_address(peer.host), username="officebox")
        self.remote_sdp: SessionDescription | None = None
        self.state = "init"
        """init | early | confirmed | terminated"""
        self.refresher = ""
        """uac | uas | "" (no session timer)"""
        self.interval = 0
        self._st_timer: asyncio.TimerHandle | None = None
        self._pending_reinvite: ClientTransaction | None = None
        self.end_reason = ""

    # -- requests from the peer inside the dialog --------------------------------------------
    def on_request(self, ev: RequestReceived) -> None:
        req = ev.request
        m = req.method
        if m == "BYE":
            self.ua.respond(ev, 200)
            self._terminated("bye")
            _notify(self.listener, "on_bye", req)
        elif m in ("INVITE", "UPDATE"):
            self._on_reoffer(ev)
        elif m == "INFO":
            code = _notify(self.listener, "on_info", req, default=200) or 200
            self.ua.respond(ev, code)
        elif m == "REFER":
            code = _notify(self.listener, "on_refer", req, default=603) or 603
            self.ua.respond(ev, code)
        elif m == "NOTIFY":
            self.ua.respond(ev, 200)
            _notify(self.listener, "on_notify", req)
        elif m == "OPTIONS":
            self.ua.respond(ev, 200, headers=[("Allow", ALLOW), ("Supported", SUPPORTED)])
        else:
            self.ua.respond(ev, 405, headers=[("Allow", ALLOW)])

    def _on_reoffer(self, ev: RequestReceived) -> None:
        req = ev.request
        if self._pending_reinvite is not None and req.method == "INVITE":
            # glare (RFC 3261 14.2): both sides sent a re-INVITE
            self.ua.respond(ev, 491, headers=[("Retry-After", "1")])
            return
        try:
            offer = _sdp_of(req)
        except (SdpError, SipParseError) as e:
            self.ua.respond(ev, 488, f"Bad SDP: {e}")
            return
        self._session_timer_from_request(req)
        if offer is None and req.method == "UPDATE":
            # a session refresh without SDP
            self.ua.respond(ev, 200, headers=self._timer_headers())
            return
        try:
            answer = _notify(self.listener, "on_reoffer", offer, default=None, passes=(SdpError,))
        except SdpError as e:
            self.ua.respond(ev, 488, f"Not Acceptable Here: {e}")
            return
        if answer is None:
            self.ua.respond(ev, 488)
            return
        self.ua.respond(ev, 200, headers=self._timer_headers() + [("Supported", SUPPORTED)],
                        body=answer, content_type="application/sdp")

    def on_ack(self, ev: AckReceived) -> None:
        """ACK of a 2xx; carries the answer when the INVITE had no offer."""
        if ev.duplicate:
            return
        try:
            sdp = _sdp_of(ev.request)
        except (SdpError, SipParseError):
            sdp = None
        if sdp is not None:
            self.remote_sdp = sdp
            _notify(self.listener, "on_ack_sdp", sdp)

    # -- what we send --------------------------------------------------------------------
    def bye(self, reason: str | None = None) -> None:
        if self.state != "confirmed" or self.dialog is None:
            self._terminated("local")
            return
        headers = [("Reason", reason)] if reason else []
        req = self.dialog.create_request("BYE", headers=headers)
        self.ua.request(req, self.peer, lambda ev: None)
        self._terminated("local")

    def reinvite(self, body: bytes, on_done: Callable[[SessionDescription | None, int], None] | None = None,
                 method: str = "INVITE") -> bool:
        """Send a new offer (hold, resume, session refresh). Returns False when one is pending."""
        if self.state != "confirmed" or self.dialog is None or self._pending_reinvite is not None:
            return False
        req = self.dialog.create_request(method, headers=[("Supported", SUPPORTED)] + self._timer_headers(),
                                         body=body, content_type="application/sdp" if body else None)

        def done(ev: SipEvent) -> None:
            if isinstance(ev, ResponseReceived):
                resp = ev.response
                if resp.status < 200:
                    return
                self._pending_reinvite = None
                if method == "INVITE" and 200 <= resp.status < 300 and self.dialog is not None:
                    try:
                        self.dialog.receive_response(req, resp)
                    except SipParseError:
                        pass  # a malformed Contact: the remote target stays
                    ack = self.dialog.create_ack(req)
                    self.ua.endpoint.send_stateless(ack, self.peer)
                sdp = None
                if 200 <= resp.status < 300:
                    try:
                        sdp = _sdp_of(resp)
                    except (SdpError, SipParseError):
                        sdp = None
                if resp.status in (408, 481):
                    # RFC 3261 12.2.1.2: the dialog is gone
                    self.bye()
                    _notify(self.listener, "on_bye", None)
                if on_done is not None:
                    on_done(sdp, resp.status)
            else:
                self._pending_reinvite = None
                if on_done is not None:
                    on_done(None, 408)

        self._pending_reinvite = self.ua.request(req, self.peer, done)
        return self._pending_reinvite is not None

    def send_in_dialog(self, method: str, *, headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                       content_type: str | None = None,
                       on_response: Callable[[SipEvent], None] | None = None) -> None:
        if self.dialog is None or self.state == "terminated":
            return
        req = self.dialog.create_request(method, headers=headers or [], body=body, content_type=content_type)
        self.ua.request(req, self.peer, on_response or (lambda ev: None))

    def notify_refer(self, status: int, reason: str, final: bool) -> None:
        """Progress of a transfer we accepted (RFC 3515 section 2.4.5: NOTIFY with sipfrag)."""
        state = "terminated;reason=noresource" if final else "active;expires=60"
        self.send_in_dialog("NOTIFY", headers=[("Event", "refer"), ("Subscription-State", state)],
                            body=f"SIP/2.0 {status} {reason}\r\n".encode(),
                            content_type="message/sipfrag;version=2.0")

    def send_info_dtmf(self, digit: str, duration_ms: int = 160) -> None:
        body = f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode()
        self.send_in_dialog("INFO", body=body, content_type="application/dtmf-relay")

    # -- session timers (RFC 4028) ------------------------------------------------------------
    def _timer_headers(self) -> list[tuple[str, str]]:
        if not self.refresher or not self.interval:
            return []
        return [("Session-Expires", f"{self.interval};refresher={self.refresher}")]

    def _session_timer_from_request(self, req: SipRequest) -> None:
        se = req.session_expires
        if se is None:
            return
        self.interval = se.delta
        self.refresher = se.refresher or ("uac" if self.role == "uas" else "uas")
        self._arm_session_timer()

    def _arm_session_timer(self) -> None:
        if self._st_timer is not None:
            self._st_timer.cancel()
            self._st_timer = None
        if not self.interval or self.state == "terminated":
            return
        we_refresh = (self.refresher == self.role)
        if we_refresh:
            self._st_timer = self.ua.loop.call_later(self.interval / 2, self._refresh)
        else:
            # RFC 4028 10: BYE when no refresh arrived, a little before expiry
            self._st_timer = self.ua.loop.call_later(self.interval - min(32, self.interval / 3), self._expired)

    def _refresh(self) -> None:
        body = self.current_offer_body()
        if not self.reinvite(body, lambda sdp, code: self._arm_session_timer() if code < 300 else self._expired()):
            self._st_timer = self.ua.loop.call_later(2, self._refresh)

    def _expired(self) -> None:
        if self.state == "confirmed":
            log.info("session timer expired on %s", self.dialog)
            self.bye('SIP;cause=408;text="Session timer expired"')
            _notify(self.listener, "on_bye", None)

    def current_offer_body(self) -> bytes:
        """Our current SDP as a new offer (the leg keeps it up to date)."""
        return _notify(self.listener, "current_sdp", default=b"") or b""

    def _terminated(self, why: str) -> None:
        if self.state == "terminated":
            return
        self.state = "terminated"
        self.end_reason = why
        if self._st_timer is not None:
            self._st_timer.cancel()
            self._st_timer = None
        self.ua.forget_session(self)


class ServerInvite(InviteSession):
    """A leg that called the box (we are the UAS)."""

    role = "uas"

    def __init__(self, ua: SipUa, ev: RequestReceived, listener: Any = None) -> None:
        super().__init__(ua, ev.source, listener, ev.request.uri.user if isinstance(ev.request.uri, SipUri) else None)
        self.event = ev
        self.request = req = ev.request
        self.txn = ev.transaction
        self.local_tag = new_tag()
        # what the dialog will need (RFC 3261 8.1.1.3, 8.1.1.8), refused before anyone rings
        if not req.from_tag:
            raise DialogError(400, "Missing From tag")
        if not req.contacts or req.contact_is_star:
            raise DialogError(400, "Missing Contact header")
        self.offer: SessionDescription | None = _sdp_of(req)
        """The caller's offer (None for a late-offer INVITE: our 200 carries the offer)."""
        se = req.session_expires
        self.final_sent = False
        ua.server_invites[self.txn] = self
        self.contact = Address(ua.contact(ev.source, self.local_user))
        if se is not None:
            self.interval = max(se.delta, ua.min_se)
            self.refresher = se.refresher or "uas"
        elif "timer" in self.request.supported:
            self.interval, self.refresher = ua.session_expires, "uas"

    def _response(self, status: int, reason: str | None = None, body: bytes = b"",
                  headers: list[tuple[str, str]] | None = None) -> SipResponse:
        hdrs = list(headers or [])
        if 100 < status < 300:
            hdrs += [("Contact", str(self.contact)), ("Allow", ALLOW), ("Supported", SUPPORTED)]
        if 200 <= status < 300:
            hdrs += self._timer_headers()
            if self.refresher:
                hdrs.append(("Require", "timer"))
        resp = make_response(self.request, status, reason, to_tag=self.local_tag, headers=hdrs, body=body,
                             content_type="application/sdp" if body else None)
        resp.headers.add("Server", USER_AGENT)
        return resp

    def _send(self, resp: SipResponse) -> bool:
        try:
            self.ua.endpoint.send_response(self.txn, resp)
            return True
        except Exception as e:
            log.debug("response %d on %s not sent: %s", resp.status, self.request.call_id, e)
            return False

    def ring(self, status: int = 180, body: bytes = b"") -> None:
        if self.final_sent or self.state == "terminated":
            return
        resp = self._response(status, body=body)
        if self._send(resp) and self.dialog is None:
            self.dialog = Dialog.from_uas(self.request, resp, local_contact=self.contact)
            self.ua.register_session(self)
            self.state = "early"

    def answer(self, body: bytes) -> bool:
        if self.final_sent or self.state == "terminated":
            return False
        resp = self._response(200, body=body)
        if not self._send(resp):
            return False
        self.final_sent = True
        if self.dialog is None:
            self.dialog = Dialog.from_uas(self.request, resp, local_contact=self.contact)
            self.ua.register_session(self)
        self.dialog.confirm()
        self.state = "confirmed"
        self._arm_session_timer()
        return True

    def reject(self, status: int, reason: str | None = None, headers: list[tuple[str, str]] | None = None) -> None:
        if self.final_sent:
            return
        self.final_sent = True
        self._send(self._response(status, reason, headers=headers))
        self._terminated("rejected")
        self.ua.server_invites.pop(self.txn, None)

    def on_cancel(self, ev: CancelReceived) -> None:
        self.final_sent = True
        reason = ""
        try:
            for r in ev.request.reasons:
                reason = r.text or reason
        except SipParseError:
            pass  # a malformed Reason does not stop the CANCEL
        self._terminated("cancel")
        self.ua.server_invites.pop(self.txn, None)
        _notify(self.listener, "on_cancelled", reason)

    def on_ack(self, ev: AckReceived) -> None:
        self.ua.server_invites.pop(self.txn, None)
        super().on_ack(ev)

    def on_ack_timeout(self) -> None:
        self.ua.server_invites.pop(self.txn, None)
        if self.state == "confirmed":
            log.info("no ACK for our 200 on %s: hanging up", self.request.call_id)
            self.bye()
            _notify(self.listener, "on_bye", None)


class ClientInvite(InviteSession):
    """A leg the box calls (we are the UAC)."""

    role = "uac"

    def __init__(self, ua: SipUa, *, target: SipUri, dest: Addr, from_addr: Address, to_addr: Address,
                 listener: Any, auth: DigestClient | None = None, extra_headers: list[tuple[str, str]] | None = None,
                 local_user: str | None = None, call_id: str | None = None, max_forwards: int = 70) -> None:
        super().__init__(ua, dest, listener, local_user)
        self.target = target
        self.max_forwards = max_forwards
        """Max-Forwards of the INVITE: the calling leg's less one, so a loop through trunks ends."""
        self.from_addr = from_addr.with_tag(new_tag()) if from_addr.tag is None else from_addr
        self.to_addr = to_addr
        self.auth = auth
        self.auth_tries = 0
        self.extra_headers = extra_headers or []
        self.call_id = call_id
        self.invite: SipRequest | None = None
        self.txn: ClientTransaction | None = None
        self.cancelled = False
        self.final = 0
        self.early_dialogs: dict[str, Dialog] = {}

    def start(self, body: bytes) -> None:
        contact = Address(self.ua.contact(self.peer, self.local_user))
        hdrs = [("Allow", ALLOW), ("Supported", SUPPORTED), ("User-Agent", USER_AGENT)]
        if self.ua.session_expires:
            hdrs.append(("Session-Expires", str(self.ua.session_expires)))
        hdrs += self.extra_headers
        self.invite = make_request("INVITE", self.target, from_addr=self.from_addr, to_addr=self.to_addr,
                                   call_id=self.call_id, contact=contact, headers=hdrs, body=body,
                                   max_forwards=self.max_forwards,
                                   content_type="application/sdp" if body else None)
        self._send(self.invite)

    def _send(self, req: SipRequest) -> None:
        self.invite = req
        self.txn = self.ua.request(req, self.peer, self._on_event)

    def cancel(self, reason: str | None = None) -> None:
        """Stop ringing (CANCEL); a 200 that crosses the CANCEL is ACKed and BYEd."""
        if self.final or self.cancelled:
            return
        self.cancelled = True
        if self.txn is not None:
            try:
                self.ua.endpoint.cancel(self.txn, reason)
            except Exception as e:
                log.debug("CANCEL not sent: %s", e)

    def hangup(self, reason: str | None = None) -> None:
        if self.state == "confirmed":
            self.bye(reason)
        else:
            self.cancel(reason)

    def _on_event(self, ev: SipEvent) -> None:
        if not isinstance(ev, ResponseReceived):
            if not self.final:
                self.final = 408 if isinstance(ev, TransactionTimeout) else 503
                self._terminated("timeout")
                _notify(self.listener, "on_failed", self.final,
                        "Request Timeout" if self.final == 408 else "Service Unavailable", None)
            return
        resp = ev.response
        st = resp.status
        assert self.invite is not None
        if st < 200:
            if st == 100:
                return
            sdp = None
            try:
                sdp = _sdp_of(resp)
            except (SdpError, SipParseError):
                sdp = None
            if resp.to_tag and resp.to_tag not in self.early_dialogs:
                try:
                    d = Dialog.from_uac(self.invite, resp)
                    self.early_dialogs[resp.to_tag] = d
                    if self.dialog is None:
                        self.dialog = d
                        self.ua.register_session(self)
                except (DialogError, SipParseError):
                    pass  # no early dialog with this fork; its final answer still counts
            if self.state == "init":
                self.state = "early"
            if sdp is not None:
                self.remote_sdp = sdp
            if not self.cancelled:
                _notify(self.listener, "on_provisional", st, sdp)
            return
        if 200 <= st < 300:
            self._on_2xx(ev)
            return
        # 3xx-6xx
        if st in (401, 407) and self.auth is not None and self.auth_tries < 2 and not self.cancelled:
            self.auth_tries += 1
            try:
                self._send(self.auth.authorize(self.invite, resp))
                return
            except AuthError as e:
                log.warning("cannot answer %d challenge: %s", st, e)
        if self.final:
            return
        self.final = st
        self._terminated("failed")
        if self.cancelled and st == 487:
            _notify(self.listener, "on_failed", 487, "Request Terminated", resp)
        else:
            _notify(self.listener, "on_failed", st, resp.reason, resp)

    def _on_2xx(self, ev: ResponseReceived) -> None:
        resp = ev.response
        assert self.invite is not None
        tag = resp.to_tag or ""
        try:
            d = self.early_dialogs.get(tag) or Dialog.from_uac(self.invite, resp)
        except (DialogError, SipParseError) as e:
            # no dialog can be built (no usable Contact): nothing to ACK or BYE; the call
            # goes on without this leg, whose phone gives up when its 2xx gets no ACK
            log.warning("bad 2xx to INVITE from %s: %s", self.peer.host, e)
            if not self.final:
                self.final = 502
                self._terminated("failed")
                _notify(self.listener, "on_failed", 502, "Bad Gateway", None)
            return
        try:
            d.receive_response(self.invite, resp)
        except SipParseError:
            pass  # a malformed Contact: the early dialog's remote target stays
        ack = d.create_ack(self.invite)
        self.ua.endpoint.send_stateless(ack, self.peer)
        if ev.retransmission and self.final:
            return
        if self.final or self.cancelled or (self.dialog is not None and self.dialog.remote_tag != tag
                                            and self.state == "confirmed"):
            # a 200 crossing our CANCEL, or a second fork answering: end that dialog at once
            bye = d.create_request("BYE", headers=[("Reason", 'SIP;cause=200;text="Call completed elsewhere"')])
            self.ua.request(bye, self.peer, lambda e: None)
            if not self.final:
                self.final = 487
                self._terminated("cancelled")
                _notify(self.listener, "on_failed", 487, "Request Terminated", resp)
            return
        self.final = resp.status
        if self.dialog is not None and self.dialog is not d:
            self.ua.forget_session(self)
        self.dialog = d
        self.ua.register_session(self)
        self.state = "confirmed"
        # the transaction lives on for 64*T1 to catch 2xx retransmissions: from now on its
        # handler must not keep this session (and so the whole call) in memory that long
        self.ua.responders[ev.transaction] = _late_2xx_handler(self.ua, self.invite, self.peer, tag, ack)
        se = resp.session_expires
        if se is not None:
            self.interval = se.delta
            self.refresher = se.refresher or "uac"
        self._arm_session_timer()
        try:
            sdp = _sdp_of(resp)
        except (SdpError, SipParseError):
            sdp = None
        if sdp is not None:
            self.remote_sdp = sdp
        _notify(self.listener, "on_answered", sdp)
