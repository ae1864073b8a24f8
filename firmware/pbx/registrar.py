"""The registrar: where each extension's desk phones are (RFC 3261 section 10.3).

Sans-I/O: the SIP layer parses REGISTER and calls `register()` with plain values; the result
says which response to send. Bindings are persisted through a small store interface so phones
stay reachable across a restart of the box.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Protocol

from firmware.sip.errors import SipParseError
from firmware.sip.uri import SipUri


@dataclass(frozen=True)
class Binding:
    aor: str
    """The extension number."""
    contact: str
    """Contact URI as the phone sent it."""
    transport: str
    """udp | tcp"""
    source_ip: str
    source_port: int
    """Where the REGISTER came from: requests go there (RFC 3581 / NAT)."""
    expires_at: float
    """Wall-clock unix seconds."""
    call_id: str = ""
    cseq: int = 0
    user_agent: str = ""
    instance: str = ""
    """+sip.instance (RFC 5626) when the phone sends one: identifies the device."""
    q: float = 1.0
    nat: bool = False
    """The Contact address differs from the source address (phone behind NAT)."""
    reachable: bool | None = None
    """Result of the last qualify (OPTIONS) probe; None before the first."""
    rtt_ms: float | None = None
    registered_at: float = 0.0

    @property
    def key(self) -> str:
        return self.instance or self.contact

    @property
    def target(self) -> tuple[str, str, int]:
        """(transport, host, port) where requests for this phone go: the address it registered
        from when it is behind NAT (or on TCP: the same connection), else its Contact."""
        if self.nat or self.transport != "udp":
            return self.transport, self.source_ip, self.source_port
        host, port = _contact_hostport(self.contact)
        return self.transport, host, port


class BindingStore(Protocol):
    def load_registrations(self) -> Iterable[dict]: ...
    def save_registration(self, binding: dict) -> None: ...
    def delete_registration(self, aor: str, key: str) -> None: ...


@dataclass(frozen=True)
class ContactRequest:
    uri: str
    expires: int | None = None
    """The contact's expires parameter, if any."""
    q: float = 1.0
    instance: str = ""


@dataclass(frozen=True)
class RegisterResult:
    status: int
    """200, 400 or 423"""
    reason: str
    bindings: tuple[Binding, ...] = ()
    """All current bindings of the AOR (for the Contact headers of the 200)."""
    min_expires: int = 0
    added: tuple[Binding, ...] = ()
    removed: tuple[Binding, ...] = ()


