"""The transaction layer (RFC 3261 section 17, RFC 6026), sans-I/O.

The layer is driven by three things only: messages handed to :meth:`TransactionLayer.receive`
(or raw datagrams to :meth:`~TransactionLayer.receive_datagram`), calls from the TU
(:meth:`~TransactionLayer.send_request`, :meth:`~TransactionLayer.send_response`...), and the
clock passed as ``now`` to every call. It never reads a clock or touches a socket: what it wants
sent is fetched with :meth:`~TransactionLayer.messages_to_send`, what happened with
:meth:`~TransactionLayer.next_event`, and when it next needs to run with
:meth:`~TransactionLayer.get_timer` / :meth:`~TransactionLayer.handle_timer`.

Beyond section 17 the layer does the work every UA core needs and that is easy to get wrong:

* ``received``/``rport`` on the top Via of incoming requests (RFC 3581); responses go back to
  the source address (``force_rport``, on by default, for phones behind NAT);
* a 100 Trying for every INVITE, and 416 for Request-URI schemes the box cannot handle;
* CANCEL (section 9): 200 or 481 to the CANCEL, 487 to a pending INVITE, a
  :class:`CancelReceived` event; on the client side a CANCEL is held back until a provisional
  response arrives, and dropped if a final one arrives first (the CANCEL/200 race);
* 2xx retransmission until the ACK arrives (section 13.3.1.4), ACKs matched by Call-ID, CSeq and
  From tag only, so phones that put a random To tag on their ACK (pyVoIP) still stop it;
* server transactions keyed with the CSeq number too, so a phone that reuses one Via branch
  for a new request (pyVoIP after a 401) gets a new transaction, not a retransmitted answer,
  with the From tag, so a phone that repeats its branches after a restart (pyVoIP derives them
  from a counter) is not taken for a retransmission, and with the source address, so two
  phones whose branches collide stay apart;
* ``accept_request``: a post-parse filter that drops a request silently (scanner user agents);
  a non-INVITE request the TU never answers is forgotten after 64*T1 (timer Z);
* ``overload``: an :class:`~firmware.sip.overload.OverloadGuard` asked before each new
  out-of-dialog request; when it refuses, the layer answers 503 with Retry-After itself (the
  transaction absorbs the retransmissions) and the TU only sees a ``MessageRejected``.

The 2xx retransmission above is the TU's job in RFC 6026; the layer does it for the TU, which
must therefore send a 2xx once and not repeat it.
"""
from __future__ import annotations

import heapq
import itertools
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._states import INITIAL, TIMER_INPUTS, TIMERS, TRANSITIONS, Action, Input, Kind, State
from .errors import SipParseError, TransactionError
from .events import (
    AckReceived,
    AckTimeout,
    Addr,
    CancelReceived,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimeout,
    TransportError,
)
from .headers import Via, new_branch, new_tag
from .message import (
    MAX_MESSAGE_SIZE,
    Message,
    SipRequest,
    SipResponse,
    make_ack_for_error,
    make_cancel,
    make_error_response,
    make_response,
    parse_message,
)
from .overload import OverloadGuard

__all__ = ["ClientTransaction", "Kind", "ServerTransaction", "State", "Timers", "TransactionLayer"]

_TU_INPUTS = frozenset((Input.SEND_1XX, Input.SEND_2XX, Input.SEND_FINAL))
# States in which a transaction only waits out its timer (J, K, H/I, L, M: up to 64*T1) to absorb
# retransmissions: it then needs its bytes and keys, not the parsed forms of its messages.
_WAITING = frozenset((State.COMPLETED, State.CONFIRMED, State.ACCEPTED))


@dataclass
class Timers:
    """RFC 3261 timer values, in seconds."""

    t1: float = 0.5
    """RTT estimate: first retransmission interval."""
    t2: float = 4.0
    """Longest retransmission interval of non-INVITE requests and INVITE responses."""
    t4: float = 5.0
    """Longest time a message stays in the network."""
    timer_c: float | None = None
    """If set, an INVITE without final response for this long (renewed by each provisional)
    raises ``TransactionTimeout(timer="C")`` so the TU can CANCEL it (RFC 3261 16.6: > 180)."""


