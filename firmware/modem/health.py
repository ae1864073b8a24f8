"""Health of one modem line: state, counters and a ring buffer of recent faults (sans-I/O)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Fault:
    """One remembered fault."""

    at: float
    """Time on the line's monotonic clock."""
    wall: float | None
    """Unix time when the owner injected a wall clock, else None."""
    kind: str
    detail: str

    def as_dict(self) -> dict:
        return {"at": self.at, "wall": self.wall, "kind": self.kind, "detail": self.detail}


class Health:
    """Outlives one port opening: survives module resets and re-discovery."""

    def __init__(self, *, capacity: int = 50, wall_clock: Callable[[], float] | None = None) -> None:
        self.state = "starting"
        """"starting", "ok", "degraded", "resetting", "lost", "stopped"."""
        self.faults: deque[Fault] = deque(maxlen=capacity)
        self.counters: dict[str, int] = {}
        self.last_ok: float | None = None
        self.resets = 0
        self._wall = wall_clock
        self._last_kind_at: dict[str, float] = {}

    def record(self, kind: str, detail: str, now: float, *, min_interval: float = 0.0) -> bool:
        """Remember a fault; returns False if the same kind was recorded less than
        `min_interval` seconds ago (the counter still counts it)."""
        self.counters[kind] = self.counters.get(kind, 0) + 1
        last = self._last_kind_at.get(kind)
        if last is not None and now - last < min_interval:
            return False
        self._last_kind_at[kind] = now
        self.faults.append(Fault(now, self._wall() if self._wall else None, kind, detail))
        return True

    def count(self, kind: str) -> int:
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return self.counters[kind]

    def alive(self, now: float) -> None:
        self.last_ok = now

    def as_dict(self) -> dict:
        return {
            "state": self.state,
            "last_ok": self.last_ok,
            "resets": self.resets,
            "counters": dict(self.counters),
        }

    def fault_list(self) -> list[dict]:
        return [f.as_dict() for f in self.faults]
