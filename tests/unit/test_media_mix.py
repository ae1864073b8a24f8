"""Mixer: saturating sums and N-party mix-minus (each hears the sum of the others)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from firmware._pbxcore import ffi, lib


def c_inputs(xs: list[np.ndarray]):
    bufs = [ffi.from_buffer("int16_t[]", x) for x in xs]
    arr = ffi.new("int16_t *[]", bufs)
    return arr, bufs


def mix_sum(xs: list[np.ndarray]) -> np.ndarray:
    n = len(xs[0])
    arr, keep = c_inputs(xs)
    out = ffi.new("int16_t[]", n)
    lib.pbx_mix_sum(arr, len(xs), out, n)
    return np.frombuffer(ffi.buffer(out), dtype=np.int16).copy()


def mix_minus(xs: list[np.ndarray]) -> list[np.ndarray]:
    n = len(xs[0])
    arr, keep = c_inputs(xs)
    outs = [ffi.new("int16_t[]", n) for _ in xs]
    oarr = ffi.new("int16_t *[]", outs)
    lib.pbx_mix_minus(arr, len(xs), oarr, n)
    return [np.frombuffer(ffi.buffer(o), dtype=np.int16).copy() for o in outs]


frames = st.integers(1, 8).flatmap(
    lambda k: st.lists(arrays(np.int16, 160, elements=st.integers(-32768, 32767)), min_size=k, max_size=k))


@settings(max_examples=200, deadline=None)
@given(frames)
def test_sum_saturates_exactly(xs):
    ref = np.clip(np.sum(np.stack(xs).astype(np.int64), axis=0), -32768, 32767)
    assert np.array_equal(mix_sum(xs), ref)


@settings(max_examples=200, deadline=None)
@given(frames)
def test_each_member_hears_the_saturated_sum_of_the_others(xs):
    total = np.sum(np.stack(xs).astype(np.int64), axis=0)
    for k, out in enumerate(mix_minus(xs)):
        assert np.array_equal(out, np.clip(total - xs[k], -32768, 32767))


def test_full_scale_pile_up_clips_instead_of_wrapping():
    loud = [np.full(160, 30000, dtype=np.int16)] * 5 + [np.full(160, -32768, dtype=np.int16)]
    outs = mix_minus(loud)
    assert all((o == 32767).all() for o in outs[:5]) and (outs[5] == 32767).all()
    assert (mix_sum([np.full(160, -32768, dtype=np.int16)] * 3) == -32768).all()


def test_sixty_four_party_conference_is_exact_before_saturation():
    rng = np.random.default_rng(1)
    xs = [rng.integers(-300, 300, 160).astype(np.int16) for _ in range(64)]
    total = np.sum(np.stack(xs).astype(np.int64), axis=0)
    for k, out in enumerate(mix_minus(xs)):
        assert np.array_equal(out, total - xs[k])
