"""SIP message parsing, serialization and builders (firmware.sip.message, headers, uri)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.sip import (
    Address,
    Headers,
    KeepAlive,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    StreamParser,
    Via,
    check_request,
    make_ack_for_error,
    make_cancel,
    make_error_response,
    make_request,
    make_response,
    parse_message,
    parse_uri,
)
from firmware.sip.headers import (
    CSeq,
    format_auth,
    normalize_name,
    parse_auth,
    parse_event,
    parse_reason,
    parse_replaces,
    parse_session_expires,
    parse_subscription_state,
)
from firmware.sip.uri import AbsoluteUri, escape, split_commas, unescape, unquote_string
from tests.conftest import DATA, load

EXPECTED = json.loads((DATA / "sip/rfc4475/expected.json").read_text())
CASES = sorted(k for k in EXPECTED if not k.startswith("_"))


def torture(name: str) -> bytes:
    return load(f"sip/rfc4475/{name}.dat")


def msg(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


OPTIONS = msg("""OPTIONS sip:201@box.example SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc;rport
From: <sip:202@box.example>;tag=f1
To: <sip:201@box.example>
Call-ID: opt-1@192.0.2.1
CSeq: 7 OPTIONS
Max-Forwards: 70
Content-Length: 0

""")


# --- RFC 4475 ---------------------------------------------------------------------------
def test_the_corpus_has_every_message_of_rfc4475():
    assert len(CASES) == 49
    sections = [EXPECTED[c]["section"] for c in CASES]
    assert sum(s.startswith("3.1.1.") for s in sections) == 13
    assert sum(s.startswith("3.1.2.") for s in sections) == 19
    assert {s[:3] for s in sections} == {"3.1", "3.2", "3.3", "3.4"}


@pytest.mark.parametrize("name", CASES)
def test_rfc4475_message_gets_the_prescribed_behaviour(name):
    expected = EXPECTED[name]["parse"]
    data = torture(name)
    if expected == "ok":
        m = parse_message(data)
        assert isinstance(m, (SipRequest, SipResponse))
        again = parse_message(m.serialize())
        assert type(again) is type(m) and again.body == m.body
        assert [h for h in again.headers if h[0] != "Content-Length"] == \
            [h for h in m.headers if h[0] != "Content-Length"]
        assert again.headers.get("content-length") == str(len(m.body))
    else:
        status, reason = expected
        with pytest.raises(SipParseError) as exc:
            parse_message(data)
        assert (exc.value.status_hint, exc.value.reason) == (status, reason)
        resp = make_error_response(exc.value)
        if status is None:
            assert resp is None
        else:
            assert resp is not None and resp.status == status and resp.reason == reason
            original = [v for k, v in Headers_of(data) if k.lower() in ("via", "v")]
            assert resp.headers.get_all("via") == original


def Headers_of(data: bytes) -> list[tuple[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape").replace("\r\n ", " ")
    out = []
    for line in head.split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out.append((k.strip(), v.strip()))
    return out


def test_wsinv_folding_quoting_compact_forms_and_leading_zeros():
    m = parse_message(torture("wsinv"))
    assert m.method == "INVITE" and m.uri.params == {"unknownparam": None}
    assert m.to_addr.tag == "1918181833n" and m.to_addr.uri.user == "vivekg"
    assert m.from_addr.display_name == 'J Rosenberg \\"' and m.from_tag == "98asjd8"
    assert m.max_forwards == 68 and m.cseq == CSeq(9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"), ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239")]
    assert m.headers.get("subject") == ""
    assert m.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.routes[0].uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert len(m.body) == 150 and m.content_type == "application/sdp"


def test_intmeth_unusual_characters_everywhere():
    m = parse_message(torture("intmeth"))
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_addr.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_addr.get_param("fromParam''~+*_!.-%") == "работающий"
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    value = m.headers.get("extensionHeader-!.%*+_`'~")
    assert value.encode("utf-8", "surrogateescape") == bytes.fromhex("EFBBBF") + "大停電".encode()
    assert check_request(m).status == 501


def test_escapes_are_decoded_where_the_grammar_has_them_only():
    m = parse_message(torture("esc01"))
    assert m.uri.user == "sips:user@example.com"
    assert m.to_addr.uri.user == "user" and m.from_addr.uri.user == "I have spaces"
    assert m.contacts[0].uri.user == "caller"
    assert m.contacts[0].uri.params == {"lr": None, "name": "value%41"}
    m = parse_message(torture("escnull"))
    assert m.to_addr.uri.user == "null-\x00-null"
    assert [c.uri.user for c in m.contacts] == ["\x00", "\x00\x00"]
    m = parse_message(torture("esc02"))
    assert m.method == "RE%47IST%45R" and m.to_addr.display_name == "%Z%45"
    assert [c.uri.host for c in m.contacts] == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"


def test_semicolon_in_user_part_and_display_name_without_space():
    m = parse_message(torture("semiuri"))
    assert m.uri.user == "user;par=u@example.net" and m.uri.host == "example.com"
    assert m.headers.values("accept")[-1] == "message/sipfrag"
    assert parse_message(torture("lwsdisp")).from_addr.display_name == "caller"


def test_long_values_and_34_vias_in_mixed_case_and_compact_form():
    m = parse_message(torture("longreq"))
    assert len(m.vias) == 34 and m.vias[0].host == "sip33.example.com"
    assert m.vias[-1].received == "192.0.2.5" and len(m.vias[-1].branch) == 4 + 200 + 11
    assert m.to_addr.uri.port == 6000 and len(m.from_tag) == 2 + 150 + 3


def test_extra_octets_after_a_udp_message_are_ignored():
    m = parse_message(torture("dblreq"))
    assert m.method == "REGISTER" and m.body == b""


def test_multipart_binary_body_is_kept_byte_exact():
    m = parse_message(torture("mpart01"))
    assert len(m.body) == 553 and b"\x00" in m.body
    assert m.top_via.has_rport and m.top_via.rport is None and m.top_via.port == 5070


def test_unusual_and_empty_reason_phrases():
    m = parse_message(torture("unreason"))
    assert m.status == 200 and m.reason.endswith("простое")
    m = parse_message(torture("noreason"))
    assert m.status == 100 and m.reason == ""


def test_unknown_schemes_parse_as_opaque_uris_and_get_416_from_the_ua_core():
    m = parse_message(torture("unkscm"))
    assert isinstance(m.uri, AbsoluteUri) and str(m.uri) == "nobodyKnowsThisScheme:totallyopaquecontent"
    assert check_request(m).status == 416
    m = parse_message(torture("unksm2"))
    assert str(m.to_addr.uri) == "isbn:2983792873" and m.contacts[0].uri.scheme == "name"


def test_ua_core_checks_require_and_content_type():
    m = parse_message(torture("bext01"))
    resp = check_request(m, supported=["replaces"])
    assert resp.status == 420
    assert resp.headers.get("unsupported") == "nothingsupportsthis, nothingsupportsthiseither"
    resp = check_request(parse_message(torture("invut")), content_types=["application/sdp"])
    assert resp.status == 415 and resp.headers.get("accept") == "application/sdp"
    assert check_request(parse_message(torture("wsinv")), content_types=["application/sdp"]) is None
    resp = check_request(parse_message(OPTIONS), methods=["INVITE", "ACK"])
    assert resp.status == 405 and resp.headers.get("allow") == "ACK, INVITE"


def test_contact_header_parameter_versus_uri_parameter():
    m = parse_message(torture("cparam01"))
    assert m.contacts[0].params == {"unknownparam": None} and m.contacts[0].uri.params == {}
    m = parse_message(torture("cparam02"))
    assert m.contacts[0].params == {} and m.contacts[0].uri.params == {"unknownparam": None}
    m = parse_message(torture("regescrt"))
    assert m.contacts[0].uri.headers == (("Route", "<sip:sip.example.com>"),)


def test_rfc2543_request_without_content_length_takes_the_rest_of_the_datagram():
    m = parse_message(torture("inv2543"))
    assert len(m.body) == 105 and m.max_forwards is None and not m.top_via.rfc3261


def test_broken_ack_is_never_answered():
    data = msg("""ACK sip:a@b SIP/2.0
