"""Replays the modem transcripts of tests/data/at/ against ModemSession, without I/O.

A transcript is the dialogue on one AT port, as a modem of that model says it, with the
session's expected answers and events. Directives (one per line, '#' starts a comment):

    config ping_interval=30         SessionConfig fields (Python literals), before "model"
    model ec25                      the profile: the session starts here
    include ec25/_init.at           replay another transcript here
    do start | answer | hangup | dial NUMBER | dtmf DIGITS | sms NUMBER TEXT | ussd CODE
    do dle CODE                     a DLE code reported by the media engine
    do sms_stored                   the owner stored the last SmsReceived: delete it
    < AT+CSQ                        the host sent exactly this command line next
    <pdu 0011...                    the host sent this PDU (+ Ctrl-Z) after the "> " prompt
    << \x10^                        the host sent these raw bytes next (Python escapes)
    <*                              whatever else the host sent so far is not of interest
    > +CSQ: 21,0                    the modem sends <CR><LF>line<CR><LF>
    >> \\r\\r\\nRING\\r\\r\\n            the modem sends these raw bytes (Python escapes)
    wait 2.5                        the clock moves on (timers fire in order)
    ! Event field=value ...         that event comes (earlier events are passed over)
    !no Event                       no such event is pending
    op ok [value=...] | op fail [error=TypeName]     the last request's result
    state field=value               a ModemSession attribute / snapshot() entry
"""
from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest

from firmware.modem import events as ev_mod
from firmware.modem.events import OperationResult, SmsReceived
from firmware.modem.profiles import get_profile
from firmware.modem.session import ModemSession, SessionConfig

AT_DIR = Path(__file__).resolve().parent.parent / "data" / "at"


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


