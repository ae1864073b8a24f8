"""SDP parsing/serialization and offer/answer (firmware.sip.sdp)."""
from __future__ import annotations

import pytest

from firmware.sip import SdpError
from firmware.sip.sdp import PCMA, PCMU, TELEPHONE_EVENT, Codec, SdpSession, parse_sdp
from tests.conftest import load

YEALINK = load("sip/invite_typical.sip").split(b"\r\n\r\n", 1)[1]


def sdp(text: str) -> bytes:
    return text.strip().replace("\n", "\r\n").encode() + b"\r\n"


PYVOIP_OFFER = sdp("""
v=0
o=pyVoIP 1700000000 1700000002 IN IP4 127.0.0.1
s=pyVoIP 1.6.8
c=IN IP4 127.0.0.1
t=0 0
m=audio 20000 RTP/AVP 0 101
a=sendrecv
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=maxptime:150
""")


def test_parse_a_desk_phone_offer():
    d = parse_sdp(YEALINK)
    m = d.audio()
    assert d.origin.session_id == "20025" and d.origin.version == 20025 and d.session_name == "SDP data"
    assert d.remote_rtp() == ("192.168.1.21", 11796)
    assert [(c.payload_type, c.name, c.clock_rate, c.fmtp) for c in m.codecs] == [
        (0, "PCMU", 8000, None), (8, "PCMA", 8000, None), (18, "G729", 8000, "annexb=no"),
        (9, "G722", 8000, None), (101, "telephone-event", 8000, "0-15")]
    assert m.ptime == 20 and m.direction == "sendrecv" and not d.is_hold


def test_round_trip_keeps_every_line():
    text = sdp("""
v=0
o=- 1 2 IN IP4 192.0.2.1
s=-
i=info
u=http://example.com
e=a@b
c=IN IP4 192.0.2.1/127
b=AS:64
t=0 0
r=7d 1h 0 25h
z=2882844526 -1h
k=clear:x
a=tool:test
m=audio 4000 RTP/AVP 8 0
i=voice
c=IN IP4 192.0.2.2
b=TIAS:64000
a=rtpmap:8 PCMA/8000
a=recvonly
m=video 0 RTP/AVP 31
""")
    d = parse_sdp(text)
    assert d.serialize().replace(b"/127", b"") == text.replace(b"/127", b"")
    assert d.connection_for(d.media[0]).address == "192.0.2.2" and d.media[0].direction == "recvonly"
    assert parse_sdp(d.serialize()).media[1].port == 0 and d.media[1].codecs == []
    assert parse_sdp(text.decode().replace("\r\n", "\n")).origin.version == 2


