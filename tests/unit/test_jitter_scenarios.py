"""Jitter buffer scenarios: every tests/data/jbuf/*.dat replayed through the Python wrapper.

The same files are replayed in C (tests/native/test_jbuf.c, also under ASan/UBSan); the
language is described at the top of that file. Time is simulated: nothing sleeps.
"""
from __future__ import annotations

import array
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware.media.jitter import JbStatus, JitterBuffer, PutResult
from tests.conftest import DATA

SCENARIOS = sorted((DATA / "jbuf").glob("*.dat"))
OPS = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
       "<": operator.lt, ">": operator.gt}
PARAM_KEYS = {"min": "min_delay_ms", "max": "max_delay_ms", "init": "initial_delay_ms", "plc": "plc"}
EXPECT = {"G": None, "O": JbStatus.OK, "C": JbStatus.CONCEALED, "S": JbStatus.SILENCE}


def signal(i: int) -> int:
    return round(6000 * math.sin(2 * math.pi * 300 * i / 8000) + 2000 * math.sin(2 * math.pi * 710 * i / 8000))


@dataclass
class Packet:
    seq: int
    ts: int
    length: int
    sidx: int


@dataclass
class Session:
    """One scenario being replayed; mirrors sc_t in tests/native/test_jbuf.c."""

    name: str
    params: dict = field(default_factory=lambda: {"min_delay_ms": 20, "max_delay_ms": 500,
                                                  "initial_delay_ms": 60, "plc": 1})
    jb: JitterBuffer | None = None
    seq: int = 1000
    ts: int = 160000
    frame: int = 160
    getn: int = 160
    period: float = 0.020
    t: float = 1.0
    sidx: int = 0
    jump: int = 8000000
    held: list = field(default_factory=list)
    last: Packet | None = None
    gets: dict = field(default_factory=lambda: {s: 0 for s in JbStatus})
    puts: dict = field(default_factory=lambda: {r: 0 for r in PutResult})
    total: int = 0
    line: int = 0
    failures: list = field(default_factory=list)

    def buffer(self) -> JitterBuffer:
        if self.jb is None:
            p = self.params
            self.jb = JitterBuffer(min_delay_ms=p["min_delay_ms"], max_delay_ms=p["max_delay_ms"],
                                   initial_delay_ms=p["initial_delay_ms"], plc=bool(p["plc"]))
        return self.jb

    def fail(self, what: str) -> None:
        self.failures.append(f"{self.name}:{self.line}: {what}")

    def next_packet(self) -> Packet:
        p = Packet(self.seq, self.ts, self.frame, self.sidx)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + self.frame) & 0xFFFFFFFF
        self.sidx += self.frame
        return p

    def put(self, p: Packet) -> None:
        pcm = array.array("h", (signal(p.sidx + i) for i in range(p.length)))
        self.puts[self.buffer().put(p.seq, p.ts, pcm, self.t)] += 1
        self.last = p

    def get(self, expect: JbStatus | None) -> None:
        audio, status = self.buffer().get(self.t, self.getn)
        self.t += self.period
        self.gets[status] += 1
        self.total += self.getn
        if len(audio) != 2 * self.getn:
            self.fail(f"get returned {len(audio)} bytes for {self.getn} samples")
        if expect is not None and status != expect:
            self.fail(f"get returned {status.name}, expected {expect.name}")
        if self.buffer().stats().total_samples != self.total:
            self.fail("played + concealed + silence != samples pulled")

    def new_stream(self) -> None:
        self.seq = (self.seq + 20000) & 0xFFFF
        self.ts = (self.ts + 123456789) & 0xFFFFFFFF

    def event(self, c: str) -> None:
        self.buffer()
        if c == "P":
            self.put(self.next_packet())
        elif c == "L":
            self.next_packet()
        elif c == "D":
            if self.last:
                self.put(self.last)
        elif c == "H":
            self.held.append(self.next_packet())
        elif c == "U":
            if self.held:
                self.put(self.held.pop(0))
        elif c == "Z":
            self.ts = (self.ts + self.frame) & 0xFFFFFFFF
            self.sidx += self.frame
        elif c == "J":
            self.ts = (self.ts + self.jump) & 0xFFFFFFFF
        elif c == "X":
            self.new_stream()
        elif c == "R":
            self.buffer().resync()
            self.new_stream()
        elif c in EXPECT:
            self.get(EXPECT[c])
        elif c == "W":
            self.t += self.period
        else:
            self.fail(f"unknown event {c!r}")

    def run_seq(self, text: str, i: int = 0, depth: int = 0) -> int:
        while i < len(text) and text[i] != ")":
            c = text[i]
            if c.isspace():
                i += 1
                continue
            start = i
            if c == "(":
                end = self.run_seq(text, i + 1, depth + 1)
                if end >= len(text) or text[end] != ")":
                    self.fail("unbalanced parenthesis")
                    return end
                end += 1
            else:
                self.event(c)
                end = i + 1
            m = re.match(r"\*(\d+)", text[end:])
            if m:
                for _ in range(int(m.group(1)) - 1):
                    if text[start] == "(":
                        self.run_seq(text, start + 1, depth + 1)
                    else:
                        self.event(text[start])
                end += m.end()
            i = end
        if depth == 0 and i < len(text):
            self.fail("unbalanced parenthesis")
        return i

    def stat(self, name: str) -> float:
        extra = {
            "gets_ok": self.gets[JbStatus.OK], "gets_concealed": self.gets[JbStatus.CONCEALED],
            "gets_silence": self.gets[JbStatus.SILENCE], "puts_stored": self.puts[PutResult.STORED],
            "puts_late": self.puts[PutResult.LATE], "puts_duplicate": self.puts[PutResult.DUPLICATE],
            "puts_resync": self.puts[PutResult.RESYNC],
        }
        if name in extra:
            return extra[name]
        st = self.buffer().stats()
        if name not in st.__dataclass_fields__:
            raise KeyError(name)
        return getattr(st, name)

    def check(self, text: str) -> None:
        parts = text.split()
        if len(parts) != 3 or parts[1] not in OPS:
            self.fail(f"bad check {text!r}")
            return
        name, op, want = parts
        try:
            have = self.stat(name)
        except KeyError:
            self.fail(f"unknown statistic {name}")
            return
        if not OPS[op](have, float(want)):
            self.fail(f"check failed: {name} {op} {want} (is {have})")

    def directive(self, text: str) -> None:
        key, *rest = text.split()
        if key == "param":
            if self.jb is not None:
                self.fail("%param after the first event")
            for kv in rest:
                k, v = kv.split("=")
                self.params[PARAM_KEYS[k]] = int(v)
            return
        value = int(rest[0])
        if key == "period":
            self.period = value / 1000
        elif key == "get":
            self.getn = value
        elif key in ("frame", "seq", "ts", "jump"):
            setattr(self, key, value)
        else:
            self.fail(f"unknown directive {key}")

    def run(self, path: Path) -> list[str]:
        for raw in path.read_text().splitlines():
            self.line += 1
            text = raw.strip()
            if not text or text[0] in "#=":
                continue
            if text[0] == "%":
                self.directive(text[1:])
            elif text[0] == "!":
                self.check(text[1:])
            else:
                self.run_seq(text)
        if self.jb is not None:
            self.jb.close()
        return self.failures


def test_there_are_enough_scenarios():
    assert len(SCENARIOS) >= 12


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario(path: Path):
    failures = Session(path.stem).run(path)
    assert not failures, "\n".join(failures)


def test_a_failing_bound_is_reported(tmp_path: Path):
    bad = tmp_path / "bad.dat"
    bad.write_text("(PG)*20\n!lost == 5\n!nonsense == 1\n(PQ\n")
    failures = Session("bad").run(bad)
    assert any("lost == 5 (is 0)" in f for f in failures)
    assert any("unknown statistic nonsense" in f for f in failures)
    assert any("unknown event 'Q'" in f for f in failures)
    assert any("unbalanced" in f for f in failures)
