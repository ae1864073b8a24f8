"""Voice prompts: 8 kHz WAV files, or text spoken by espeak-ng, generated once and cached.

Prompts are 8 kHz, mono, 16-bit PCM WAV files (what the engine's players take). Text is
turned into such a file with espeak-ng and sox; the result is cached in the data directory
under a name derived from the language, voice and text, so each prompt is generated once.
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

VOICES = {"en": "en-gb", "pl": "pl", "ru": "ru", "bg": "bg"}
"""espeak-ng voices for the box's languages."""


class PromptError(Exception):
    """A prompt that is missing, malformed or failed to generate (message says which)."""


@dataclass(frozen=True)
class WavInfo:
    rate: int
    channels: int
    width: int
    seconds: float


def wav_info(path: str | os.PathLike) -> WavInfo:
    try:
        with wave.open(str(path)) as w:
            return WavInfo(w.getframerate(), w.getnchannels(), w.getsampwidth(),
                           w.getnframes() / max(1, w.getframerate()))
    except FileNotFoundError:
        raise PromptError(f"prompt file {path} does not exist") from None
    except (wave.Error, EOFError, struct.error) as e:
        raise PromptError(f"prompt file {path} is not a readable WAV file: {e}") from None


def check_prompt_wav(path: str | os.PathLike) -> None:
    info = wav_info(path)
    if (info.rate, info.channels, info.width) != (8000, 1, 2):
        raise PromptError(f"prompt file {path} must be 8 kHz mono 16-bit PCM, "
                          f"is {info.rate} Hz, {info.channels} channel(s), {info.width * 8}-bit")
    if info.seconds <= 0:
        raise PromptError(f"prompt file {path} is empty")


def tts_available() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def is_wav_reference(prompt: str) -> bool:
    return prompt.strip().lower().endswith(".wav")


class PromptCache:
    """Generates and caches spoken prompts under `cache_dir`."""

    def __init__(self, cache_dir: str | os.PathLike, speed_wpm: int = 150) -> None:
        self.dir = Path(cache_dir)
        self.speed = speed_wpm

    def path_for(self, text: str, language: str) -> Path:
        voice = VOICES.get(language, language)
        key = hashlib.sha256(f"{voice}\0{self.speed}\0{text}".encode()).hexdigest()[:24]
        return self.dir / f"{language}-{key}.wav"

    def resolve(self, prompt: str, language: str, base_dir: str | os.PathLike | None = None) -> Path:
        """A ready WAV for `prompt` (a .wav path or text to speak). Raises PromptError."""
        if is_wav_reference(prompt):
            p = Path(prompt)
            if not p.is_absolute() and base_dir is not None:
                p = Path(base_dir) / p
            check_prompt_wav(p)
            return p
        return self.speak(prompt, language)

    def speak(self, text: str, language: str) -> Path:
        text = text.strip()
        if not text:
            raise PromptError("prompt text is empty")
        if language not in VOICES:
            raise PromptError(f"no voice for language {language!r} (have {', '.join(VOICES)})")
        out = self.path_for(text, language)
        if out.exists():
            return out
        if not tts_available():
            raise PromptError("espeak-ng and sox are needed to speak text prompts")
        self.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.dir) as tmp:
            raw = Path(tmp) / "raw.wav"
            conv = Path(tmp) / "8k.wav"
            try:
                subprocess.run(["espeak-ng", "-v", VOICES[language], "-s", str(self.speed), "-w", str(raw), text],
                               check=True, capture_output=True, timeout=60)
                # headroom (gain -n -3) avoids clipping in the resampler; -D: reproducible output
                subprocess.run(["sox", "-D", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                                str(conv), "gain", "-n", "-3"], check=True, capture_output=True, timeout=60)
            except subprocess.CalledProcessError as e:
                raise PromptError(f"could not speak prompt in {language}: "
                                  f"{e.stderr.decode(errors='replace').strip() or e}") from None
            except subprocess.TimeoutExpired:
                raise PromptError(f"speaking a prompt in {language} timed out") from None
            check_prompt_wav(conv)
            os.replace(conv, out)
        return out


def read_pcm(path: str | os.PathLike) -> bytes:
    """Samples of an 8 kHz mono 16-bit WAV as little-endian bytes."""
    check_prompt_wav(path)
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes())


def beep_pcm(freq: float = 440.0, seconds: float = 0.3, gap: float = 0.2, count: int = 2) -> bytes:
    """A fallback prompt (a few beeps) so a caller never hears dead air when a prompt fails."""
    out = bytearray()
    n = int(seconds * 8000)
    for _ in range(count):
        for i in range(n):
            env = min(1.0, i / 80, (n - i) / 80)
            out += struct.pack("<h", int(8000 * env * math.sin(2 * math.pi * freq * i / 8000)))
        out += b"\x00\x00" * int(gap * 8000)
    return bytes(out)
