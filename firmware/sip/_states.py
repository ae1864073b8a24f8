"""The four transaction state machines of RFC 3261 section 17, as data.

Rule 1: everything that affects the state machines and their transitions lives in this file:
states, inputs, what each input does in each state, which timers start and stop, and how long
each timer runs. ``transaction.py`` only interprets these tables.

Rule 2: this file knows nothing about messages, sockets or clocks. Inputs are abstract
(``RESPONSE_2XX``, ``TIMER_D``...); the engine classifies what happens into them.

One timer is not in RFC 3261: Z (64*T1) forgets a non-INVITE request the TU never answers (a
request dropped on purpose, from a scanner say): by then the client has given up (its timer F),
and without it such transactions would pile up.

The INVITE machines include RFC 6026: a 2xx moves both sides to ``ACCEPTED``, where the client
passes every further 2xx to the TU (which sends the ACK) and the server passes every ACK to the
TU (which stops retransmitting its 2xx), until timer M (client) or L (server) fires.

Actions are tuples interpreted by the engine:

``("send",)``            send the message this input carries (request or TU response)
``("retransmit",)``      send the last request (client) or last response (server) again
``("ack",)``             build and send the ACK of a 300-699 response (INVITE client)
``("resend_ack",)``      send that ACK again (a final response was retransmitted)
``("trying",)``          send a 100 Trying (INVITE server, when the layer is asked to)
``("pending_cancel",)``  send the CANCEL the TU asked for before any provisional (RFC 3261 9.1)
``("tu",)``              pass the message to the TU as an event
``("tu_again",)``        pass a retransmitted 2xx to the TU, flagged as such
``("timeout", T)``       report TransactionTimeout for timer T
``("transport_error",)`` report TransportError
``("start", T)``         (re)start timer T at its initial interval
``("backoff", T)``       restart timer T with its interval doubled (capped, see TIMERS)
``("restart_at", T, B)`` restart timer T at interval B (``"t2"``)
``("stop", T)``          stop timer T

Entering ``TERMINATED`` stops every timer and forgets the transaction.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """The four transaction kinds."""

    INVITE_CLIENT = "INVITE client"
    NON_INVITE_CLIENT = "non-INVITE client"
    INVITE_SERVER = "INVITE server"
    NON_INVITE_SERVER = "non-INVITE server"


class State(enum.Enum):
    """Transaction states (RFC 3261 figures 5 to 8, RFC 6026 figures 3 and 4)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    """What can happen to a transaction."""

    REQUEST = "request retransmission received"
    ACK = "ACK received"
    RESPONSE_1XX = "1xx received"
    RESPONSE_2XX = "2xx received"
    RESPONSE_FINAL = "300-699 received"
    SEND_1XX = "TU sends 1xx"
    SEND_2XX = "TU sends 2xx"
    SEND_FINAL = "TU sends 300-699"
    CANCEL_SENT = "TU sent CANCEL"
    TIMER_A = "timer A"
    TIMER_B = "timer B"
    TIMER_C = "timer C"
    TIMER_D = "timer D"
    TIMER_E = "timer E"
    TIMER_F = "timer F"
    TIMER_G = "timer G"
    TIMER_H = "timer H"
    TIMER_I = "timer I"
    TIMER_J = "timer J"
    TIMER_K = "timer K"
    TIMER_L = "timer L"
    TIMER_M = "timer M"
    TIMER_Z = "timer Z"
    TRANSPORT_ERROR = "transport error"


TIMER_INPUTS = {name: Input[f"TIMER_{name}"] for name in "ABCDEFGHIJKLMZ"}


@dataclass(frozen=True)
class TimerRule:
    """How long a timer runs.

    ``base`` is ``"t1"``, ``"t2"``, ``"t4"``, ``"64*t1"`` or ``"c"`` (the optional timer C).
    ``backoff`` timers double at each ``("backoff", T)`` up to ``cap``. On reliable transports
    ``unreliable_only`` timers never start and ``zero_if_reliable`` timers fire at once.
    """

    base: str
    backoff: bool = False
    cap: str | None = None
    unreliable_only: bool = False
    zero_if_reliable: bool = False