class _TimerOwner:
    """Something with named timers in the layer's heap."""

    def __init__(self) -> None:
        self.timers: dict[str, int] = {}
        self.intervals: dict[str, float] = {}


class Transaction(_TimerOwner):
    """State shared by client and server transactions. Read-only for the TU."""

    kind: Kind
    state: State
    request: SipRequest
    reliable: bool

    @property
    def method(self) -> str:
        """Method of the request that created the transaction."""
        return self.request.method

    @property
    def branch(self) -> str | None:
        """Via branch of the request."""
        return self.request.top_via.branch

    @property
    def terminated(self) -> bool:
        """Whether the transaction is over and forgotten by the layer."""
        return self.state is State.TERMINATED


class ClientTransaction(Transaction):
    """A request we sent and its responses."""

    def __init__(self, kind: Kind, request: SipRequest, dest: Addr, key: tuple[str, str]) -> None:
        super().__init__()
        self.kind = kind
        self.request = request
        self.dest = dest
        """Where the request goes."""
        self.key = key
        self.reliable = dest.reliable
        self.state = State.CALLING
        self.request_bytes = b""
        self.ack_bytes = b""
        self.last_response: SipResponse | None = None
        """The last response received (until the transaction only waits out its timer)."""
        self.cancel_pending: str | None = None
        self.cancel_transaction: ClientTransaction | None = None
        """The CANCEL sent for this INVITE, once sent."""

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.method} {self.key[0]} {self.state.value}>"


class ServerTransaction(Transaction):
    """A request we received and our responses to it."""

    def __init__(self, kind: Kind, request: SipRequest, source: Addr, key: tuple[object, ...],
                 response_dest: Addr) -> None:
        super().__init__()
        self.kind = kind
        self.request = request
        self.source = source
        """Where the request came from."""
        self.key = key
        self.response_dest = response_dest
        """Where responses go (RFC 3261 18.2.2 and RFC 3581)."""
        self.reliable = source.reliable
        self.state = State.TRYING
        self.last_response: SipResponse | None = None
        """The last response sent (until the transaction only waits out its timer)."""
        self.response_bytes = b""
        self.to_tag: str | None = None
        """The To tag of our responses (set by the first response with one)."""

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {self.key[0]} {self.state.value}>"


class _AckWait(_TimerOwner):
    """Retransmits a 2xx to an INVITE until the ACK comes (RFC 3261 section 13.3.1.4)."""

    def __init__(self, txn: ServerTransaction, key: tuple[str, int, str | None], data: bytes) -> None:
        super().__init__()
        self.txn = txn
        self.key = key
        self.data = data
        self.acked = False


_Owner = ClientTransaction | ServerTransaction | _AckWait
_Completed = tuple[float, bytes, str, str, int, "weakref.ReferenceType[ServerTransaction]"]


def _server_key(req: SipRequest, method: str | None = None) -> tuple[object, ...]:
    """RFC 3261 17.2.3 matching, plus the CSeq number (phones reusing a branch), the From tag
    (a retransmission repeats it; a phone whose branches and Call-IDs come from a counter that
    starts again after a reboot sends the same branch with a new tag) and the source that
    :meth:`TransactionLayer._stamp_via` wrote into the Via (clients whose branches collide)."""
    via = req.top_via
    m = method or ("INVITE" if req.method == "ACK" else req.method)
    source = (via.params.get("received"), via.params.get("rport"))
    if via.rfc3261:
        return (via.branch, via.sent_by.lower(), via.transport, m, req.cseq.seq, req.from_tag, source)
    return ("2543", str(req.uri), req.from_tag, req.call_id, req.cseq.seq, via.sent_by.lower(),
            via.branch, m, source)


