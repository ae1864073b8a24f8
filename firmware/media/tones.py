"""Call-progress tones per country (ITU-T E.180 / ETSI TR 101 041 values)."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidArgument


@dataclass(frozen=True)
class ToneSpec:
    """One or two frequencies switched on and off by a cadence."""

    #: First frequency in Hz.
    f1_hz: int
    #: Second frequency in Hz, 0 for a single tone.
    f2_hz: int = 0
    #: Level of each frequency in dBm0.
    level_dbm0: int = -13
    #: Alternating on, off durations in ms (at most 4 pairs); empty = steady tone.
    cadence_ms: tuple[int, ...] = ()


_EU = {
    "dial": ToneSpec(425),
    "ringback": ToneSpec(425, cadence_ms=(1000, 4000)),
    "busy": ToneSpec(425, cadence_ms=(500, 500)),
    "congestion": ToneSpec(425, cadence_ms=(250, 250)),
    "waiting": ToneSpec(425, cadence_ms=(200, 200, 200, 4400)),
}

TONES: dict[str, dict[str, ToneSpec]] = {
    "eu": _EU,
    "pl": {**_EU, "congestion": ToneSpec(425, cadence_ms=(500, 500))},
    "bg": {**_EU},
    "ru": {
        "dial": ToneSpec(425),
        "ringback": ToneSpec(425, cadence_ms=(800, 3200)),
        "busy": ToneSpec(425, cadence_ms=(400, 400)),
        "congestion": ToneSpec(425, cadence_ms=(200, 200)),
        "waiting": ToneSpec(425, cadence_ms=(200, 5000)),
    },
    "us": {
        "dial": ToneSpec(350, 440, level_dbm0=-13),
        "ringback": ToneSpec(440, 480, level_dbm0=-19, cadence_ms=(2000, 4000)),
        "busy": ToneSpec(480, 620, level_dbm0=-24, cadence_ms=(500, 500)),
        "congestion": ToneSpec(480, 620, level_dbm0=-24, cadence_ms=(250, 250)),
        "waiting": ToneSpec(440, level_dbm0=-13, cadence_ms=(300, 9700)),
    },
    "uk": {
        "dial": ToneSpec(350, 440),
        "ringback": ToneSpec(400, 450, level_dbm0=-19, cadence_ms=(400, 200, 400, 2000)),
        "busy": ToneSpec(400, level_dbm0=-13, cadence_ms=(375, 375)),
        "congestion": ToneSpec(400, level_dbm0=-13, cadence_ms=(400, 350, 225, 525)),
        "waiting": ToneSpec(400, level_dbm0=-13, cadence_ms=(100, 3000)),
    },
}


def tone_spec(name: str, country: str = "eu") -> ToneSpec:
    """The named tone of a country ("eu", "pl", "ru", "bg", "us", "uk")."""
    table = TONES.get(country.lower())
    if table is None:
        raise InvalidArgument(f"tone: unknown country {country!r}; known: {', '.join(sorted(TONES))}")
    spec = table.get(name)
    if spec is None:
        raise InvalidArgument(f"tone: unknown tone {name!r}; known: {', '.join(sorted(table))}")
    return spec
