"""Recording paths (no traversal), retention by age and free space, WAV header repair."""
import os
import struct
import wave
from pathlib import Path

import pytest

from firmware.store.calls import CallStore
from firmware.store.recordings import MIB, RecordingPathError, Recordings, repair_wav

T0 = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC


class Disk:
    """Free space = capacity minus the bytes under the recordings folder."""

    def __init__(self, root: Path, capacity: int):
        self.root, self.capacity = root, capacity

    def __call__(self, _path):
        used = sum(p.stat().st_size for p in self.root.rglob("*.wav"))
        return self.capacity - used


@pytest.fixture
def calls(tmp_path):
    s = CallStore(tmp_path / "calls.sqlite")
    yield s
    s.close()


def make_recording(rec, calls, t, size, caller="+48600100200"):
    cid = calls.begin_call(direction="inbound", caller_number=caller, started_at=t)
    rel, path = rec.allocate(cid, started_at=t, caller=caller, callee="600")
    path.write_bytes(b"\0" * size)
    calls.set_recording(cid, path=rel, state="recording")
    calls.end_call(cid, ended_at=t + 60, status="answered")
    rec.finished(rel)
    return cid, rel


def test_paths_are_dated_sanitised_and_unique(tmp_path):
    rec = Recordings(tmp_path, timezone="Europe/Warsaw")
    rel, path = rec.allocate("c0ffee00-1111-2222", started_at=T0, caller="../../etc/passwd", callee="<600>")
    assert rel == "recordings/2026/05/28/222640_etcpasswd_600_c0ffee001111.wav"
    assert path == tmp_path / rel and path.parent.is_dir()
    path.write_bytes(b"x")
    rel2, _ = rec.allocate("c0ffee00-1111-2222", started_at=T0, caller="../../etc/passwd", callee="<600>")
    assert rel2 == "recordings/2026/05/28/222640_etcpasswd_600_c0ffee001111-2.wav"
    assert rec.resolve(rel) == path.resolve()


@pytest.mark.parametrize("bad", [
    "../config.json", "/etc/passwd", "recordings/../config.json", "recordings/2026/05/28/../../../../x.wav",
    "recordings/2026/05/28/a.txt", "recordings/2026/5/28/a.wav", "recordings\\2026\\05\\28\\a.wav", "", None,
    "recordings/2026/05/28/.hidden.wav",
])
def test_resolve_refuses_foreign_paths(tmp_path, bad):
    rec = Recordings(tmp_path)
    with pytest.raises(RecordingPathError):
        rec.resolve(bad)


def test_resolve_refuses_symlink_escape(tmp_path):
    rec = Recordings(tmp_path / "data")
    day = tmp_path / "data" / "recordings" / "2026" / "05"
    day.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", day / "28")
    with pytest.raises(RecordingPathError):
        rec.resolve("recordings/2026/05/28/a.wav")


def test_oldest_deleted_first_until_space_is_free(tmp_path, calls):
    disk = Disk(tmp_path / "recordings", capacity=10 * MIB)
    rec = Recordings(tmp_path, calls, min_free_mb=4, free_bytes=disk)
    made = [make_recording(rec, calls, T0 + i * 86400, 2 * MIB) for i in range(3)]
    calls.flush()
    assert rec.may_record().allowed
    made.append(make_recording(rec, calls, T0 + 5 * 86400, 2 * MIB))
    assert disk(None) == 2 * MIB
    result = rec.enforce()
    assert [r for r, _ in result.deleted] == [made[0][1]]
    assert result.free_bytes == 4 * MIB and result.alarm == ""
    calls.flush()
    c = calls.get_call(made[0][0])
    assert (c.recording_state, c.recording_note) == ("deleted", "deleted to keep 4 MB free on the SD card (oldest first)")
    assert calls.get_call(made[1][0]).recording_state == "complete"
    assert not (tmp_path / made[0][1]).exists()
    assert not (tmp_path / made[0][1]).parent.exists()