TIMERS: dict[str, TimerRule] = {
    "A": TimerRule("t1", backoff=True, unreliable_only=True),       # INVITE retransmit
    "B": TimerRule("64*t1"),                                         # INVITE timeout
    "C": TimerRule("c"),                                             # no final response (optional)
    "D": TimerRule("64*t1", zero_if_reliable=True),                 # absorb final retransmissions (>= 32 s)
    "E": TimerRule("t1", backoff=True, cap="t2", unreliable_only=True),  # non-INVITE retransmit
    "F": TimerRule("64*t1"),                                         # non-INVITE timeout
    "G": TimerRule("t1", backoff=True, cap="t2", unreliable_only=True),  # INVITE response retransmit
    "H": TimerRule("64*t1"),                                         # wait for ACK
    "I": TimerRule("t4", zero_if_reliable=True),                     # absorb ACK retransmissions
    "J": TimerRule("64*t1", zero_if_reliable=True),                 # absorb non-INVITE retransmissions
    "K": TimerRule("t4", zero_if_reliable=True),                     # absorb response retransmissions
    "L": TimerRule("64*t1"),                                         # RFC 6026 server Accepted
    "M": TimerRule("64*t1"),                                         # RFC 6026 client Accepted
    "Z": TimerRule("64*t1"),                                         # not RFC 3261: TU never answered
}

Action = tuple[str, ...]
Transition = tuple[State, tuple[Action, ...]]

_S = State
_I = Input

INITIAL: dict[Kind, Transition] = {
    Kind.INVITE_CLIENT: (_S.CALLING, (("send",), ("start", "A"), ("start", "B"), ("start", "C"))),
    Kind.NON_INVITE_CLIENT: (_S.TRYING, (("send",), ("start", "E"), ("start", "F"))),
    Kind.INVITE_SERVER: (_S.PROCEEDING, (("trying",), ("tu",))),
    Kind.NON_INVITE_SERVER: (_S.TRYING, (("tu",), ("start", "Z"))),
}
"""State and actions of a new transaction."""

_TO_COMPLETED_ICT = (("stop", "A"), ("stop", "B"), ("stop", "C"), ("ack",), ("tu",), ("start", "D"))
_TO_ACCEPTED_ICT = (("stop", "A"), ("stop", "B"), ("stop", "C"), ("tu",), ("start", "M"))
_TO_COMPLETED_NICT = (("stop", "E"), ("stop", "F"), ("tu",), ("start", "K"))
_TO_COMPLETED_NIST = (("stop", "Z"), ("send",), ("start", "J"))

