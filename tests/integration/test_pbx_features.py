"""Hold with music, blind and attended transfer, call pickup, DTMF interworking: pjsua2 phones."""
from __future__ import annotations

import time

from tests.integration.test_pbx_calls import heard, tone_wav


def connect(office, a, b, a_num="201", b_num="202"):
    """a calls b (b auto-answers); returns (a's call id, b's call id)."""
    c = a.cmd("dial", uri=office.uri(b_num), wait_confirmed=10)
    assert c["state"] == "CONFIRMED", c
    return c["call"], b.wait_event("incoming")["call"]


def test_hold_plays_music_and_resume_restores_the_conversation(office, pj_phones, tmp_path):
    a = pj_phones("201")
    b = pj_phones("202", auto_answer=True)
    ca, cb = connect(office, a, b)
    a.cmd("play", call=ca, wav=tone_wav(tmp_path, 500))
    b.cmd("play", call=cb, wav=tone_wav(tmp_path, 1100))
    a.cmd("sleep", seconds=2)
    assert heard(b.cmd("info", call=cb)["record"], 500) > 0.8
    a.cmd("hold", call=ca)
    a.cmd("sleep", seconds=3)
    rec_b = b.cmd("info", call=cb)["record"]
    assert heard(rec_b, 500) < 0.2, "the held party still hears the other side"
    from tests.peers.audio import rms
    import numpy as np
    data = open(rec_b, "rb").read()[44:]
    music = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")[-8000:]
    assert rms(music) > 300, "no music on hold"
    a.cmd("unhold", call=ca)
    a.cmd("sleep", seconds=3)
    assert heard(b.cmd("info", call=cb)["record"], 500) > 0.8, "no audio after resume"
    a.cmd("hangup", call=ca)
    rec = office.wait_call_record(lambda r: r["caller_number"] == "201")
    assert rec["hold_s"] >= 2.5
    with office.db() as c:
        kinds = [r["type"] for r in c.execute("SELECT type FROM call_events WHERE call_id=? ORDER BY ts", (rec["id"],))]
    assert "hold" in kinds and "unhold" in kinds


def test_blind_transfer(office, pj_phones, tmp_path):
    a = pj_phones("201")
    b = pj_phones("202", auto_answer=True)
    c = pj_phones("203", auto_answer=True)
    ca, cb = connect(office, a, b)
    a.cmd("transfer", call=ca, uri=office.uri("203"))          # A sends B on to C
    cc = c.wait_event("incoming", timeout=15)["call"]
    assert a.cmd("wait_state", call=ca, states=["DISCONNECTED"], timeout=10)["state"] == "DISCONNECTED"
    b.cmd("play", call=cb, wav=tone_wav(tmp_path, 700))
    c.cmd("play", call=cc, wav=tone_wav(tmp_path, 1300))
    b.cmd("sleep", seconds=3)
    assert heard(c.cmd("info", call=cc)["record"], 700) > 0.8
    assert heard(b.cmd("info", call=cb)["record"], 1300) > 0.8
    b.cmd("hangup", call=cb)
    assert c.cmd("wait_state", call=cc, states=["DISCONNECTED"], timeout=10)["state"] == "DISCONNECTED"
    rec = office.wait_call_record(lambda r: r["caller_number"] == "201")
    with office.db() as db:
        ev = [dict(r) for r in db.execute("SELECT type, result FROM call_events WHERE call_id=?", (rec["id"],))]
    assert any(e["type"] == "transfer" and "203" in e["result"] for e in ev)


def test_attended_transfer(office, pj_phones, tmp_path):
    a = pj_phones("201")
    b = pj_phones("202", auto_answer=True)
    c = pj_phones("203", auto_answer=True)
    a1, b1 = connect(office, a, b)
    a.cmd("hold", call=a1)
    a2, c2 = connect(office, a, c, "201", "203")
    a.cmd("sleep", seconds=1)
    a.cmd("transfer_replaces", call=a1, other=a2)
    assert a.cmd("wait_state", call=a1, states=["DISCONNECTED"], timeout=10)["state"] == "DISCONNECTED"
    assert a.cmd("wait_state", call=a2, states=["DISCONNECTED"], timeout=10)["state"] == "DISCONNECTED"
    b.cmd("play", call=b1, wav=tone_wav(tmp_path, 700))
    c.cmd("play", call=c2, wav=tone_wav(tmp_path, 1300))
    b.cmd("sleep", seconds=3)
    assert heard(c.cmd("info", call=c2)["record"], 700) > 0.8, "C does not hear B"
    assert heard(b.cmd("info", call=b1)["record"], 1300) > 0.8, "B does not hear C"
    c.cmd("hangup", call=c2)
    assert b.cmd("wait_state", call=b1, states=["DISCONNECTED"], timeout=10)["state"] == "DISCONNECTED"


