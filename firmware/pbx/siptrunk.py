"""SIP trunks to a provider (ITSP): registration, calls out with the configured caller ID,
calls in on DIDs or from addresses allowed by IP.

Registration (RFC 3261 section 10.2). One binding per trunk: ``REGISTER sip:<host>`` with
From/To ``<sip:username@host>`` and our Contact, a Call-ID kept across refreshes (CSeq
grows). A 401/407 is answered with the trunk's credentials (firmware.sip.auth.DigestClient);
a second challenge right after our answer means the credentials are wrong, and the box waits
before trying again so the provider does not lock the account. The binding is refreshed
before the expiry the registrar granted (Contact ``expires`` or the Expires header, which
may be shorter than requested). When the server does not answer (no response within
`RegistrationPlan.answer_timeout`, a transport error, or a 5xx) the client moves to
``backup_host`` and stays there while it works.

`RegistrationPlan` holds those decisions without I/O (injected time), `SipTrunk` does the
sending through the PBX's SIP user agent.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from firmware.pbx.calls import Leg, SipLeg
from firmware.sip.auth import DigestClient
from firmware.sip.errors import AuthError
from firmware.sip.events import Addr, ResponseReceived, SipEvent
from firmware.sip.message import SipRequest, make_request
from firmware.sip.sdp import TELEPHONE_EVENT
from firmware.sip.uri import Address, SipUri

if TYPE_CHECKING:
    from firmware.pbx.trunks import Trunks

log = logging.getLogger("firmware.pbx.trunks")

__all__ = ["RegistrationPlan", "SipTrunk", "SipTrunkLeg"]


class RegistrationPlan:
    """When and where a registration client sends its next REGISTER (sans-I/O).

    Feed it the outcome of every attempt (`succeeded`, `challenge_failed`, `server_failed`);
    each returns the time of the next attempt. `server` is the host to use now.
    """

    RETRY_S = (2.0, 5.0, 15.0, 30.0, 60.0)
    """Waits after consecutive failures (the last one repeats)."""
    AUTH_RETRY_S = 300.0
    """Wait after the provider refused our credentials (avoid locking the account)."""

    def __init__(self, servers: Sequence[str], expiry: int, *, answer_timeout: float = 5.0) -> None:
        if not servers:
            raise ValueError("a registration needs at least one server")
        self.servers = [s for s in servers if s]
        self.index = 0
        self.expiry = expiry
        """Expiry we ask for, in seconds."""
        self.answer_timeout = answer_timeout
        """Seconds without any response after which a server counts as not answering."""
        self.failures = 0
        self.registered = False
        self.expires_at: float | None = None
        self.granted: int | None = None
        self.last_status = 0
        self.last_error = ""
        self.last_ok_at: float | None = None

    @property
    def server(self) -> str:
        return self.servers[self.index]

    @staticmethod
    def refresh_delay(granted: int) -> float:
        """Seconds after a successful REGISTER to refresh it: before expiry by 20 % of the
        interval, at least 5 s and at most 60 s (never sooner than 1 s)."""
        margin = max(5.0, min(60.0, granted * 0.2))
        return max(1.0, granted - margin)

    def succeeded(self, granted: int, now: float) -> float:
        self.failures = 0
        self.registered = granted > 0
        self.granted = granted
        self.expires_at = now + granted if granted > 0 else None
        self.last_status = 200
        self.last_error = ""
        self.last_ok_at = now
        return now + self.refresh_delay(granted)

    def _retry(self, now: float) -> float:
        self.failures += 1
        if self.expires_at is not None and now >= self.expires_at:
            self.registered = False
            self.expires_at = None
        return now + self.RETRY_S[min(self.failures - 1, len(self.RETRY_S) - 1)]

    def server_failed(self, why: str, now: float, status: int = 0) -> float:
        """No answer, a transport error or a 5xx: try the other server next."""
        self.last_status = status
        self.last_error = why
        if len(self.servers) > 1:
            self.index = (self.index + 1) % len(self.servers)
            if self.failures == 0:
                self.failures = 1
                return now + 0.1  # straight to the backup
        return self._retry(now)

    def refused(self, why: str, now: float, status: int) -> float:
        """A 4xx/6xx other than a challenge (e.g. 403, 404): the account is wrong."""
        self.last_status = status
        self.last_error = why
        self.registered = False
        self.expires_at = None
        self.failures += 1
        return now + self.AUTH_RETRY_S

    def challenge_failed(self, why: str, now: float, status: int) -> float:
        """Our credentials were refused (a new challenge right after answering one)."""
        return self.refused(why, now, status)


class SipTrunkLeg(SipLeg):
    """A leg to or from a provider; DTMF as the trunk's ``dtmf`` setting says."""

    def __init__(self, pbx: Any, *, trunk_cfg: Any, **kw: Any) -> None:
        super().__init__(pbx, trunk=trunk_cfg.name, **kw)
        self.dtmf_mode = trunk_cfg.dtmf

    def _configure(self) -> None:
        if self.dtmf_mode != "rfc4733":
            self.te = None  # info / inband: no telephone-event; digits are detected in-band
        super()._configure()

    def _answer_body(self) -> bytes:
        """Our answer to the provider's offer: telephone-event only when the trunk uses RFC 4733."""
        from firmware.sip.sdp import PCMU
        offer = self.session.offer
        port = self.channel.local_port if self.channel else 9
        te = self.dtmf_mode == "rfc4733"
        if offer is None:
            return self.session.sdp.offer(port, self.offer_codecs(),
                                          telephone_event=TELEPHONE_EVENT if te else None).serialize()
        ans = self.session.sdp.answer(offer, port, telephone_event=te)
        self.pt = 0 if ans.codec.key == PCMU.key else 8
        self.te = ans.telephone_event.payload_type if ans.telephone_event else None
        self.remote, self.remote_direction = ans.remote, ans.remote_direction
        self._configure()
        return ans.sdp.serialize()

    def take_peer_digit(self, source: Leg, digit: str) -> None:
        """A digit from the other party reaches the provider as the trunk's ``dtmf`` says.
        RFC 4733 between two RTP legs in a relaying bridge is forwarded by the engine."""
        if not self.answered or self.session is None:
            return
        if self.dtmf_mode == "info":
            self.session.send_info_dtmf(digit)
            return
        call = self.call
        if self.dtmf_mode == "rfc4733" and isinstance(source, SipLeg) and call is not None \
                and call.bridge is not None and _relaying(call.bridge):
            return
        self.send_dtmf(digit)

    def got_digit(self, digit: str) -> None:
        super().got_digit(digit)
        call = self.call
        other = call.other(self) if call is not None else None
        if other is None or not other.answered or hasattr(other, "take_peer_digit"):
            return
        if isinstance(other, SipLeg) and call is not None and call.bridge is not None \
                and not _relaying(call.bridge):
            if other.dtmf_mode == "info" and other.session is not None:
                other.session.send_info_dtmf(digit)
            elif other.te is not None:
                other.send_dtmf(digit)