Via: SIP/2.0/UDP h;branch=z9hG4bKx
From: <sip:a@b>;tag=1
To: "unterminated <sip:c@d>
Call-ID: x
CSeq: 1 ACK
Content-Length: 0

""")
    with pytest.raises(SipParseError) as exc:
        parse_message(data)
    assert exc.value.status_hint is None and make_error_response(exc.value) is None


# --- framing rules ------------------------------------------------------------------------
def test_udp_body_longer_than_content_length_is_truncated_shorter_is_an_error():
    base = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 3")
    assert parse_message(base + b"abcdef").body == b"abc"
    with pytest.raises(SipParseError, match="Content-Length larger than the body"):
        parse_message(base + b"ab")


def test_leading_crlfs_are_skipped_and_a_missing_blank_line_is_an_error():
    assert parse_message(b"\r\n\r\n" + OPTIONS).method == "OPTIONS"
    with pytest.raises(SipParseError) as exc:
        parse_message(OPTIONS.rstrip(b"\r\n"))
    assert (exc.value.status_hint, exc.value.reason) == (400, "Missing empty line after the headers")
    assert make_error_response(exc.value).status == 400


@pytest.mark.parametrize("data,reason", [
    (b"", "Empty message"), (b"\r\n\r\n", "Empty message"), (b"GET / HTTP/1.1\r\n\r\n", "Not a SIP message"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "Not a SIP message"),
    (b"SIP/2.0 99 Odd\r\n\r\n", "Invalid status code"), (b"SIP/3.0 200 OK\r\n\r\n", "Invalid status line"),
])
def test_garbage_is_dropped(data, reason):
    with pytest.raises(SipParseError) as exc:
        parse_message(data)
    assert (exc.value.status_hint, exc.value.reason) == (None, reason)


def test_size_limit():
    with pytest.raises(SipParseError) as exc:
        parse_message(OPTIONS + b"x" * 100, max_size=len(OPTIONS) + 10)
    assert (exc.value.status_hint, exc.value.reason) == (513, "Message Too Large")


def test_malformed_header_line_is_a_400_naming_no_header():
    bad = OPTIONS.replace(b"Max-Forwards: 70", b"Max Forwards 70")
    with pytest.raises(SipParseError, match="Malformed header line") as exc:
        parse_message(bad)
    assert exc.value.status_hint == 400
    with pytest.raises(SipParseError, match="Malformed header line"):
        parse_message(OPTIONS.replace(b"Max-Forwards: 70", b"Bad[Name]: 1"))
    with pytest.raises(SipParseError, match="Malformed header line"):
        parse_message(b"SIP/2.0 200 OK\r\nnocolon\r\n\r\n")


@pytest.mark.parametrize("old,new,reason", [
    (b"Max-Forwards: 70", b"Max-Forwards: 256", "Invalid Max-Forwards header: value too large"),
    (b"Max-Forwards: 70", b"Max-Forwards: seventy", "Invalid Max-Forwards header"),
    (b"Call-ID: opt-1@192.0.2.1", b"Call-ID: a b", "Invalid Call-ID header"),
    (b"CSeq: 7 OPTIONS", b"CSeq: seven OPTIONS", "Invalid CSeq header"),
    (b"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc;rport", b"Via: SIP/2.0/UDP 192.0.2.1:99999",
     "Invalid Via header"),
    (b"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc;rport", b"Via: SIP/2.0/UDP 192.0.2.1;branch=a b",
     "Invalid Via header"),
    (b"To: <sip:201@box.example>", b"To: <sip:201@box.example:70000>", "Invalid To header"),
    (b"To: <sip:201@box.example>", b"To: <sip:201@box.example", "Invalid To header"),
    (b"To: <sip:201@box.example>", b"To: <>", "Invalid To header"),
    (b"To: <sip:201@box.example>", b"To: <sip:2%G1@box.example>", "Invalid To header"),
    (b"Content-Length: 0", b"Content-Length: 0\r\nContact: <sip:a@b>;;", "Invalid Contact header"),
    (b"Content-Length: 0", b"Content-Length: 0\r\nContact: <sip:a@b> junk", "Invalid Contact header"),
    (b"Content-Length: 0", b"Content-Length: 0\r\nContent-Type: a/b\r\nContent-Type: c/d",
     "Multiple Content-Type headers"),
    (b"CSeq: 7 OPTIONS\r\n", b"", "Missing CSeq header"),
    (b"OPTIONS sip:201@box.example SIP/2.0", b"OPTIONS sip:201@box.example?a=b SIP/2.0",
     "Invalid Request-URI: headers are not allowed"),
])
def test_header_errors_name_the_header(old, new, reason):
    assert old in OPTIONS
    with pytest.raises(SipParseError) as exc:
        parse_message(OPTIONS.replace(old, new))
    assert (exc.value.status_hint, exc.value.reason) == (400, reason)
    resp = make_error_response(exc.value)
    assert resp.status == 400 and resp.reason == reason


def test_error_response_for_a_request_without_via_cannot_be_routed():
    with pytest.raises(SipParseError) as exc:
        parse_message(OPTIONS.replace(b"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc;rport\r\n", b""))
    assert exc.value.reason == "Missing Via header"
    assert make_error_response(exc.value) is None


def test_responses_with_errors_are_dropped():
    resp = msg("""SIP/2.0 200 OK
