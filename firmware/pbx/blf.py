"""Busy lamp field: SUBSCRIBE/NOTIFY for the dialog event package (RFC 6665, RFC 4235).

A desk phone's BLF key subscribes to a colleague's extension and shows idle, ringing or in a
call from the `dialog-info+xml` NOTIFYs. A key may also subscribe to a queue log-in code
(`*45600`): the lamp is lit while the subscriber is logged in to that queue.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from xml.sax.saxutils import escape

from firmware.sip.dialog import Dialog
from firmware.sip.events import Addr, RequestReceived
from firmware.sip.headers import new_tag
from firmware.sip.message import make_response
from firmware.sip.uri import Address, SipUri

log = logging.getLogger("firmware.pbx.blf")

MIN_EXPIRES = 60
MAX_EXPIRES = 3600


class Subscription:
    """One subscription dialog (the box is the notifier)."""

    def __init__(self, blf: "Blf", ev: RequestReceived, subscriber: str, target: str, kind: str) -> None:
        self.blf = blf
        self.subscriber = subscriber
        self.target = target
        """The watched extension, or the queue number for kind "queue"."""
        self.kind = kind
        """extension | queue"""
        self.peer: Addr = ev.source
        self.local_tag = new_tag()
        self.dialog: Dialog | None = None
        self.version = 0
        self.expires_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.last_state = ""
        self.entity = f"sip:{target}@{blf.pbx.endpoint.advertised_host}"

    # in-dialog requests (refresh / unsubscribe) arrive here through the SipUa
    def on_request(self, ev: RequestReceived) -> None:
        if ev.request.method == "SUBSCRIBE":
            self.blf.refresh(self, ev)
        elif ev.request.method == "NOTIFY":
            self.blf.pbx.ua.respond(ev, 200)
        else:
            self.blf.pbx.ua.respond(ev, 405)

    def notify(self, terminated: bool = False) -> None:
        if self.dialog is None:
            return
        state, body = self.blf.body(self)
        self.version += 1
        body = body.replace("{version}", str(self.version))
        left = max(0, int(self.expires_at - time.time()))
        sub_state = "terminated;reason=timeout" if terminated else f"active;expires={left}"
        req = self.dialog.create_request("NOTIFY", headers=[("Event", "dialog"), ("Subscription-State", sub_state)],
                                         body=body.encode(), content_type="application/dialog-info+xml")
        self.last_state = state
        self.blf.pbx.ua.request(req, self.peer, self._notify_answer)

    def _notify_answer(self, ev: Any) -> None:
        from firmware.sip.events import ResponseReceived
        if isinstance(ev, ResponseReceived) and ev.response.status in (481, 489):
            self.blf.remove(self)


class Blf:
    def __init__(self, pbx: Any) -> None:
        self.pbx = pbx
        self.subs: list[Subscription] = []

    def on_subscribe(self, ev: RequestReceived) -> None:
        pbx = self.pbx
        req = ev.request
        event = req.event
        if event is None or event.package != "dialog":
            pbx.ua.respond(ev, 489, "Bad Event", headers=[("Allow-Events", "dialog")])
            return
        user = pbx._authenticate(ev)
        if user is None:
            return
        target = req.uri.user if isinstance(req.uri, SipUri) else None
        kind = "extension"
        code = pbx.prov.system.features.queue_login
        if target and pbx.prov.extension(target) is None and code and target.startswith(code) \
                and pbx.prov.queue(target[len(code):]) is not None:
            kind, target = "queue", target[len(code):]
        elif not target or pbx.prov.extension(target) is None:
            pbx.ua.respond(ev, 404, "Not Found")
            return
        expires = req.expires if req.expires is not None else MAX_EXPIRES
        if 0 < expires < MIN_EXPIRES:
            pbx.ua.respond(ev, 423, headers=[("Min-Expires", str(MIN_EXPIRES))])
            return
        sub = Subscription(self, ev, user, target, kind)
        sub.expires_at = time.time() + min(expires, MAX_EXPIRES)
        contact = Address(pbx.ua.contact(ev.source))
        resp = make_response(req, 200, to_tag=sub.local_tag,
                             headers=[("Expires", str(min(expires, MAX_EXPIRES))), ("Contact", str(contact))])
        pbx.endpoint.send_response(ev.transaction, resp)
        try:
            sub.dialog = Dialog.from_uas(req, resp, local_contact=contact)
        except Exception as e:
            log.warning("subscription dialog not created: %s", e)
            return
        sub.dialog.confirm()
        if expires == 0:
            sub.notify(terminated=True)
            return
        pbx.ua.register_session(sub)
        self.subs.append(sub)
        self._arm(sub)
        sub.notify()

    def refresh(self, sub: Subscription, ev: RequestReceived) -> None:
        expires = ev.request.expires if ev.request.expires is not None else MAX_EXPIRES
        if 0 < expires < MIN_EXPIRES:
            self.pbx.ua.respond(ev, 423, headers=[("Min-Expires", str(MIN_EXPIRES))])
            return
        self.pbx.ua.respond(ev, 200, headers=[("Expires", str(min(expires, MAX_EXPIRES)))])
        if expires == 0:
            sub.expires_at = time.time()
            sub.notify(terminated=True)
            self.remove(sub)
            return
        sub.expires_at = time.time() + min(expires, MAX_EXPIRES)
        self._arm(sub)
        sub.notify()

    def _arm(self, sub: Subscription) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
        sub.timer = asyncio.get_running_loop().call_later(max(0.0, sub.expires_at - time.time()),
                                                           self._expire, sub)

    def _expire(self, sub: Subscription) -> None:
        sub.notify(terminated=True)
        self.remove(sub)

    def remove(self, sub: Subscription) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        if sub in self.subs:
            self.subs.remove(sub)
        self.pbx.ua.forget_session(sub)

    def changed(self, extension: str) -> None:
        """An extension's calls changed (or an agent's queue log-in): tell its watchers."""
        for sub in list(self.subs):
            if (sub.kind == "extension" and sub.target == extension) or \
                    (sub.kind == "queue" and sub.subscriber == extension):
                state, _ = self.body(sub)
                if state != sub.last_state:
                    sub.notify()

    def stop(self) -> None:
        for sub in list(self.subs):
            sub.notify(terminated=True)
            self.remove(sub)

    def body(self, sub: Subscription) -> tuple[str, str]:
        """(summary state, dialog-info XML with {version} to fill)."""
        pbx = self.pbx
        host = pbx.endpoint.advertised_host
        dialogs = []
        if sub.kind == "queue":
            logged = pbx.centre.acd.is_logged_in(sub.subscriber, sub.target)
            state = "confirmed" if logged else "terminated"
            if logged:
                dialogs.append(f'<dialog id="queue-{escape(sub.target)}"><state>confirmed</state></dialog>')
        else:
            legs = sorted(pbx.ext_legs.get(sub.target, ()), key=lambda l: l.created_at)
            states = []
            for leg in legs:
                st = "confirmed" if leg.answered else "early"
                states.append(st)
                call = leg.call
                other = call.other(leg) if call is not None else None
                remote = (other.number if other is not None else
                          (call.caller.number if call is not None and call.caller is not leg else ""))
                direction = "recipient" if leg.role in ("callee", "agent") else "initiator"
                dlg = getattr(leg.session, "dialog", None) if hasattr(leg, "session") else None
                attrs = f'id="{escape(leg.id)}" direction="{direction}"'
                if dlg is not None:
                    attrs += (f' call-id="{escape(dlg.call_id)}" local-tag="{escape(dlg.local_tag)}"'
                              f' remote-tag="{escape(dlg.remote_tag)}"')
                dialogs.append(
                    f"<dialog {attrs}><state>{st}</state>"
                    f"<local><identity>sip:{escape(sub.target)}@{escape(host)}</identity></local>"
                    f"<remote><identity>sip:{escape(remote)}@{escape(host)}</identity></remote></dialog>")
            state = "confirmed" if "confirmed" in states else "early" if states else "terminated"
        xml = ('<?xml version="1.0"?>\n'
               f'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{{version}}" state="full" '
               f'entity="{escape(sub.entity)}">' + "".join(dialogs) + "</dialog-info>\n")
        return state, xml
