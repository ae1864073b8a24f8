"""WAV helpers: reading prompts for the players, repairing interrupted recordings."""
from __future__ import annotations

import os
import wave
from dataclasses import dataclass

from firmware._pbxcore import ffi, lib

from .errors import BadFormat, error_for


@dataclass(frozen=True)
class RepairResult:
    """What :func:`repair_wav` found and did."""

    #: True if the file was modified (sizes rewritten and/or a partial frame cut off).
    changed: bool
    #: Playable audio in the file after repair, in seconds.
    seconds: float
    channels: int
    sample_rate: int
    bits_per_sample: int
    data_bytes: int
    #: Bytes of an incomplete sample frame removed from the end.
    truncated_bytes: int


def repair_wav(path: str | os.PathLike[str]) -> RepairResult:
    """Make an interrupted WAV recording consistent with its length (idempotent).

    Sets the RIFF and data chunk sizes from the file length and cuts off a trailing
    partial sample frame. Raises BadFormat if the file is not a PCM WAV, NotFound if it
    does not exist, MediaIOError on I/O failure.
    """
    info = ffi.new("pbx_wav_info_t *")
    rc = lib.pbx_wav_repair(os.fsencode(os.fspath(path)), info)
    if rc < 0:
        raise error_for(rc, f"repair_wav {os.fspath(path)}")
    frame = info.channels * (info.bits_per_sample // 8)
    seconds = info.data_bytes / frame / info.sample_rate if frame and info.sample_rate else 0.0
    return RepairResult(bool(info.changed), seconds, info.channels, info.sample_rate, info.bits_per_sample,
                        info.data_bytes, info.truncated_bytes)


def read_wav_pcm(path: str | os.PathLike[str]) -> bytes:
    """The samples of an 8 kHz, mono, 16-bit PCM WAV file as little-endian bytes."""
    try:
        with wave.open(os.fspath(path), "rb") as w:
            ch, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            if (ch, width, rate) != (1, 2, 8000):
                raise BadFormat(f"{os.fspath(path)}: need 8000 Hz mono 16-bit PCM, got {rate} Hz, "
                                f"{ch} channel(s), {8 * width}-bit (convert with: sox in.wav -r 8000 -c 1 "
                                f"-b 16 -e signed-integer out.wav)")
            return w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise BadFormat(f"{os.fspath(path)}: not a PCM WAV file ({exc})") from None
