"""Dialogs (RFC 3261 section 12): identity, route set, remote target, CSeq, in-dialog requests.

A :class:`Dialog` is created from the request and response that establish it (UAC or UAS
side), builds the requests that travel inside it (BYE, re-INVITE, UPDATE, INFO, NOTIFY, REFER,
and the ACK of a 2xx) with the right Request-URI and Route headers for loose and strict routing,
and checks the requests it receives. :class:`DialogTable` finds the dialog of an incoming
message; it tolerates phones that put a random To tag on their ACK and on their 200 to a BYE
(pyVoIP) by falling back to Call-ID + From tag when the exact match fails and one dialog fits.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from urllib.parse import quote

from .errors import DialogError
from .headers import Replaces, format_addresses
from .message import SipRequest, SipResponse
from .uri import Address, SipUri, Uri

TARGET_REFRESH = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"))
"""Methods whose Contact replaces the dialog's remote target (RFC 3261 12.2, RFC 6665)."""


@dataclass(frozen=True)
class DialogId:
    """Call-ID + local tag + remote tag (RFC 3261 section 12)."""

    call_id: str
    """Call-ID."""
    local_tag: str
    """Our tag."""
    remote_tag: str
    """The peer's tag."""


class Dialog:
    """One dialog, from our point of view (we are ``uac`` or ``uas``)."""

    def __init__(self, *, call_id: str, local_tag: str, remote_tag: str, local_uri: Address,
                 remote_uri: Address, remote_target: Uri, route_set: list[Address], local_cseq: int,
                 remote_cseq: int | None, role: str, early: bool, local_contact: Address | None = None,
                 secure: bool = False) -> None:
        self.call_id = call_id
        """Call-ID."""
        self.local_tag = local_tag
        """Our tag."""
        self.remote_tag = remote_tag
        """The peer's tag."""
        self.local_uri = local_uri.with_tag(None)
        """Our address-of-record (From of our requests), without tag."""
        self.remote_uri = remote_uri.with_tag(None)
        """The peer's address-of-record (To of our requests), without tag."""
        self.remote_target = remote_target
        """Where in-dialog requests go (the peer's Contact)."""
        self.route_set = route_set
        """Route set, in the order our requests must carry it."""
        self.local_cseq = local_cseq
        """CSeq of the last request we sent in the dialog."""
        self.remote_cseq = remote_cseq
        """CSeq of the last request the peer sent (``None`` before the first)."""
        self.role = role
        """``uac`` or ``uas``: who sent the request that created the dialog."""
        self.early = early
        """True until a 2xx confirms the dialog."""
        self.local_contact = local_contact
        """Our Contact, added to target-refresh requests."""
        self.secure = secure
        """Whether the dialog was created over sips (TLS)."""

    def __repr__(self) -> str:
        state = "early" if self.early else "confirmed"
        return f"<Dialog {self.role} {self.call_id} {self.local_tag}/{self.remote_tag} {state}>"

    @property
    def id(self) -> DialogId:
        """The dialog identifier."""
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # --- creation -----------------------------------------------------------------------
    @classmethod
    def from_uas(cls, request: SipRequest, response: SipResponse, *,
                 local_contact: Address | None = None) -> Dialog:
        """The dialog a UAS creates when it answers ``request`` with ``response`` (101-299 with
        a To tag), RFC 3261 section 12.1.1."""
        tag = response.to_tag
        remote_tag = request.from_tag
        if not tag or not 100 < response.status < 300:
            raise DialogError(500, "a dialog needs a 101-299 response with a To tag")
        if not remote_tag:
            raise DialogError(400, "request has no From tag")
        contacts = request.contacts
        if not contacts:
            raise DialogError(400, "Missing Contact header")
        return cls(call_id=request.call_id, local_tag=tag, remote_tag=remote_tag,
                   local_uri=request.to_addr, remote_uri=request.from_addr,
                   remote_target=contacts[0].uri, route_set=list(request.record_routes),
                   local_cseq=0, remote_cseq=request.cseq.seq, role="uas",
                   early=response.status < 200, local_contact=local_contact or _first(response.contacts),
                   secure=request.uri.scheme == "sips")

    @classmethod
    def from_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a UAC gets from ``response`` (101-299 with a To tag) to ``request``,
        RFC 3261 section 12.1.2."""
        tag = response.to_tag
        if not tag or not 100 < response.status < 300:
            raise DialogError(500, "a dialog needs a 101-299 response with a To tag")
        contacts = response.contacts
        if not contacts and response.status >= 200:
            raise DialogError(400, "Missing Contact header")
        target = contacts[0].uri if contacts else request.uri
        return cls(call_id=request.call_id, local_tag=request.from_tag or "", remote_tag=tag,
                   local_uri=request.from_addr, remote_uri=request.to_addr, remote_target=target,
                   route_set=list(reversed(response.record_routes)), local_cseq=request.cseq.seq,
                   remote_cseq=None, role="uac", early=response.status < 200,
                   local_contact=_first(request.contacts), secure=request.uri.scheme == "sips")

    # --- requests we send ------------------------------------------------------------------
    def create_request(self, method: str, *, headers: Iterable[tuple[str, str]] = (),
                       body: bytes = b"", content_type: str | None = None) -> SipRequest:
        """An in-dialog request (RFC 3261 section 12.2.1.1); CSeq is incremented except for
        ACK and CANCEL. The transaction layer adds the Via when it is sent."""
        if method in ("ACK", "CANCEL"):
            raise DialogError(500, f"use create_ack() or make_cancel() for {method}")
        self.local_cseq += 1
        return self._build(method, self.local_cseq, headers, body, content_type)

    def create_ack(self, invite: SipRequest, *, body: bytes = b"",
                   content_type: str | None = None) -> SipRequest:
        """The ACK of a 2xx to ``invite`` (RFC 3261 section 13.2.2.4): CSeq number of the INVITE,
        credentials of the INVITE, a new branch (added when sent)."""
        extra = [(name, value) for name, value in invite.headers
                 if name in ("Authorization", "Proxy-Authorization")]
        return self._build("ACK", invite.cseq.seq, extra, body, content_type)

    def _build(self, method: str, cseq: int, headers: Iterable[tuple[str, str]], body: bytes,
               content_type: str | None) -> SipRequest:
        route = list(self.route_set)
        uri: Uri = self.remote_target
        first = route[0].uri if route else None
        if isinstance(first, SipUri) and not first.lr:
            route.pop(0)
            route.append(Address(self.remote_target))
            uri = replace(first.without_params("method", "maddr", "ttl", "transport", "lr"), headers=())
        req = SipRequest(method, uri)
        h = req.headers
        h.add("Max-Forwards", "70")
        if route:
            h.add("Route", format_addresses(route))
        h.add("From", str(self.local_uri.with_tag(self.local_tag)))
        h.add("To", str(self.remote_uri.with_tag(self.remote_tag)))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        if method in TARGET_REFRESH and self.local_contact is not None:
            h.add("Contact", str(self.local_contact))
        for name, value in headers:
            h.add(name, value)
        if body or content_type:
            req.set_body(body, content_type)
        return req

    # --- messages we receive ---------------------------------------------------------------
    def receive_request(self, request: SipRequest) -> None:
        """Check and record an in-dialog request (RFC 3261 section 12.2.2).

        Raises :class:`DialogError` (500) when its CSeq is lower than the last one (ACK and
        CANCEL reuse the INVITE's number and are exempt); a target-refresh request updates the
        remote target.
        """
        seq = request.cseq.seq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_cseq is not None and seq <= self.remote_cseq:
                raise DialogError(500, "CSeq out of order")
            self.remote_cseq = seq
        if request.method in TARGET_REFRESH:
            contacts = request.contacts
            if contacts:
                self.remote_target = contacts[0].uri

    def receive_response(self, request: SipRequest, response: SipResponse) -> None:
        """Update the dialog from a response to a request it sent: a 2xx confirms an early
        dialog (and fixes its route set) and a 2xx to a target-refresh request moves the remote
        target."""
        if not 200 <= response.status < 300:
            return
        if self.early and request.method == "INVITE":
            self.early = False
            if self.role == "uac":
                self.route_set = list(reversed(response.record_routes))
        if request.method in TARGET_REFRESH:
            contacts = response.contacts
            if contacts:
                self.remote_target = contacts[0].uri

    def confirm(self) -> None:
        """Mark the dialog confirmed (the UAS sent its 2xx)."""
        self.early = False

    def replaces(self, *, early_only: bool = False) -> Replaces:
        """The Replaces value naming this dialog to our peer (RFC 3891 section 3): to-tag is the
        peer's tag (its local tag), from-tag is ours."""
        return Replaces(self.call_id, self.remote_tag, self.local_tag, early_only)


def _first(addresses: list[Address]) -> Address | None:
    return addresses[0] if addresses else None


def refer_to(target: Uri, replaces: Replaces | None = None) -> str:
    """A Refer-To value; with ``replaces`` (attended transfer) the Replaces header is embedded
    in the URI, escaped (RFC 3891 section 6.1)."""
    if replaces is None:
        return f"<{target}>"
    value = quote(str(replaces), safe="")
    sep = "&" if "?" in str(target) else "?"
    return f"<{target}{sep}Replaces={value}>"


class DialogTable:
    """The dialogs of one endpoint, found by the messages that belong to them."""

    def __init__(self) -> None:
        self._by_id: dict[DialogId, Dialog] = {}
        self._by_remote: dict[tuple[str, str], list[Dialog]] = {}
        self._by_local: dict[tuple[str, str], list[Dialog]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._by_id.values()))

    def add(self, dialog: Dialog) -> None:
        """Register a dialog (replacing one with the same identifier)."""
        old = self._by_id.get(dialog.id)
        if old is not None:
            self.remove(old)
        self._by_id[dialog.id] = dialog
        self._by_remote.setdefault((dialog.call_id, dialog.remote_tag), []).append(dialog)
        self._by_local.setdefault((dialog.call_id, dialog.local_tag), []).append(dialog)

    def remove(self, dialog: Dialog) -> None:
        """Forget a dialog (no error when it is unknown)."""
        if self._by_id.pop(dialog.id, None) is None:
            return
        for index, key in ((self._by_remote, (dialog.call_id, dialog.remote_tag)),
                           (self._by_local, (dialog.call_id, dialog.local_tag))):
            lst = index[key]
            lst.remove(dialog)
            if not lst:
                del index[key]

    def get(self, dialog_id: DialogId) -> Dialog | None:
        """The dialog with this identifier."""
        return self._by_id.get(dialog_id)

    def match_replaces(self, replaces: Replaces) -> Dialog | None:
        """The dialog an INVITE with Replaces wants to replace (its to-tag is our tag)."""
        return self._by_id.get(DialogId(replaces.call_id, replaces.to_tag, replaces.from_tag))

    def match_request(self, request: SipRequest, *, tolerant: bool = True) -> Dialog | None:
        """The dialog an incoming request belongs to (To tag = ours, From tag = theirs).

        With ``tolerant``, a request whose To tag matches nothing still finds the one dialog
        with its Call-ID and From tag (pyVoIP's ACK with a random To tag).
        """
        to_tag, from_tag = request.to_tag, request.from_tag
        if to_tag is None or from_tag is None:
            return None
        found = self._by_id.get(DialogId(request.call_id, to_tag, from_tag))
        if found is not None or not tolerant:
            return found
        candidates = self._by_remote.get((request.call_id, from_tag), [])
        return candidates[0] if len(candidates) == 1 else None

    def match_response(self, response: SipResponse, *, tolerant: bool = True) -> Dialog | None:
        """The dialog a response to our in-dialog request belongs to (From tag = ours, To tag =
        theirs); with ``tolerant``, a random To tag (pyVoIP's 200 to BYE) still matches the one
        dialog with this Call-ID and our From tag."""
        from_tag, to_tag = response.from_tag, response.to_tag
        if from_tag is None:
            return None
        if to_tag is not None:
            found = self._by_id.get(DialogId(response.call_id, from_tag, to_tag))
            if found is not None or not tolerant:
                return found
        elif not tolerant:
            return None
        candidates = self._by_local.get((response.call_id, from_tag), [])
        return candidates[0] if len(candidates) == 1 else None


__all__ = ["TARGET_REFRESH", "Dialog", "DialogId", "DialogTable", "refer_to"]