Via: SIP/2.0/UDP h;branch=z9hG4bKx
From: <sip:a@b>;tag=1
To: <sip:c@d>;tag=2
CSeq: 1 INVITE
Content-Length: 0

""")
    with pytest.raises(SipParseError) as exc:
        parse_message(resp)
    assert (exc.value.status_hint, exc.value.reason) == (None, "Missing Call-ID header")


# --- compact forms, case, lists, IPv6 -------------------------------------------------------
def test_every_compact_form_expands_to_its_long_name():
    compact = ["i", "m", "e", "l", "c", "f", "s", "k", "t", "v", "o", "u", "r", "b", "x", "y", "a", "j"]
    names = {normalize_name(c)[1] for c in compact}
    assert names == {"Call-ID", "Contact", "Content-Encoding", "Content-Length", "Content-Type",
                     "From", "Subject", "Supported", "To", "Via", "Event", "Allow-Events",
                     "Refer-To", "Referred-By", "Session-Expires", "Identity", "Accept-Contact",
                     "Reject-Contact"}
    h = Headers([("k", "timer"), ("SUPPORTED", "replaces"), ("x", "1800;refresher=uac")])
    assert h.get_all("Supported") == ["timer", "replaces"]
    assert list(h) == [("Supported", "timer"), ("Supported", "replaces"), ("Session-Expires", "1800;refresher=uac")]


def test_comma_lists_and_repeated_headers_combine():
    m = parse_message(OPTIONS.replace(b"Content-Length: 0", b'Contact: "A, B" <sip:a@h1>;q=0.5, <sip:b@h2>\r\n'
                                      b"Contact: sip:c@h3;expires=60\r\nSupported: timer, replaces\r\nk: path\r\n"
                                      b"Content-Length: 0"))
    assert [(c.display_name, c.uri.user) for c in m.contacts] == [("A, B", "a"), (None, "b"), (None, "c")]
    assert m.contacts[2].get_param("expires") == "60"
    assert m.supported == ["timer", "replaces", "path"]


def test_ipv6_references_in_uris_and_vias():
    m = parse_message(msg("""OPTIONS sip:[2001:db8::10]:5070;transport=tcp SIP/2.0
