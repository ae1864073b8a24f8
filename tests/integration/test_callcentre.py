"""The call centre with real phones: queues, strategies, menus, announcements, wrap-up,
recording, a power cut mid-call, and a full disk."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import wave

import numpy as np
import pytest

from firmware.media.prompts import PromptCache, tts_available
from tests.integration.test_pbx_calls import heard, tone_wav
from tests.peers.audio import band_energy_ratio, read_wav, rms

CENTRE = """
[[queue]]
number = "600"
name = "Sales"
strategy = "ringall"
members = ["202", "203"]
agent_timeout = 20
wrapup = 0
announce = "Thank you for calling the sales team."
announce_position_every_s = 0

[[queue]]
number = "601"
name = "Service"
strategy = "leastrecent"
members = ["202", "203", "204"]
agent_timeout = 10
wrapup = 0
announce_position_every_s = 0

[[queue]]
number = "602"
name = "Wrapup"
strategy = "linear"
members = ["205"]
wrapup = 8
announce_position_every_s = 0

[[ivr]]
number = "500"
prompt = "Press 1 for sales, 2 for service."
options = { "1" = "600", "2" = "601" }
timeout = 5
retries = 2
invalid = "hangup"

[[timecondition]]
number = "700"
hours = ["mon-sun 00:00-24:00"]
open = "202"
closed = "messagebox:203"
"""

pytestmark = pytest.mark.parametrize("office", [CENTRE], indirect=True)


def records(office):
    with office.db() as c:
        return [dict(r) for r in c.execute("SELECT * FROM calls WHERE ended_at IS NOT NULL ORDER BY started_at")]


def events(office, call_id):
    with office.db() as c:
        return [dict(r) for r in c.execute("SELECT * FROM call_events WHERE call_id=? ORDER BY id", (call_id,))]


def test_ringall_first_pickup_wins_and_the_others_stop_ringing(office, pj_phones, tmp_path):
    caller = pj_phones("201")
    a2 = pj_phones("202")
    a3 = pj_phones("203")
    r = caller.cmd("dial", uri=office.uri("600"), wait_confirmed=10)
    assert r["state"] == "CONFIRMED"           # the box answers and plays the announcement
    i2 = a2.wait_event("incoming", timeout=15)
    i3 = a3.wait_event("incoming", timeout=15)
    a3.cmd("answer", call=i3["call"])
    st = a2.cmd("wait_state", call=i2["call"], states=["DISCONNECTED"], timeout=10)
    assert st["state"] == "DISCONNECTED"
    caller.cmd("play", call=r["call"], wav=tone_wav(tmp_path, 650))
    a3.cmd("play", call=i3["call"], wav=tone_wav(tmp_path, 1250))
    caller.cmd("sleep", seconds=3)
    assert heard(a3.cmd("info", call=i3["call"])["record"], 650) > 0.8
    assert heard(caller.cmd("info", call=r["call"])["record"], 1250) > 0.8
    caller.cmd("hangup", call=r["call"])
    time.sleep(1.5)
    rec = [x for x in records(office) if x["queue"] == "600"][-1]
    assert rec["answered_by"] == "203" and rec["status"] == "answered" and rec["wait_s"] > 0
    ev = events(office, rec["id"])
    rings = {(e["agent"], e["result"]) for e in ev if e["type"] == "agent_ring"}
    assert ("203", "answered") in rings and ("202", "other_answered") in rings
    # the recording holds both voices: the customer (caller) left, the agent right
    pcm, rate, ch = read_wav(office.box.data_dir / rec["recording_path"])
    tail = pcm[-int(2.5 * rate):]
    assert band_energy_ratio(tail[:, 0], 650) > 0.8 and band_energy_ratio(tail[:, 1], 1250) > 0.8


def test_leastrecent_picks_the_longest_idle_agent(office, pj_phones):
    caller = pj_phones("201")
    agents = {n: pj_phones(n, auto_answer=True) for n in ("202", "203", "204")}

    def queue_call():
        r = caller.cmd("dial", uri=office.uri("601"), wait_confirmed=10)
        for _ in range(100):
            for n, p in agents.items():
                try:
                    e = p.wait_event("incoming", timeout=0.1)
                    return r["call"], n, e["call"]
                except TimeoutError:
                    pass
        raise AssertionError("no agent was rung")

    c1, n1, _ = queue_call()
    c2, n2, _ = queue_call()
    assert n1 == "202" and n2 == "203"         # nobody has taken a call yet: member order
    caller.cmd("hangup", call=c2)              # 203 ends first...
    time.sleep(1)
    caller.cmd("hangup", call=c1)              # ...then 202
    time.sleep(1)
    c3, n3, _ = queue_call()
    assert n3 == "204"                         # never had a call: longest idle
    caller.cmd("hangup", call=c3)
    time.sleep(1)
    c4, n4, _ = queue_call()
    assert n4 == "203", "leastrecent must pick 203, idle since before 202 and 204"
    caller.cmd("hangup", call=c4)


def test_menu_choice_2_reaches_the_service_queue(office, pj_phones):
    caller = pj_phones("201")
    agent = pj_phones("204", auto_answer=True)
    r = caller.cmd("dial", uri=office.uri("500"), wait_confirmed=10)
    caller.cmd("sleep", seconds=1.5)
    caller.cmd("dtmf", call=r["call"], digits="2")
    inc = agent.wait_event("incoming", timeout=15)
    agent.cmd("sleep", seconds=1)
    caller.cmd("hangup", call=r["call"])
    time.sleep(1.5)
    rec = records(office)[-1]
    assert rec["queue"] == "601" and rec["answered_by"] == "204"
    assert rec["ivr_path"].startswith("500") and rec["ivr_path"].endswith(":2")
    assert any(e["type"] == "ivr_choice" and e["data"] and '"2"' in e["data"] for e in events(office, rec["id"]))


@pytest.mark.skipif(not tts_available(), reason="espeak-ng needed")
def test_the_caller_hears_the_menu_prompt(office, pj_phones, tmp_path):
    caller = pj_phones("201")
    r = caller.cmd("dial", uri=office.uri("500"), wait_confirmed=10)
    caller.cmd("sleep", seconds=4)
    rx = caller.cmd("info", call=r["call"])["record"]
    caller.cmd("hangup", call=r["call"])
    data = open(rx, "rb").read()[44:]
    got = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64)
    prompt_path = PromptCache(tmp_path / "p").speak("Press 1 for sales, 2 for service.", "en")
    with wave.open(str(prompt_path)) as w:
        ref = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    ref = ref[:8000 * 2]                        # the first two seconds of the prompt
    n = 1 << int(np.ceil(np.log2(len(got) + len(ref))))
    corr = np.fft.irfft(np.fft.rfft(got, n) * np.conj(np.fft.rfft(ref, n)), n)
    peak = np.max(np.abs(corr))
    # normalised by the energy of the matching window: ~1.0 for an identical signal
    lag = int(np.argmax(np.abs(corr)))
    window = got[lag:lag + len(ref)] if lag + len(ref) <= len(got) else got[-len(ref):]
    score = peak / (np.linalg.norm(ref) * max(np.linalg.norm(window), 1.0))
    assert score > 0.6, f"the caller did not hear the menu prompt (correlation {score:.2f})"


def test_wrapup_keeps_the_agent_from_the_next_call(office, pj_phones):
    caller = pj_phones("201")
    agent = pj_phones("205", auto_answer=True)
    r = caller.cmd("dial", uri=office.uri("602"), wait_confirmed=10)
    agent.wait_event("incoming", timeout=15)
    caller.cmd("sleep", seconds=1)
    caller.cmd("hangup", call=r["call"])
    time.sleep(0.5)
    r2 = caller.cmd("dial", uri=office.uri("602"), wait_confirmed=10)
    t0 = time.monotonic()
    agent.wait_event("incoming", timeout=20)
    waited = time.monotonic() - t0
    assert waited > 6, f"the agent was offered a call {waited:.1f} s into an 8 s wrap-up"
    caller.cmd("hangup", call=r2["call"])
    with office.db() as c:
        states = [r["state"] for r in c.execute("SELECT state FROM agent_states WHERE agent='205' ORDER BY id")]
    assert "wrapup" in states


def test_power_cut_mid_call_keeps_record_and_a_playable_recording(office, pj_phones, tmp_path):
    a = pj_phones("201")
    b = pj_phones("202", auto_answer=True)
    r = a.cmd("dial", uri=office.uri("202"), wait_confirmed=10)
    a.cmd("play", call=r["call"], wav=tone_wav(tmp_path, 500))
    a.cmd("sleep", seconds=4)
    office.box.proc.send_signal(signal.SIGKILL)   # the power cut
    office.box.proc.wait(10)
    from tests.conftest import BoxProcess
    again = BoxProcess(tmp_path, "--rtp-ports", "30000-30100", provision=None)
    try:
        with office.db() as c:
            row = dict(c.execute("SELECT * FROM calls").fetchone())
        assert row["interrupted"] == 1 and row["status"] == "answered"
        assert row["recording_state"] == "interrupted", row["recording_note"]
        pcm, rate, ch = read_wav(office.box.data_dir / row["recording_path"])
        seconds = len(pcm) / rate
        assert 2.5 <= seconds <= 4.5, f"{seconds:.1f} s kept of about 4 s"
        assert band_energy_ratio(pcm[-int(1.5 * rate):, 0], 500) > 0.7
    finally:
        again.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root")
def test_full_disk_frees_old_recordings_and_never_stops_a_call(office, tmp_path, pj_phones):
    """Recordings live on a 3 MiB file system already 80 % full of old recordings; the box keeps
    1 MiB free by deleting the oldest first, and the call goes on being recorded."""
    office.box.stop()
    data = office.box.data_dir
    rec_dir = data / "recordings"
    rec_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(rec_dir)], check=True)
    try:
        old = rec_dir / "2025" / "01" / "02"
        old.mkdir(parents=True)
        for i in range(5):
            with wave.open(str(old / f"old-{i}.wav"), "wb") as w:
                w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
                w.writeframes(b"\x01\x00" * 240_000)          # 480 kB each
            os.utime(old / f"old-{i}.wav", (1_700_000_000 + i, 1_700_000_000 + i))
        prov = tmp_path / "disk.toml"
        prov.write_text((tmp_path / "office.toml").read_text().replace(
            "[system.security]", "[system.recording]\nmin_free_mb = 1\n\n[system.security]"))
        from tests.conftest import BoxProcess
        box = BoxProcess(tmp_path, "--rtp-ports", "30200-30400", provision=prov)
        office.box = box
        office.sip_port = box.sip_port
        office.registrar = f"sip:127.0.0.1:{box.sip_port}"
        a = pj_phones("201")
        b = pj_phones("202", auto_answer=True)
        r = a.cmd("dial", uri=office.uri("202"), wait_confirmed=10)
        a.cmd("sleep", seconds=3)
        assert a.cmd("info", call=r["call"])["state"] == "CONFIRMED"
        a.cmd("hangup", call=r["call"])
        time.sleep(1.5)
        rec = records(office)[-1]
        assert rec["status"] == "answered" and rec["recording_state"] == "complete", rec["recording_note"]
        left = sorted(p.name for p in old.iterdir())
        assert "old-0.wav" not in left, "the oldest recording was not deleted"
        assert left == sorted(left)[-len(left):]      # deleted oldest first
        assert os.statvfs(rec_dir).f_bavail * os.statvfs(rec_dir).f_frsize >= 512 * 1024
        box.stop()
    finally:
        subprocess.run(["umount", "-l", str(rec_dir)], check=False)


def test_agent_logs_in_by_feature_code_and_gets_queue_calls(office, pj_phones):
    """203 is no member of queue 602; *45602 logs it in (the phone hears a confirmation), a
    queue call then rings it; *45602 again logs it out."""
    agent = pj_phones("203", auto_answer=True)
    caller = pj_phones("201")
    r = agent.cmd("dial", uri=office.uri("*45602"), wait_confirmed=10)
    assert agent.cmd("wait_state", call=r["call"], states=["DISCONNECTED"], timeout=15)["code"] in (200, 0)
    with office.db() as c:
        states = [row["state"] for row in c.execute("SELECT state FROM agent_states WHERE agent='203' ORDER BY id")]
    assert "available" in states
    q = caller.cmd("dial", uri=office.uri("602"), wait_confirmed=10)
    agent.wait_event("incoming", timeout=15)
    caller.cmd("hangup", call=q["call"])
    time.sleep(1)
    r = agent.cmd("dial", uri=office.uri("*45602"), wait_confirmed=10)
    agent.cmd("wait_state", call=r["call"], states=["DISCONNECTED"], timeout=15)
    q = caller.cmd("dial", uri=office.uri("602"), wait_confirmed=10)
    with pytest.raises(TimeoutError):
        agent.wait_event("incoming", timeout=5)       # logged out: no longer offered 602's calls
    caller.cmd("hangup", call=q["call"])


def test_manager_listens_whispers_and_barges(office, pj_phones, tmp_path):
    caller = pj_phones("201")
    agent = pj_phones("202", auto_answer=True)
    manager = pj_phones("205")
    r = caller.cmd("dial", uri=office.uri("202"), wait_confirmed=10)
    ca = agent.wait_event("incoming")["call"]
    caller.cmd("play", call=r["call"], wav=tone_wav(tmp_path, 500))
    agent.cmd("play", call=ca, wav=tone_wav(tmp_path, 1100))
    m = manager.cmd("dial", uri=office.uri("*222202"), wait_confirmed=10)     # listen
    manager.cmd("play", call=m["call"], wav=tone_wav(tmp_path, 1700))
    manager.cmd("sleep", seconds=3)
    heard_by_manager = manager.cmd("info", call=m["call"])["record"]
    assert heard(heard_by_manager, 500, 2) > 0.25 and heard(heard_by_manager, 1100, 2) > 0.25
    assert heard(agent.cmd("info", call=ca)["record"], 1700, 2) < 0.05, "a listener must not be heard"
    assert heard(caller.cmd("info", call=r["call"])["record"], 1700, 2) < 0.05
    manager.cmd("hangup", call=m["call"])
    w = manager.cmd("dial", uri=office.uri("*223202"), wait_confirmed=10)     # whisper
    manager.cmd("play", call=w["call"], wav=tone_wav(tmp_path, 1700))
    manager.cmd("sleep", seconds=3)
    assert heard(agent.cmd("info", call=ca)["record"], 1700, 2) > 0.1, "the agent does not hear the whisper"
    assert heard(caller.cmd("info", call=r["call"])["record"], 1700, 2) < 0.05, "the customer heard the whisper"
    manager.cmd("hangup", call=w["call"])
    caller.cmd("hangup", call=r["call"])
    rec = office.wait_call_record(lambda row: row["caller_number"] == "201" and row["answered_by"] == "202")
    kinds = {e["type"] for e in events(office, rec["id"])}
    assert {"listen", "whisper"} <= kinds


def test_override_sends_callers_to_the_closed_destination_a_message_box(office, pj_phones, tmp_path):
    caller = pj_phones("201")
    boss = pj_phones("204")
    r = boss.cmd("dial", uri=office.uri("*60700"), wait_confirmed=10)      # override: closed
    boss.cmd("wait_state", call=r["call"], states=["DISCONNECTED"], timeout=15)
    time.sleep(1)
    c = caller.cmd("dial", uri=office.uri("700"), wait_confirmed=10)      # the message box answers
    caller.cmd("sleep", seconds=7)                                       # prompt, beep
    caller.cmd("play", call=c["call"], wav=tone_wav(tmp_path, 900))
    caller.cmd("sleep", seconds=3)
    caller.cmd("hangup", call=c["call"])
    rec = office.wait_call_record(lambda row: row["callee_number"] == "700")
    assert rec["status"] == "voicemail" and rec["to_extension"] == "203"
    pcm, rate, ch = read_wav(office.box.data_dir / rec["recording_path"])
    assert ch == 1 and band_energy_ratio(pcm[-int(2 * rate):, 0], 900) > 0.6


def test_blf_key_shows_queue_login_state(office, pj_phones):
    """A BLF key subscribed to *45602 is lit while its own user is logged in to queue 602."""
    from tests.integration.test_pbx_features import _expect_notify
    from tests.integration.test_pbx_sipp import auth, sipp
    expect = "".join(_expect_notify(i, p) for i, p in enumerate([
        "dialog-info[^>]*>\\s*</dialog-info>", "<state>confirmed</state>", "dialog-info[^>]*>\\s*</dialog-info>"]))
    w = sipp(office, "blfq", "blf_watch.xml", csv=f"SEQUENTIAL\n203;{auth('203')};*45602\n",
             template={"EXPECT": expect}, args=("-m", "1", "-timeout", "40s", "-timeout_error")).start()
    agent = pj_phones("203", auto_answer=True)
    time.sleep(1.5)
    for _ in range(2):                                   # log in, then out again
        r = agent.cmd("dial", uri=office.uri("*45602"), wait_confirmed=10)
        agent.cmd("wait_state", call=r["call"], states=["DISCONNECTED"], timeout=15)
        time.sleep(1)
    res = w.wait(30)
    assert res.returncode == 0 and res.successful == 1, res.errors[-3000:]
