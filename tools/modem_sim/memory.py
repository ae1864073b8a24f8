"""A modem session and a simulated modem joined in memory, on one virtual clock.

For fast tests of the whole dialogue without ports or threads (aioquic-style roundtrip):
bytes the session writes go to the simulator and back until both are quiet; `advance()`
moves the clock through both sides' timers in order.
"""
from __future__ import annotations

from typing import Any

from firmware.modem.events import Event, OperationResult
from firmware.modem.session import ModemSession

from .core import SimModem


class MemoryLink:
    """See the module docstring."""

    def __init__(self, session: ModemSession, sim: SimModem, *, now: float = 0.0) -> None:
        self.session = session
        self.sim = sim
        self.now = now
        self.events: list[Event] = []
        self.results: dict[int, OperationResult] = {}
        self.wire: list[tuple[float, str, bytes]] = []
        """(time, "tx"|"rx", bytes) -- the AT port traffic, for transcripts."""
        self.audio_to_host = bytearray()
        self.pump()

    def pump(self, rounds: int = 200) -> None:
        for _ in range(rounds):
            moved = False
            out = self.session.data_to_send()
            if out:
                self.wire.append((self.now, "tx", out))
                self.sim.receive_at(out, self.now)
                moved = True
            back = self.sim.take_at()
            if back:
                self.wire.append((self.now, "rx", back))
                self.session.receive_data(back, self.now)
                moved = True
            self.audio_to_host += self.sim.take_audio()
            if self.sim.take_reset():
                self.sim.reset(self.now)
            self._collect()
            if not moved:
                return
        raise AssertionError("session and simulator keep talking (no quiet point in %d rounds)" % rounds)

    def _collect(self) -> None:
        while True:
            ev = self.session.next_event()
            if ev is None:
                return
            self.events.append(ev)
            if isinstance(ev, OperationResult):
                self.results[ev.op] = ev

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        stuck = 0
        for _ in range(1_000_000):
            ts = [t for t in (self.session.get_timer(), self.sim.get_timer()) if t is not None]
            nxt = min(ts) if ts else None
            if nxt is None or nxt > end:
                break
            if nxt <= self.now:
                stuck += 1
                if stuck > 1000:
                    raise AssertionError(f"a timer stays in the past: session {self.session.get_timer()}, "
                                         f"simulator {self.sim.get_timer()}, now {self.now}")
            else:
                stuck = 0
            self.now = max(self.now, nxt)
            self.sim.handle_timer(self.now)
            self.session.handle_timer(self.now)
            self.pump()
        self.now = end
        self.sim.handle_timer(self.now)
        self.session.handle_timer(self.now)
        self.pump()

    def run_until(self, predicate, timeout: float, step: float = 0.05) -> Any:
        waited = 0.0
        while waited <= timeout:
            v = predicate()
            if v:
                return v
            self.advance(step)
            waited += step
        raise AssertionError(f"condition not met within {timeout} s (virtual)")

    def result(self, op: int, timeout: float = 30.0) -> OperationResult:
        return self.run_until(lambda: self.results.get(op), timeout)

    def of(self, cls: type) -> list:
        return [e for e in self.events if isinstance(e, cls)]

    def clear(self) -> None:
        self.events.clear()
