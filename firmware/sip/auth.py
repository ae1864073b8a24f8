"""Digest authentication for SIP: RFC 3261 section 22, RFC 7616 hashes, RFC 8760 for SIP.

Server side (:class:`DigestServer`): challenges in a configurable algorithm order (default MD5
then SHA-256: many desk phones and tools answer only the first challenge), ``qop=auth`` offered
but RFC 2069 answers without qop accepted (pyVoIP ignores qop), stateless nonces bound to this
box (an HMAC of their timestamp under the box secret) that expire (``stale=true`` when an
otherwise correct answer uses an expired nonce), nonce-count replay protection, constant-time
comparisons, and one identical challenge whether the user exists or the password was wrong.
Secrets are HA1 values (``H(username:realm:password)``), never passwords.

Client side (:class:`DigestClient`): answers a 401/407 with the first challenge whose algorithm
it supports, with ``qop=auth``, a cnonce and a per-nonce count.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ._entropy import token_hex
from .errors import AuthError, SipParseError
from .headers import Credentials, format_auth, new_branch
from .message import SipRequest, SipResponse, make_response

ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda b: hashlib.md5(b).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
    "SHA-512-256": lambda b: hashlib.new("sha512_256", b).hexdigest(),
}
"""Supported digest algorithms (RFC 7616 section 6.1) and their hex hash functions."""

HA1_KEYS = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512-256"}
"""Key of each algorithm in a :class:`DigestCredentials` ``ha1`` mapping."""


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8"))


def canonical_algorithm(name: str | None) -> str | None:
    """``MD5``/``SHA-256``/``SHA-512-256`` for any spelling (absent means MD5), else ``None``."""
    if name is None:
        return "MD5"
    key = name.strip().upper().replace("_", "-")
    key = {"SHA256": "SHA-256", "SHA512-256": "SHA-512-256"}.get(key, key)
    return key if key in ALGORITHMS else None


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """``H(username:realm:password)`` as lower-case hex (RFC 7616 section 3.4.2)."""
    return _h(algorithm, f"{username}:{realm}:{password}")


def digest_response(algorithm: str, ha1_hex: str, method: str, uri: str, nonce: str,
                    qop: str | None = None, nc: str | None = None, cnonce: str | None = None) -> str:
    """The ``response`` value: with ``qop=auth`` per RFC 7616 3.4.1, without it per RFC 2069."""
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1_hex}:{nonce}:{ha2}")


class DigestCredentials(Protocol):
    """What the server needs per user (the config store's ``SipCredentials`` fits)."""

    ha1: dict[str, str]
    """Algorithm key (``md5``, ``sha256``, ``sha512-256``) -> hex HA1."""


@dataclass(frozen=True)
class PasswordCredentials:
    """Credentials computed from a clear password (tests, trunks)."""

    ha1: dict[str, str]
    """Algorithm key -> hex HA1."""

    @classmethod
    def of(cls, username: str, realm: str, password: str) -> PasswordCredentials:
        """HA1 for every supported algorithm."""
        return cls({HA1_KEYS[a]: ha1(username, realm, password, a) for a in ALGORITHMS})


@dataclass(frozen=True)
class AuthResult:
    """Outcome of :meth:`DigestServer.verify`.

    Whatever the reason, a failed request is answered with :meth:`DigestServer.challenge`
    (with ``stale=result.stale``) so a scanner cannot tell unknown users from wrong passwords.
    ``reason`` is for the log and the brute-force counter.
    """

    ok: bool
    """Whether the request is authenticated."""
    reason: str
    """``ok``, ``no credentials``, ``malformed credentials``, ``unsupported algorithm``,
    ``realm mismatch``, ``invalid nonce``, ``unknown user``, ``wrong password``,
    ``stale nonce``, ``nonce count replay``, ``qop required``."""
    username: str | None = None
    """The username the client claimed (``None`` when it sent none)."""
    stale: bool = False
    """Challenge again with ``stale=true``: right password, expired nonce."""
    algorithm: str | None = None
    """Algorithm used by the client."""

    @property
    def failed_attempt(self) -> bool:
        """Whether this counts as a failed login for brute-force protection (a first request
        without credentials and a stale nonce do not)."""
        return not self.ok and self.reason not in ("no credentials", "stale nonce")


_DUMMY_HA1 = {k: "0" * 64 for k in HA1_KEYS.values()}


@dataclass
class DigestServer:
    """Issues and checks digest challenges for one realm."""

    realm: str
    """The realm (shown by phones; part of HA1)."""
    secret: bytes
    """Box secret that binds nonces to this box (the config store's box secret)."""
    algorithms: tuple[str, ...] = ("MD5", "SHA-256")
    """Challenges offered, in order. ``("SHA-256",)`` for SHA-256-only phones."""
    nonce_ttl: float = 300.0
    """Seconds a nonce stays valid; older ones get ``stale=true``."""
    qop: bool = True
    """Offer ``qop="auth"``."""
    allow_rfc2069: bool = True
    """Accept answers without qop (pyVoIP and old phones)."""
    max_tracked_nonces: int = 20000
    """Nonce counts remembered for replay protection (oldest forgotten first)."""
    _nc: OrderedDict[str, int] = field(default_factory=OrderedDict, repr=False)
    _templates: dict[tuple, list[tuple[str, str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        bad = [a for a in self.algorithms if canonical_algorithm(a) is None]
        if bad or not self.algorithms:
            raise AuthError(f"unsupported digest algorithm(s): {', '.join(bad) or 'none given'}")
        self.algorithms = tuple(canonical_algorithm(a) or "" for a in self.algorithms)

    # --- nonces -------------------------------------------------------------------------
    def make_nonce(self, now: float) -> str:
        """A fresh nonce: ``<hex seconds>.<random>.<hmac>``."""
        ts = f"{int(now):x}"
        rand = token_hex(8)
        return f"{ts}.{rand}.{self._mac(ts, rand)}"

    def _mac(self, ts: str, rand: str) -> str:
        return hmac.new(self.secret, f"{ts}.{rand}.{self.realm}".encode(), hashlib.sha256).hexdigest()[:32]

    def _nonce_time(self, nonce: str) -> int | None:
        parts = nonce.split(".")
        if len(parts) != 3 or not all(parts):
            return None
        ts, rand, mac = parts
        if not hmac.compare_digest(self._mac(ts, rand), mac):
            return None
        return int(ts, 16)

    # --- challenges ---------------------------------------------------------------------
    def challenge_values(self, now: float, *, stale: bool = False,
                         algorithms: Iterable[str] | None = None) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, one per algorithm, one shared nonce."""
        nonce = self.make_nonce(now)
        algs = self._algorithms(algorithms)
        key = (algs, stale, self.qop, self.realm)
        parts = self._templates.get(key)
        if parts is None:
            parts = []
            for alg in algs:
                params = [("realm", self.realm), ("nonce", "\0")]
                if self.qop:
                    params.append(("qop", "auth"))
                params.append(("algorithm", alg))
                if stale:
                    params.append(("stale", "true"))
                head, _, tail = format_auth("Digest", params, quote_qop=True).partition("\0")
                parts.append((head, tail))
            if len(self._templates) < 64:
                self._templates[key] = parts
        return [head + nonce + tail for head, tail in parts]

    def challenge(self, request: SipRequest, now: float, *, stale: bool = False, proxy: bool = False,
                  algorithms: Iterable[str] | None = None, to_tag: str | None = None) -> SipResponse:
        """The 401 (or 407 with ``proxy``) answering ``request``."""
        resp = make_response(request, 407 if proxy else 401, to_tag=to_tag)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for value in self.challenge_values(now, stale=stale, algorithms=algorithms):
            resp.headers.add(name, value)
        return resp

    def _algorithms(self, algorithms: Iterable[str] | None) -> tuple[str, ...]:
        if algorithms is None:
            return self.algorithms
        out = tuple(a for a in (canonical_algorithm(x) for x in algorithms) if a)
        if not out:
            raise AuthError("no supported digest algorithm selected")
        return out

    # --- verification -------------------------------------------------------------------
    def verify(self, request: SipRequest, lookup: Callable[[str], DigestCredentials | None],
               now: float, *, proxy: bool = False,
               algorithms: Iterable[str] | None = None) -> AuthResult:
        """Check the Authorization (or Proxy-Authorization) of ``request``.

        ``lookup(username)`` returns the user's credentials or ``None``; ``algorithms``
        restricts what is accepted (default: the server's list).
        """
        allowed = self._algorithms(algorithms)
        try:
            all_creds = request.proxy_authorization if proxy else request.authorization
        except SipParseError:
            return AuthResult(False, "malformed credentials")
        mine = [c for c in all_creds if c.scheme.lower() == "digest"]
        if not mine:
            return AuthResult(False, "no credentials")
        ours = [c for c in mine if c.params.get("realm") == self.realm] or mine
        cred = next((c for c in ours if canonical_algorithm(c.params.get("algorithm")) in allowed), None)
        if cred is None:
            return AuthResult(False, "unsupported algorithm", ours[0].params.get("username"))
        return self._check(request, cred, lookup, now)

    def _check(self, request: SipRequest, cred: Credentials,
               lookup: Callable[[str], DigestCredentials | None], now: float) -> AuthResult:
        p = cred.params
        username = p.get("username")
        alg = canonical_algorithm(p.get("algorithm")) or "MD5"
        if not username or not all(p.get(k) for k in ("nonce", "uri", "response")):
            return AuthResult(False, "malformed credentials", username, algorithm=alg)
        if p.get("realm") != self.realm:
            return AuthResult(False, "realm mismatch", username, algorithm=alg)
        qop = p.get("qop")
        nc = p.get("nc")
        cnonce = p.get("cnonce")
        if qop is not None:
            if qop.lower() != "auth" or not nc or not cnonce or len(nc) != 8:
                return AuthResult(False, "malformed credentials", username, algorithm=alg)
            try:
                nc_value = int(nc, 16)
            except ValueError:
                return AuthResult(False, "malformed credentials", username, algorithm=alg)
        elif not self.allow_rfc2069:
            return AuthResult(False, "qop required", username, algorithm=alg)
        nonce = p["nonce"]
        issued = self._nonce_time(nonce)
        if issued is None:
            return AuthResult(False, "invalid nonce", username, algorithm=alg)
        creds = lookup(username)
        table = creds.ha1 if creds is not None else _DUMMY_HA1
        secret_ha1 = table.get(HA1_KEYS[alg], _DUMMY_HA1[HA1_KEYS[alg]])
        expected = digest_response(alg, secret_ha1, request.method, p["uri"], nonce, qop, nc, cnonce)
        match = hmac.compare_digest(expected, p["response"].lower())
        if creds is None:
            return AuthResult(False, "unknown user", username, algorithm=alg)
        if not match or HA1_KEYS[alg] not in creds.ha1:
            return AuthResult(False, "wrong password", username, algorithm=alg)
        if now - issued > self.nonce_ttl or issued - now > 60:
            return AuthResult(False, "stale nonce", username, stale=True, algorithm=alg)
        if qop is not None:
            last = self._nc.get(nonce, 0)
            if nc_value <= last:
                return AuthResult(False, "nonce count replay", username, algorithm=alg)
            self._nc[nonce] = nc_value
            self._nc.move_to_end(nonce)
            while len(self._nc) > self.max_tracked_nonces:
                self._nc.popitem(last=False)
        return AuthResult(True, "ok", username, algorithm=alg)


class DigestClient:
    """Answers digest challenges for one account (SIP trunks, tests)."""

    def __init__(self, username: str, password: str, *,
                 algorithms: Iterable[str] = ("MD5", "SHA-256", "SHA-512-256")) -> None:
        self.username = username
        self.password = password
        self.algorithms = tuple(a for a in (canonical_algorithm(x) for x in algorithms) if a)
        """Algorithms this client may use."""
        self._nc: dict[str, int] = {}

    def authorization(self, request: SipRequest, challenge: Credentials) -> str:
        """The Authorization value answering ``challenge`` for ``request``."""
        p = challenge.params
        alg = canonical_algorithm(p.get("algorithm"))
        if challenge.scheme.lower() != "digest" or alg is None or alg not in self.algorithms:
            raise AuthError(f"cannot answer a {challenge.scheme} {p.get('algorithm', 'MD5')} challenge")
        realm, nonce = p.get("realm"), p.get("nonce")
        if realm is None or nonce is None:
            raise AuthError("challenge without realm or nonce")
        uri = str(request.uri)
        key = ha1(self.username, realm, self.password, alg)
        qops = [q.strip().lower() for q in p.get("qop", "").split(",") if q.strip()]
        params = [("username", self.username), ("realm", realm), ("nonce", nonce), ("uri", uri)]
        if "auth" in qops:
            count = self._nc.get(nonce, 0) + 1
            self._nc[nonce] = count
            nc = f"{count:08x}"
            cnonce = secrets.token_hex(8)
            response = digest_response(alg, key, request.method, uri, nonce, "auth", nc, cnonce)
            params += [("response", response), ("algorithm", alg), ("qop", "auth"), ("nc", nc),
                       ("cnonce", cnonce)]
        elif qops:
            raise AuthError(f"unsupported qop {p.get('qop')}")
        else:
            response = digest_response(alg, key, request.method, uri, nonce)
            params += [("response", response), ("algorithm", alg)]
        if "opaque" in p:
            params.append(("opaque", p["opaque"]))
        return format_auth("Digest", params)

    def authorize(self, request: SipRequest, response: SipResponse) -> SipRequest:
        """A new request answering the 401/407 ``response`` to ``request``.

        The copy has CSeq + 1, a fresh Via branch and an Authorization (or Proxy-Authorization)
        for the first challenge whose algorithm this client supports (RFC 7616 section 3.7).
        """
        proxy = response.status == 407
        challenges = response.proxy_authenticate if proxy else response.www_authenticate
        chosen = next((c for c in challenges if c.scheme.lower() == "digest"
                       and canonical_algorithm(c.params.get("algorithm")) in self.algorithms), None)
        if chosen is None:
            raise AuthError("no challenge this client can answer")
        new = SipRequest(request.method, request.uri, request.headers.copy(), request.body)
        header = "Proxy-Authorization" if proxy else "Authorization"
        new.headers.remove(header)
        new.headers.add(header, self.authorization(new, chosen))
        new.headers.set("CSeq", f"{request.cseq.seq + 1} {request.method}")
        if "via" in new.headers:
            new.set_top_via(new.top_via.with_params(branch=new_branch()))
        return new
