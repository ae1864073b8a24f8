"""repair_wav on files as an interrupted recorder leaves them, and on files it must refuse."""
from __future__ import annotations

import struct
import wave

import pytest

from firmware.media import repair_wav
from firmware.media.errors import BadFormat, NotFound


def header(channels=2, rate=8000, data_bytes=0, riff=None, fmt_extra=b"") -> bytes:
    block = channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16) + fmt_extra
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", riff if riff is not None else len(body) + data_bytes) + body


def frames(n: int, channels=2) -> bytes:
    return b"".join(struct.pack("<h", (i * 37) % 2000 - 1000) for i in range(n * channels))


def test_header_with_zero_sizes_gets_the_real_length(tmp_path):
    p = tmp_path / "a.wav"
    p.write_bytes(header(data_bytes=0, riff=36) + frames(8000))
    r = repair_wav(p)
    assert r.changed and r.seconds == 1.0 and r.truncated_bytes == 0 and r.channels == 2
    with wave.open(str(p)) as w:
        assert w.getnframes() == 8000 and w.getnchannels() == 2


def test_stale_header_and_torn_last_frame(tmp_path):
    p = tmp_path / "b.wav"
    p.write_bytes(header(data_bytes=4 * 4000) + frames(12000) + b"\x01\x02\x03")
    r = repair_wav(p)
    assert r.changed and r.truncated_bytes == 3 and r.data_bytes == 4 * 12000
    assert p.stat().st_size == 44 + 4 * 12000
    assert repair_wav(p).changed is False


def test_header_larger_than_the_file(tmp_path):
    p = tmp_path / "c.wav"
    p.write_bytes(header(channels=1, data_bytes=10**6) + frames(800, channels=1))
    r = repair_wav(p)
    assert r.changed and r.data_bytes == 1600 and r.seconds == pytest.approx(0.1)


def test_consistent_file_with_a_trailing_chunk_is_left_alone(tmp_path):
    p = tmp_path / "d.wav"
    data = frames(100, channels=1)
    lst = b"LIST" + struct.pack("<I", 4) + b"INFO"
    body = header(channels=1, data_bytes=len(data))
    raw = bytearray(body + data + lst)
    struct.pack_into("<I", raw, 4, len(raw) - 8)
    p.write_bytes(bytes(raw))
    r = repair_wav(p)
    assert not r.changed and r.data_bytes == len(data)


def test_extensible_fmt_chunk(tmp_path):
    p = tmp_path / "e.wav"
    raw = bytearray(header(channels=1, data_bytes=0))
    struct.pack_into("<H", raw, 20, 0xFFFE)
    p.write_bytes(bytes(raw) + frames(80, channels=1))
    assert repair_wav(p).data_bytes == 160


@pytest.mark.parametrize("content", [b"", b"RIFF", b"RIFX" + b"\0" * 60, b"RIFF\0\0\0\0WAVEjunk\4\0\0\0abcd",
                                     header()[:36], b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0" + b"\x03\0" + b"\0" * 14 + b"data\0\0\0\0"])
def test_not_a_repairable_wav(tmp_path, content):
    p = tmp_path / "x.wav"
    p.write_bytes(content)
    with pytest.raises(BadFormat):
        repair_wav(p)
    assert p.read_bytes() == content  # untouched


def test_missing_file(tmp_path):
    with pytest.raises(NotFound):
        repair_wav(tmp_path / "nope.wav")
