"""The RTP parser the engine uses on every packet: valid layouts and every malformation."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware._pbxcore import ffi, lib


def parse(data: bytes):
    h = ffi.new("pbx_rtp_header_t *")
    buf = ffi.new("uint8_t[]", data) if data else ffi.new("uint8_t[]", 1)
    v = lib.pbx_rtp_parse(buf, len(data), h)
    return v, h


def pkt(pt=0, seq=1, ts=2, ssrc=3, payload=b"\xff" * 160, m=0, cc=0, x=None, pad=None) -> bytes:
    b0 = 0x80 | cc | (0x10 if x is not None else 0) | (0x20 if pad is not None else 0)
    out = struct.pack("!BBHII", b0, (m << 7) | pt, seq, ts, ssrc) + b"\x11\x22\x33\x44" * cc
    if x is not None:
        out += struct.pack("!HH", 0xBEDE, len(x) // 4) + x
    out += payload
    if pad is not None:
        out += b"\0" * (pad - 1) + bytes([pad])
    return out


def test_plain_packet():
    v, h = parse(pkt(pt=8, seq=65535, ts=2**32 - 1, ssrc=0xDEADBEEF, m=1))
    assert v == lib.PBX_RTP_GOOD
    assert (h.payload_type, h.seq, h.ts, h.ssrc, h.marker) == (8, 65535, 2**32 - 1, 0xDEADBEEF, 1)
    assert (h.payload_offset, h.payload_len) == (12, 160)


def test_csrc_extension_and_padding_are_skipped():
    v, h = parse(pkt(cc=3, x=b"\x10\x20\x30\x40" * 2, pad=7, payload=b"abcd"))
    assert v == lib.PBX_RTP_GOOD
    assert h.payload_offset == 12 + 12 + 4 + 8 and h.payload_len == 4


def test_empty_payload_is_valid():
    v, h = parse(pkt(payload=b""))
    assert v == lib.PBX_RTP_GOOD and h.payload_len == 0


@pytest.mark.parametrize("data,verdict", [
    (b"", "TRUNCATED"),
    (pkt()[:11], "TRUNCATED"),
    (bytes([0x40]) + pkt()[1:], "BAD_VERSION"),
    (bytes([0x00]) + pkt()[1:], "BAD_VERSION"),
    (bytes([0xC0]) + pkt()[1:], "BAD_VERSION"),
    (pkt(cc=15, payload=b"")[:40], "BAD_CSRC"),
    (bytes([0x81]) + pkt(payload=b"")[1:], "BAD_CSRC"),
    (bytes([0x90]) + pkt(payload=b"")[1:], "BAD_EXTENSION"),
    (bytes([0x90]) + pkt(payload=b"")[1:] + b"\xbe\xde\xff\xff", "BAD_EXTENSION"),
    (bytes([0x90]) + pkt(payload=b"")[1:] + b"\xbe\xde\x00\x01\x00\x00", "BAD_EXTENSION"),
    (bytes([0xA0]) + pkt(payload=b"")[1:], "BAD_PADDING"),
    (bytes([0xA0]) + pkt(payload=b"ab\x00")[1:], "BAD_PADDING"),
    (bytes([0xA0]) + pkt(payload=b"ab\x04")[1:], "BAD_PADDING"),
    (struct.pack("!BBHI", 0x80, 0xC8, 6, 0) + b"\0" * 20, "RTCP"),
])
def test_malformed(data, verdict):
    v, _ = parse(data)
    assert v == getattr(lib, "PBX_RTP_" + verdict)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_within_bounds(data):
    v, h = parse(data)
    if v == lib.PBX_RTP_GOOD:
        assert 12 <= h.payload_offset <= len(data)
        assert h.payload_offset + h.payload_len <= len(data)


def test_write_header_round_trips():
    buf = ffi.new("uint8_t[172]")
    lib.pbx_rtp_write_header(buf, 1, 101, 0xABCD, 0x01020304, 0xCAFEBABE)
    v, h = parse(bytes(ffi.buffer(buf)))
    assert v == 0 and (h.marker, h.payload_type, h.seq, h.ts, h.ssrc) == (1, 101, 0xABCD, 0x01020304, 0xCAFEBABE)
