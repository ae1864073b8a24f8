"""G.711 of the engine against spandsp (an independent implementation, bound here with
cffi in ABI mode): all 65536 inputs, all 256 codes, and the u-law <-> A-law tables."""
from __future__ import annotations

import numpy as np
import pytest
from cffi import FFI

from firmware._pbxcore import ffi, lib

_sp_ffi = FFI()
_sp_ffi.cdef("""
typedef struct g711_state_s g711_state_t;
g711_state_t *g711_init(g711_state_t *s, int mode);
int g711_encode(g711_state_t *s, uint8_t g711_data[], const int16_t amp[], int len);
int g711_decode(g711_state_t *s, int16_t amp[], const uint8_t g711_data[], int len);
int g711_free(g711_state_t *s);
uint8_t alaw_to_ulaw(uint8_t alaw);
uint8_t ulaw_to_alaw(uint8_t ulaw);
""")
G711_ALAW, G711_ULAW = 0, 1


@pytest.fixture(scope="module")
def spandsp():
    try:
        return _sp_ffi.dlopen("libspandsp.so.2")
    except OSError as exc:
        pytest.fail(f"libspandsp is needed as the oracle (apt-get install libspandsp-dev): {exc}")


ALL = np.arange(-32768, 32768, dtype=np.int16)


def sp_encode(sp, mode: int) -> np.ndarray:
    st = sp.g711_init(_sp_ffi.NULL, mode)
    out = _sp_ffi.new("uint8_t[]", len(ALL))
    sp.g711_encode(st, out, _sp_ffi.from_buffer("int16_t[]", ALL), len(ALL))
    sp.g711_free(st)
    return np.frombuffer(_sp_ffi.buffer(out), dtype=np.uint8).copy()


def sp_decode(sp, mode: int) -> np.ndarray:
    st = sp.g711_init(_sp_ffi.NULL, mode)
    codes = np.arange(256, dtype=np.uint8)
    out = _sp_ffi.new("int16_t[]", 256)
    sp.g711_decode(st, out, _sp_ffi.from_buffer("uint8_t[]", codes), 256)
    sp.g711_free(st)
    return np.frombuffer(_sp_ffi.buffer(out), dtype=np.int16).copy()


def ours_encode(fn) -> np.ndarray:
    out = ffi.new("uint8_t[]", len(ALL))
    fn(ffi.from_buffer("int16_t[]", ALL), out, len(ALL))
    return np.frombuffer(ffi.buffer(out), dtype=np.uint8).copy()


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_encode_all_65536_inputs_bit_exact(spandsp, law):
    mode = G711_ULAW if law == "ulaw" else G711_ALAW
    ref = sp_encode(spandsp, mode)
    block = ours_encode(lib.pbx_ulaw_encode if law == "ulaw" else lib.pbx_alaw_encode)
    one = lib.pbx_linear2ulaw if law == "ulaw" else lib.pbx_linear2alaw
    per_sample = np.array([one(int(v)) for v in ALL], dtype=np.uint8)
    assert np.array_equal(block, ref), np.flatnonzero(block != ref)[:10]
    assert np.array_equal(per_sample, ref)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decode_all_256_codes(spandsp, law):
    ref = sp_decode(spandsp, G711_ULAW if law == "ulaw" else G711_ALAW)
    codes = np.arange(256, dtype=np.uint8)
    out = ffi.new("int16_t[]", 256)
    (lib.pbx_ulaw_decode if law == "ulaw" else lib.pbx_alaw_decode)(ffi.from_buffer("uint8_t[]", codes), out, 256)
    assert np.array_equal(np.frombuffer(ffi.buffer(out), dtype=np.int16), ref)
    one = lib.pbx_ulaw2linear if law == "ulaw" else lib.pbx_alaw2linear
    assert [one(c) for c in range(256)] == ref.tolist()


def test_law_conversion_tables_match_g711_tables_3_and_4(spandsp):
    assert [lib.pbx_ulaw2alaw(c) for c in range(256)] == [spandsp.ulaw_to_alaw(c) for c in range(256)]
    assert [lib.pbx_alaw2ulaw(c) for c in range(256)] == [spandsp.alaw_to_ulaw(c) for c in range(256)]


def test_round_trip_is_identity_on_codes():
    for c in range(256):
        assert lib.pbx_linear2alaw(lib.pbx_alaw2linear(c)) == c
        u = lib.pbx_linear2ulaw(lib.pbx_ulaw2linear(c))
        assert u == c or (c == 0x7F and u == 0xFF)  # u-law has two zeros
