"""ITU-T V.253 DLE shielding of voice data (sans-I/O).

In the voice data states (+VTX, +VRX, +VTR) both directions carry raw samples in which the
byte DLE (0x10) is special: <DLE><DLE> stands for one data byte 0x10, and <DLE><code> is a
shielded code -- an event from the modem (DTMF digit, 'b' busy, 'd' dial tone, ...) or a
command from the host (<DLE><ETX> end of transmit data, <DLE><^> leave +VTR, <DLE><!>
abort receive on many Rockwell/Conexant parts, <DLE><CAN> clear the transmit buffer).
"""
from __future__ import annotations

DLE = 0x10
ETX = 0x03
CAN = 0x18

#: Host -> modem shielded commands (V.253 8.2 "DTE to DCE").
END_TRANSMIT = bytes((DLE, ETX))
END_DUPLEX = bytes((DLE, ord("^")))
ABORT_RECEIVE = bytes((DLE, ord("!")))
CLEAR_TRANSMIT = bytes((DLE, CAN))

#: Modem -> host event codes we act on (V.253 table 14 / vendor manuals).
DTMF_CODES = frozenset("0123456789*#ABCD")
EVENT_NAMES = {
    "b": "busy", "d": "dial_tone", "s": "silence", "q": "quiet", "l": "loop_current_drop",
    "L": "polarity_reversal", "h": "handset_on_hook", "H": "handset_off_hook",
    "R": "ring", "r": "ringback", "c": "fax_calling", "e": "data_calling", "a": "answer_tone",
    "u": "transmit_underrun", "o": "receive_overrun", "$": "bong", "t": "tone",
}


def dle_escape(data: bytes) -> bytes:
    """Shield voice data for the wire: every 0x10 byte is doubled."""
    return data.replace(b"\x10", b"\x10\x10")


class DleDecoder:
    """Splits a DLE-shielded byte stream into voice data and shielded codes.

    `feed(data)` returns `(voice_bytes, codes)` where codes are the one-character codes in
    arrival order (ETX reported as "\\x03"). A DLE at the end of a chunk is kept until the
    next chunk so a code is never split.
    """

    def __init__(self) -> None:
        self._pending_dle = False

    @property
    def pending_dle(self) -> bool:
        """The last chunk ended with a lone DLE (its code comes with the next chunk)."""
        return self._pending_dle

    def feed(self, data: bytes) -> tuple[bytes, list[str]]:
        out = bytearray()
        codes: list[str] = []
        i = 0
        n = len(data)
        if self._pending_dle and n:
            self._pending_dle = False
            b = data[0]
            if b == DLE:
                out.append(DLE)
            else:
                codes.append(chr(b))
            i = 1
        while i < n:
            j = data.find(b"\x10", i)
            if j < 0:
                out += data[i:]
                break
            out += data[i:j]
            if j + 1 >= n:
                self._pending_dle = True
                break
            b = data[j + 1]
            if b == DLE:
                out.append(DLE)
            else:
                codes.append(chr(b))
            i = j + 2
        return bytes(out), codes
