"""SMS PDUs (3GPP TS 23.040) and their alphabets (3GPP TS 23.038), sans-I/O.

* GSM 7-bit default alphabet with the extension table (escape 0x1B: ^ { } \\ [ ~ ] | €),
  septet packing with the fill bits that align text after a user-data header (23.040 9.2.3.24);
* UCS-2, read as UTF-16 so surrogate pairs (emoji) survive, also when a sender split a pair
  between two parts (parts are joined as code units before decoding);
* concatenated messages with 8-bit (IEI 0x00) and 16-bit (IEI 0x08) references, both
  directions; a part never splits an escape sequence or a surrogate pair;
* addresses: international (TON 1), national/unknown, alphanumeric senders (TON 5, packed
  GSM 7-bit); the SMSC address in front of the TPDU as AT+CMGR/+CMT/+CMGL give it;
* SCTS time stamps with their quarter-hour zone, as ISO 8601 text;
* USSD strings (AT+CUSD): cell-broadcast DCS (23.038 5), packed-hex for modems that want it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .errors import PduError

__all__ = [
    "GSM7_BASIC", "GSM7_EXTENSION", "gsm7_encodable", "encode_gsm7", "decode_gsm7",
    "pack_septets", "unpack_septets", "Address", "encode_address", "decode_address",
    "encode_scts", "decode_scts", "SubmitPdu", "SmsSubmit", "SmsDeliver", "SmsStatusReport",
    "Concat", "encode_submit", "encode_deliver", "decode_pdu", "decode_deliver", "decode_submit",
    "join_parts", "sms_alphabet", "cbs_alphabet", "encode_ussd", "decode_ussd",
]

# 3GPP TS 23.038 6.2.1: the default alphabet, index = septet value.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# 6.2.1.1: the extension table, reached through ESC (0x1B).
GSM7_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[",
                  0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}
assert len(GSM7_BASIC) == 128, "GSM 7-bit basic table must have 128 entries"

_BASIC_INDEX = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != 0x1B}
_EXT_INDEX = {ch: code for code, ch in GSM7_EXTENSION.items()}

SINGLE_GSM7 = 160
SINGLE_UCS2 = 140  # octets


def gsm7_encodable(text: str) -> bool:
    """True when every character has a GSM 7-bit (basic or extension) code."""
    return all(ch in _BASIC_INDEX or ch in _EXT_INDEX for ch in text)


def encode_gsm7(text: str) -> list[int]:
    """Septets of `text` (extension characters take two). Raises PduError otherwise."""
    out: list[int] = []
    for ch in text:
        code = _BASIC_INDEX.get(ch)
        if code is not None:
            out.append(code)
            continue
        ext = _EXT_INDEX.get(ch)
        if ext is None:
            raise PduError(f"character {ch!r} (U+{ord(ch):04X}) is not in the GSM 7-bit alphabet")
        out += (0x1B, ext)
    return out


def decode_gsm7(septets: list[int] | bytes) -> str:
    """Text of a septet sequence. An unknown extension code reads as its basic character
    (23.038 6.2.1.1: "shall be displayed as the default alphabet character")."""
    out = []
    esc = False
    for s in septets:
        s &= 0x7F
        if esc:
            esc = False
            out.append(GSM7_EXTENSION.get(s, GSM7_BASIC[s] if s != 0x1B else " "))
        elif s == 0x1B:
            esc = True
        else:
            out.append(GSM7_BASIC[s])
    return "".join(out)


def pack_septets(septets: list[int], fill_bits: int = 0) -> bytes:
    """Pack septets LSB first (23.038 6.1.2.1.1), after `fill_bits` zero bits."""
    acc = 0
    nbits = fill_bits
    out = bytearray()
    for s in septets:
        acc |= (s & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits > 0:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """`count` septets from packed `data`, skipping `fill_bits` first."""
    total_bits = len(data) * 8
    if fill_bits + count * 7 > total_bits:
        raise PduError(f"user data too short: {count} septets need {fill_bits + count * 7} bits, "
                       f"have {total_bits}")
    val = int.from_bytes(data, "little")
    return [(val >> (fill_bits + 7 * i)) & 0x7F for i in range(count)]


# ------------------------------------------------------------------ semi-octets

def _swap_bcd(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, len(digits), 2))


_BCD_DIGITS = "0123456789*#abc"


def _unswap_bcd(data: bytes, ndigits: int | None = None) -> str:
    out = []
    for b in data:
        for nib in (b & 0x0F, b >> 4):
            if nib == 0x0F:
                continue
            out.append(_BCD_DIGITS[nib] if nib < len(_BCD_DIGITS) else "?")
    s = "".join(out)
    return s if ndigits is None else s[:ndigits]


@dataclass(frozen=True)
class Address:
    """A TP-address (or the SMSC address)."""

    number: str
    """"+48600100200", "600100200" or an alphanumeric name."""
    toa: int
    """Type of address octet: 0x91 international, 0x81 unknown, 0xA1 national, 0xD0 alphanumeric."""

    @property
    def alphanumeric(self) -> bool:
        return (self.toa >> 4) & 0x07 == 5


def _classify_number(number: str) -> tuple[str, int]:
    number = number.strip().replace(" ", "").replace("-", "")
    if number.startswith("+"):
        digits, toa = number[1:], 0x91
    elif number.startswith("00") and len(number) > 4:
        digits, toa = number[2:], 0x91
    else:
        digits, toa = number, 0x81
    if not digits or any(c not in "0123456789*#" for c in digits):
        return number, 0xD0
    return digits, toa


def encode_address(number: str) -> bytes:
    """TP-DA/TP-OA field: length (in useful semi-octets), type, value."""
    digits, toa = _classify_number(number)
    if toa == 0xD0:
        if len(number) > 11:
            raise PduError(f"alphanumeric address longer than 11 characters: {number!r}")
        septets = encode_gsm7(number)
        packed = pack_septets(septets)
        return bytes(((len(septets) * 7 + 3) // 4, toa)) + packed
    if len(digits) > 20:
        raise PduError(f"address longer than 20 digits: {number!r}")
    return bytes((len(digits), toa)) + _swap_bcd(digits.replace("*", "A").replace("#", "B"))


def decode_address(data: bytes, pos: int) -> tuple[Address, int]:
    """Decode a TP-address at `pos`; returns it and the position after it."""
    if pos + 2 > len(data):
        raise PduError("PDU truncated in an address")
    ndigits, toa = data[pos], data[pos + 1]
    nbytes = (ndigits + 1) // 2
    end = pos + 2 + nbytes
    if end > len(data):
        raise PduError("PDU truncated in an address")
    value = data[pos + 2:end]
    if (toa >> 4) & 0x07 == 5:
        nsept = ndigits * 4 // 7
        text = decode_gsm7(unpack_septets(value, nsept))
        return Address(text, toa), end
    digits = _unswap_bcd(value, ndigits)
    if (toa >> 4) & 0x07 == 1:
        digits = "+" + digits
    return Address(digits, toa), end


def _encode_smsc(smsc: str | None) -> bytes:
    if not smsc:
        return b"\x00"
    digits, toa = _classify_number(smsc)
    if toa == 0xD0:
        raise PduError(f"SMSC address must be a number: {smsc!r}")
    body = bytes((toa,)) + _swap_bcd(digits)
    return bytes((len(body),)) + body


def _decode_smsc(data: bytes) -> tuple[str | None, int]:
    if not data:
        raise PduError("empty PDU")
    n = data[0]
    if n == 0:
        return None, 1
    if 1 + n > len(data):
        raise PduError("PDU truncated in the SMSC address")
    toa = data[1]
    digits = _unswap_bcd(data[2:1 + n])
    if (toa >> 4) & 0x07 == 1:
        digits = "+" + digits
    return digits, 1 + n


# ------------------------------------------------------------------ time stamps

def encode_scts(when: datetime) -> bytes:
    """TP-SCTS: YYMMDDhhmmss + zone in quarter hours (23.040 9.2.3.11)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    off = when.utcoffset() or timedelta(0)
    quarters = int(off.total_seconds() // 900)
    digits = when.strftime("%y%m%d%H%M%S")
    body = _swap_bcd(digits)
    q = abs(quarters)
    tz = ((q % 10) << 4) | (q // 10)
    if quarters < 0:
        tz |= 0x08
    return body + bytes((tz,))


def decode_scts(data: bytes) -> str:
    """ISO 8601 text ("2024-03-05T14:07:30+01:00") of a 7-octet SCTS."""
    if len(data) != 7:
        raise PduError("time stamp must be 7 octets")
    d = _unswap_bcd(data[:6])
    tzb = data[6]
    q = (tzb & 0x07) * 10 + (tzb >> 4)
    if tzb & 0x08:
        q = -q
    try:
        naive = datetime.strptime(d, "%y%m%d%H%M%S")
    except ValueError as e:
        raise PduError(f"bad time stamp {data.hex()}: {e}") from None
    return naive.replace(tzinfo=timezone(timedelta(minutes=15 * q))).isoformat()


# ------------------------------------------------------------------ data coding

def sms_alphabet(dcs: int) -> str:
    """"gsm7", "8bit" or "ucs2" for an SMS TP-DCS (23.038 4)."""
    group = dcs >> 4
    if group <= 0x07:  # general data coding (compressed text is not supported by phones)
        return ("gsm7", "8bit", "ucs2", "gsm7")[(dcs >> 2) & 0x03]
    if group in (0x0C, 0x0D):
        return "gsm7"
    if group == 0x0E:
        return "ucs2"
    if group == 0x0F:
        return "8bit" if dcs & 0x04 else "gsm7"
    return "8bit"


def cbs_alphabet(dcs: int) -> str:
    """"gsm7", "8bit", "ucs2" or "ucs2lang" for a cell-broadcast/USSD DCS (23.038 5)."""
    group = dcs >> 4
    if group in (0x00, 0x02, 0x03):
        return "gsm7"
    if group == 0x01:
        return "ucs2lang" if dcs & 0x0F == 0x01 else "gsm7"
    if 0x04 <= group <= 0x07:
        return ("gsm7", "8bit", "ucs2", "gsm7")[(dcs >> 2) & 0x03]
    if group == 0x09:
        return ("gsm7", "8bit", "ucs2", "gsm7")[(dcs >> 2) & 0x03]
    if group == 0x0F:
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"


# ------------------------------------------------------------------ messages

@dataclass(frozen=True)
class Concat:
    """Concatenation info of one part (IEI 0x00 or 0x08)."""

    ref: int
    total: int
    seq: int
    bits: int = 8


@dataclass(frozen=True)
class SubmitPdu:
    """One SMS-SUBMIT ready for AT+CMGS=<tpdu_length> in PDU mode."""

    hex: str
    """SMSC field + TPDU, upper-case hex (what follows the "> " prompt)."""
    tpdu_length: int
    """Octets after the SMSC field (the AT+CMGS parameter)."""
    concat: Concat | None = None


@dataclass(frozen=True)
class SmsDeliver:
    """A decoded SMS-DELIVER (one part)."""

    smsc: str | None
    sender: Address
    timestamp: str
    pid: int
    dcs: int
    alphabet: str
    text: str
    """Text of this part alone (a split surrogate pair decodes fully only in `join_parts`)."""
    units: bytes | tuple[int, ...] = field(repr=False, default=b"")
    """Septets (gsm7) or octets (ucs2, 8bit) of the part, for joining."""
    concat: Concat | None = None
    udh: tuple[tuple[int, bytes], ...] = ()
    status_report_requested: bool = False


@dataclass(frozen=True)
class SmsSubmit:
    """A decoded SMS-SUBMIT (one part) -- what a phone/modem sends."""

    smsc: str | None
    number: Address
    message_ref: int
    pid: int
    dcs: int
    alphabet: str
    text: str
    units: bytes | tuple[int, ...] = field(repr=False, default=b"")
    concat: Concat | None = None
    udh: tuple[tuple[int, bytes], ...] = ()
    status_report_requested: bool = False
    validity: int | None = None


@dataclass(frozen=True)
class SmsStatusReport:
    """A decoded SMS-STATUS-REPORT."""

    smsc: str | None
    message_ref: int
    recipient: Address
    timestamp: str
    discharge: str
    status: int


def _build_udh(concat: Concat | None) -> bytes:
    if concat is None:
        return b""
    if concat.bits == 16:
        ie = bytes((0x08, 4, concat.ref >> 8, concat.ref & 0xFF, concat.total, concat.seq))
    else:
        ie = bytes((0x00, 3, concat.ref & 0xFF, concat.total, concat.seq))
    return bytes((len(ie),)) + ie


def _parse_udh(ud: bytes) -> tuple[tuple[tuple[int, bytes], ...], Concat | None, int]:
    if not ud:
        raise PduError("UDHI set but user data is empty")
    udhl = ud[0]
    if 1 + udhl > len(ud):
        raise PduError("user data header longer than the user data")
    ies = []
    concat = None
    i = 1
    while i < 1 + udhl:
        if i + 2 > 1 + udhl:
            raise PduError("truncated information element in the user data header")
        iei, iel = ud[i], ud[i + 1]
        val = ud[i + 2:i + 2 + iel]
        if len(val) != iel or i + 2 + iel > 1 + udhl:
            raise PduError("truncated information element in the user data header")
        ies.append((iei, bytes(val)))
        if iei == 0x00 and iel == 3 and val[1] and 1 <= val[2] <= val[1]:
            concat = Concat(val[0], val[1], val[2], 8)
        elif iei == 0x08 and iel == 4 and val[2] and 1 <= val[3] <= val[2]:
            concat = Concat((val[0] << 8) | val[1], val[2], val[3], 16)
        i += 2 + iel
    return tuple(ies), concat, 1 + udhl


def _split_units(text: str, alphabet: str, single: int, multi: int) -> list[list[int] | bytes]:
    """Split text into parts of at most `multi` units, never inside an escape or a pair."""
    if alphabet == "gsm7":
        septets = encode_gsm7(text)
        if len(septets) <= single:
            return [septets]
        parts: list[list[int] | bytes] = []
        cur: list[int] = []
        for ch in text:
            s = encode_gsm7(ch)
            if len(cur) + len(s) > multi:
                parts.append(cur)
                cur = []
            cur += s
        if cur:
            parts.append(cur)
        return parts
    data = text.encode("utf-16-be")
    if len(data) <= single:
        return [data]
    parts = []
    cur_b = bytearray()
    for ch in text:
        b = ch.encode("utf-16-be")
        if len(cur_b) + len(b) > multi:
            parts.append(bytes(cur_b))
            cur_b = bytearray()
        cur_b += b
    if cur_b:
        parts.append(bytes(cur_b))
    return parts


def _user_data(units: list[int] | bytes, alphabet: str, udh: bytes) -> tuple[int, bytes]:
    """(TP-UDL, TP-UD) for the units after an optional header."""
    if alphabet == "gsm7":
        assert isinstance(units, list)
        if udh:
            udh_septets = (len(udh) * 8 + 6) // 7
            fill = udh_septets * 7 - len(udh) * 8
            return udh_septets + len(units), udh + pack_septets(units, fill)
        return len(units), pack_septets(units)
    assert isinstance(units, bytes)
    return len(udh) + len(units), udh + units


def _choose_alphabet(text: str, force_ucs2: bool) -> str:
    return "ucs2" if force_ucs2 or not gsm7_encodable(text) else "gsm7"


def _segments(text: str, alphabet: str, ref16: bool) -> list[list[int] | bytes]:
    hdr = 7 if ref16 else 6
    if alphabet == "gsm7":
        multi = (SINGLE_GSM7 * 7 - hdr * 8) // 7
        return _split_units(text, alphabet, SINGLE_GSM7, multi)
    return _split_units(text, alphabet, SINGLE_UCS2, (SINGLE_UCS2 - hdr) // 2 * 2)


def encode_submit(number: str, text: str, *, smsc: str | None = None, ref: int = 0,
                  message_ref: int = 0, request_status: bool = False, validity: int | None = 0xA7,
                  force_ucs2: bool = False, ref16: bool = False) -> list[SubmitPdu]:
    """SMS-SUBMIT PDUs for `text` to `number`: one, or a concatenated series sharing `ref`.

    `validity` is a relative TP-VP (0xA7 = 24 h), None for no validity period. `smsc` None
    uses the SIM's service centre (a zero-length SMSC field).
    """
    if not text:
        raise PduError("empty SMS text")
    alphabet = _choose_alphabet(text, force_ucs2)
    segs = _segments(text, alphabet, ref16)
    if len(segs) > 255:
        raise PduError("text needs more than 255 parts")
    dcs = 0x08 if alphabet == "ucs2" else 0x00
    da = encode_address(number)
    out = []
    for i, units in enumerate(segs, 1):
        concat = Concat(ref & (0xFFFF if ref16 else 0xFF), len(segs), i, 16 if ref16 else 8) \
            if len(segs) > 1 else None
        udh = _build_udh(concat)
        first = 0x01
        if validity is not None:
            first |= 0x10
        if request_status:
            first |= 0x20
        if udh:
            first |= 0x40
        udl, ud = _user_data(units, alphabet, udh)
        tpdu = bytes((first, message_ref & 0xFF)) + da + bytes((0x00, dcs))
        if validity is not None:
            tpdu += bytes((validity & 0xFF,))
        tpdu += bytes((udl,)) + ud
        out.append(SubmitPdu((_encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu), concat))
    return out


def encode_deliver(sender: str, text: str, *, timestamp: datetime, smsc: str | None = "+48790998250",
                   ref: int = 0, force_ucs2: bool = False, ref16: bool = False,
                   pid: int = 0) -> list[str]:
    """SMS-DELIVER PDUs (hex, SMSC field first) as a network would hand them to a modem."""
    if not text:
        raise PduError("empty SMS text")
    alphabet = _choose_alphabet(text, force_ucs2)
    segs = _segments(text, alphabet, ref16)
    dcs = 0x08 if alphabet == "ucs2" else 0x00
    oa = encode_address(sender)
    out = []
    for i, units in enumerate(segs, 1):
        concat = Concat(ref & (0xFFFF if ref16 else 0xFF), len(segs), i, 16 if ref16 else 8) \
            if len(segs) > 1 else None
        udh = _build_udh(concat)
        first = 0x04 | (0x40 if udh else 0)  # SMS-DELIVER, TP-MMS: no more messages
        udl, ud = _user_data(units, alphabet, udh)
        tpdu = bytes((first,)) + oa + bytes((pid, dcs)) + encode_scts(timestamp) + bytes((udl,)) + ud
        out.append((_encode_smsc(smsc) + tpdu).hex().upper())
    return out


def _parse_hex(pdu: str | bytes) -> bytes:
    if isinstance(pdu, bytes):
        return pdu
    s = pdu.strip()
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise PduError(f"PDU is not hexadecimal: {s[:40]!r}") from None


def _decode_ud(data: bytes, pos: int, udhi: bool, dcs: int):
    if pos >= len(data):
        raise PduError("PDU truncated before the user data length")
    udl = data[pos]
    ud = data[pos + 1:]
    alphabet = sms_alphabet(dcs)
    ies: tuple[tuple[int, bytes], ...] = ()
    concat = None
    if alphabet == "gsm7":
        need = (udl * 7 + 7) // 8
        if len(ud) < need:
            raise PduError(f"user data truncated: {udl} septets need {need} octets, have {len(ud)}")
        ud = ud[:need]
        septets = unpack_septets(ud, udl)
        if udhi:
            # the text starts at the septet boundary after the header and its fill bits
            ies, concat, hlen = _parse_udh(ud)
            skip = (hlen * 8 + 6) // 7
            if skip > udl:
                raise PduError("user data header longer than the user data")
            septets = septets[skip:]
        units: bytes | tuple[int, ...] = tuple(septets)
        text = decode_gsm7(list(septets))
    else:
        if len(ud) < udl:
            raise PduError(f"user data truncated: length {udl}, have {len(ud)}")
        ud = ud[:udl]
        body = ud
        if udhi:
            ies, concat, hlen = _parse_udh(ud)
            body = ud[hlen:]
        units = bytes(body)
        text = _decode_ucs2(body) if alphabet == "ucs2" else body.decode("latin-1")
    return alphabet, text, units, ies, concat


def _decode_ucs2(data: bytes) -> str:
    if len(data) % 2:
        data = data[:-1]
    return data.decode("utf-16-be", "replace")


def decode_pdu(pdu: str | bytes, *, has_smsc: bool = True) -> SmsDeliver | SmsSubmit | SmsStatusReport:
    """Decode a PDU as AT+CMGR / AT+CMGL / +CMT give it (SMSC field first unless told not)."""
    data = _parse_hex(pdu)
    smsc, pos = _decode_smsc(data) if has_smsc else (None, 0)
    if pos >= len(data):
        raise PduError("PDU has no TPDU")
    first = data[pos]
    mti = first & 0x03
    udhi = bool(first & 0x40)
    try:
        if mti == 0x00:
            sender, p = decode_address(data, pos + 1)
            if p + 9 > len(data):
                raise PduError("SMS-DELIVER truncated before the user data")
            pid, dcs = data[p], data[p + 1]
            ts = decode_scts(data[p + 2:p + 9])
            alphabet, text, units, ies, concat = _decode_ud(data, p + 9, udhi, dcs)
            return SmsDeliver(smsc, sender, ts, pid, dcs, alphabet, text, units, concat, ies,
                              bool(first & 0x20))
        if mti == 0x01:
            if pos + 2 > len(data):
                raise PduError("SMS-SUBMIT truncated")
            mr = data[pos + 1]
            number, p = decode_address(data, pos + 2)
            if p + 2 > len(data):
                raise PduError("SMS-SUBMIT truncated before the data coding scheme")
            pid, dcs = data[p], data[p + 1]
            p += 2
            vpf = (first >> 3) & 0x03
            validity = None
            if vpf == 0x02:
                validity = data[p]
                p += 1
            elif vpf in (0x01, 0x03):
                p += 7
            alphabet, text, units, ies, concat = _decode_ud(data, p, udhi, dcs)
            return SmsSubmit(smsc, number, mr, pid, dcs, alphabet, text, units, concat, ies,
                             bool(first & 0x20), validity)
        if mti == 0x02:
            mr = data[pos + 1]
            rcpt, p = decode_address(data, pos + 2)
            if p + 15 > len(data):
                raise PduError("SMS-STATUS-REPORT truncated")
            return SmsStatusReport(smsc, mr, rcpt, decode_scts(data[p:p + 7]),
                                   decode_scts(data[p + 7:p + 14]), data[p + 14])
    except IndexError:
        raise PduError("PDU truncated") from None
    raise PduError(f"unsupported message type indicator {mti}")


def decode_deliver(pdu: str | bytes, *, has_smsc: bool = True) -> SmsDeliver:
    """Decode an SMS-DELIVER; raises PduError for any other message type."""
    msg = decode_pdu(pdu, has_smsc=has_smsc)
    if not isinstance(msg, SmsDeliver):
        raise PduError(f"expected SMS-DELIVER, got {type(msg).__name__}")
    return msg


def decode_submit(pdu: str | bytes, *, has_smsc: bool = True) -> SmsSubmit:
    """Decode an SMS-SUBMIT; raises PduError for any other message type."""
    msg = decode_pdu(pdu, has_smsc=has_smsc)
    if not isinstance(msg, SmsSubmit):
        raise PduError(f"expected SMS-SUBMIT, got {type(msg).__name__}")
    return msg


def join_parts(parts: list[SmsDeliver] | list[SmsSubmit]) -> str:
    """Text of a concatenated message from its parts (any order; missing parts skipped).

    Units are joined before decoding, so an escape or a surrogate pair split by the sender
    between two parts still decodes to one character.
    """
    ordered = sorted(parts, key=lambda p: p.concat.seq if p.concat else 0)
    if not ordered:
        return ""
    if all(p.alphabet == "gsm7" for p in ordered):
        septets: list[int] = []
        for p in ordered:
            septets += list(p.units)
        return decode_gsm7(septets)
    if all(p.alphabet == "ucs2" for p in ordered):
        return _decode_ucs2(b"".join(bytes(p.units) for p in ordered))
    return "".join(p.text for p in ordered)


# ------------------------------------------------------------------ USSD

def encode_ussd(code: str, *, packed: bool) -> str:
    """The <str> of AT+CUSD: the code itself, or packed GSM 7-bit as hex (Huawei dongles)."""
    if not code or len(code) > 182:
        raise PduError(f"bad USSD string {code!r}")
    if not packed:
        return code
    septets = encode_gsm7(code)
    data = pack_septets(septets)
    # 23.038 6.1.2.3.1: 7 spare bits at the end would read as '@'; pad with CR instead.
    if len(septets) % 8 == 7:
        data = data[:-1] + bytes((data[-1] | (0x0D << 1),))
    return data.hex().upper()


def decode_ussd(text: str, dcs: int | None, *, packed: bool) -> str:
    """Text of a +CUSD <str> given its <dcs>; `packed` when the modem gives GSM 7-bit as packed
    hex (Huawei), otherwise GSM text is taken as it is. UCS-2 is always hex (UTF-16)."""
    alphabet = cbs_alphabet(dcs) if dcs is not None else "gsm7"
    try:
        if alphabet in ("ucs2", "ucs2lang"):
            raw = bytes.fromhex(text)
            if alphabet == "ucs2lang":
                raw = raw[2:]
            return _decode_ucs2(raw)
        if alphabet == "8bit":
            return bytes.fromhex(text).decode("latin-1")
    except ValueError:
        return text  # not hex after all: some firmware converts to the TE charset itself
    if packed:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return text
        n = len(raw) * 8 // 7
        septets = unpack_septets(raw, n)
        # 23.038 6.1.2.3.1: a last septet made of the 7 spare bits is CR padding (or 0 when
        # the sender did not pad); it is not part of the text.
        if n % 8 == 0 and septets and septets[-1] in (0x0D, 0x00):
            septets = septets[:-1]
        return decode_gsm7(septets)
    return text
