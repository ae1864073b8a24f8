"""Coverage-guided fuzzing of the modem dialogue with atheris (libFuzzer for Python).

    .venv/bin/python tools/fuzz_at.py -max_total_time=60        # a minute of fuzzing
    .venv/bin/python tools/fuzz_at.py -runs=5000 corpus_dir/     # bounded, with a corpus

Each input is split into modem output (fed in odd-sized chunks, with time passing) to a
ModemSession of a model chosen by the first byte, with requests (answer, dial, hangup, SMS,
USSD) mixed in; the rest goes to the SMS PDU decoder. Fails on any exception other than
the package's own typed errors, on a timer in the past, or on an unbounded event backlog.
"""
from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

with atheris.instrument_imports():
    from firmware.modem import pdu
    from firmware.modem.errors import ModemError, PduError
    from firmware.modem.profiles import PROFILES
    from firmware.modem.session import ModemSession

MODELS = sorted(PROFILES)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    model = MODELS[fdp.ConsumeIntInRange(0, len(MODELS) - 1)]
    s = ModemSession(PROFILES[model], now=0.0)
    s.ready = fdp.ConsumeBool()
    now = 0.0
    for _ in range(fdp.ConsumeIntInRange(0, 40)):
        kind = fdp.ConsumeIntInRange(0, 9)
        if kind == 0:
            s.answer(now)
        elif kind == 1:
            s.dial(fdp.ConsumeUnicodeNoSurrogates(12), now)
        elif kind == 2:
            s.hangup(now)
        elif kind == 3:
            s.send_sms("+48600100200", fdp.ConsumeUnicodeNoSurrogates(30) or "x", now)
        elif kind == 4:
            s.ussd("*100#", now)
        elif kind == 5:
            s.dle_event(chr(fdp.ConsumeIntInRange(0, 127)), now)
        else:
            s.receive_data(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64)), now)
        now += fdp.ConsumeIntInRange(0, 3000) / 1000.0
        s.handle_timer(now)
        t = s.get_timer()
        if t is not None and t < now - 1e-3:
            raise AssertionError(f"timer {t} in the past at {now}")
        s.data_to_send()
        n = 0
        while s.next_event() is not None:
            n += 1
            if n > 10_000:
                raise AssertionError("unbounded event backlog")
    try:
        pdu.decode_pdu(fdp.ConsumeBytes(200))
    except PduError:
        pass


def main() -> None:
    def guarded(data: bytes) -> None:
        try:
            one_input(data)
        except (ModemError, ValueError) as e:
            if not isinstance(e, (ModemError, PduError)) and "not a dialable" not in str(e) \
                    and "not DTMF" not in str(e) and "USSD" not in str(e):
                raise

    atheris.Setup(sys.argv, guarded)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
