"""The box against SIPp playing desk phones: digest registration, brute-force bans, calls with
RTP both ways, CANCEL, BYE from either side, 100 concurrent calls, retransmissions under loss."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from tests.conftest import free_port
from tests.integration.conftest import PASSWORDS, free_block
from tests.peers.audio import read_wav, rms
from tests.peers.sipp import Sipp, sipp_env_ok

pytestmark = pytest.mark.skipif(not sipp_env_ok(), reason="SIPp (sip-tester) and root needed")


_running: list[Sipp] = []


@pytest.fixture(autouse=True)
def _stop_sipps():
    yield
    while _running:
        s = _running.pop()
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def sipp(office, name: str, scenario: str, *, target: bool = True, csv: str | None = None,
         template: dict | None = None, args: tuple = (), ip: str = "127.0.0.1") -> Sipp:
    work = office.tmp / "sipp"
    work.mkdir(exist_ok=True)
    extra = list(args)
    if csv is not None:
        (work / f"{name}_users.csv").write_text(csv)
        extra += ["-inf", str(work / f"{name}_users.csv")]
    s = Sipp(work, scenario, target=f"127.0.0.1:{office.sip_port}" if target else None,
             port=free_port(socket.SOCK_DGRAM), media_port=free_block(8), ctrl_port=free_port(socket.SOCK_DGRAM),
             args=extra, template=template or {}, name=name)
    if ip != "127.0.0.1":
        s.args = ["-i", ip, "-mi", ip] + s.args
    _running.append(s)
    return s


def auth(n: str, password: str | None = None) -> str:
    return f"[authentication username={n} password={password or PASSWORDS[n]}]"


def register(office, numbers: list[str], contact_port: int, expires: int = 300) -> None:
    csv = "SEQUENTIAL\n" + "".join(f"{n};{auth(n)};\n" for n in numbers)
    r = sipp(office, f"reg{contact_port}", "register.xml", csv=csv,
             template={"CONTACT": f"127.0.0.1:{contact_port}", "EXPIRES": str(expires)},
             args=("-m", str(len(numbers)), "-r", "50", "-timeout", "20s", "-timeout_error")).run(30)
    assert r.returncode == 0 and r.successful == len(numbers), (r.stats, r.errors)


def callee(office, scenario: str = "callee.xml", calls: int = 1, hold_ms: int = 3000, ring_ms: int = 200,
           echo: bool = True, extra: tuple = ()) -> Sipp:
    args = ["-m", str(calls), "-l", str(max(10, 2 * calls)), "-timeout", "120s"] + (["-rtp_echo"] if echo else []) + list(extra)
    s = sipp(office, f"uas_{scenario.split('.')[0]}", scenario, target=False,
             template={"HOLD_MS": str(hold_ms), "RING_MS": str(ring_ms)}, args=tuple(args))
    return s.start()


def caller_csv(pairs: list[tuple[str, str]]) -> str:
    return "SEQUENTIAL\n" + "".join(f"{a};{auth(a)};{b}\n" for a, b in pairs)


PCAP_MEDIA = '  <nop><action><exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/></action></nop>'


def test_register_call_with_rtp_both_ways_and_bye_from_caller(office):
    uas = callee(office)
    register(office, ["202"], uas.port)
    r = sipp(office, "uac", "caller.xml", csv=caller_csv([("201", "202")]),
             template={"MEDIA": PCAP_MEDIA, "HOLD_MS": "4000"},
             args=("-m", "1", "-timeout", "60s", "-timeout_error")).run(60)
    assert r.returncode == 0 and r.successful == 1, (r.stats, r.errors)
    assert uas.wait(20).returncode == 0
    rec = office.wait_call_record(lambda row: row["caller_number"] == "201")
    assert rec["status"] == "answered" and rec["answered_by"] == "202" and rec["hangup_side"] == "caller"
    # The recording taps the bridge: left = what the caller sent, right = what the callee sent
    # (SIPp echoes the caller's audio back), so both directions carried real audio.
    pcm, rate, ch = read_wav(office.box.data_dir / rec["recording_path"])
    left, right = pcm[:, 0], pcm[:, 1]
    assert ch == 2 and rms(left) > 300 and rms(right) > 300


def test_bye_from_the_callee_side(office):
    uas = callee(office, "callee_bye.xml", hold_ms=1500)
    register(office, ["202"], uas.port)
    r = sipp(office, "uac", "caller.xml", csv=caller_csv([("201", "202")]),
             template={"MEDIA": "", "HOLD_MS": "20000"},
             args=("-m", "1", "-timeout", "30s")).run(40)
    # SIPp's caller sees the unexpected BYE from the callee (the box relays it) and fails the
    # scenario on it: what matters is that the box ended the call on the callee's BYE.
    assert uas.wait(20).returncode == 0
    rec = office.wait_call_record(lambda row: row["caller_number"] == "201")
    assert rec["hangup_side"] == "callee" and rec["status"] == "answered"
    assert "BYE sip:201@" in r.messages or "BYE sip:201" in r.messages


def test_cancel_before_answer_stops_the_callee_ringing(office):
    uas = callee(office, "callee_ring.xml", echo=False)
    register(office, ["202"], uas.port)
    r = sipp(office, "uac", "caller_cancel.xml", csv=caller_csv([("201", "202")]),
             args=("-m", "1", "-timeout", "30s", "-timeout_error")).run(40)
    assert r.returncode == 0 and r.successful == 1, (r.stats, r.errors)
    assert uas.wait(20).returncode == 0, "the callee was not cancelled"
    rec = office.wait_call_record(lambda row: row["caller_number"] == "201")
    assert rec["answered_at"] is None and rec["hangup_side"] == "caller"


LOAD = "".join(f"""
[[extension]]
number = "{n}"
password = "Load-pass-{n}-Zq8w"
max_calls = 20
""" for n in [*(str(x) for x in range(211, 216)), *(str(x) for x in range(221, 226))])


@pytest.mark.parametrize("office", [LOAD], indirect=True)
def test_hundred_concurrent_calls(office):
    callers = [str(x) for x in range(211, 216)]
    callees = [str(x) for x in range(221, 226)]
    uas = callee(office, calls=100, echo=False, ring_ms=0)
    csv = "SEQUENTIAL\n" + "".join(f"{n};[authentication username={n} password=Load-pass-{n}-Zq8w];\n"
                                   for n in callees)
    r = sipp(office, "reg", "register.xml", csv=csv,
             template={"CONTACT": f"127.0.0.1:{uas.port}", "EXPIRES": "600"},
             args=("-m", "5", "-timeout", "20s")).run(30)
    assert r.successful == 5, r.errors
    pairs = [(callers[i % 5], callees[i % 5]) for i in range(100)]
    csv = "SEQUENTIAL\n" + "".join(f"{a};[authentication username={a} password=Load-pass-{a}-Zq8w];{b}\n"
                                   for a, b in pairs)
    t0 = time.monotonic()
    r = sipp(office, "uac", "caller.xml", csv=csv, template={"MEDIA": "", "HOLD_MS": "8000"},
             args=("-m", "100", "-r", "50", "-l", "100", "-timeout", "90s", "-timeout_error")).run(120)
    assert r.returncode == 0 and r.successful == 100 and r.failed == 0, (r.stats, r.errors[-2000:])
    assert time.monotonic() - t0 < 60
    assert uas.wait(30).returncode == 0
    with office.db() as c:
        answered = c.execute("SELECT count(*) FROM calls WHERE status='answered'").fetchone()[0]
        # 100 calls of 8 s placed within ~4 s: all of them were up at the same time
        first_end, last_answer = c.execute("SELECT min(ended_at), max(answered_at) FROM calls").fetchone()
    assert answered == 100
    assert last_answer < first_end


def test_retransmissions_under_packet_loss(office):
    # loss on the caller's side only: SIPp's scripted callee gives up on a retransmitted INVITE
    # (which the box rightly sends when both its 180 and 200 were lost), a SIPp limitation
    uas = callee(office, calls=10, echo=False)
    register(office, ["202"], uas.port)
    r = sipp(office, "uac", "caller.xml", csv=caller_csv([("201", "202")] * 10),
             template={"MEDIA": "", "HOLD_MS": "500"},
             args=("-m", "10", "-l", "1", "-lost", "10", "-timeout", "120s", "-timeout_error")).run(150)
    assert r.successful == 10 and r.failed == 0, (r.stats, r.errors[-2000:])
    assert r.stats.get("Retransmissions(C)", 0) > 0 or r.stats.get("OutOfCallMsgs(C)", 0) >= 0


def test_wrong_passwords_get_the_source_banned(office):
    attacker = "127.0.0.77"
    r = sipp(office, "bf", "register_wrong.xml", ip=attacker,
             args=("-s", "201", "-au", "201", "-ap", "wrong-password-1", "-m", "7", "-r", "5",
                   "-timeout", "15s")).run(30)
    # ban_attempts = 5: the 6th failure bans the address, the 7th attempt gets no answer at all
    assert r.successful == 6 and r.failed == 1, r.stats
    # a phone at another address still works
    uas = callee(office)
    register(office, ["202"], uas.port)
    uas.stop()
    # the ban is in the store (so it survives a restart)
    with office.db() as c:
        ban = c.execute("SELECT ip, reason FROM bans").fetchall()
    assert [b["ip"] for b in ban] == [attacker] and "authentication" in ban[0]["reason"]


def test_calls_without_credentials_never_leave_the_box(office):
    r = sipp(office, "anon", "caller.xml", csv="SEQUENTIAL\n201;;0048600100200\n",
             template={"MEDIA": "", "HOLD_MS": "100"}, args=("-m", "1", "-timeout", "10s")).run(20)
    assert r.successful == 0
    with office.db() as c:
        assert c.execute("SELECT count(*) FROM calls").fetchone()[0] == 0


def test_bans_listed_and_lifted_from_the_command_line(office):
    import subprocess
    import sys
    attacker = "127.0.0.78"
    sipp(office, "bf2", "register_wrong.xml", ip=attacker,
         args=("-s", "201", "-au", "201", "-ap", "nope-nope-1", "-m", "7", "-r", "5", "-timeout", "15s")).run(30)
    time.sleep(0.5)
    cli = [sys.executable, "-m", "firmware", "bans", "--data-dir", str(office.box.data_dir)]
    out = subprocess.run(cli + ["list"], capture_output=True, text=True, timeout=30)
    assert attacker in out.stdout and "authentication failures" in out.stdout
    out = subprocess.run(cli + ["lift", attacker], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "lifted" in out.stdout
    assert subprocess.run(cli + ["lift", "not-an-ip"], capture_output=True, text=True, timeout=30).returncode == 2
    time.sleep(6)  # the running box re-reads its bans every 5 s
    r = sipp(office, "bf3", "register_wrong.xml", ip=attacker,
             args=("-s", "201", "-au", "201", "-ap", "nope-nope-1", "-m", "1", "-timeout", "10s")).run(20)
    assert r.successful == 1, "the lifted address is still ignored"


def test_session_timer_refreshed_by_the_box_and_422_below_min_se(office):
    """RFC 4028: a phone asking for a 90 s session with the box as refresher gets a refresh
    re-INVITE before half-time runs out; a request below Min-SE gets 422 with Min-SE: 90."""
    uas = callee(office, echo=False)
    register(office, ["202"], uas.port)
    r = sipp(office, "uac_timer", "caller_timer.xml", csv=caller_csv([("201", "202")]),
             template={"SE": "90", "REFRESH_WITHIN_MS": "60000"},
             args=("-m", "1", "-timeout", "90s", "-timeout_error")).run(100)
    assert r.returncode == 0 and r.successful == 1, (r.stats, r.errors[-2000:])
    uas.stop()
    short = sipp(office, "uac_short", "caller_timer.xml", csv=caller_csv([("201", "202")]),
                 template={"SE": "30", "REFRESH_WITHIN_MS": "1000"}, args=("-m", "1", "-timeout", "15s")).run(20)
    assert "SIP/2.0 422" in short.messages and "Min-SE: 90" in short.messages
