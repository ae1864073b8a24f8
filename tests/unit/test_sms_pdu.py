"""SMS PDU codec: known vectors (3GPP examples widely used by implementers) and round trips."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.modem.errors import PduError
from firmware.modem.pdu import (GSM7_BASIC, decode_deliver, decode_gsm7, decode_pdu, decode_scts,
                                decode_submit, decode_ussd, encode_deliver, encode_gsm7,
                                encode_scts, encode_submit, encode_ussd, gsm7_encodable,
                                join_parts, pack_septets, unpack_septets)

TS = datetime(2024, 3, 5, 14, 7, 30, tzinfo=timezone(timedelta(hours=1)))


# ------------------------------------------------------------------ known vectors

def test_submit_known_vector_hellohello() -> None:
    pdu = encode_submit("+46708251358", "hellohello", validity=0xAA)
    assert [p.hex for p in pdu] == ["0011000B916407281553F80000AA0AE8329BFD4697D9EC37"]
    assert pdu[0].tpdu_length == 23


def test_deliver_known_vector() -> None:
    d = decode_deliver("07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07")
    assert d.smsc == "+31624000000"
    assert d.sender.number == "+31641600986"
    assert d.text == "How are you?"
    assert d.timestamp == "2002-08-26T19:37:41+00:00"


def test_scts_known_vector_and_negative_zone() -> None:
    assert decode_scts(bytes.fromhex("99309251619580")) == "1999-03-29T15:16:59+02:00"
    ts = datetime(2023, 12, 31, 23, 59, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert decode_scts(encode_scts(ts)) == "2023-12-31T23:59:01-05:00"
    assert encode_scts(ts)[-1] == 0x0A  # 20 quarter hours, sign bit 3


def test_ussd_known_vector_packed() -> None:
    assert encode_ussd("*100#", packed=True) == "AA180C3602"
    assert decode_ussd("AA180C3602", 15, packed=True) == "*100#"
    assert encode_ussd("*100#", packed=False) == "*100#"


def test_ussd_ucs2_and_text() -> None:
    hexu = "Баланс: 100,00 р.".encode("utf-16-be").hex()
    assert decode_ussd(hexu, 72, packed=False) == "Баланс: 100,00 р."
    assert decode_ussd("Balance 5 EUR", 15, packed=False) == "Balance 5 EUR"
    # seven characters pack into 7 octets; the spare septet is CR padding, not text
    assert decode_ussd(encode_ussd("*123*1#", packed=True), 15, packed=True) == "*123*1#"


# ------------------------------------------------------------------ alphabet

def test_gsm7_tables() -> None:
    assert GSM7_BASIC[0x00] == "@" and GSM7_BASIC[0x02] == "$" and GSM7_BASIC[0x24] == "¤"
    assert encode_gsm7("€") == [0x1B, 0x65]
    assert encode_gsm7("{}[]~|^\\") == [0x1B, 0x28, 0x1B, 0x29, 0x1B, 0x3C, 0x1B, 0x3E, 0x1B, 0x3D,
                                         0x1B, 0x40, 0x1B, 0x14, 0x1B, 0x2F]
    assert decode_gsm7([0x1B, 0x65, 0x00]) == "€@"
    assert decode_gsm7([0x1B, 0x41]) == "A"  # unknown extension: the basic character
    assert gsm7_encodable("Hello €") and not gsm7_encodable("ż") and not gsm7_encodable("😀")
    with pytest.raises(PduError, match="U\\+017C"):
        encode_gsm7("ż")


def test_septet_packing_with_fill_bits() -> None:
    septets = encode_gsm7("hellohello")
    assert pack_septets(septets).hex().upper() == "E8329BFD4697D9EC37"
    assert unpack_septets(pack_septets(septets, 1), 10, 1) == septets
    with pytest.raises(PduError, match="user data too short"):
        unpack_septets(b"\x00", 3)


# ------------------------------------------------------------------ SMS-SUBMIT / DELIVER

@pytest.mark.parametrize("text", [
    "Привет, как дела?",                       # Russian
    "Zażółć gęślą jaźń",                       # Polish
    "Здравейте, благодарим за поръчката!",     # Bulgarian
    "Thumbs up 👍 and a grin 😀",               # emoji (surrogate pairs)
    "plain ASCII with @ and € {braces}",
])
def test_submit_round_trip_languages(text: str) -> None:
    parts = encode_submit("+48600100200", text)
    assert len(parts) == 1
    msg = decode_submit(parts[0].hex)
    assert msg.text == text and msg.number.number == "+48600100200"
    assert msg.alphabet == ("gsm7" if gsm7_encodable(text) else "ucs2")


def test_multipart_gsm7_never_splits_an_escape() -> None:
    text = "x" * 152 + "€" + "y" * 10
    parts = encode_submit("600100200", text)
    assert len(parts) == 2
    decoded = [decode_submit(p.hex) for p in parts]
    assert [len(d.units) for d in decoded] == [152, 12]  # the € (2 septets) moved to part 2
    assert decoded[0].concat.total == 2 and decoded[0].concat.bits == 8
    assert join_parts(decoded) == text
    # UDH 050003 ref 02 01, then one fill bit before the text (23.040 9.2.3.24)
    assert bytes.fromhex(parts[0].hex)[14:20].hex() == "050003%02x0201" % decoded[0].concat.ref


def test_multipart_ucs2_never_splits_a_surrogate_pair() -> None:
    text = "a" * 66 + "😀" + "b" * 10
    parts = encode_submit("+48600100200", text, ref=0x1234, ref16=True)
    decoded = [decode_submit(p.hex) for p in parts]
    assert all(not d.text.count("\ufffd") for d in decoded)
    assert decoded[0].concat.ref == 0x1234 and decoded[0].concat.bits == 16
    assert join_parts(list(reversed(decoded))) == text


def test_parts_split_by_a_sender_between_a_pair_still_join() -> None:
    """A phone that split a surrogate pair between parts: joined as UTF-16 units."""
    full = "😀".encode("utf-16-be")
    a = encode_deliver("+48600100200", "x", timestamp=TS)[0]
    p1, p2 = decode_deliver(a), decode_deliver(a)
    p1 = p1.__class__(**{**p1.__dict__, "alphabet": "ucs2", "units": full[:2], "concat": None})
    p2 = p2.__class__(**{**p2.__dict__, "alphabet": "ucs2", "units": full[2:], "concat": None})
    assert join_parts([p1, p2]) == "😀"


def test_deliver_alphanumeric_sender_and_national_number() -> None:
    d = decode_deliver(encode_deliver("Orange", "Twoje saldo: 5 zł", timestamp=TS)[0])
    assert d.sender.number == "Orange" and d.sender.alphanumeric
    assert d.timestamp == "2024-03-05T14:07:30+01:00"
    n = decode_deliver(encode_deliver("0600100200", "hej", timestamp=TS, smsc=None)[0])
    assert n.sender.number == "0600100200" and n.sender.toa == 0x81 and n.smsc is None


def test_long_cyrillic_three_parts_round_trip() -> None:
    text = "Съобщение на български и русский текст. " * 5
    pdus = encode_deliver("+359888123456", text, timestamp=TS, ref=200)
    assert len(pdus) == 3
    parts = [decode_deliver(p) for p in pdus]
    assert [p.concat.seq for p in parts] == [1, 2, 3]
    assert join_parts(parts) == text


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=400))
def test_any_text_round_trips(text: str) -> None:
    pdus = encode_deliver("+48600100200", text, timestamp=TS, ref=9)
    parts = [decode_deliver(p) for p in pdus]
    assert join_parts(parts) == text
    for p in pdus:
        assert len(bytes.fromhex(p)) - 8 <= 176  # TPDU fits one SMS


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("bad,msg", [
    ("", "empty PDU"),
    ("zz", "not hexadecimal"),
    ("07911326040000F0040B9113466100", "truncated"),
    ("07911326040000F0040B911346610089F60000208062917314080CC8F7", "user data truncated"),
    ("07911326040000F0440B911346610089F6000020806291731408030AFFFF", "header"),
    ("0003", "unsupported message type"),
])
def test_bad_pdus_raise_clear_errors(bad: str, msg: str) -> None:
    with pytest.raises(PduError, match=msg):
        decode_pdu(bad)


def test_encode_refuses_bad_input() -> None:
    with pytest.raises(PduError, match="empty"):
        encode_submit("+48600100200", "")
    with pytest.raises(PduError, match="longer than 11"):
        encode_submit("TooLongSenderName", "x")
    with pytest.raises(PduError, match="not a USSD|bad USSD"):
        encode_ussd("", packed=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_pdu_error(data: bytes) -> None:
    try:
        decode_pdu(data.hex())
    except PduError:
        pass
