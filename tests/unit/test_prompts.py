"""Prompts: text spoken by espeak-ng in the box's four languages, cached; WAV files checked."""
import wave

import pytest

from firmware.media.prompts import PromptCache, PromptError, beep_pcm, check_prompt_wav, tts_available

pytestmark = pytest.mark.skipif(not tts_available(), reason="espeak-ng/sox not installed")


@pytest.mark.parametrize("lang,text", [
    ("en", "Press one for sales."),
    ("pl", "Naciśnij jeden, aby połączyć się z działem sprzedaży."),
    ("ru", "Нажмите один для отдела продаж."),
    ("bg", "Натиснете едно за отдел продажби."),
])
def test_text_prompt_generated_once_as_8k_wav(tmp_path, lang, text):
    cache = PromptCache(tmp_path)
    p = cache.speak(text, lang)
    check_prompt_wav(p)
    with wave.open(str(p)) as w:
        assert w.getnframes() > 8000 * 0.8  # a real sentence, not a blip
    mtime = p.stat().st_mtime_ns
    assert cache.speak(text, lang) == p and p.stat().st_mtime_ns == mtime


def test_wrong_wav_format_and_missing_file_are_reported(tmp_path):
    bad = tmp_path / "cd.wav"
    with wave.open(str(bad), "wb") as w:
        w.setnchannels(2); w.setsampwidth(2); w.setframerate(44100); w.writeframes(b"\0" * 400)
    with pytest.raises(PromptError, match="must be 8 kHz mono 16-bit PCM, is 44100 Hz, 2 channel"):
        check_prompt_wav(bad)
    with pytest.raises(PromptError, match="does not exist"):
        PromptCache(tmp_path).resolve("missing.wav", "en", base_dir=tmp_path)
    (tmp_path / "junk.wav").write_bytes(b"not a wav")
    with pytest.raises(PromptError, match="not a readable WAV"):
        check_prompt_wav(tmp_path / "junk.wav")


def test_unknown_language_refused(tmp_path):
    with pytest.raises(PromptError, match="no voice for language 'xx'"):
        PromptCache(tmp_path).speak("hello", "xx")


def test_fallback_beep_is_audible():
    pcm = beep_pcm()
    assert len(pcm) > 8000 and max(pcm[1::2]) > 10
