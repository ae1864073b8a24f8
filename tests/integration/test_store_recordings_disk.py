"""Retention on a real, small file system (a 4 MiB tmpfs): the disk fills, old recordings go,
recording stops cleanly with an alarm when nothing is left to delete."""
import os
import subprocess

import pytest

from firmware.store.calls import CallStore
from firmware.store.recordings import MIB, Recordings

T0 = 1_780_000_000.0


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "sd"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_frees_old_recordings_and_never_stops_a_call(small_fs, tmp_path):
    calls = CallStore(tmp_path / "calls.sqlite")
    try:
        rec = Recordings(small_fs, calls, min_free_mb=1)
        ids = []
        for i in range(8):
            perm = rec.may_record()
            assert perm.allowed, perm
            cid = calls.begin_call(direction="inbound", caller_number=f"60010020{i}", started_at=T0 + i * 60)
            rel, path = rec.allocate(cid, started_at=T0 + i * 60)
            calls.set_recording(cid, path=rel, state="recording")
            path.write_bytes(os.urandom(MIB // 2 + 100_000))
            calls.end_call(cid, ended_at=T0 + i * 60 + 30, status="answered")
            calls.flush()
            rec.finished(rel)
            ids.append(cid)
        assert rec.may_record().allowed
        calls.flush()
        states = [calls.get_call(c).recording_state for c in ids]
        assert states[0] == "deleted" and states[-1] == "complete"
        assert states == sorted(states, key=lambda s: s != "deleted")
        assert rec.free_bytes() >= MIB

        live = calls.begin_call(direction="inbound", caller_number="600100299", started_at=T0 + 1000)
        rel, path = rec.allocate(live, started_at=T0 + 1000)
        calls.set_recording(live, path=rel, state="recording")
        calls.flush()
        def fill():
            with open(path, "ab") as f:
                for _ in range(200):
                    try:
                        f.write(b"\0" * 65536)
                        f.flush()
                    except OSError:
                        return
            raise AssertionError("a 4 MiB disk never filled")
        rounds = 0
        while True:
            rounds += 1
            assert rounds <= 10, "the live recording never filled the disk"
            fill()
            perm = rec.may_record()
            if not perm.allowed:
                break
        assert rounds >= 2, "old recordings made room at least once"
        assert not perm.allowed and "disk almost full" in perm.reason
        calls.flush()
        assert path.exists()
        assert calls.get_call(live).status == "in_progress"
        assert all(calls.get_call(c).recording_state == "deleted" for c in ids)
        assert all(calls.get_call(c).status == "answered" for c in ids)
    finally:
        calls.close()