class Replay:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.now = 0.0
        self.session: ModemSession | None = None
        self.config = SessionConfig()
        self.tx = b""
        self.pending: list = []
        self.last_op: int | None = None
        self.last_sms: SmsReceived | None = None
        self.line_no = 0
        self.where = ""

    # ---------------------------------------------------------------- plumbing
    def fail(self, msg: str) -> None:
        pytest.fail(f"{self.where}: {msg}", pytrace=False)

    def _collect(self) -> None:
        s = self.session
        assert s is not None
        self.tx += s.data_to_send()
        while True:
            e = s.next_event()
            if e is None:
                break
            self.pending.append(e)
            if isinstance(e, SmsReceived):
                self.last_sms = e

    def _advance(self, seconds: float) -> None:
        s = self.session
        assert s is not None
        end = self.now + seconds
        for _ in range(100_000):
            t = s.get_timer()
            if t is None or t > end:
                break
            self.now = max(self.now, t)
            s.handle_timer(self.now)
            self._collect()
        self.now = end
        s.handle_timer(self.now)
        self._collect()

    def _next_tx_line(self) -> bytes:
        if not self.tx:
            self.fail("expected the host to send something, it sent nothing")
        cut = self.tx.find(b"\r")
        if cut < 0:
            cut = self.tx.find(b"\x1a")
            if cut < 0:
                self.fail(f"incomplete host output {self.tx!r}")
        line, self.tx = self.tx[:cut + 1], self.tx[cut + 1:]
        return line

    # ---------------------------------------------------------------- run
    def run(self, path: Path | None = None) -> None:
        path = path or self.path
        for no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            self.where = f"{path.relative_to(AT_DIR)}:{no}"
            line = raw.rstrip()
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            self.step(line)
        if path is self.path:
            self._collect()
            if self.tx:
                self.fail(f"the host sent more than the transcript expects: {self.tx!r}")

    def step(self, line: str) -> None:
        head, _, rest = line.partition(" ")
        if head == "model":
            self.session = ModemSession(get_profile(rest.strip()), now=self.now, config=self.config)
        elif head == "config":
            for item in rest.split():
                k, _, v = item.partition("=")
                setattr(self.config, k, _literal(v))
        elif head == "include":
            self.run(AT_DIR / rest.strip())
        elif head == "do":
            self.do(rest)
        elif head == "<":
            got = self._next_tx_line()
            if got != rest.encode() + b"\r":
                self.fail(f"host sent {got!r}, transcript expects {rest!r}")
        elif head == "<<":
            want = ast.literal_eval("b'" + rest.replace("'", "\\'") + "'")
            self._collect()
            if not self.tx.startswith(want):
                self.fail(f"host sent {self.tx[:40]!r}, transcript expects raw {want!r}")
            self.tx = self.tx[len(want):]
        elif head == "<*":
            self._collect()
            self.tx = b""
        elif head == "<pdu":
            got = self._next_tx_line()
            if got != rest.encode() + b"\x1a":
                self.fail(f"host sent {got!r}, transcript expects PDU {rest!r} + Ctrl-Z")
        elif head == ">":
            self.feed(b"\r\n" + rest.encode("utf-8") + b"\r\n")
        elif head == ">>":
            self.feed(ast.literal_eval("b'" + rest.replace("'", "\\'") + "'"))
        elif head == "wait":
            self._advance(float(rest))
        elif head == "!":
            self.expect_event(rest)
        elif head == "!no":
            name = rest.strip()
            found = [e for e in self.pending if type(e).__name__ == name]
            if found:
                self.fail(f"unexpected {found[0]}")
        elif head == "op":
            self.check_op(rest)
        elif head == "state":
            self.check_state(rest)
        else:
            self.fail(f"unknown directive {head!r}")

    def feed(self, data: bytes) -> None:
        assert self.session is not None
        self.session.receive_data(data, self.now)
        self._collect()

    def do(self, rest: str) -> None:
        s = self.session
        assert s is not None, "model must come first"
        parts = shlex.split(rest)
        what, args = parts[0], parts[1:]
        if what == "start":
            self.last_op = s.start(self.now)
        elif what == "answer":
            self.last_op = s.answer(self.now)
        elif what == "hangup":
            self.last_op = s.hangup(self.now)
        elif what == "dial":
            self.last_op = s.dial(args[0], self.now)
        elif what == "dtmf":
            self.last_op = s.send_dtmf(args[0], self.now)
        elif what == "sms":
            self.last_op = s.send_sms(args[0], args[1], self.now)
        elif what == "ussd":
            self.last_op = s.ussd(args[0], self.now)
        elif what == "dle":
            s.dle_event(args[0], self.now)
        elif what == "sms_stored":
            assert self.last_sms is not None, "no SmsReceived yet"
            s.sms_stored(self.last_sms, self.now)
        else:
            self.fail(f"unknown request {what!r}")
        self._collect()

    @staticmethod
    def _same(have, text: str) -> bool:
        return have == _literal(text) or (isinstance(have, str) and have == text)

    def _match(self, e, fields: dict) -> bool:
        return all(self._same(getattr(e, k, None), v) for k, v in fields.items())

    def expect_event(self, rest: str) -> None:
        parts = shlex.split(rest)
        name = parts[0]
        if not hasattr(ev_mod, name):
            self.fail(f"no event type {name}")
        fields = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            fields[k] = v
        for i, e in enumerate(self.pending):
            if type(e).__name__ == name and self._match(e, fields):
                del self.pending[: i + 1]
                return
        self.fail(f"no {name} {fields} among pending events {self.pending}")

    def check_op(self, rest: str) -> None:
        parts = shlex.split(rest)
        want_ok = parts[0] == "ok"
        res = None
        for e in self.pending:
            if isinstance(e, OperationResult) and e.op == self.last_op:
                res = e
        if res is None:
            self.fail(f"request {self.last_op} has no result yet (pending: {self.pending})")
        self.pending.remove(res)
        if res.ok != want_ok:
            self.fail(f"request ended {'ok' if res.ok else 'failed'}: {res}")
        for p in parts[1:]:
            k, _, v = p.partition("=")
            if k == "error":
                if type(res.error).__name__ != v:
                    self.fail(f"error is {res.error!r}, expected {v}")
            elif k == "value":
                if str(res.value) != v and res.value != _literal(v):
                    self.fail(f"value is {res.value!r}, expected {v}")
            elif not self._same(getattr(res.value, k, None), v):
                self.fail(f"value.{k} is {getattr(res.value, k, None)!r}, expected {v}")

    def check_state(self, rest: str) -> None:
        s = self.session
        assert s is not None
        snap = s.snapshot()
        for p in shlex.split(rest):
            k, _, v = p.partition("=")
            have = snap[k] if k in snap else getattr(s, k)
            if not self._same(have, v):
                self.fail(f"state {k} is {have!r}, expected {v}")


TRANSCRIPTS = sorted(p for p in AT_DIR.glob("*/*.at") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[str(p.relative_to(AT_DIR)) for p in TRANSCRIPTS])
def test_transcript(path: Path) -> None:
    Replay(path).run()


def test_corpus_covers_every_model() -> None:
    models = {p.parent.name for p in TRANSCRIPTS}
    assert models >= {"sim800", "sim7600", "ec25", "huawei", "voicemodem"}