@dataclass
class Registrar:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 10
    store: BindingStore | None = None
    _by_aor: dict[str, dict[str, Binding]] = field(default_factory=dict)

    def load(self, now: float) -> int:
        """Restore persisted bindings (those not yet expired). Returns how many."""
        if self.store is None:
            return 0
        n = 0
        for row in self.store.load_registrations():
            b = Binding(**{k: v for k, v in row.items() if k in Binding.__dataclass_fields__})
            if b.expires_at > now and _sip_uri(b.contact):
                self._by_aor.setdefault(b.aor, {})[b.key] = b
                n += 1
            else:
                self.store.delete_registration(b.aor, b.key)
        return n

    def register(self, aor: str, contacts: list[ContactRequest], *, wildcard: bool, header_expires: int | None,
                 call_id: str, cseq: int, transport: str, source_ip: str, source_port: int,
                 user_agent: str, now: float, nat: bool | None = None) -> RegisterResult:
        """`nat`: the SIP layer's NAT finding (None: the Contact differs from the source)."""
        current = self._by_aor.setdefault(aor, {})
        if wildcard:
            # RFC 3261 10.3 step 6: "*" only with Expires: 0 and no other contact
            if contacts or header_expires != 0:
                return RegisterResult(400, "Wildcard Contact requires Expires: 0 and no other Contact")
            removed = tuple(current.values())
            for b in removed:
                self._forget(b)
            current.clear()
            return RegisterResult(200, "OK", (), removed=removed)
        added: list[Binding] = []
        removed: list[Binding] = []
        for c in contacts:
            exp = c.expires if c.expires is not None else header_expires
            if exp is None:
                exp = self.default_expires
            if exp < 0:
                return RegisterResult(400, "Bad Expires value")
            if 0 < exp < self.min_expires:
                return RegisterResult(423, "Interval Too Brief", min_expires=self.min_expires)
        for c in contacts:
            exp = c.expires if c.expires is not None else header_expires
            exp = self.default_expires if exp is None else min(exp, self.max_expires)
            key = c.instance or c.uri
            old = current.get(key)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                continue  # an old or repeated request (RFC 3261 10.3 step 7)
            for stale in [b for k, b in current.items() if k != key and b.contact == c.uri
                          and (b.source_ip, b.source_port) == (source_ip, source_port)]:
                # the same contact from the same address under another instance id: the phone
                # restarted (pyVoIP makes a new +sip.instance each start); the old binding would
                # ring the same phone twice
                del current[stale.key]
                self._forget(stale)
                removed.append(stale)
            if exp == 0:
                if old is not None:
                    del current[key]
                    self._forget(old)
                    removed.append(old)
                continue
            host, port = _contact_hostport(c.uri)
            behind_nat = (host, port) != (source_ip, source_port) if nat is None else nat
            b = Binding(aor, c.uri, transport, source_ip, source_port, now + exp, call_id, cseq, user_agent,
                        c.instance, c.q, behind_nat, old.reachable if old else None, old.rtt_ms if old else None,
                        old.registered_at if old else now)
            current[key] = b
            added.append(b)
            if self.store is not None:
                self.store.save_registration(_row(b))
        # keep the newest bindings when a phone keeps re-registering with new contacts
        if len(current) > self.max_contacts:
            for b in sorted(current.values(), key=lambda x: x.registered_at)[:len(current) - self.max_contacts]:
                del current[b.key]
                self._forget(b)
                removed.append(b)
        return RegisterResult(200, "OK", tuple(self.lookup(aor, now)), added=tuple(added), removed=tuple(removed))

    def lookup(self, aor: str, now: float) -> list[Binding]:
        bindings = self._by_aor.get(aor)
        if not bindings:
            return []
        if len(bindings) == 1:
            b = next(iter(bindings.values()))
            return [b] if b.expires_at > now else []
        return sorted((b for b in bindings.values() if b.expires_at > now),
                      key=lambda b: (-b.q, -b.registered_at))

    def all(self, now: float) -> list[Binding]:
        return [b for aor in sorted(self._by_aor) for b in self.lookup(aor, now)]

    def is_registered(self, aor: str, now: float) -> bool:
        return bool(self.lookup(aor, now))

    def expire(self, now: float) -> list[Binding]:
        gone = []
        for aor, bs in self._by_aor.items():
            for key in [k for k, b in bs.items() if b.expires_at <= now]:
                gone.append(bs.pop(key))
                self._forget(gone[-1])
        return gone

    def get_timer(self) -> float | None:
        times = [b.expires_at for bs in self._by_aor.values() for b in bs.values()]
        return min(times) if times else None

    def set_reachable(self, aor: str, key: str, ok: bool, rtt_ms: float | None) -> Binding | None:
        b = self._by_aor.get(aor, {}).get(key)
        if b is None:
            return None
        nb = replace(b, reachable=ok, rtt_ms=rtt_ms)
        self._by_aor[aor][key] = nb
        return nb

    def _forget(self, b: Binding) -> None:
        if self.store is not None:
            self.store.delete_registration(b.aor, b.key)


def _sip_uri(contact: str) -> bool:
    """Whether a stored contact can be rung: REGISTER takes only sip and sips contacts, but an
    older version stored any URI scheme."""
    try:
        SipUri.parse(contact)
    except SipParseError:
        return False
    return True


_FIELDS = tuple(Binding.__dataclass_fields__)


def _row(b: Binding) -> dict:
    """What the store keeps of a binding (``dataclasses.asdict`` deep-copies: 10 times slower)."""
    row = {name: getattr(b, name) for name in _FIELDS}
    row["key"] = b.key
    return row


def _contact_hostport(uri: str) -> tuple[str, int]:
    """host and port of a SIP URI, good enough for NAT detection (not a full parser)."""
    u = uri.strip().strip("<>")
    if ":" in u:
        u = u.split(":", 1)[1]
    u = u.split(";", 1)[0].split("?", 1)[0]
    if "@" in u:
        u = u.rsplit("@", 1)[1]
    if u.startswith("["):
        host, _, rest = u[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = u.partition(":")
    try:
        return host, int(port) if port else 5060
    except ValueError:
        return host, 5060