def test_group_and_directed_pickup(office, pj_phones):
    a = pj_phones("201")
    b = pj_phones("202")                        # rings, never answers
    p = pj_phones("203")
    r = a.cmd("dial", uri=office.uri("202"))
    inc = b.wait_event("incoming")
    pk = p.cmd("dial", uri=office.uri("**202"), wait_confirmed=10)
    assert pk["state"] == "CONFIRMED"
    assert b.cmd("wait_state", call=inc["call"], states=["DISCONNECTED"], timeout=10)["state"] == "DISCONNECTED"
    assert a.cmd("wait_state", call=r["call"], states=["CONFIRMED"], timeout=10)["state"] == "CONFIRMED"
    p.cmd("hangup", call=pk["call"])
    assert a.cmd("wait_state", call=r["call"], states=["DISCONNECTED"], timeout=10)["state"] == "DISCONNECTED"
    rec = office.wait_call_record(lambda row: row["caller_number"] == "201" and row["answered_by"] == "203")
    assert rec["status"] == "answered"
    # group pickup with *8 (no pickup groups configured: any ringing colleague)
    r = a.cmd("dial", uri=office.uri("202"))
    inc = b.wait_event("incoming")
    pk = p.cmd("dial", uri=office.uri("*8"), wait_confirmed=10)
    assert pk["state"] == "CONFIRMED"
    assert a.cmd("wait_state", call=r["call"], states=["CONFIRMED"], timeout=10)["state"] == "CONFIRMED"
    a.cmd("hangup", call=r["call"])


def test_dtmf_sip_info_reaches_the_other_phone_as_rfc4733(office, pj_phones):
    a = pj_phones("201")
    b = pj_phones("202", auto_answer=True)
    ca, cb = connect(office, a, b)
    a.cmd("sleep", seconds=1)
    a.cmd("dtmf", call=ca, digits="42#", method="info")
    b.cmd("sleep", seconds=2)
    assert b.cmd("info", call=cb)["dtmf"] == "42#"
    b.cmd("dtmf", call=cb, digits="7*")         # and RFC 4733 the other way
    a.cmd("sleep", seconds=2)
    assert a.cmd("info", call=ca)["dtmf"] == "7*"
    a.cmd("hangup", call=ca)


def _expect_notify(n: int, pattern: str) -> str:
    from xml.sax.saxutils import escape
    return f'''  <recv request="NOTIFY">
    <action><ereg regexp="{escape(pattern)}" search_in="body" check_it="true" assign_to="n{n}"/></action>
  </recv>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <Reference variables="n{n}"/>
'''


def test_busy_lamp_field_follows_a_colleague(office, pj_phones):
    from tests.integration.test_pbx_sipp import auth, sipp
    # the lamp of 203's key for 202: idle, ringing, in a call, idle
    expect = "".join(_expect_notify(i, p) for i, p in enumerate([
        "dialog-info[^>]*>\\s*</dialog-info>", "<state>early</state>",
        "<state>confirmed</state>", "dialog-info[^>]*>\\s*</dialog-info>"]))
    w = sipp(office, "blf", "blf_watch.xml", csv=f"SEQUENTIAL\n203;{auth('203')};202\n",
             template={"EXPECT": expect}, args=("-m", "1", "-timeout", "40s", "-timeout_error")).start()
    a = pj_phones("201")
    b = pj_phones("202")
    time.sleep(1.5)
    r = a.cmd("dial", uri=office.uri("202"))
    inc = b.wait_event("incoming")
    time.sleep(1)
    b.cmd("answer", call=inc["call"])
    a.cmd("wait_state", call=r["call"], states=["CONFIRMED"], timeout=10)
    time.sleep(1)
    a.cmd("hangup", call=r["call"])
    res = w.wait(30)
    assert res.returncode == 0 and res.successful == 1, (res.errors[-3000:])
