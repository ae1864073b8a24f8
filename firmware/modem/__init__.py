"""Sans-I/O modem dialogue: AT commands, per-model profiles for GSM and FXO, SMS PDU.

No module here imports asyncio, serial or socket; `firmware.aio.modem.ModemLine` puts a
`ModemSession` on a real port.

* `at.AtEngine` / `at.Command` -- the line-oriented AT engine (bytes + time in, events out)
* `session.ModemSession` -- one model's dialogue: init, PIN, calls, SMS, USSD, watchdog
* `profiles.get_profile(model)` -- sim800, sim7600, ec25, huawei, voicemodem
* `pdu` -- SMS PDUs (GSM 7-bit + extension, UCS-2, concatenation), USSD strings
* `dle` -- V.253 DLE shielding
* `events` -- every event, as frozen dataclasses; `errors` -- typed exceptions
"""
from .at import AtEngine, Command
from .errors import (AtCommandError, AtTimeout, ModemBusy, ModemError, ModemNotReady,
                     ModemUnavailable, PduError, ProfileError)
from .health import Health
from .profiles import PROFILES, ModemProfile, get_profile
from .session import DialResult, ModemSession, PinGuard, SessionConfig, q850_cause

__all__ = [
    "AtEngine", "Command", "ModemSession", "SessionConfig", "PinGuard", "DialResult", "Health",
    "ModemProfile", "PROFILES", "get_profile", "q850_cause", "ModemError", "AtCommandError",
    "AtTimeout", "ModemBusy", "ModemNotReady", "ModemUnavailable", "PduError", "ProfileError",
]
