"""The engine's in-band DTMF detector, usable on its own (tests, tools, benchmarks)."""
from __future__ import annotations

from dataclasses import dataclass

from firmware._pbxcore import ffi, lib

from .errors import error_for


@dataclass(frozen=True)
class DetectedDigit:
    """One digit heard in a stream of samples."""

    digit: str
    duration_ms: int
    #: Sample index (since the detector was created or reset) where the tone began.
    start_sample: int


class DtmfDetector:
    """Goertzel DTMF detector with ITU-T Q.24 limits, fed 8 kHz s16 samples in any chunks."""

    def __init__(self) -> None:
        out = ffi.new("pbx_dtmf_det_t **")
        rc = lib.pbx_dtmf_det_create(out)
        if rc < 0:
            raise error_for(rc, "DtmfDetector")
        self._det = ffi.gc(out[0], lib.pbx_dtmf_det_destroy)
        self._out = ffi.new("pbx_dtmf_digit_t[64]")

    def reset(self) -> None:
        lib.pbx_dtmf_det_reset(self._det)

    def process(self, pcm: bytes | bytearray | memoryview) -> list[DetectedDigit]:
        """Feed samples (s16 native-endian bytes, or a numpy int16 array); digits that ended."""
        buf = ffi.from_buffer("int16_t[]", pcm)
        n_total = len(buf)
        found: list[DetectedDigit] = []
        pos = 0
        while pos < n_total:
            n = min(n_total - pos, 8000)
            k = lib.pbx_dtmf_det_process(self._det, buf + pos, n, self._out, 64)
            for i in range(k):
                d = self._out[i]
                found.append(DetectedDigit(d.digit.decode(), d.duration_ms, d.start_sample))
            pos += n
        return found

    @property
    def current(self) -> str | None:
        """The digit being heard right now, if any."""
        c = lib.pbx_dtmf_det_current(self._det)
        return c.decode() if c != b"\0" else None
