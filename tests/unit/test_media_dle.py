"""V.253 DLE shielding used on voice-modem PCM channels."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware._pbxcore import ffi, lib

DLE = 0x10


def encode(audio: bytes) -> bytes:
    out = ffi.new("uint8_t[]", 2 * len(audio) + 1)
    n = lib.pbx_dle_encode(ffi.from_buffer("uint8_t[]", audio) if audio else ffi.NULL, len(audio), out)
    return bytes(ffi.buffer(out, n))


def decode(chunks: list[bytes]) -> tuple[bytes, bytes]:
    st_ = ffi.new("pbx_dle_state_t *")
    audio, codes = bytearray(), bytearray()
    for c in chunks:
        a = ffi.new("uint8_t[]", len(c) + 1)
        k = ffi.new("uint8_t[]", len(c) // 2 + 2)
        na, nc = ffi.new("int *"), ffi.new("int *")
        lib.pbx_dle_decode(st_, ffi.from_buffer("uint8_t[]", c) if c else ffi.NULL, len(c), a, na, k, nc)
        audio += ffi.buffer(a, na[0])
        codes += ffi.buffer(k, nc[0])
    return bytes(audio), bytes(codes)


def test_examples():
    assert encode(b"\x01\x10\x02") == b"\x01\x10\x10\x02"
    assert decode([b"\x01\x10\x10\x02\x10\x35\x03"]) == (b"\x01\x10\x02\x03", b"5")
    assert decode([b"\x01\x10", b"b\x02"]) == (b"\x01\x02", b"b")
    assert decode([b"\x10", b"\x10"]) == (b"\x10", b"")


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_round_trip_with_arbitrary_read_boundaries(audio, cuts):
    wire = encode(audio)
    points = sorted({min(c, len(wire)) for c in cuts})
    parts = [wire[a:b] for a, b in zip([0] + points, points + [len(wire)])]
    assert decode(parts) == (audio, b"")
    # never a bare DLE on the wire: DLEs come in pairs
    i = 0
    while i < len(wire):
        if wire[i] == DLE:
            assert wire[i + 1] == DLE
            i += 2
        else:
            i += 1