TRANSITIONS: dict[Kind, dict[State, dict[Input, Transition]]] = {
    Kind.INVITE_CLIENT: {
        _S.CALLING: {
            _I.RESPONSE_1XX: (_S.PROCEEDING, (("stop", "A"), ("stop", "B"), ("start", "C"), ("tu",),
                                              ("pending_cancel",))),
            _I.RESPONSE_2XX: (_S.ACCEPTED, _TO_ACCEPTED_ICT),
            _I.RESPONSE_FINAL: (_S.COMPLETED, _TO_COMPLETED_ICT),
            _I.TIMER_A: (_S.CALLING, (("retransmit",), ("backoff", "A"))),
            _I.TIMER_B: (_S.TERMINATED, (("timeout", "B"),)),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, (("transport_error",),)),
        },
        _S.PROCEEDING: {
            _I.RESPONSE_1XX: (_S.PROCEEDING, (("start", "C"), ("tu",))),
            _I.RESPONSE_2XX: (_S.ACCEPTED, _TO_ACCEPTED_ICT),
            _I.RESPONSE_FINAL: (_S.COMPLETED, _TO_COMPLETED_ICT),
            _I.CANCEL_SENT: (_S.PROCEEDING, (("start", "B"),)),
            _I.TIMER_B: (_S.TERMINATED, (("timeout", "B"),)),
            _I.TIMER_C: (_S.PROCEEDING, (("timeout", "C"),)),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, (("transport_error",),)),
        },
        _S.COMPLETED: {
            _I.RESPONSE_1XX: (_S.COMPLETED, ()),
            _I.RESPONSE_2XX: (_S.COMPLETED, ()),
            _I.RESPONSE_FINAL: (_S.COMPLETED, (("resend_ack",),)),
            _I.TIMER_D: (_S.TERMINATED, ()),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, (("transport_error",),)),
        },
        _S.ACCEPTED: {
            _I.RESPONSE_1XX: (_S.ACCEPTED, ()),
            _I.RESPONSE_2XX: (_S.ACCEPTED, (("tu_again",),)),
            _I.RESPONSE_FINAL: (_S.ACCEPTED, ()),
            _I.TIMER_M: (_S.TERMINATED, ()),
        },
    },
    Kind.NON_INVITE_CLIENT: {
        _S.TRYING: {
            _I.RESPONSE_1XX: (_S.PROCEEDING, (("tu",),)),
            _I.RESPONSE_2XX: (_S.COMPLETED, _TO_COMPLETED_NICT),
            _I.RESPONSE_FINAL: (_S.COMPLETED, _TO_COMPLETED_NICT),
            _I.TIMER_E: (_S.TRYING, (("retransmit",), ("backoff", "E"))),
            _I.TIMER_F: (_S.TERMINATED, (("timeout", "F"),)),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, (("transport_error",),)),
        },
        _S.PROCEEDING: {
            _I.RESPONSE_1XX: (_S.PROCEEDING, (("tu",),)),
            _I.RESPONSE_2XX: (_S.COMPLETED, _TO_COMPLETED_NICT),
            _I.RESPONSE_FINAL: (_S.COMPLETED, _TO_COMPLETED_NICT),
            _I.TIMER_E: (_S.PROCEEDING, (("retransmit",), ("restart_at", "E", "t2"))),
            _I.TIMER_F: (_S.TERMINATED, (("timeout", "F"),)),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, (("transport_error",),)),
        },
        _S.COMPLETED: {
            _I.RESPONSE_1XX: (_S.COMPLETED, ()),
            _I.RESPONSE_2XX: (_S.COMPLETED, ()),
            _I.RESPONSE_FINAL: (_S.COMPLETED, ()),
            _I.TIMER_K: (_S.TERMINATED, ()),
        },
    },
    Kind.INVITE_SERVER: {
        _S.PROCEEDING: {
            _I.REQUEST: (_S.PROCEEDING, (("retransmit",),)),
            _I.SEND_1XX: (_S.PROCEEDING, (("send",),)),
            _I.SEND_2XX: (_S.ACCEPTED, (("send",), ("start", "L"))),
            _I.SEND_FINAL: (_S.COMPLETED, (("send",), ("start", "G"), ("start", "H"))),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, (("transport_error",),)),
        },
        _S.COMPLETED: {
            _I.REQUEST: (_S.COMPLETED, (("retransmit",),)),
            _I.ACK: (_S.CONFIRMED, (("stop", "G"), ("stop", "H"), ("start", "I"))),
            _I.TIMER_G: (_S.COMPLETED, (("retransmit",), ("backoff", "G"))),
            _I.TIMER_H: (_S.TERMINATED, (("timeout", "H"),)),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, (("transport_error",),)),
        },
        _S.CONFIRMED: {
            _I.REQUEST: (_S.CONFIRMED, ()),
            _I.ACK: (_S.CONFIRMED, ()),
            _I.TIMER_I: (_S.TERMINATED, ()),
        },
        _S.ACCEPTED: {
            _I.REQUEST: (_S.ACCEPTED, ()),
            _I.ACK: (_S.ACCEPTED, (("tu",),)),
            _I.SEND_2XX: (_S.ACCEPTED, (("send",),)),
            _I.TIMER_L: (_S.TERMINATED, ()),
        },
    },
    Kind.NON_INVITE_SERVER: {
        _S.TRYING: {
            _I.REQUEST: (_S.TRYING, ()),
            _I.SEND_1XX: (_S.PROCEEDING, (("send",),)),
            _I.SEND_2XX: (_S.COMPLETED, _TO_COMPLETED_NIST),
            _I.SEND_FINAL: (_S.COMPLETED, _TO_COMPLETED_NIST),
            _I.TIMER_Z: (_S.TERMINATED, ()),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, (("transport_error",),)),
        },
        _S.PROCEEDING: {
            _I.REQUEST: (_S.PROCEEDING, (("retransmit",),)),
            _I.SEND_1XX: (_S.PROCEEDING, (("send",),)),
            _I.SEND_2XX: (_S.COMPLETED, _TO_COMPLETED_NIST),
            _I.SEND_FINAL: (_S.COMPLETED, _TO_COMPLETED_NIST),
            _I.TIMER_Z: (_S.TERMINATED, ()),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, (("transport_error",),)),
        },
        _S.COMPLETED: {
            _I.REQUEST: (_S.COMPLETED, (("retransmit",),)),
            _I.TIMER_J: (_S.TERMINATED, ()),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, ()),
        },
    },
}
"""``TRANSITIONS[kind][state][input] = (next state, actions)``. A network input missing from a
state is absorbed; a TU input missing from a state is a :class:`TransactionError`."""