Via: SIP/2.0/TCP [2001:db8::9]:5060;branch=z9hG4bKv6
From: <sip:a@[2001:db8::9]>;tag=1
To: <sip:b@[2001:db8::10]>
Call-ID: v6
CSeq: 1 OPTIONS
Content-Length: 0

"""))
    assert m.uri.host == "2001:db8::10" and m.uri.port == 5070 and m.uri.transport == "tcp"
    assert m.top_via.host == "2001:db8::9" and m.top_via.sent_by == "[2001:db8::9]:5060"
    assert str(m.top_via.with_params(received="2001:db8::1")).endswith(";received=2001:db8::1")
    assert SipUri(host="::1", port=5060).host_port == "[::1]:5060"


def test_star_contact_and_expires_clamp():
    m = parse_message(OPTIONS.replace(b"Content-Length: 0", b"Contact: *\r\nExpires: 0\r\nContent-Length: 0"))
    assert m.contact_is_star and m.contacts == [] and m.expires == 0
    m = parse_message(torture("scalar02").replace(b"36893488147419103232", b"1").replace(b"300", b"30"))
    assert m.expires == 2 ** 32 - 1 and m.contacts[0].get_param("expires") == "280297596632815"
    bad = parse_message(OPTIONS.replace(b"Content-Length: 0", b"Expires: soon\r\nContent-Length: 0"))
    with pytest.raises(SipParseError, match="Invalid Expires header"):
        _ = bad.expires


# --- typed headers ---------------------------------------------------------------------------
def test_auth_headers_parse_and_format():
    c = parse_auth('Digest username="201", realm="box", nonce="n1", uri="sip:box", '
                   'response="abc", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="x\\"y"', "Authorization")
    assert c.scheme == "Digest" and c.params["algorithm"] == "SHA-256" and c.params["cnonce"] == 'x"y'
    assert format_auth("Digest", [("realm", "box"), ("qop", "auth"), ("algorithm", "MD5")], quote_qop=True) == \
        'Digest realm="box", qop="auth", algorithm=MD5'
    assert parse_auth("NoOneKnowsThisScheme opaque-data=here", "Authorization").params == {"opaque-data": "here"}
    for bad in ("", "Digest", 'Digest realm="x" nonce="y"', "Digest realm", 'Digest realm="unterminated',
                "Digest realm=@"):
        with pytest.raises(SipParseError, match="Invalid Authorization header"):
            parse_auth(bad, "Authorization")


def test_rfc4028_3891_6665_3326_3515_headers():
    m = parse_message(OPTIONS.replace(b"Content-Length: 0", b"""Session-Expires: 1800;refresher=UAC
