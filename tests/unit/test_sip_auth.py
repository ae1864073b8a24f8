"""Digest authentication: RFC 7616 vectors, server policy, client answers (firmware.sip.auth)."""
from __future__ import annotations

import pytest

from firmware.sip import AuthError, SipRequest, Via, make_request, make_response, new_branch, parse_message
from firmware.sip.auth import (
    AuthResult,
    DigestClient,
    DigestServer,
    PasswordCredentials,
    canonical_algorithm,
    digest_response,
    ha1,
)

REALM = "officebox"
SECRET = b"\x01" * 32
USERS = {"201": PasswordCredentials.of("201", REALM, "correct horse battery staple")}
NOW = 1_700_000_000.0


def register(user: str = "201") -> SipRequest:
    return make_request("REGISTER", "sip:box.example", from_addr=f"<sip:{user}@box.example>",
                        to_addr=f"<sip:{user}@box.example>", call_id="reg-1", cseq=1, via=via())


def via() -> Via:
    return Via("UDP", "192.0.2.5", 5060, {"branch": new_branch()})


def wire(m):
    return parse_message(m.serialize())


def test_rfc7616_section_3_9_1_vectors_md5_and_sha256():
    common = {"method": "GET", "uri": "/dir/index.html", "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                  "qop": "auth", "nc": "00000001", "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"}
    md5 = ha1("Mufasa", "http-auth@example.org", "Circle of Life", "MD5")
    sha = ha1("Mufasa", "http-auth@example.org", "Circle of Life", "SHA-256")
    assert digest_response("MD5", md5, **common) == "8ca523f5e9506fed4657c9700eebdbec"
    assert digest_response("SHA-256", sha, **common) == \
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def test_rfc2617_section_3_5_vector_without_cnonce_quirks():
    key = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert digest_response("MD5", key, "GET", "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                           "auth", "00000001", "0a4f113b") == "6629fae49393a05397450978507c4ef1"


def test_default_challenges_are_md5_then_sha256_with_one_nonce_and_qop():
    server = DigestServer(REALM, SECRET)
    resp = server.challenge(wire(register()), NOW)
    assert resp.status == 401 and resp.to_tag
    chals = resp.www_authenticate
    assert [c.params["algorithm"] for c in chals] == ["MD5", "SHA-256"]
    assert chals[0].params["nonce"] == chals[1].params["nonce"]
    assert all(c.params["qop"] == "auth" and c.params["realm"] == REALM for c in chals)
    assert 'qop="auth"' in resp.headers.get("www-authenticate")
    only = DigestServer(REALM, SECRET, algorithms=("sha256",))
    assert [c.params["algorithm"] for c in only.challenge(wire(register()), NOW).www_authenticate] == ["SHA-256"]
    proxy = server.challenge(wire(register()), NOW, proxy=True, stale=True, algorithms=["SHA-256"])
    assert proxy.status == 407 and proxy.proxy_authenticate[0].params["stale"] == "true"


@pytest.mark.parametrize("algorithms,expected", [(("MD5", "SHA-256"), "MD5"), (("SHA-256", "MD5"), "SHA-256"),
                                                 (("SHA-512-256",), "SHA-512-256")])
def test_client_answers_the_first_challenge_it_supports_and_server_accepts(algorithms, expected):
    server = DigestServer(REALM, SECRET, algorithms=algorithms)
    req = wire(register())
    challenge = wire(server.challenge(req, NOW))
    client = DigestClient("201", "correct horse battery staple")
    again = wire(client.authorize(req, challenge))
    assert again.cseq.seq == 2 and again.top_via.branch != req.top_via.branch
    result = server.verify(again, USERS.get, NOW + 1)
    assert result == AuthResult(True, "ok", "201", algorithm=expected)
    cred = again.authorization[0]
    assert cred.params["qop"] == "auth" and cred.params["nc"] == "00000001" and len(cred.params["cnonce"]) == 16


def test_sha256_only_client_skips_an_md5_first_challenge():
    server = DigestServer(REALM, SECRET)
    req = wire(register())
    challenge = wire(server.challenge(req, NOW))
    again = wire(DigestClient("201", "correct horse battery staple", algorithms=["SHA-256"]).authorize(req, challenge))
    assert server.verify(again, USERS.get, NOW).algorithm == "SHA-256"
    with pytest.raises(AuthError, match="no challenge this client can answer"):
        DigestClient("201", "x", algorithms=["SHA-512-256"]).authorize(req, challenge)


def test_unknown_user_and_wrong_password_get_identical_challenges():
    server = DigestServer(REALM, SECRET)
    req = wire(register("999"))
    challenge = wire(server.challenge(req, NOW))
    unknown = wire(DigestClient("999", "guess").authorize(req, challenge))
    wrong = wire(DigestClient("201", "guess").authorize(wire(register()), challenge))
    r1, r2 = server.verify(unknown, USERS.get, NOW), server.verify(wrong, USERS.get, NOW)
    assert (r1.ok, r1.reason, r1.failed_attempt) == (False, "unknown user", True)
    assert (r2.ok, r2.reason, r2.failed_attempt) == (False, "wrong password", True)
    a, b = server.challenge(unknown, NOW), server.challenge(wrong, NOW)
    strip = lambda r: [(k, v) for k, v in r.headers if k not in ("WWW-Authenticate", "To", "From", "Call-ID", "Via")]
    assert strip(a) == strip(b) and a.status == b.status and a.reason == b.reason
    na = [c.params for c in a.www_authenticate]
    nb = [c.params for c in b.www_authenticate]
    assert [{k: v for k, v in p.items() if k != "nonce"} for p in na] == \
        [{k: v for k, v in p.items() if k != "nonce"} for p in nb]


def test_expired_nonce_with_the_right_password_is_stale_not_a_failure():
    server = DigestServer(REALM, SECRET, nonce_ttl=60)
    req = wire(register())
    again = wire(DigestClient("201", "correct horse battery staple").authorize(req, wire(server.challenge(req, NOW))))
    result = server.verify(again, USERS.get, NOW + 61)
    assert (result.ok, result.reason, result.stale, result.failed_attempt) == (False, "stale nonce", True, False)
    bad = wire(DigestClient("201", "wrong").authorize(req, wire(server.challenge(req, NOW))))
    assert server.verify(bad, USERS.get, NOW + 61).reason == "wrong password"


def test_nonce_of_another_box_or_tampered_is_invalid():
    other = DigestServer(REALM, b"\x02" * 32)
    server = DigestServer(REALM, SECRET)
    req = wire(register())
    again = wire(DigestClient("201", "correct horse battery staple").authorize(req, wire(other.challenge(req, NOW))))
    assert server.verify(again, USERS.get, NOW).reason == "invalid nonce"
    text = again.serialize().replace(b'nonce="', b'nonce="f')
    assert server.verify(parse_message(text), USERS.get, NOW).reason == "invalid nonce"
    for nonce in ("a.b", "zz.cc.dd", ".."):
        forged = parse_message(again.serialize().replace(
            again.authorization[0].params["nonce"].encode(), nonce.encode()))
        assert server.verify(forged, USERS.get, NOW).reason == "invalid nonce"


def test_nonce_count_must_increase_per_nonce():
    server = DigestServer(REALM, SECRET)
    client = DigestClient("201", "correct horse battery staple")
    req = wire(register())
    challenge = wire(server.challenge(req, NOW))
    first = wire(client.authorize(req, challenge))
    assert server.verify(first, USERS.get, NOW).ok
    assert server.verify(first, USERS.get, NOW).reason == "nonce count replay"
    second = wire(client.authorize(first, challenge))
    assert second.authorization[0].params["nc"] == "00000002"
    assert server.verify(second, USERS.get, NOW).ok


def test_replay_memory_is_bounded():
    server = DigestServer(REALM, SECRET, max_tracked_nonces=2)
    client = DigestClient("201", "correct horse battery staple")
    req = wire(register())
    for i in range(3):
        assert server.verify(wire(client.authorize(req, wire(server.challenge(req, NOW + i)))), USERS.get, NOW + i).ok
    assert len(server._nc) == 2


def test_rfc2069_answers_without_qop_like_pyvoip():
    server = DigestServer(REALM, SECRET)
    req = wire(register())
    nonce = wire(server.challenge(req, NOW)).www_authenticate[0].params["nonce"]
    key = ha1("201", REALM, "correct horse battery staple")
    resp = digest_response("MD5", key, "REGISTER", "sip:box.example;transport=UDP", nonce)
    req.headers.add("Authorization", f'Digest username="201",realm="{REALM}",nonce="{nonce}",'
                                     f'uri="sip:box.example;transport=UDP",response="{resp}"')
    assert server.verify(wire(req), USERS.get, NOW).ok
    assert DigestServer(REALM, SECRET, allow_rfc2069=False).verify(wire(req), USERS.get, NOW).reason == "qop required"


@pytest.mark.parametrize("header,reason", [
    ("NoOneKnowsThisScheme opaque-data=here", "no credentials"),
    ('Digest username="201", realm="officebox", nonce="n"', "malformed credentials"),
    ('Digest username="201", realm="other", nonce="n", uri="sip:x", response="r"', "realm mismatch"),
    ('Digest username="201", realm="officebox", nonce="n", uri="sip:x", response="r", algorithm=MD5-sess',
     "unsupported algorithm"),
    (('Digest username="201", realm="officebox", nonce="n", uri="sip:x", response="r", qop=auth-int, '
      'nc=00000001, cnonce="c"'), "malformed credentials"),
    (('Digest username="201", realm="officebox", nonce="n", uri="sip:x", response="r", qop=auth, '
      'nc=zz000001, cnonce="c"'), "malformed credentials"),
    ('Digest realm=', "malformed credentials"),
])
def test_bad_credentials_are_failed_logins_with_a_reason(header, reason):
    req = register()
    req.headers.add("Authorization", header)
    result = DigestServer(REALM, SECRET).verify(req, USERS.get, NOW)
    assert not result.ok and result.reason == reason
    assert result.failed_attempt == (reason != "no credentials")


def test_proxy_authorization_and_407():
    server = DigestServer(REALM, SECRET)
    invite = wire(make_request("INVITE", "sip:202@box", from_addr="<sip:201@box>", to_addr="<sip:202@box>",
                               via=via()))
    challenge = wire(server.challenge(invite, NOW, proxy=True))
    again = wire(DigestClient("201", "correct horse battery staple").authorize(invite, challenge))
    assert "authorization" not in again.headers and len(again.proxy_authorization) == 1
    assert server.verify(again, USERS.get, NOW, proxy=True).ok
    assert server.verify(again, USERS.get, NOW).reason == "no credentials"


def test_configuration_errors_and_client_refusals():
    with pytest.raises(AuthError, match="unsupported digest algorithm"):
        DigestServer(REALM, SECRET, algorithms=("SHA-1",))
    with pytest.raises(AuthError, match="none given"):
        DigestServer(REALM, SECRET, algorithms=())
    server = DigestServer(REALM, SECRET)
    with pytest.raises(AuthError, match="no supported digest algorithm selected"):
        server.challenge_values(NOW, algorithms=["RC4"])
    assert canonical_algorithm(None) == "MD5" and canonical_algorithm("sha256") == "SHA-256"
    assert canonical_algorithm("sha512_256") == "SHA-512-256" and canonical_algorithm("x") is None
    client = DigestClient("u", "p")
    req = register()
    resp = make_response(req, 401)
    resp.headers.add("WWW-Authenticate", 'Digest realm="r", nonce="n", qop="auth-int"')
    with pytest.raises(AuthError, match="unsupported qop"):
        client.authorize(req, wire(resp))
    resp = make_response(req, 401)
    resp.headers.add("WWW-Authenticate", 'Digest nonce="n"')
    with pytest.raises(AuthError, match="without realm"):
        client.authorize(req, wire(resp))
    with pytest.raises(AuthError, match="cannot answer"):
        client.authorization(req, parse_message(b"SIP/2.0 401 x\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>\r\n"
                                                b"To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 X\r\n"
                                                b"WWW-Authenticate: Basic realm=x\r\n\r\n").www_authenticate[0])


def test_client_without_qop_and_with_opaque():
    client = DigestClient("201", "correct horse battery staple")
    req = register()
    resp = make_response(req, 401)
    resp.headers.add("WWW-Authenticate", f'Digest realm="{REALM}", nonce="abc", opaque="xyz"')
    again = wire(client.authorize(req, wire(resp)))
    p = again.authorization[0].params
    assert "qop" not in p and p["opaque"] == "xyz" and p["algorithm"] == "MD5"
    assert p["response"] == digest_response("MD5", ha1("201", REALM, "correct horse battery staple"),
                                            "REGISTER", "sip:box.example", "abc")


def test_challenge_without_qop_and_authorizing_a_request_without_via():
    server = DigestServer(REALM, SECRET, qop=False)
    req = wire(register())
    challenge = wire(server.challenge(req, NOW))
    assert "qop" not in challenge.www_authenticate[0].params
    bare = register()
    bare.headers.remove("via")
    again = DigestClient("201", "correct horse battery staple").authorize(bare, challenge)
    assert "via" not in again.headers and "qop" not in again.authorization[0].params
    assert server.verify(wire(_with_via(again)), USERS.get, NOW).ok


def _with_via(req):
    req.headers.prepend("Via", str(via()))
    return req