@pytest.mark.parametrize("body,reason", [
    (b"", "SDP must start with v=0"),
    (b"v=1\r\n", "SDP must start with v=0"),
    (sdp("v=0\ns=-"), "SDP has no o= line"),
    (sdp("v=0\no=- 1 x IN IP4 h\ns=-"), "Invalid o= line: - 1 x IN IP4 h"),
    (sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio x RTP/AVP 0"), "Invalid m= line: audio x RTP/AVP 0"),
    (sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 99999 RTP/AVP 0"), "Invalid m= line: audio 99999 RTP/AVP 0"),
    (sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP9 h\nt=0 0"), "Invalid c= line: IN IP9 h"),
    (sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 5 RTP/AVP 0"), "SDP audio stream has no c= line"),
    (sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nthis is not sdp"), "Malformed SDP line: this is not sdp"),
    (sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nt=0 0\nm=audio 5 RTP/AVP 96\na=rtpmap:96 opus"),
     "Invalid rtpmap attribute: 96 opus"),
    (b"v=0\r\n\xff\xfe", "SDP is not UTF-8 text"),
])
def test_malformed_sdp_gets_a_clear_error(body, reason):
    with pytest.raises(SdpError) as exc:
        parse_sdp(body)
    assert exc.value.reason == reason and exc.value.status_hint == 400


def test_answer_keeps_the_offerers_order_and_mirrors_telephone_event():
    offer = parse_sdp(sdp("""
v=0
o=- 5 5 IN IP4 10.0.0.9
s=-
c=IN IP4 10.0.0.9
t=0 0
m=audio 30000 RTP/AVP 18 8 0 96
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-15
a=ptime:30
m=video 30002 RTP/AVP 31
"""))
    session = SdpSession("192.0.2.1")
    ans = session.answer(offer, 12000)
    assert ans.codec == Codec(8, "PCMA", 8000) and ans.telephone_event.payload_type == 96
    assert ans.remote == ("10.0.0.9", 30000) and ans.ptime == 30 and not ans.hold
    a = parse_sdp(ans.sdp.serialize())
    assert [m.port for m in a.media] == [12000, 0] and a.media[0].formats == ["8", "0", "96"]
    assert a.media[1].formats == ["31"] and a.connection.address == "192.0.2.1"
    assert a.media[0].attribute("fmtp") == "96 0-15" and a.media[0].direction == "sendrecv"


def test_answer_picks_the_first_acceptable_audio_stream_and_rejects_srtp():
    offer = parse_sdp(sdp("""
v=0
o=- 5 5 IN IP4 10.0.0.9
s=-
c=IN IP4 10.0.0.9
t=0 0
m=audio 30000 RTP/SAVP 0
m=audio 30002 RTP/AVP 0 8
"""))
    ans = SdpSession("192.0.2.1").answer(offer, 12000, supported=[PCMA], telephone_event=False)
    a = parse_sdp(ans.sdp.serialize())
    assert [m.port for m in a.media] == [0, 12000] and ans.codec.name == "PCMA" and ans.telephone_event is None


def test_no_common_codec_is_488():
    offer = parse_sdp(sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nt=0 0\nm=audio 5 RTP/AVP 18"))
    with pytest.raises(SdpError) as exc:
        SdpSession("192.0.2.1").answer(offer, 1000)
    assert (exc.value.status_hint, exc.value.reason) == (488, "No common codec")


@pytest.mark.parametrize("attr,conn,remote_dir,ours,hold", [
    ("a=sendonly", "10.0.0.9", "sendonly", "recvonly", True),
    ("a=inactive", "10.0.0.9", "inactive", "inactive", True),
    ("a=recvonly", "10.0.0.9", "recvonly", "sendonly", False),
    ("a=sendrecv", "0.0.0.0", "sendonly", "recvonly", True),
    ("a=sendrecv", "10.0.0.9", "sendrecv", "sendrecv", False),
])
def test_hold_offers_are_detected_and_answered(attr, conn, remote_dir, ours, hold):
    offer = parse_sdp(sdp(f"v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 {conn}\nt=0 0\nm=audio 5 RTP/AVP 0\n{attr}"))
    assert offer.is_hold == hold
    ans = SdpSession("192.0.2.1").answer(offer, 1000)
    assert ans.remote_direction == remote_dir and ans.hold == hold
    assert parse_sdp(ans.sdp.serialize()).media[0].direction == ours


def test_we_can_put_the_other_side_on_hold_and_resume_with_version_increments():
    s = SdpSession("192.0.2.1", session_id="42")
    first = parse_sdp(s.offer(4000).serialize())
    assert first.origin.session_id == "42" and first.origin.version == 0
    assert [c.name for c in first.audio().codecs] == ["PCMU", "PCMA", "telephone-event"]
    same = parse_sdp(s.offer(4000).serialize())
    assert same.origin.version == 0
    hold = parse_sdp(s.offer(4000, direction="sendonly").serialize())
    assert hold.origin.version == 1 and hold.is_hold
    resume = parse_sdp(s.offer(4000).serialize())
    assert resume.origin.version == 2 and not resume.is_hold
    offer = parse_sdp(sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nt=0 0\nm=audio 5 RTP/AVP 0 8\na=sendrecv"))
    ans = s.answer(offer, 4000, direction="sendonly")
    assert parse_sdp(ans.sdp.serialize()).media[0].direction == "sendonly" and ans.sdp.origin.version == 3
    with pytest.raises(ValueError, match="unknown direction"):
        s.offer(4000, direction="sideways")


def test_ipv6_and_a_parsed_answer_round_trip():
    s = SdpSession("2001:db8::1")
    d = parse_sdp(s.offer(5000, codecs=[PCMA], telephone_event=TELEPHONE_EVENT, ptime=None).serialize())
    assert d.connection.addrtype == "IP6" and d.origin.addrtype == "IP6" and d.audio().ptime is None
    assert d.remote_rtp() == ("2001:db8::1", 5000)
    assert parse_sdp(sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0")).remote_rtp() is None
    assert not parse_sdp(sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0")).is_hold
    assert PCMU.key == ("pcmu", 8000)


def test_tolerated_oddities_and_direction_changes():
    d = parse_sdp(sdp("""
v=0
o=- 1 1 IN IP4 h
s=-
t=0 0
t=1 2
m=audio 5 RTP/AVP 0 96 97
c=IN IP4 10.0.0.1
a=rtpmap:97 L16/8000/2
m=application 9 TCP/BFCP *
a=sendonly
m=video 7 RTP/AVP 31 98
a=rtpmap:98 broken
"""))
    assert [c.payload_type for c in d.media[0].codecs] == [0, 97] and d.media[0].codecs[1].channels == 2
    assert d.media[1].codecs == [] and d.media[1].direction == "sendonly"
    assert [c.name for c in d.media[2].codecs] == []
    assert ("t", "1 2") in d.other and "t=1 2" in str(d) and "\r\nc=" in str(d) and d.connection is None
    m = d.media[0]
    m.set_direction("inactive")
    m.set_direction("sendrecv")
    assert [k for k, _ in m.attributes if k in ("inactive", "sendrecv")] == ["sendrecv"]
    assert d.direction_of(m) == "sendrecv" and m.attribute("missing") is None
    assert SdpSession("192.0.2.1").offer(1, codecs=[Codec(97, "L16", 8000, 2)], telephone_event=None) \
        .media[0].attribute("rtpmap") == "97 L16/8000/2"