Min-SE: 90
Replaces: abc@h;to-tag=t1;from-tag=f1;early-only
Refer-To: <sip:203@box?Replaces=c%40h%3Bto-tag%3Dt%3Bfrom-tag%3Df>
Referred-By: <sip:201@box>
Event: Dialog;id=7
Subscription-State: active;expires=600
Reason: SIP;cause=200;text="Call completed elsewhere", Q.850;cause=16
Content-Length: 0""".replace(b"\n", b"\r\n")))
    assert m.session_expires.delta == 1800 and m.session_expires.refresher == "uac"
    assert str(m.session_expires) == "1800;refresher=uac"
    assert m.min_se == 90
    assert m.replaces == parse_replaces("abc@h;to-tag=t1;from-tag=f1;early-only") and m.replaces.early_only
    refer = m.refer_to
    ((hname, hvalue),) = refer.uri.headers
    assert hname == "Replaces" and parse_replaces(hvalue).call_id == "c@h"
    assert m.referred_by.uri.user == "201"
    assert m.event.package == "dialog" and m.event.id == "7" and str(m.event) == "dialog;id=7"
    assert m.subscription_state.state == "active" and m.subscription_state.expires == 600
    assert [(r.protocol, r.cause, r.text) for r in m.reasons] == [
        ("SIP", 200, "Call completed elsewhere"), ("Q.850", 16, None)]
    assert str(m.reasons[0]) == 'SIP;cause=200;text="Call completed elsewhere"'
    assert str(parse_subscription_state("terminated;reason=noresource")) == "terminated;reason=noresource"


@pytest.mark.parametrize("fn,text", [
    (parse_session_expires, "soon"), (parse_session_expires, "90;;"), (parse_replaces, "abc;to-tag=1"),
    (parse_replaces, ";to-tag=1;from-tag=2"), (parse_event, ""), (parse_event, "dialog junk"),
    (parse_subscription_state, "active;expires=x"), (parse_subscription_state, ""),
    (parse_reason, "SIP;cause=x"), (parse_reason, ""),
])
def test_malformed_typed_headers_raise_400(fn, text):
    with pytest.raises(SipParseError) as exc:
        fn(text)
    assert exc.value.status_hint == 400 and exc.value.reason.startswith("Invalid ")


def test_uri_round_trip_escaping_and_comparison():
    u = parse_uri("sip:%61lice@Example.COM;transport=TCP;lr")
    assert u.user == "alice" and u.transport == "tcp" and u.lr
    assert u.equivalent(parse_uri("sip:alice@example.com;lr;transport=tcp"))
    assert not u.equivalent(parse_uri("sip:alice@example.com;transport=udp"))
    assert not u.equivalent("sip:alice@example.com")
    built = SipUri(host="h", user="a b@c", params={"x": "1 2"}, headers=(("Subject", "hi there"),))
    assert str(built) == "sip:a%20b%40c@h;x=1%202?Subject=hi%20there"
    assert parse_uri(str(built)) == built
    assert str(SipUri(host="h", user="u", password="p w", port=5)) == "sip:u:p%20w@h:5"
    assert str(u.with_params(transport="udp").without_params("lr")) == "sip:alice@Example.COM;transport=udp"
    assert escape("é", set()) == "%C3%A9" and unescape("%C3%A9") == "é"
    assert unquote_string('"a\\"b"') == 'a"b' and unquote_string("plain") == "plain"
    for bad in ("sip:", "sip:a@", "sip:a@h:99999", "http", "sip:a b@h", "sip:h;p=%zz", "sip:h?x", "x:<y>"):
        with pytest.raises(SipParseError):
            parse_uri(bad)
    with pytest.raises(SipParseError, match="Invalid SIP URI"):
        SipUri.parse("tel:+123")


def test_address_round_trip():
    a = Address.parse('"Anna \\"A\\"" <sip:201@box;user=phone>;tag=x;q=0.7')
    assert a.display_name == 'Anna "A"' and a.tag == "x" and a.get_param("q") == "0.7"
    assert str(a) == '"Anna \\"A\\"" <sip:201@box;user=phone>;tag=x;q=0.7'
    assert str(a.with_tag(None).with_params(expires="60")) == '"Anna \\"A\\"" <sip:201@box;user=phone>;q=0.7;expires=60'
    assert Address.parse("sip:a@b ; tag = 5").tag == "5"
    with pytest.raises(SipParseError, match="Invalid Route header"):
        Address.parse("<sip:a@b> trailing", "Route")


def test_split_commas_respects_quotes_and_brackets():
    assert split_commas('"a,b" <sip:x,y@h>, c') == ['"a,b" <sip:x,y@h>', "c"]
    assert split_commas('"a\\",b", c') == ['"a\\",b"', "c"]


def test_headers_container_operations():
    h = Headers([("Via", "a"), ("To", "t"), ("Via", "b, c")])
    assert len(h) == 3 and "via" in h and "v" in h and 5 not in h
    assert h.values("Via") == ["a", "b", "c"] and h.count("via") == 2
    h.prepend("Via", "z")
    h.prepend("Route", "r")
    assert list(h)[:2] == [("Route", "r"), ("Via", "z")]
    h.replace_first_value("Via", "y")
    h.remove_first_value("Route")
    assert h.get_all("via") == ["y", "a", "b, c"] and "route" not in h
    h.remove_first_value("via")
    h.remove_first_value("via")
    h.remove_first_value("via")
    assert h.get_all("via") == ["c"]
    h.set("To", "u")
    h.set("Subject", "s")
    h.remove("subject")
    assert h.get("subject", "none") == "none" and h.get("to") == "u"
    assert h == h.copy() and h != "x" and "Headers(" in repr(h)
    with pytest.raises(KeyError):
        h.replace_first_value("Route", "x")
    with pytest.raises(KeyError):
        h.remove_first_value("Route")


# --- builders ----------------------------------------------------------------------------------
def test_make_response_copies_per_8_2_6_and_adds_a_to_tag():
    req = parse_message(OPTIONS.replace(b"Content-Length: 0", b"Record-Route: <sip:p;lr>\r\nTimestamp: 5\r\nContent-Length: 0"))
    r = make_response(req, 200, to_tag="abc", headers=[("Allow", "INVITE")])
    assert r.status == 200 and r.reason == "OK"
    assert r.headers.get_all("via") == req.headers.get_all("via")
    assert r.to_tag == "abc" and r.from_tag == "f1" and r.call_id == req.call_id and r.cseq == req.cseq
    assert r.headers.get("record-route") == "<sip:p;lr>" and "timestamp" not in r.headers
    trying = make_response(req, 100)
    assert trying.to_tag is None and trying.headers.get("timestamp") == "5"
    assert "record-route" not in make_response(req, 404).headers
    assert len(make_response(req, 486).to_tag) == 16
    assert make_response(req, 699).reason == "Global Failure"
    sdp = make_response(req, 200, body=b"v=0\r\n", content_type="application/sdp")
    assert sdp.serialize().endswith(b"Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n")


def test_make_request_cancel_and_ack():
    req = make_request("INVITE", "sip:202@box", from_addr="<sip:201@box>", to_addr="<sip:202@box>",
                       via=Via("UDP", "192.0.2.5", 5060, {"branch": "z9hG4bKi1"}), cseq=5,
                       contact="<sip:201@192.0.2.5>", route=[Address.parse("<sip:p1;lr>")],
                       headers=[("Supported", "timer")], body=b"v=0", content_type="application/sdp")
    assert req.from_tag and req.cseq == CSeq(5, "INVITE") and req.max_forwards == 70
    parsed = parse_message(req.serialize())
    assert parsed.routes[0].uri.host == "p1" and parsed.body == b"v=0"
    cancel = make_cancel(req, 'SIP;cause=200;text="Call completed elsewhere"')
    assert cancel.method == "CANCEL" and cancel.cseq == CSeq(5, "CANCEL")
    assert cancel.top_via.branch == "z9hG4bKi1" and cancel.headers.get("route") == "<sip:p1;lr>"
    assert cancel.reasons[0].cause == 200 and cancel.body == b""
    resp = make_response(req, 486, to_tag="t9")
    ack = make_ack_for_error(req, resp)
    assert ack.cseq == CSeq(5, "ACK") and ack.to_tag == "t9" and ack.top_via.branch == "z9hG4bKi1"
    assert str(ack.uri) == "sip:202@box"


# --- streams -------------------------------------------------------------------------------------
def test_stream_framing_several_messages_in_one_segment_and_split_messages():
    body_msg = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 4") + b"abcd"
    stream = body_msg + OPTIONS + b"\r\n\r\n" + OPTIONS
    p = StreamParser()
    p.feed(stream)
    out = []
    while (ev := p.next_event()) is not None:
        out.append(ev)
    assert [getattr(e, "body", e) for e in out] == [b"abcd", b"", KeepAlive.PING, b""]
    p = StreamParser()
    got = []
    for i in range(len(stream)):
        p.feed(stream[i:i + 1])
        while (ev := p.next_event()) is not None:
            got.append(ev)
    assert len(got) == 4 and p.buffered == 0


def test_stream_pong_and_partial_ping():
    p = StreamParser()
    p.feed(b"\r\n")
    assert p.next_event() is None
    p.feed(b"OPT")
    assert p.next_event() is KeepAlive.PONG
    assert p.next_event() is None


def test_stream_requires_content_length_and_a_bad_length_is_fatal():
    p = StreamParser()
    p.feed(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
    with pytest.raises(SipParseError) as exc:
        p.next_event()
    assert exc.value.fatal and exc.value.reason == "Missing Content-Length header"
    assert make_error_response(exc.value).status == 400
    with pytest.raises(SipParseError, match="Stream framing lost"):
        p.next_event()
    p = StreamParser()
    p.feed(torture("ncl"))
    with pytest.raises(SipParseError, match="Invalid Content-Length header") as exc:
        p.next_event()
    assert exc.value.fatal


def test_stream_invalid_message_with_good_framing_is_skipped():
    p = StreamParser()
    p.feed(torture("badinv01") + OPTIONS)
    with pytest.raises(SipParseError) as exc:
        p.next_event()
    assert not exc.value.fatal and exc.value.reason == "Invalid Via header"
    assert p.next_event().method == "OPTIONS"


def test_stream_waits_for_the_body_clerr_style():
    p = StreamParser()
    p.feed(torture("clerr"))
    assert p.next_event() is None


def test_stream_size_limits():
    p = StreamParser(max_size=100)
    p.feed(b"X" * 101)
    with pytest.raises(SipParseError) as exc:
        p.next_event()
    assert exc.value.fatal and exc.value.status_hint == 513
    p = StreamParser(max_size=len(OPTIONS) + 10)
    p.feed(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 1000"))
    with pytest.raises(SipParseError) as exc:
        p.next_event()
    assert exc.value.fatal and (exc.value.status_hint, exc.value.reason) == (413, "Request Entity Too Large")
    p = StreamParser()
    p.feed(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n")
    with pytest.raises(SipParseError) as exc:
        p.next_event()
    assert exc.value.fatal and exc.value.status_hint is None


# --- robustness ------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_ever_raise_sip_parse_error(data):
    try:
        parse_message(data)
    except SipParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(OPTIONS) - 1), st.binary(min_size=1, max_size=4))
def test_mutated_messages_only_ever_raise_sip_parse_error(pos, junk):
    data = OPTIONS[:pos] + junk + OPTIONS[pos + len(junk):]
    try:
        m = parse_message(data)
    except SipParseError:
        return
    m.serialize()
    p = StreamParser()
    p.feed(data)
    try:
        p.next_event()
    except SipParseError:
        pass


def test_accessors_of_locally_built_messages():
    req = SipRequest("OPTIONS", parse_uri("sip:a@b"))
    for attr, reason in (("top_via", "Missing Via header"), ("call_id", "Missing Call-ID header"),
                         ("cseq", "Missing CSeq header")):
        with pytest.raises(SipParseError, match=reason):
            getattr(req, attr)
    assert req.expires is None and req.min_se is None and req.content_type is None
    assert req.session_expires is None and req.replaces is None and req.refer_to is None
    assert req.referred_by is None and req.event is None and req.subscription_state is None
    assert req.reasons == [] and req.user_agent is None and req.max_forwards is None
    req.headers.add("Proxy-Require", "sec-agree, Foo")
    req.headers.add("Allow", "invite, bye")
    req.headers.add("Server", "box/1")
    assert req.proxy_require == ["sec-agree", "foo"] and req.allow == ["INVITE", "BYE"]
    assert req.user_agent == "box/1"
    assert bytes(req) == req.serialize() and repr(req) == "<SipRequest OPTIONS sip:a@b>"
    assert repr(SipResponse(180, "Ringing")) == "<SipResponse 180 Ringing>"
    assert repr(SipParseError(400, "x")) == "SipParseError(400, 'x')"
    req.set_body(b"hi", "text/plain")
    req.set_body(b"", None)
    assert "content-type" not in req.headers and req.body == b""


def test_odd_start_lines_and_blank_line_rules():
    with pytest.raises(SipParseError) as exc:
        parse_message(OPTIONS.replace(b"SIP/2.0\r\nVia", b"extra SIP/3.0\r\nVia", 1))
    assert (exc.value.status_hint, exc.value.reason) == (400, "Malformed Request-Line")
    with pytest.raises(SipParseError) as exc:
        parse_message(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n")
    assert exc.value.status_hint is None
    with pytest.raises(SipParseError) as exc:
        parse_message(b"OPTIONS  sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n")
    assert exc.value.reason == "Malformed Request-Line" and make_error_response(exc.value).status == 400


def test_many_distinct_header_names_do_not_grow_the_name_memo_forever():
    from firmware.sip import headers as hmod
    from firmware.sip import message as mmod
    names = "".join(f"X-Unique-{i}: v\r\n" for i in range(5000)).encode()
    m = parse_message(OPTIONS.replace(b"Content-Length: 0\r\n", names + b"Content-Length: 0\r\n"),
                      max_size=200_000)
    assert m.headers.get("x-unique-4999") == "v"
    assert len(mmod._valid_names) <= 4096 and len(hmod._name_memo) <= 4096


def test_uri_and_address_corner_cases():
    u = SipUri.parse("sip:alice@h;flag;k=v")
    assert u.get_param("FLAG") is None and u.get_param("k") == "v" and "flag" in u.params
    built = SipUri(host="h", params={"lr": None, "k": "v"})
    assert str(built) == "sip:h;lr;k=v"
    a = parse_uri("sip:a@h;user=phone")
    assert not a.equivalent(parse_uri("sips:a@h;user=phone"))
    assert not a.equivalent(parse_uri("sip:a@other;user=phone"))
    assert not a.equivalent(parse_uri("sip:a@h;user=ip"))
    assert not parse_uri("sip:a@h;x=1").equivalent(parse_uri("sip:a@h;x=2"))
    assert parse_uri("sip:a@h;x=1").equivalent(parse_uri("sip:a@h;y=2"))
    assert parse_uri("tel:+48123").params == {}
    with pytest.raises(SipParseError, match="Invalid From header"):
        Address.parse('"quoted" sip:no-brackets@h', "From")
    assert Address.parse("  <sip:a@b>  ;tag=1  ").tag == "1"
    assert Address.parse("sip:a@b ").uri.host == "b"
    assert [a.uri.user for a in parse_message(OPTIONS.replace(
        b"Content-Length: 0", b"Contact: sip:x@h , <sip:y@h>\r\nContent-Length: 0")).contacts] == ["x", "y"]


def test_typed_header_corner_cases():
    assert str(CSeq(4, "BYE")) == "4 BYE"
    c = parse_auth('Digest  realm = "r" ,  nonce="n"', "WWW-Authenticate")
    assert c.get("realm") == "r" and c.get("missing") is None
    for bad in ('Digest realm="r",', 'Digest realm="r", =x', 'Digest realm="r"; nonce="n"'):
        with pytest.raises(SipParseError):
            parse_auth(bad, "Authorization")
    assert str(parse_session_expires(" 90")) == "90" and parse_session_expires("90").refresher is None
    from firmware.sip.headers import Reason, SubscriptionState
    assert str(SubscriptionState("pending")) == "pending"
    assert str(SubscriptionState("active", expires=60, reason="x")) == "active;expires=60;reason=x"
    assert str(Reason("Q.850")) == "Q.850"
    assert parse_event("  refer").package == "refer"
    from firmware.sip.headers import parse_tokens
    assert parse_tokens(["timer,, replaces"]) == ["timer", "replaces"]
    with pytest.raises(SipParseError):
        parse_session_expires("")


def test_last_corners_of_the_header_grammar():
    with pytest.raises(SipParseError, match="Invalid Authorization header"):
        parse_auth("Digest,realm=x", "Authorization")
    with pytest.raises(SipParseError, match="Invalid Session-Expires header"):
        parse_session_expires("90 junk")
    with pytest.raises(SipParseError, match="Invalid From header"):
        Address.parse("Bell@ <sip:a@b>", "From")
    assert Address.parse("  sip:a@b").uri.user == "a"
    assert Address.parse("<sip:a@b>;tag=1   ").tag == "1"


def test_check_request_accepts_an_allowed_body():
    m = parse_message(torture("wsinv"))
    assert check_request(m, content_types=["application/sdp"]) is None


def test_parameter_without_a_value_after_equals_and_plain_check_request():
    with pytest.raises(SipParseError, match="Invalid Contact header"):
        Address.parse("<sip:a@b>;expires=", "Contact")
    assert check_request(parse_message(OPTIONS)) is None


def test_parsed_uris_and_addresses_are_shared_and_read_only():
    from firmware.sip import uri as umod
    a, b = parse_uri("sip:201@box;transport=tcp"), parse_uri("sip:201@box;transport=tcp")
    assert a is b
    with pytest.raises(TypeError):
        a.params["transport"] = "udp"
    x, y = Address.parse("<sip:201@box>;tag=1"), Address.parse("<sip:201@box>;tag=1")
    assert x is y and x.with_tag("2").tag == "2" and x.tag == "1"
    with pytest.raises(TypeError):
        x.params["tag"] = "3"
    for i in range(umod._CACHE_LIMIT + 10):
        parse_uri(f"sip:u{i}@h")
        Address.parse(f"<sip:u{i}@h>")
    assert len(umod._uri_cache) <= umod._CACHE_LIMIT and len(umod._address_cache) <= umod._CACHE_LIMIT
    assert parse_uri("sip:201@box;transport=tcp") == a


def test_tags_branches_and_call_ids_never_repeat_even_across_a_fork():
    import os

    from firmware.sip.headers import new_branch, new_call_id, new_tag
    values = [new_branch() for _ in range(3000)] + [new_tag() for _ in range(3000)] + \
        [new_call_id() for _ in range(1000)]
    assert len(set(values)) == len(values)
    assert all(len(t) == 16 and int(t, 16) >= 0 for t in values[3000:6000])
    assert all(len(c) == 32 for c in values[6000:])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's tags must not be the parent's next ones
        os.write(w, "\n".join(new_tag() for _ in range(50)).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        child = set(f.read().split())
    parent = {new_tag() for _ in range(50)}
    assert len(child) == 50 and not child & parent
