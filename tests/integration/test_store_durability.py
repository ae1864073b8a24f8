"""Power-loss behaviour of the stores: a real child process is killed with SIGKILL mid-write."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from firmware.store.calls import CallStore
from firmware.store.config_store import ConfigStore
from tests.conftest import ROOT

CONFIG_WRITER = textwrap.dedent("""
    import sys
    from firmware.store.config_store import ConfigStore
    s = ConfigStore(sys.argv[1])
    i = int(sys.argv[2])
    print("ready", flush=True)
    while True:
        i = 5 + (i + 1) % 590
        s.update("system", "", {"nat_keepalive_s": i, "realm": "r" + "x" * (i % 50)})
        print(i, flush=True)
""")

CALL_WRITER = textwrap.dedent("""
    import sys
    from firmware.store.calls import CallStore
    s = CallStore(sys.argv[1], commit_interval=0.02, writer=sys.argv[3])
    assert s.writer == sys.argv[3]
    n = int(sys.argv[2])
    while True:
        for _ in range(25):
            cid = s.begin_call(direction="inbound", caller_number="+4860%07d" % n, call_id="call-%06d" % n,
                               started_at=1.7e9 + n)
            s.add_event(cid, "queue_enter", ts=1.7e9 + n + 1, queue="600", position=1)
            s.update_call(cid, answered_at=1.7e9 + n + 5, answered_by="201")
            s.end_call(cid, ended_at=1.7e9 + n + 60, hangup_side="caller")
            n += 1
        s.flush()
        print(n, flush=True)
""")


def _child(script: str, *args: str) -> subprocess.Popen:
    # a session of its own: SIGKILL to the group takes the box and its call-store writer
    # process down at the same instant, as a power cut does
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)


def _power_cut(proc: subprocess.Popen) -> str:
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    return out


def _read_until(proc: subprocess.Popen, count: int, timeout: float = 30.0) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < count and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    return lines


def test_config_file_is_old_or_new_after_kill_mid_write(tmp_path):
    """Ten SIGKILLs at random moments of a write loop: the file always parses, is one of the
    versions written (the last reported or the next), and the store opens."""
    data = tmp_path / "data"
    s = ConfigStore(data)
    s.provision_file(ROOT / "firmware" / "data" / "example.toml")
    del s
    rng = random.Random(7)
    last = 25
    for _ in range(10):
        proc = _child(CONFIG_WRITER, str(data), str(last))
        assert _read_until(proc, 1) == ["ready"]
        time.sleep(rng.uniform(0.02, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        written = [int(x) for x in out.split() if x.isdigit()]
        raw = json.loads((data / "config.json").read_text())
        value = next(iter(raw["system"].values()))["data"]["nat_keepalive_s"]
        reported = written[-1] if written else last
        assert value in (reported, 5 + (reported + 1) % 590), (value, reported)
        again = ConfigStore(data)
        assert again.current().system.nat_keepalive_s == value
        assert again.current().extension("201") is not None
        assert not [p for p in os.listdir(data) if ".tmp-" in p]
        last = value


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_call_store_keeps_every_flushed_call_after_kill(tmp_path, writer):
    """Calls reported flushed before SIGKILL are all there after reopening, complete."""
    db = tmp_path / "calls.sqlite"
    n = 0
    for round_ in range(3):
        proc = _child(CALL_WRITER, str(db), str(n), writer)
        lines = _read_until(proc, 3 + round_)
        assert len(lines) == 3 + round_, lines
        time.sleep(0.01 * round_)
        out = _power_cut(proc)
        flushed = int((lines + out.split())[-1])
        store = CallStore(db)
        try:
            assert store.recovery is None
            rows = store.query("SELECT id, status, ended_at, talk_s FROM calls ORDER BY id")
            ids = {r["id"] for r in rows}
            assert {f"call-{i:06d}" for i in range(flushed)} <= ids
            for r in rows:
                if r["id"] < f"call-{flushed:06d}":
                    assert (r["status"], r["talk_s"]) == ("answered", 55.0)
            events = store.query("SELECT count(*) AS n FROM call_events WHERE call_id < ?", (f"call-{flushed:06d}",))
            assert events[0]["n"] == flushed
            assert store.query("PRAGMA quick_check")[0][0] == "ok"
            n = len(ids)
        finally:
            store.close()
    assert n >= 3 * 25


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_power_loss_mid_call_marks_calls_interrupted(tmp_path, writer):
    db = tmp_path / "calls.sqlite"
    script = textwrap.dedent("""
        import sys, time
        from firmware.store.calls import CallStore
        s = CallStore(sys.argv[1], writer=sys.argv[2])
        done = s.begin_call(direction="inbound", caller_number="+48600000001", started_at=100.0)
        s.end_call(done, ended_at=160.0, status="answered")
        live = s.begin_call(direction="inbound", caller_number="+48600000002", started_at=200.0, call_id="live")
        s.update_call(live, answered_at=210.0, answered_by="201", recording_path="recordings/x.wav",
                      recording_state="recording")
        s.add_event(live, "hold", ts=250.0)
        s.agent_state("201", "in_call", at=210.0)
        s.flush()
        print("flushed", flush=True)
        time.sleep(60)
    """)
    proc = _child(script, str(db), writer)
    assert _read_until(proc, 1) == ["flushed"]
    _power_cut(proc)
    with CallStore(db) as store:
        assert store.mark_interrupted_calls() == ["live"]
        c = store.get_call("live")
        assert (c.status, c.interrupted, c.ended_at, c.talk_s, c.hangup_side) == ("answered", True, 250.0, 40.0, "system")
        assert c.recording_state == "interrupted"
        assert store.agent_current_states() == {}
        assert store.calls_in_progress() == []
        assert store.mark_interrupted_calls() == []
