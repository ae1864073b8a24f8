"""Overload control: when new requests get ``503 Service Unavailable`` with ``Retry-After``
(RFC 3261 section 21.5.4) instead of being worked on. Sans-I/O: every input carries ``now``.

The transport reports how long each message waited before the box got to it
(:meth:`OverloadGuard.note_delay`: the time a datagram sat in the socket buffer, from the
kernel's receive timestamp) and how late the event loop runs (:meth:`OverloadGuard.note_lag`).
The transaction layer asks :meth:`OverloadGuard.admit` before a new out-of-dialog request
becomes work for the TU; requests inside dialogs (BYE, re-INVITE), ACK, CANCEL and every
response always go through, so calls in progress keep working and no transaction is lost.

What trips the guard:

* a standing queue: every message of the last ``interval`` waited longer than ``target``, and
  so has every message since (the smallest delay of each interval counts, as in CoDel,
  RFC 8289). A burst that the box drains within an interval leaves a small minimum behind and
  is absorbed, however deep it got; the first message that waited less than ``target`` opens
  the guard again;
* a single message that waited longer than ``limit`` (answers later than SIP's T1, 0.5 s, make
  phones retransmit, which is more work for a box that is already late), or an event loop
  running ``limit`` late (this also covers TCP, which has no receive timestamps);
* more than ``max_pending`` requests in progress without a final answer.

Requests that carry credentials (the second INVITE or REGISTER of a digest exchange) are
``priority``: a standing queue does not refuse them, only the hard limits do, so the work
already spent on their first round is not thrown away.

A 503 costs a parse and one response, a call set-up hundreds of times more, so shedding new
requests drains the queue quickly.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class OverloadGuard:
    """Admission control of new requests (see the module docstring)."""

    target: float = 0.1
    """Seconds of queueing delay a standing queue may keep (every message of an interval)."""
    interval: float = 0.5
    """Seconds over which the smallest queueing delay is taken; shorter bursts (and pauses of
    the garbage collector, a few hundred ms under load) are absorbed."""
    limit: float = 1.0
    """Seconds a single message, or the event loop, may be late before new requests get 503
    at once (a last resort: a standing queue trips the guard long before)."""
    max_pending: int = 1000
    """Requests in progress without a final response (ringing calls included) at most."""
    retry_after: int = 5
    """Seconds in the Retry-After header of a 503 ..."""
    retry_jitter: int = 5
    """... plus up to this many more at random, so rejected phones do not all return at once."""
    rng: random.Random = field(default_factory=random.Random, repr=False)
    rejected: int = 0
    """Requests answered with 503 so far."""
    admitted: int = 0
    """Requests let through so far."""
    _window_end: float = field(default=float("-inf"), repr=False)
    _window_min: float = field(default=0.0, repr=False)
    _standing: float = field(default=0.0, repr=False)
    _last_delay: float = field(default=0.0, repr=False)
    _lag: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.target < self.limit:
            raise ValueError("OverloadGuard needs 0 < target < limit")
        if self.interval <= 0 or self.max_pending < 1 or self.retry_after < 1 or self.retry_jitter < 0:
            raise ValueError("OverloadGuard needs interval > 0, max_pending >= 1, retry_after >= 1 "
                             "and retry_jitter >= 0")

    def note_delay(self, delay: float, now: float) -> None:
        """A message waited ``delay`` seconds between its arrival and its handling."""
        delay = max(0.0, delay)
        if now >= self._window_end:
            # the window that just ended tells whether a queue stood through all of it; after
            # a quiet spell longer than a window, the last one says nothing about now
            self._standing = self._window_min if now - self._window_end < self.interval else 0.0
            self._window_min = delay
            self._window_end = now + self.interval
        elif delay < self._window_min:
            self._window_min = delay
        self._last_delay = delay

    def note_lag(self, lag: float, now: float) -> None:
        """The event loop ran a timer ``lag`` seconds after its time."""
        self._lag = max(0.0, lag)

    @property
    def standing_delay(self) -> float:
        """The smallest queueing delay of the last complete interval, in seconds."""
        return self._standing

    def overloaded(self, now: float, pending: int = 0, priority: bool = False) -> bool:
        """Whether new requests are refused now (``pending``: requests not yet answered;
        ``priority``: the request carries credentials)."""
        if self._last_delay > self.limit or self._lag > self.limit or pending >= self.max_pending:
            return True
        if priority or now - self._window_end >= self.interval:
            return False  # (nothing arrived for a whole interval: no queue stands)
        return self._standing > self.target and self._window_min > self.target

    def admit(self, now: float, pending: int = 0, priority: bool = False) -> bool:
        """Ask before a new request becomes work: False means answer it with :meth:`retry_after_value`."""
        if self.overloaded(now, pending, priority):
            self.rejected += 1
            return False
        self.admitted += 1
        return True

    def retry_after_value(self) -> int:
        """Seconds for the Retry-After header of one 503."""
        return self.retry_after + (self.rng.randint(0, self.retry_jitter) if self.retry_jitter else 0)
