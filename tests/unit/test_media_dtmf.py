"""The in-band DTMF detector against ITU-T Q.24 operate / non-operate limits, with noise,
and against speech (espeak-ng in four languages): no false digits."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from firmware.media.dtmf import DtmfDetector

ROWS = [697, 770, 852, 941]
COLS = [1209, 1336, 1477, 1633]
KEYS = "123A456B789C*0#D"
A0 = 22785.0  # 0 dBm0 sine amplitude


def tone(digit: str, ms: float, row_dbm0: float, col_dbm0: float, dev_row: float = 0.0, dev_col: float = 0.0,
         rng: np.random.Generator | None = None) -> np.ndarray:
    k = KEYS.index(digit)
    n = int(round(ms * 8))
    t = np.arange(n)
    rng = rng or np.random.default_rng(0)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    return (A0 * 10 ** (row_dbm0 / 20) * np.sin(2 * np.pi * ROWS[k // 4] * (1 + dev_row) * t / 8000 + p1)
            + A0 * 10 ** (col_dbm0 / 20) * np.sin(2 * np.pi * COLS[k % 4] * (1 + dev_col) * t / 8000 + p2))


def sequence(digits: str, ms: float, pause_ms: float, rng: np.random.Generator, **kw) -> np.ndarray:
    parts = [np.zeros(int(rng.integers(0, 400)))]
    for d in digits:
        parts.append(tone(d, ms, rng=rng, **kw))
        parts.append(np.zeros(int(pause_ms * 8)))
    parts.append(np.zeros(800))
    return np.concatenate(parts)


def with_noise(x: np.ndarray, snr_db: float | None, ref_dbm0: float, rng: np.random.Generator) -> bytes:
    """White noise snr_db below a tone of ref_dbm0, then 16-bit."""
    if snr_db is not None:
        p = (A0 * 10 ** (ref_dbm0 / 20)) ** 2 / 2
        x = x + rng.normal(0, np.sqrt(p / 10 ** (snr_db / 10)), len(x))
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def detect(pcm: bytes, chunk: int = 160) -> list:
    d = DtmfDetector()
    out = []
    for i in range(0, len(pcm), 2 * chunk):
        out += d.process(pcm[i:i + 2 * chunk])
    return out


# (row dBm0, col dBm0): level range -3..-30 dBm0, forward twist up to 4 dB, reverse up to 8 dB
LEVELS = [(-3, -3), (-10, -6), (-20, -28), (-26, -30), (-30, -30), (-14, -10), (-22, -26)]
DEVIATIONS = [(0.0, 0.0), (0.015, 0.015), (-0.015, -0.015), (0.015, -0.015), (-0.015, 0.015)]


@pytest.mark.parametrize("dev", DEVIATIONS, ids=[f"{r:+.1%}/{c:+.1%}" for r, c in DEVIATIONS])
@pytest.mark.parametrize("levels", LEVELS, ids=[f"{r}/{c}dBm0" for r, c in LEVELS])
def test_operate_40ms_digits_with_40ms_pauses_in_noise(levels, dev):
    rng = np.random.default_rng(hash((levels, dev)) & 0xFFFF)
    row, col = levels
    x = sequence(KEYS, 40, 40, rng, row_dbm0=row, col_dbm0=col, dev_row=dev[0], dev_col=dev[1])
    got = detect(with_noise(x, 15, min(row, col), rng))
    assert "".join(g.digit for g in got) == KEYS
    assert all(25 <= g.duration_ms <= 55 for g in got), [g.duration_ms for g in got]


@pytest.mark.parametrize("dev", [(0.035, 0), (-0.035, 0), (0, 0.035), (0, -0.035), (0.035, 0.035), (-0.035, -0.035),
                                 (0.05, 0.05), (0.06, 0)])
def test_non_operate_beyond_3_5_percent(dev):
    rng = np.random.default_rng(5)
    x = sequence(KEYS * 2, 60, 60, rng, row_dbm0=-10, col_dbm0=-10, dev_row=dev[0], dev_col=dev[1])
    assert detect(with_noise(x, 25, -10, rng)) == []


@pytest.mark.parametrize("ms", [10, 15, 20])
def test_non_operate_short_tones(ms):
    rng = np.random.default_rng(ms)
    x = sequence(KEYS * 3, ms, 60, rng, row_dbm0=-6, col_dbm0=-6)
    assert detect(with_noise(x, 30, -6, rng)) == []


@pytest.mark.parametrize("levels", [(-45, -45), (-50, -42), (-10, -24), (-24, -10)], ids=["weak", "weak2", "twist-14", "twist+14"])
def test_non_operate_level_and_twist(levels):
    rng = np.random.default_rng(9)
    x = sequence(KEYS, 60, 60, rng, row_dbm0=levels[0], col_dbm0=levels[1])
    assert detect(with_noise(x, None, 0, rng)) == []


def test_pause_and_interruption():
    rng = np.random.default_rng(3)
    gap40 = np.concatenate([tone("5", 60, -10, -10, rng=rng), np.zeros(320), tone("5", 60, -10, -10, rng=rng),
                            np.zeros(800)])
    assert [g.digit for g in detect(with_noise(gap40, 30, -10, rng))] == ["5", "5"]
    # a 10 ms break inside one digit is not a pause
    gap10 = np.concatenate([tone("7", 80, -10, -10, rng=rng), np.zeros(80), tone("7", 80, -10, -10, rng=rng),
                            np.zeros(800)])
    got = detect(with_noise(gap10, 30, -10, rng))
    assert [g.digit for g in got] == ["7"] and 160 <= got[0].duration_ms <= 180


def test_duration_and_start_are_measured():
    rng = np.random.default_rng(4)
    for ms in (45, 70, 100, 250, 1000):
        lead = int(rng.integers(0, 300))
        x = np.concatenate([np.zeros(lead), tone("#", ms, -12, -10, rng=rng), np.zeros(800)])
        got = detect(with_noise(x, 30, -12, rng))
        assert len(got) == 1 and abs(got[0].duration_ms - ms) <= 8, (ms, got)
        assert abs(got[0].start_sample - lead) <= 64


def test_noise_alone_is_not_a_digit():
    rng = np.random.default_rng(11)
    for sigma in (30, 300, 3000, 12000):
        assert detect(np.clip(rng.normal(0, sigma, 8000 * 10), -32768, 32767).astype("<i2").tobytes()) == []


SENTENCES = {
    "en": "Please enter your extension number followed by the hash key. Press one for sales, two for "
          "service, three for accounts. Your call is important to us, please hold the line. "
          "Seven hundred and forty one, nine nine nine, oh eight hundred.",
    "pl": "Proszę wybrać numer wewnętrzny i nacisnąć krzyżyk. Wciśnij jeden, aby połączyć się z działem "
          "sprzedaży, dwa z serwisem. Wszyscy konsultanci są zajęci, prosimy czekać.",
    "ru": "Пожалуйста, наберите добавочный номер и нажмите решётку. Нажмите один для отдела продаж, "
          "два для сервиса. Все операторы заняты, пожалуйста, оставайтесь на линии.",
    "bg": "Моля, наберете вътрешния номер и натиснете диез. Натиснете едно за продажби, две за сервиз. "
          "Всички оператори са заети, моля изчакайте.",
}


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, bytes]:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.fail("espeak-ng and sox are needed (tools/install installs them)")
    out = {}
    d = tmp_path_factory.mktemp("speech")
    for lang, text in SENTENCES.items():
        for voice in (lang, f"{lang}+f3"):
            wav, raw = d / f"{voice}.wav", d / f"{voice}.raw"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
            subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw",
                            str(raw), "gain", "-n", "-3"], check=True)
            out[voice] = raw.read_bytes()
    return out


@pytest.mark.parametrize("lang", list(SENTENCES))
def test_no_false_digits_on_speech(speech, lang):
    total = 0
    for voice in (lang, f"{lang}+f3"):
        pcm = speech[voice]
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        total += len(x)
        for gain_db in (-20, -6, 0):
            y = np.clip(x * 10 ** (gain_db / 20), -32768, 32767).astype("<i2").tobytes()
            assert detect(y) == [], (voice, gain_db)
    assert total > 8000 * 15  # at least 15 s of speech per language