class TransactionLayer:
    """All transactions of one SIP endpoint. See the module docstring for the contract."""

    def __init__(self, *, timers: Timers | None = None, force_rport: bool = True,
                 auto_trying: bool = True, uri_schemes: Iterable[str] = ("sip", "sips", "tel"),
                 max_size: int = MAX_MESSAGE_SIZE,
                 accept_request: Callable[[SipRequest, Addr], bool] | None = None,
                 overload: OverloadGuard | None = None) -> None:
        self.timers = timers or Timers()
        self.force_rport = force_rport
        """Answer every request at its source address and port, rport or not."""
        self.auto_trying = auto_trying
        """Send 100 Trying as soon as an INVITE arrives."""
        self.uri_schemes = frozenset(uri_schemes)
        """Request-URI schemes accepted; others get 416."""
        self.max_size = max_size
        self.accept_request = accept_request
        """Called with each new request (not retransmissions, ACKs or CANCELs) before anything
        else happens; ``False`` drops it silently: no transaction, no 100 Trying, no event but a
        ``MessageRejected(status=None, reason="filtered")``. For scanner user agents."""
        self.overload = overload
        """Admission control of new out-of-dialog requests (``None``: admit everything)."""
        self._unanswered: set[ServerTransaction] = set()
        self._z: OrderedDict[ServerTransaction, float] = OrderedDict()
        """Timer Z of each unanswered non-INVITE request, in arrival order (one interval for
        all, so the first is due first). Kept out of the heap: a stale heap entry would hold a
        transaction the TU ended at once (a stateless challenge) and its request for 64*T1."""
        self._client: dict[tuple[str, str], ClientTransaction] = {}
        self._server: dict[tuple[object, ...], ServerTransaction] = {}
        self._completed: OrderedDict[tuple[object, ...], _Completed] = OrderedDict()
        """Answered non-INVITE requests waiting out timer J, in answer order (one interval for
        all, so the first is due first): key -> (due, final response bytes, transport, host,
        port, weak reference to the transaction). A registration storm leaves thousands of
        these for 64*T1; as bytes and a weak reference they are two objects each for the
        garbage collector instead of the transaction with its request, Via, URI and timers."""
        self._ack_waits: dict[tuple[str, int, str | None], _AckWait] = {}
        self._events: deque[SipEvent] = deque()
        self._out: list[tuple[bytes, Addr]] = []
        self._heap: list[tuple[float, int, _Owner, str, int]] = []
        self._seq = itertools.count()
        self._sent_by: dict[str, tuple[str, int]] = {}
        self.stats: dict[str, int] = {
            "requests": 0, "responses": 0, "retransmissions_absorbed": 0,
            "retransmissions_sent": 0, "stray_responses": 0, "rejected": 0, "overload_rejected": 0,
            "stateless_finals": 0,
        }
        """Counters for monitoring."""

    # --- configuration ----------------------------------------------------------------
    def set_sent_by(self, transport: str, host: str, port: int) -> None:
        """The address written in the Via of requests we send over ``transport``."""
        self._sent_by[transport.lower()] = (host, port)

    # --- inspection -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._client) + len(self._server) + len(self._completed)

    @property
    def pending(self) -> int:
        """Requests received and not answered with a final response yet."""
        return len(self._unanswered)

    def find_server_transaction(self, request: SipRequest) -> ServerTransaction | None:
        """The live server transaction of ``request``, or ``None``."""
        return self._server.get(_server_key(request))

    # --- I/O-facing API ---------------------------------------------------------------
    def next_event(self) -> SipEvent | None:
        """The oldest pending event, or ``None``."""
        return self._events.popleft() if self._events else None

    def messages_to_send(self, now: float | None = None) -> list[tuple[bytes, Addr]]:
        """Every datagram/segment queued since the last call, with its destination."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (absolute time), or ``None``."""
        heap = self._heap
        due = None
        while heap:
            _, _, owner, name, token = heap[0]
            if owner.timers.get(name) == token:
                due = heap[0][0]
                break
            heapq.heappop(heap)
        if self._z:
            z = next(iter(self._z.values()))
            if due is None or z < due:
                due = z
        if self._completed:
            j = next(iter(self._completed.values()))[0]
            if due is None or j < due:
                due = j
        return due

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        zs = self._z
        while zs:
            txn, due = next(iter(zs.items()))
            if due > now:
                break
            del zs[txn]
            self._apply(txn, Input.TIMER_Z, now)
        done = self._completed
        while done:
            key, entry = next(iter(done.items()))
            if entry[0] > now:
                break
            del done[key]
            txn = entry[5]()
            if txn is not None:  # the TU still holds it: it ends now, as timer J says
                txn.state = State.TERMINATED
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, owner, name, token = heapq.heappop(heap)
            if owner.timers.get(name) != token:
                continue
            del owner.timers[name]
            if isinstance(owner, _AckWait):
                self._ack_wait_timer(owner, name, now)
            else:
                self._apply(owner, TIMER_INPUTS[name], now)

    def receive_datagram(self, data: bytes, source: Addr, now: float) -> None:
        """Parse one datagram and :meth:`receive` it; malformed ones are answered or dropped."""
        try:
            msg = parse_message(data, max_size=self.max_size)
        except SipParseError as e:
            self.reject(e, source)
            return
        self.receive(msg, source, now)

    def reject(self, error: SipParseError, source: Addr) -> None:
        """Answer a request that failed to parse (if the RFC wants an answer) and report it."""
        resp = make_error_response(error)
        if resp is not None:
            self._out.append((resp.serialize(), source))
        self.stats["rejected"] += 1
        self._events.append(MessageRejected(source, resp.status if resp else None, error.reason))

    def receive(self, msg: Message, source: Addr, now: float) -> None:
        """Process a parsed message from ``source``."""
        if isinstance(msg, SipResponse):
            self.stats["responses"] += 1
            self._receive_response(msg, now)
            return
        self.stats["requests"] += 1
        self._stamp_via(msg, source)
        if msg.method == "ACK":
            self._receive_ack(msg, source, now)
            return
        key = _server_key(msg)
        txn = self._server.get(key)
        if txn is not None:
            self.stats["retransmissions_absorbed"] += 1
            self._apply(txn, Input.REQUEST, now)
            return
        done = self._completed.get(key)
        if done is not None:
            # a completed non-INVITE transaction: resend its final response (RFC 3261 17.2.2)
            self.stats["retransmissions_absorbed"] += 1
            self.stats["retransmissions_sent"] += 1
            self._out.append((done[1], Addr(done[2], done[3], done[4])))
            return
        if msg.method == "CANCEL":
            self._receive_cancel(msg, source, key, now)
            return
        if self.accept_request is not None and not self.accept_request(msg, source):
            self.stats["rejected"] += 1
            self._events.append(MessageRejected(source, None, "filtered"))
            return
        kind = Kind.INVITE_SERVER if msg.method == "INVITE" else Kind.NON_INVITE_SERVER
        txn = ServerTransaction(kind, msg, source, key, self._response_dest(msg, source))
        self._server[key] = txn
        if self.overload is not None and msg.to_tag is None and not self.overload.admit(
                now, len(self._unanswered), "authorization" in msg.headers or "proxy-authorization" in msg.headers):
            self.stats["overload_rejected"] += 1
            txn.state = INITIAL[kind][0]
            retry = str(self.overload.retry_after_value())
            self._apply(txn, Input.SEND_FINAL, now, make_response(msg, 503, headers=[("Retry-After", retry)]))
            self._events.append(MessageRejected(source, 503, "overloaded"))
            return
        self._unanswered.add(txn)
        if msg.uri.scheme not in self.uri_schemes:
            txn.state = INITIAL[kind][0]
            self._apply(txn, Input.SEND_FINAL, now, make_response(msg, 416))
            return
        self._start(txn, now)

    def send_request(self, request: SipRequest, dest: Addr, now: float) -> ClientTransaction:
        """Start a client transaction. A missing top Via (or branch) is added."""
        if request.method == "ACK":
            raise TransactionError("an ACK is not a transaction: use send_stateless()")
        if "via" not in request.headers:
            self._add_via(request, dest)
        elif request.top_via.branch is None:
            request.set_top_via(request.top_via.with_params(branch=new_branch()))
        key = (request.top_via.branch or "", request.method)
        if key in self._client:
            raise TransactionError(f"a {request.method} transaction with branch {key[0]} exists")
        kind = Kind.INVITE_CLIENT if request.method == "INVITE" else Kind.NON_INVITE_CLIENT
        txn = ClientTransaction(kind, request, dest, key)
        self._client[key] = txn
        self._start(txn, now)
        return txn

    def cancel(self, invite: ClientTransaction, now: float, reason: str | None = None
               ) -> ClientTransaction | None:
        """CANCEL a pending INVITE (RFC 3261 section 9.1).

        Sent at once after a provisional response; before one, it is held and sent when the
        first provisional arrives. Returns the CANCEL transaction when sent now, ``None`` when
        held or when the INVITE already has a final response. ``reason`` becomes a Reason
        header (``'SIP;cause=200;text="Call completed elsewhere"'``).
        """
        if invite.kind is not Kind.INVITE_CLIENT:
            raise TransactionError("only an INVITE can be cancelled")
        if invite.state is State.CALLING:
            invite.cancel_pending = reason or ""
            return None
        if invite.state is State.PROCEEDING and invite.cancel_transaction is None:
            return self._send_cancel(invite, now, reason)
        return None

    def send_response(self, target: ServerTransaction | SipRequest, response: SipResponse,
                      now: float) -> None:
        """Send ``response`` through the server transaction of ``target``."""
        txn = target if isinstance(target, ServerTransaction) else self._server.get(_server_key(target))
        if txn is None or txn.state is State.TERMINATED:
            raise TransactionError("no live server transaction for this request")
        status = response.status
        inp = Input.SEND_1XX if status < 200 else Input.SEND_2XX if status < 300 else Input.SEND_FINAL
        self._apply(txn, inp, now, response)

    def send_final_stateless(self, txn: ServerTransaction, response: SipResponse) -> None:
        """Answer ``txn`` with a final non-2xx ``response`` and forget it at once, as a stateless
        UAS does (RFC 3261 section 8.2.7; the box's authentication challenges). Nothing is kept
        for the 32 s a completed transaction waits: a retransmitted request is answered anew,
        and the ACK of a challenged INVITE finds no transaction and is dropped by the TU (an
        unanswered client retransmits its INVITE, section 17.1.1.2, so no 407 is lost for good)."""
        if response.status < 300:
            raise TransactionError("only a final non-2xx response can be sent statelessly")
        if txn.state is State.TERMINATED or self._server.get(txn.key) is not txn:
            raise TransactionError("no live server transaction for this request")
        self._out.append((response.serialize(), txn.response_dest))
        self.stats["stateless_finals"] += 1
        self.terminate(txn)

    def terminate(self, txn: ClientTransaction | ServerTransaction) -> None:
        """Forget a transaction at once, sending nothing more (a request the TU decided to
        ignore, a call torn down). Retransmissions of its request then count as new requests."""
        txn.state = State.TERMINATED
        txn.timers.clear()
        if isinstance(txn, ClientTransaction):
            self._client.pop(txn.key, None)
        else:
            if self._server.pop(txn.key, None) is None:
                done = self._completed.get(txn.key)
                if done is not None and done[5]() is txn:
                    del self._completed[txn.key]
            self._unanswered.discard(txn)
            self._z.pop(txn, None)

    def send_stateless(self, message: Message, dest: Addr) -> None:
        """Send a message outside any transaction (the ACK of a 2xx, for instance); a request
        without Via gets one with a fresh branch."""
        if isinstance(message, SipRequest) and "via" not in message.headers:
            self._add_via(message, dest)
        self._out.append((message.serialize(), dest))

    def _add_via(self, request: SipRequest, dest: Addr) -> None:
        host, port = self._sent_by.get(dest.transport, ("127.0.0.1", 5060))
        request.headers.prepend("Via", str(Via(dest.transport.upper(), host, port,
                                               {"branch": new_branch(), "rport": None})))

    def transport_error(self, dest: Addr, now: float, reason: str = "connection failed") -> None:
        """Report that ``dest`` cannot be reached: its transactions fail (RFC 3261 17.1.4)."""
        for txn in [t for t in self._client.values() if t.dest == dest]:
            self._apply(txn, Input.TRANSPORT_ERROR, now, reason=reason)
        for stxn in [t for t in self._server.values() if t.response_dest == dest]:
            self._apply(stxn, Input.TRANSPORT_ERROR, now, reason=reason)

    # --- internals --------------------------------------------------------------------
    def _stamp_via(self, req: SipRequest, source: Addr) -> None:
        vias = req.vias
        via = vias[0]
        params = dict(via.params)
        if via.has_rport or self.force_rport:
            params["rport"] = str(source.port)
            params["received"] = source.host
        elif via.host != source.host:
            params["received"] = source.host
        else:
            return
        stamped = Via(via.transport, via.host, via.port, params, via.protocol)
        req.headers.replace_first_value("via", str(stamped))
        req.headers._cache["via"] = [stamped, *vias[1:]]

    def _response_dest(self, req: SipRequest, source: Addr) -> Addr:
        if source.reliable or self.force_rport:
            return source
        via = req.top_via
        if via.has_rport:
            return source
        return Addr(source.transport, via.received or via.host, via.port or 5060)

    def _start(self, txn: ClientTransaction | ServerTransaction, now: float) -> None:
        state, actions = INITIAL[txn.kind]
        txn.state = state
        self._run(txn, actions, now, txn.request, None, "")

    def _apply(self, txn: ClientTransaction | ServerTransaction, inp: Input, now: float,
               msg: Message | None = None, source: Addr | None = None, reason: str = "") -> None:
        transition = TRANSITIONS[txn.kind].get(txn.state, {}).get(inp)
        if transition is None:
            if inp in _TU_INPUTS:
                raise TransactionError(f"cannot send that response: the {txn.kind.value} "
                                       f"transaction is {txn.state.value}")
            return
        state, actions = transition
        txn.state = state
        self._run(txn, actions, now, msg, source, reason)
        if state is State.TERMINATED:
            self.terminate(txn)
        elif state in _WAITING:
            # Dropping the parsed headers and the last response (a few dozen objects a message;
            # what may be resent is kept as bytes) keeps the thousands of waiting transactions
            # of a burst of calls out of the garbage collector's work.
            txn.request.headers.forget_parsed()
            txn.last_response = None

    def _run(self, txn: ClientTransaction | ServerTransaction, actions: tuple[Action, ...],
             now: float, msg: Message | None, source: Addr | None, reason: str) -> None:
        for action in actions:
            op = action[0]
            if op == "send":
                self._send(txn, msg, now)
            elif op == "retransmit":
                self.stats["retransmissions_sent"] += 1
                if isinstance(txn, ClientTransaction):
                    self._out.append((txn.request_bytes, txn.dest))
                elif txn.response_bytes:
                    self._out.append((txn.response_bytes, txn.response_dest))
            elif op == "tu":
                self._to_tu(txn, msg, source, False)
            elif op == "tu_again":
                self._to_tu(txn, msg, source, True)
            elif op == "ack":
                assert isinstance(txn, ClientTransaction) and isinstance(msg, SipResponse)
                txn.ack_bytes = make_ack_for_error(txn.request, msg).serialize()
                self._out.append((txn.ack_bytes, txn.dest))
            elif op == "resend_ack":
                assert isinstance(txn, ClientTransaction)
                self._out.append((txn.ack_bytes, txn.dest))
            elif op == "trying":
                if self.auto_trying:
                    self._send(txn, make_response(txn.request, 100), now)
            elif op == "pending_cancel":
                assert isinstance(txn, ClientTransaction)
                if txn.cancel_pending is not None:
                    self._send_cancel(txn, now, txn.cancel_pending or None)
            elif op == "timeout":
                self._events.append(TransactionTimeout(txn, action[1]))
            elif op == "transport_error":
                dest = txn.dest if isinstance(txn, ClientTransaction) else txn.response_dest
                self._events.append(TransportError(txn, dest, reason or "transport error"))
            elif op == "stop":
                if action[1] == "Z":
                    self._z.pop(txn, None)  # type: ignore[call-overload]
                else:
                    txn.timers.pop(action[1], None)
            else:
                self._arm(txn, op, action[1], action[2] if len(action) > 2 else "", now)

    def _arm(self, owner: _Owner, op: str, name: str, base: str, now: float) -> None:
        rule = TIMERS[name]
        t = self.timers
        values = {"t1": t.t1, "t2": t.t2, "t4": t.t4, "64*t1": 64 * t.t1, "c": t.timer_c}
        reliable = owner.reliable if isinstance(owner, Transaction) else owner.txn.reliable
        if rule.unreliable_only and reliable:
            return
        if op == "start":
            interval = values[rule.base]
            if interval is None:
                return
            if rule.zero_if_reliable and reliable:
                interval = 0.0
        elif op == "backoff":
            interval = owner.intervals[name] * 2
            if rule.cap is not None:
                interval = min(interval, values[rule.cap] or interval)
        else:
            interval = values[base] or 0.0
        owner.intervals[name] = interval
        if name == "Z":
            self._z[owner] = now + interval  # type: ignore[index]
            return
        if name == "J":
            assert isinstance(owner, ServerTransaction)
            if self._server.get(owner.key) is owner:
                del self._server[owner.key]
            dest = owner.response_dest
            self._completed[owner.key] = (now + interval, owner.response_bytes, dest.transport, dest.host, dest.port,
                                          weakref.ref(owner))
            return
        self._schedule(owner, name, now + interval)

    def _schedule(self, owner: _Owner, name: str, when: float) -> None:
        token = next(self._seq)
        owner.timers[name] = token
        heapq.heappush(self._heap, (when, token, owner, name, token))

    def _send(self, txn: ClientTransaction | ServerTransaction, msg: Message | None,
              now: float) -> None:
        if isinstance(txn, ClientTransaction):
            txn.request_bytes = txn.request.serialize()
            self._out.append((txn.request_bytes, txn.dest))
            return
        assert isinstance(msg, SipResponse)
        data = msg.serialize()
        txn.last_response = msg
        txn.response_bytes = data
        if txn.to_tag is None and msg.status > 100:
            txn.to_tag = msg.to_tag
        if msg.status >= 200:
            self._unanswered.discard(txn)
        self._out.append((data, txn.response_dest))
        if txn.kind is Kind.INVITE_SERVER and 200 <= msg.status < 300:
            self._wait_for_ack(txn, data, now)

    def _to_tu(self, txn: ClientTransaction | ServerTransaction, msg: Message | None,
               source: Addr | None, again: bool) -> None:
        if isinstance(txn, ClientTransaction):
            assert isinstance(msg, SipResponse)
            txn.last_response = msg
            self._events.append(ResponseReceived(txn, msg, again))
        elif isinstance(msg, SipRequest) and msg.method == "ACK":
            self._events.append(AckReceived(msg, source or txn.source, txn, self._acked(msg)))
        else:
            self._events.append(RequestReceived(txn, txn.request, txn.source))

    @staticmethod
    def _ack_key(req: SipRequest) -> tuple[str, int, str | None]:
        return (req.call_id, req.cseq.seq, req.from_tag)

    def _wait_for_ack(self, txn: ServerTransaction, data: bytes, now: float) -> None:
        key = self._ack_key(txn.request)
        wait = self._ack_waits.get(key)
        if wait is not None:
            wait.data = data
            return
        wait = _AckWait(txn, key, data)
        self._ack_waits[key] = wait
        if not txn.reliable:
            wait.intervals["retransmit"] = self.timers.t1
            self._schedule(wait, "retransmit", now + self.timers.t1)
        self._schedule(wait, "giveup", now + 64 * self.timers.t1)

    def _ack_wait_timer(self, wait: _AckWait, name: str, now: float) -> None:
        if name == "retransmit":
            self.stats["retransmissions_sent"] += 1
            self._out.append((wait.data, wait.txn.response_dest))
            interval = min(wait.intervals["retransmit"] * 2, self.timers.t2)
            wait.intervals["retransmit"] = interval
            self._schedule(wait, "retransmit", now + interval)
            return
        wait.timers.clear()
        self._ack_waits.pop(wait.key, None)
        if not wait.acked:
            self._events.append(AckTimeout(wait.txn))

    def _receive_ack(self, ack: SipRequest, source: Addr, now: float) -> None:
        txn = self._server.get(_server_key(ack))
        if txn is not None and txn.kind is Kind.INVITE_SERVER:
            self._apply(txn, Input.ACK, now, ack, source)
            return
        wait = self._ack_waits.get(self._ack_key(ack))
        duplicate = self._acked(ack)
        self._events.append(AckReceived(ack, source, wait.txn if wait else None, duplicate))

    def _acked(self, ack: SipRequest) -> bool:
        """Stop retransmitting the 2xx this ACK acknowledges; whether it was already acked."""
        wait = self._ack_waits.get(self._ack_key(ack))
        if wait is None:
            return False
        duplicate = wait.acked
        wait.acked = True
        wait.timers.pop("retransmit", None)
        return duplicate

    def _receive_cancel(self, cancel: SipRequest, source: Addr, key: tuple[object, ...],
                        now: float) -> None:
        txn = ServerTransaction(Kind.NON_INVITE_SERVER, cancel, source, key,
                                self._response_dest(cancel, source))
        self._server[key] = txn
        invite = self._server.get(_server_key(cancel, "INVITE"))
        if invite is None or invite.kind is not Kind.INVITE_SERVER:
            self._apply(txn, Input.SEND_FINAL, now, make_response(cancel, 481))
            return
        self._apply(txn, Input.SEND_2XX, now, make_response(cancel, 200, to_tag=invite.to_tag))
        if invite.state is State.PROCEEDING:
            resp = make_response(invite.request, 487, to_tag=invite.to_tag or new_tag())
            self._apply(invite, Input.SEND_FINAL, now, resp)
            self._events.append(CancelReceived(invite, cancel, source))

    def _send_cancel(self, invite: ClientTransaction, now: float, reason: str | None) -> ClientTransaction:
        invite.cancel_pending = None
        cancel = make_cancel(invite.request, reason)
        key = (cancel.top_via.branch or "", "CANCEL")
        ctxn = ClientTransaction(Kind.NON_INVITE_CLIENT, cancel, invite.dest, key)
        self._client[key] = ctxn
        invite.cancel_transaction = ctxn
        self._start(ctxn, now)
        self._apply(invite, Input.CANCEL_SENT, now)
        return ctxn

    def _receive_response(self, resp: SipResponse, now: float) -> None:
        try:
            key = (resp.top_via.branch or "", resp.cseq.method)
        except SipParseError:
            self.stats["stray_responses"] += 1
            return
        txn = self._client.get(key)
        if txn is None:
            self.stats["stray_responses"] += 1
            return
        status = resp.status
        inp = (Input.RESPONSE_1XX if status < 200 else Input.RESPONSE_2XX if status < 300
               else Input.RESPONSE_FINAL)
        self._apply(txn, inp, now, resp)
