"""The media engine for the rest of the firmware (the only importer of firmware._pbxcore).

Main entry point: :class:`Engine`. Events: :mod:`firmware.media.events`. Errors:
:mod:`firmware.media.errors`.
"""
from __future__ import annotations

from firmware._pbxcore import ffi, lib

from .engine import (DIRECTIONS, MEMBER_MODES, SAMPLE_FORMATS, Bridge, Channel, ChannelStats, Engine,
                     EngineStats, PcmChannel, Player, Recorder, RtpChannel, Sound)
from .dtmf import DetectedDigit, DtmfDetector
from .errors import MediaError
from .events import (ChannelError, DleEvent, DtmfReceived, MediaEvent, PlayerDone, RecorderError,
                     RecorderStopped, RtpResumed, RtpSourceLatched, RtpTimeout)
from .tones import TONES, ToneSpec, tone_spec
from .wav import RepairResult, read_wav_pcm, repair_wav

__all__ = [
    "engine_version", "Engine", "RtpChannel", "PcmChannel", "Channel", "Bridge", "Sound", "Player",
    "Recorder", "ChannelStats", "EngineStats", "DIRECTIONS", "MEMBER_MODES", "SAMPLE_FORMATS",
    "MediaError", "MediaEvent", "DtmfReceived", "RtpTimeout", "RtpResumed", "RtpSourceLatched",
    "PlayerDone", "RecorderError", "RecorderStopped", "DleEvent", "ChannelError", "ToneSpec", "TONES",
    "tone_spec", "RepairResult", "repair_wav", "read_wav_pcm", "DtmfDetector", "DetectedDigit",
]


def engine_version() -> str:
    """Version of the compiled engine."""
    return ffi.string(lib.pbx_version()).decode()