def test_recordings_in_progress_are_never_deleted_and_alarm_raised(tmp_path, calls):
    disk = Disk(tmp_path / "recordings", capacity=5 * MIB)
    rec = Recordings(tmp_path, calls, min_free_mb=3, free_bytes=disk)
    old_cid, old_rel = make_recording(rec, calls, T0, 1 * MIB)
    live = calls.begin_call(direction="inbound", caller_number="600100201", started_at=T0 + 10)
    rel, path = rec.allocate(live, started_at=T0 + 10)
    path.write_bytes(b"\0" * 3 * MIB)
    calls.set_recording(live, path=rel, state="recording")
    calls.flush()
    perm = rec.may_record()
    assert not perm.allowed
    assert perm.reason == ("disk almost full: 2 MB free, 3 MB needed, no old recordings left to delete; "
                           "new calls are not recorded")
    assert path.exists() and not (tmp_path / old_rel).exists()
    assert rec.alarm == perm.reason
    rec.finished(rel)
    calls.end_call(live, ended_at=T0 + 100)
    calls.flush()
    assert rec.may_record().allowed
    assert rec.alarm == "" and not path.exists()
    assert calls.get_call(old_cid).recording_state == "deleted"


def test_max_age(tmp_path, calls):
    now = T0 + 40 * 86400
    rec = Recordings(tmp_path, calls, min_free_mb=1, max_age_days=30, free_bytes=lambda p: 100 * MIB,
                     clock=lambda: now)
    old = make_recording(rec, calls, T0, 10)
    new = make_recording(rec, calls, T0 + 20 * 86400, 10)
    result = rec.enforce()
    assert [r for r, _ in result.deleted] == [old[1]]
    calls.flush()
    assert calls.get_call(old[0]).recording_note == "deleted after 30 days (retention)"
    assert calls.get_call(new[0]).recording_state == "complete"


def _wav_bytes(frames: bytes, *, rate=8000, channels=2) -> bytes:
    import io
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def test_repair_wav_after_crash(tmp_path):
    frames = bytes(range(256)) * 125  # 32000 bytes = 8000 stereo frames
    good = _wav_bytes(frames)
    crashed = bytearray(good[:44] + frames + b"\x01\x02\x03")  # a torn last frame
    struct.pack_into("<I", crashed, 4, 36)   # header written before any audio
    struct.pack_into("<I", crashed, 40, 0)
    f = tmp_path / "cut.wav"
    f.write_bytes(crashed)
    assert repair_wav(f) is True
    with wave.open(str(f)) as w:
        assert (w.getnframes(), w.getnchannels(), w.readframes(8000)) == (8000, 2, frames)
    assert repair_wav(f) is False
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="is not a WAV file"):
        repair_wav(bad)


def test_free_space_reading_reused_for_a_second_only_when_enough(tmp_path):
    now = [100.0]
    free = [100 * MIB]
    reads = []

    def disk(_p):
        reads.append(free[0])
        return free[0]

    rec = Recordings(tmp_path, min_free_mb=10, free_bytes=disk, monotonic=lambda: now[0], free_margin_mb=50)
    assert rec.may_record().allowed and rec.may_record().allowed and len(reads) == 1
    free[0] = 1 * MIB
    now[0] += 1.01
    assert not rec.may_record().allowed  # the card filled up: seen after at most a second
    n = len(reads)
    assert not rec.may_record().allowed and len(reads) > n  # a short reading is never reused
    free[0] = 55 * MIB  # enough, but within the margin: read every time
    n = len(reads)
    assert rec.may_record().allowed and rec.may_record().allowed and len(reads) == n + 2
    free[0] = 100 * MIB
    assert rec.may_record().allowed and rec.alarm == ""
    rec.configure(min_free_mb=200)
    assert not rec.may_record().allowed  # a new threshold is checked at once


def test_folder_made_again_after_retention_removed_it(tmp_path, calls):
    rec = Recordings(tmp_path, calls, min_free_mb=1, max_age_days=1, free_bytes=lambda p: 100 * MIB,
                     clock=lambda: T0 + 3 * 86400)
    cid, rel = make_recording(rec, calls, T0, 100)
    calls.flush()
    assert [r for r, _ in rec.enforce().deleted] == [rel]
    assert not (tmp_path / rel).parent.exists()
    rel2, path2 = rec.allocate("another", started_at=T0)
    assert path2.parent.is_dir() and rel2 != rel
    rel3, _ = rec.allocate(cid, started_at=T0)
    assert rel3 not in (rel, rel2)  # names handed out before stay taken