def _stale(resp: Any) -> bool:
    """A challenge saying only our nonce expired (RFC 7616 section 3.3 stale=true)."""
    try:
        challenges = resp.proxy_authenticate if resp.status == 407 else resp.www_authenticate
    except Exception:
        return False
    return any(str(c.params.get("stale", "")).strip('"').lower() == "true" for c in challenges)


def _relaying(bridge: Any) -> bool:
    try:
        return bool(bridge.relaying)
    except Exception:
        return False


class SipTrunk:
    """One ``type = "sip"`` trunk. See the module docstring."""

    def __init__(self, trunks: Trunks, cfg: Any) -> None:
        self.trunks = trunks
        self.pbx = trunks.pbx
        self.cfg = cfg
        self.name: str = cfg.name
        self.plan = RegistrationPlan([cfg.host] + ([cfg.backup_host] if cfg.backup_host else []), cfg.expiry)
        self.auth = DigestClient(cfg.auth_username or cfg.username, cfg.password) if cfg.password else None
        self.addresses: dict[str, str] = {}
        """Host name -> resolved IP address."""
        self.allow_nets = []
        for a in cfg.allow_ips:
            try:
                self.allow_nets.append(ipaddress.ip_network(a, strict=False))
            except ValueError:
                log.error("%s: allow_ips entry %r is not an address or network", self.name, a)
        self.legs: set[Leg] = set()
        self._call_id = f"reg-{self.name}-{int(time.time() * 1000):x}@officebox"
        self._cseq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._attempt = 0
        self._trusted: set[str] = set()
        self._stopped = False
        self.restart_pending = False
        self.down_reported = False

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self._resolve_all()
        if self.cfg.register:
            if self.cfg.transport == "tls":
                self.plan.last_error = "TLS is not supported by this box's SIP transport"
                log.error("%s: %s", self.name, self.plan.last_error)
                return
            self._schedule(0.0)

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.cfg.register and self.plan.registered:
            self._send_register(expires=0)
            await asyncio.sleep(0.05)
        for ip in self._trusted:
            self.pbx.security.untrust(ip)
        self._trusted.clear()

    async def _resolve_all(self) -> None:
        loop = asyncio.get_running_loop()
        for host in self.plan.servers:
            if host in self.addresses:
                continue
            try:
                ipaddress.ip_address(host)
                ip = host
            except ValueError:
                try:
                    infos = await loop.getaddrinfo(host, self.cfg.port, type=socket.SOCK_DGRAM)
                    ip = str(infos[0][4][0])
                except (OSError, IndexError) as e:
                    log.warning("%s: cannot resolve %s: %s", self.name, host, e)
                    continue
            self.addresses[host] = ip
            if ip not in self._trusted:
                self._trusted.add(ip)
                self.pbx.security.trust(ip)

    def dest(self, host: str | None = None) -> Addr | None:
        ip = self.addresses.get(host or self.plan.server)
        if ip is None:
            return None
        return Addr(self.cfg.transport if self.cfg.transport != "tls" else "tcp", ip, self.cfg.port)

    # -- who is this trunk --------------------------------------------------------------------
    def allows_ip(self, ip: str) -> bool:
        """True when ``allow_ips`` admits calls from `ip` without registration."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.allow_nets)

    # -- registration --------------------------------------------------------------------------
    def _schedule(self, delay: float) -> None:
        if self._stopped:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._register_now)

    def _register_now(self) -> None:
        self._timer = None
        self.pbx.spawn(self._register_task(), name=f"register {self.name}")

    async def _register_task(self) -> None:
        await self._resolve_all()
        self._send_register(self.plan.expiry)

    def _contact(self) -> Address:
        uri = self.pbx.ua.contact(self.dest() or Addr("udp", "127.0.0.1", 5060), self.cfg.username or None)
        return Address(uri)

    def _register_request(self, expires: int) -> SipRequest:
        host = self.plan.server
        port = self.cfg.port if self.cfg.port != 5060 else None
        aor = Address(SipUri(host=host, user=self.cfg.username or None))
        self._cseq += 1
        return make_request("REGISTER", SipUri(host=host, port=port), from_addr=aor, to_addr=aor,
                            call_id=self._call_id, cseq=self._cseq, contact=self._contact(),
                            headers=[("Expires", str(expires)), ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO")])

    def _send_register(self, expires: int) -> None:
        dest = self.dest()
        now = time.monotonic()
        if dest is None:
            self._fail_server(f"cannot resolve {self.plan.server}", now)
            return
        self._attempt += 1
        attempt = self._attempt
        req = self._register_request(expires)
        state = {"answered": False, "auth_tries": 0}

        def on_response(ev: SipEvent) -> None:
            if attempt != self._attempt or self._stopped and expires:
                return
            now = time.monotonic()
            if not isinstance(ev, ResponseReceived):
                state["answered"] = True
                self._fail_server(f"{type(ev).__name__} from {dest.host}", now)
                return
            resp = ev.response
            state["answered"] = True
            if resp.status < 200:
                return
            if resp.status in (401, 407) and self.auth is not None \
                    and (state["auth_tries"] == 0 or state["auth_tries"] < 3 and _stale(resp)):
                state["auth_tries"] += 1
                try:
                    again = self.auth.authorize(current[0], resp)
                except AuthError as e:
                    self._schedule(self.plan.refused(f"cannot answer the challenge: {e}", now, resp.status) - now)
                    return
                self._cseq = again.cseq.seq
                current[0] = again
                self.pbx.ua.request(again, dest, on_response)
                return
            if 200 <= resp.status < 300:
                if expires == 0:
                    self.plan.registered = False
                    return
                granted = self._granted(resp, expires)
                nxt = self.plan.succeeded(granted, now)
                log.info("%s: registered at %s:%d for %d s", self.name, dest.host, dest.port, granted)
                self.trunks.line_up(self)
                self._schedule(nxt - now)
            elif resp.status == 423 and resp.headers.get("min-expires"):
                try:
                    self.plan.expiry = max(self.plan.expiry, int(resp.headers.get("min-expires") or 0))
                except ValueError:
                    pass
                self._schedule(0.1)
            elif resp.status in (401, 407):
                log.error("%s: registration refused: wrong credentials (%d %s)", self.name, resp.status, resp.reason)
                self._schedule(self.plan.challenge_failed("credentials refused", now, resp.status) - now)
                self.trunks.line_down(self, f"registration refused: wrong credentials ({resp.status})")
            elif resp.status >= 500 or resp.status == 408:
                self._fail_server(f"{resp.status} {resp.reason}", now, resp.status)
            else:
                log.error("%s: registration refused: %d %s", self.name, resp.status, resp.reason)
                self._schedule(self.plan.refused(f"{resp.status} {resp.reason}", now, resp.status) - now)
                self.trunks.line_down(self, f"registration refused: {resp.status} {resp.reason}")

        current = [req]
        self.pbx.ua.request(req, dest, on_response)
        if expires:
            loop = asyncio.get_running_loop()

            def no_answer() -> None:
                if attempt == self._attempt and not state["answered"] and not self._stopped:
                    self._attempt += 1  # a late answer to this attempt is ignored
                    self._fail_server(f"no answer from {dest.host}:{dest.port} within "
                                      f"{self.plan.answer_timeout:g} s", time.monotonic())
            loop.call_later(self.plan.answer_timeout, no_answer)

    def _fail_server(self, why: str, now: float, status: int = 0) -> None:
        was = self.plan.server
        nxt = self.plan.server_failed(why, now, status)
        if self.plan.server != was:
            log.warning("%s: %s (%s): trying %s", self.name, was, why, self.plan.server)
        else:
            log.warning("%s: registration at %s failed: %s", self.name, was, why)
        self._check_down()
        self._schedule(nxt - now)

    def _check_down(self) -> None:
        """Out of service: no binding left and every server failed (or refused us)."""
        p = self.plan
        if not p.registered and p.failures >= len(p.servers):
            self.trunks.line_down(self, f"not registered: {p.last_error or p.last_status}")

    def _granted(self, resp: Any, asked: int) -> int:
        mine = self._contact().uri
        for c in resp.contacts:
            u = c.uri
            if isinstance(u, SipUri) and isinstance(mine, SipUri) and u.user == mine.user \
                    and u.host == mine.host and (u.port or 5060) == (mine.port or 5060):
                v = c.get_param("expires")
                if v is not None and v.isdigit():
                    return int(v)
        if resp.expires is not None:
            return int(resp.expires)
        return asked

    # -- calls ----------------------------------------------------------------------------------
    @property
    def in_use(self) -> int:
        return sum(1 for leg in self.legs if leg.state != "ended")

    def usable(self) -> str | None:
        """Why the trunk cannot place a call now, or None."""
        if self.cfg.register and not self.plan.registered:
            return "unavailable"
        if self.dest() is None:
            return "unavailable"
        if self.in_use >= self.cfg.max_calls:
            return "no_channel"
        return None

    def domain(self) -> str:
        return self.plan.server

    def outbound_leg(self, call: Any, number: str) -> SipTrunkLeg:
        """Start an INVITE for `number` through the provider; the leg reports the outcome."""
        from firmware.pbx.sipua import ClientInvite
        dest = self.dest()
        assert dest is not None
        cfg = self.cfg
        leg = SipTrunkLeg(self.pbx, trunk_cfg=cfg, role="callee", number=number, peer=dest)
        host = self.domain()
        port = cfg.port if cfg.port != 5060 else None
        from_user = cfg.from_user or cfg.caller_id or cfg.username or "anonymous"
        caller = call.caller
        display = cfg.caller_id or from_user
        if caller is not None and caller.name and not caller.extension:
            display = caller.name
        from_addr = Address(SipUri(host=host, user=from_user), display_name=display)
        to_addr = Address(SipUri(host=host, user=number))
        headers: list[tuple[str, str]] = []
        if cfg.caller_id:
            headers.append(("P-Asserted-Identity", f"<sip:{cfg.caller_id}@{host}>"))
        session = ClientInvite(self.pbx.ua, target=SipUri(host=host, user=number, port=port), dest=dest,
                               from_addr=from_addr, to_addr=to_addr, listener=leg, auth=self.auth,
                               extra_headers=headers, local_user=cfg.username or None,
                               max_forwards=call.max_forwards)
        leg.session = session
        call.add_leg(leg)
        self.legs.add(leg)
        prefer = getattr(caller, "pt", None)
        te = TELEPHONE_EVENT if cfg.dtmf == "rfc4733" else None
        body = session.sdp.offer(leg.channel.local_port, leg.offer_codecs(prefer), telephone_event=te).serialize()
        session.start(body)
        return leg

    def inbound_leg(self, ev: Any) -> tuple[SipTrunkLeg, str, str] | None:
        """A leg for an INVITE from the provider: (leg, caller number, DID). None after a
        rejection was sent."""
        req = ev.request
        ua = self.pbx.ua
        if "100rel" in req.require:
            ua.respond(ev, 420, headers=[("Unsupported", "100rel")])
            return None
        if self.in_use >= self.cfg.max_calls:
            ua.respond(ev, 486, "Busy Here: all channels of this trunk are in use")
            return None
        ua.respond(ev, 100)
        frm = req.from_addr
        user = frm.uri.user if isinstance(frm.uri, SipUri) else None
        caller = "" if not user or user.lower() in ("anonymous", "unknown", "restricted", "private") else user
        did = self._did_of(req)
        try:
            leg = SipTrunkLeg(self.pbx, trunk_cfg=self.cfg, role="caller", number=caller or "anonymous",
                              name=frm.display_name or "", peer=ev.source)
        except Exception as e:
            log.error("%s: no media for an incoming call: %s", self.name, e)
            ua.respond(ev, 503, "Service Unavailable", headers=[("Retry-After", "5")])
            return None
        leg.user_agent = req.user_agent or ""
        if not leg.take_invite(ev):
            return None
        self.legs.add(leg)
        return leg, caller, did

    def _did_of(self, req: Any) -> str:
        """The called number: the Request-URI user unless it is our account name (providers
        that address the registration contact put the DID in To)."""
        ruri = req.uri.user if isinstance(req.uri, SipUri) else None
        to = req.to_addr.uri.user if isinstance(req.to_addr.uri, SipUri) else None
        dids = set(self.cfg.dids)
        for cand in (ruri, to):
            if cand and cand in dids:
                return cand
        if ruri and ruri != self.cfg.username:
            return ruri
        return to or ruri or ""

    # -- status -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        p = self.plan
        reg = None
        text = "not used (calls by IP)"
        if self.cfg.register:
            reg = {"registered": p.registered, "server": p.server,
                   "expires_in": round(p.expires_at - now) if p.expires_at else None,
                   "granted": p.granted, "last_status": p.last_status or None,
                   "last_error": p.last_error or None, "failures": p.failures}
            text = (f"registered at {p.server}" if p.registered else
                    f"not registered ({p.last_error})" if p.last_error else "registering")
        health = "ok" if (p.registered or not self.cfg.register) else ("failing" if p.failures else "registering")
        return {
            "name": self.name, "type": "sip", "model": "", "host": self.cfg.host, "port": self.cfg.port,
            "backup_host": self.cfg.backup_host or None, "transport": self.cfg.transport,
            "registered": p.registered if self.cfg.register else None,
            "registration": text, "registration_detail": reg, "health": health,
            "faults": [p.last_error] if p.last_error else [],
            "caller_id": self.cfg.caller_id or self.cfg.from_user or self.cfg.username, "dids": list(self.cfg.dids),
            "allow_ips": list(self.cfg.allow_ips), "dtmf": self.cfg.dtmf,
            "calls": self.in_use, "max_calls": self.cfg.max_calls,
        }
