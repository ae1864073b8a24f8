"""Dialogs: creation on both sides, routing, CSeq, in-dialog requests, tolerant matching."""
from __future__ import annotations

import pytest

from firmware.sip import Addr, Address, DialogError, TransactionLayer, Via, make_request, make_response, parse_message
from firmware.sip.dialog import Dialog, DialogId, DialogTable, refer_to
from firmware.sip.headers import parse_replaces


def invite(record_route: str | None = None) -> object:
    req = make_request("INVITE", "sip:202@box", from_addr="<sip:201@box>;tag=alice",
                       to_addr="<sip:202@box>", call_id="call-1", cseq=10,
                       via=Via("UDP", "192.0.2.5", 5060, {"branch": "z9hG4bKinv"}),
                       contact="<sip:201@192.0.2.5:5060>")
    if record_route:
        req.headers.add("Record-Route", record_route)
    return parse_message(req.serialize())


def answer(req, status=200, tag="bob", contact="<sip:202@192.0.2.9:5070>"):
    resp = make_response(req, status, to_tag=tag)
    if contact:
        resp.headers.add("Contact", contact)
    return parse_message(resp.serialize())


def test_uas_dialog_from_invite_and_our_answer():
    req = invite("<sip:p1.example;lr>, <sip:p2.example;lr>")
    d = Dialog.from_uas(req, answer(req, 180), local_contact=Address.parse("<sip:box@192.0.2.1>"))
    assert d.id == DialogId("call-1", "bob", "alice") and d.role == "uas" and d.early
    assert str(d.remote_target) == "sip:201@192.0.2.5:5060" and d.remote_cseq == 10 and d.local_cseq == 0
    assert [str(a.uri) for a in d.route_set] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    d.confirm()
    bye = parse_message(_sent(d.create_request("BYE")))
    assert str(bye.uri) == "sip:201@192.0.2.5:5060" and bye.cseq.seq == 1 and bye.cseq.method == "BYE"
    assert bye.from_tag == "bob" and bye.to_tag == "alice" and bye.call_id == "call-1"
    assert [str(a.uri) for a in bye.routes] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    assert "contact" not in bye.headers
    reinvite = d.create_request("INVITE", body=b"v=0\r\n", content_type="application/sdp")
    assert reinvite.cseq.seq == 2 and reinvite.headers.get("contact") == "<sip:box@192.0.2.1>"


def test_uac_dialog_reverses_record_route_and_targets_the_contact():
    req = invite()
    resp = make_response(req, 200, to_tag="bob")
    resp.headers.add("Contact", "<sip:202@192.0.2.9:5070>")
    resp.headers.add("Record-Route", "<sip:p2.example;lr>, <sip:p1.example;lr>")
    resp = parse_message(resp.serialize())
    d = Dialog.from_uac(req, resp)
    assert d.id == DialogId("call-1", "alice", "bob") and not d.early and d.local_cseq == 10
    assert [str(a.uri) for a in d.route_set] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    ack = d.create_ack(req)
    assert ack.cseq.seq == 10 and ack.cseq.method == "ACK" and d.local_cseq == 10
    assert str(ack.uri) == "sip:202@192.0.2.9:5070" and ack.to_tag == "bob"
    info = d.create_request("INFO", headers=[("Content-Type", "application/dtmf-relay")], body=b"Signal=5\r\n")
    assert info.cseq.seq == 11 and info.body == b"Signal=5\r\n"


def test_strict_router_puts_the_target_last_in_route():
    req = invite()
    resp = make_response(req, 200, to_tag="bob")
    resp.headers.add("Contact", "<sip:202@192.0.2.9:5070>")
    resp.headers.add("Record-Route", "<sip:p2.example;lr>, <sip:strict.example;maddr=10.0.0.1;transport=udp>")
    d = Dialog.from_uac(req, parse_message(resp.serialize()))
    bye = parse_message(_sent(d.create_request("BYE")))
    assert str(bye.uri) == "sip:strict.example"
    assert [str(a.uri) for a in bye.routes] == ["sip:p2.example;lr", "sip:202@192.0.2.9:5070"]


def test_ack_copies_the_invite_credentials():
    req = invite()
    req.headers.add("Proxy-Authorization", 'Digest username="201", realm="r", nonce="n", uri="sip:202@box", response="x"')
    d = Dialog.from_uac(req, answer(req))
    assert d.create_ack(req).headers.get("proxy-authorization").startswith("Digest username")


def test_remote_cseq_order_and_target_refresh():
    req = invite()
    d = Dialog.from_uas(req, answer(req))
    upd = make_request("UPDATE", "sip:box", from_addr="<sip:201@box>;tag=alice", to_addr="<sip:202@box>;tag=bob",
                       call_id="call-1", cseq=11, contact="<sip:201@198.51.100.7:6000>")
    d.receive_request(upd)
    assert d.remote_cseq == 11 and str(d.remote_target) == "sip:201@198.51.100.7:6000"
    ack = make_request("ACK", "sip:box", from_addr="<sip:201@box>;tag=alice", to_addr="<sip:202@box>;tag=bob",
                       call_id="call-1", cseq=10)
    d.receive_request(ack)
    with pytest.raises(DialogError, match="CSeq out of order") as exc:
        d.receive_request(upd)
    assert exc.value.status_hint == 500


def test_response_confirms_and_refreshes():
    req = invite()
    early = Dialog.from_uac(req, answer(req, 183, contact="<sip:202@192.0.2.9:5070>"))
    assert early.early
    final = make_response(req, 200, to_tag="bob")
    final.headers.add("Contact", "<sip:202@192.0.2.10>")
    final.headers.add("Record-Route", "<sip:p.example;lr>")
    early.receive_response(req, parse_message(final.serialize()))
    assert not early.early and str(early.remote_target) == "sip:202@192.0.2.10"
    assert [str(a.uri) for a in early.route_set] == ["sip:p.example;lr"]
    early.receive_response(req, answer(req, 486))
    assert str(early.remote_target) == "sip:202@192.0.2.10"
    no_contact = Dialog.from_uac(req, answer(req, 180, contact=None))
    assert str(no_contact.remote_target) == "sip:202@box"


@pytest.mark.parametrize("status,tag,contact,reason", [
    (200, None, "<sip:x@h>", "a dialog needs a 101-299 response with a To tag"),
    (100, "t", "<sip:x@h>", "a dialog needs a 101-299 response with a To tag"),
    (486, "t", "<sip:x@h>", "a dialog needs a 101-299 response with a To tag"),
])
def test_dialog_creation_errors(status, tag, contact, reason):
    req = invite()
    resp = make_response(req, status, to_tag=tag)
    if tag is None:
        resp.headers.set("To", "<sip:202@box>")
    for factory in (Dialog.from_uas, Dialog.from_uac):
        with pytest.raises(DialogError, match=reason):
            factory(req, parse_message(resp.serialize()))


def test_dialog_needs_contact_and_from_tag():
    req = invite()
    req.headers.remove("contact")
    with pytest.raises(DialogError, match="Missing Contact header"):
        Dialog.from_uas(req, answer(req))
    with pytest.raises(DialogError, match="Missing Contact header"):
        Dialog.from_uac(req, answer(req, contact=None))
    req = invite()
    req.headers.set("From", "<sip:201@box>")
    with pytest.raises(DialogError, match="request has no From tag"):
        Dialog.from_uas(req, answer(req))
    d = Dialog.from_uas(invite(), answer(invite()))
    with pytest.raises(DialogError, match="create_ack"):
        d.create_request("ACK")


def test_table_matches_exactly_then_tolerates_random_to_tags():
    table = DialogTable()
    req = invite()
    d = Dialog.from_uas(req, answer(req))
    table.add(d)
    ack = make_request("ACK", "sip:box", from_addr="<sip:201@box>;tag=alice", to_addr="<sip:202@box>;tag=bob",
                       call_id="call-1", cseq=10)
    assert table.match_request(ack) is d and len(table) == 1 and list(table) == [d]
    ack.headers.set("To", "<sip:202@box>;tag=random-pyvoip")
    assert table.match_request(ack) is d and table.match_request(ack, tolerant=False) is None
    ack.headers.set("To", "<sip:202@box>")
    assert table.match_request(ack) is None
    # our BYE, answered with a random To tag
    bye = d.create_request("BYE")
    ok = make_response(bye, 200)
    ok.headers.set("To", "<sip:201@box>;tag=whatever")
    assert table.match_response(ok) is d and table.match_response(ok, tolerant=False) is None
    ok.headers.set("To", "<sip:201@box>;tag=alice")
    assert table.match_response(ok) is d
    ok.headers.set("To", "<sip:201@box>")
    assert table.match_response(ok) is d and table.match_response(ok, tolerant=False) is None
    ok.headers.set("From", "<sip:202@box>")
    assert table.match_response(ok) is None
    # two dialogs with the same Call-ID and remote tag (forking): no guess
    twin = Dialog.from_uas(req, answer(req, tag="bob2"))
    table.add(twin)
    ack.headers.set("To", "<sip:202@box>;tag=random")
    assert table.match_request(ack) is None
    table.remove(d)
    table.remove(d)
    assert table.get(d.id) is None and table.match_request(ack) is twin
    table.remove(twin)
    assert len(table) == 0


def test_attended_transfer_refer_to_with_replaces_round_trips():
    req = invite()
    d = Dialog.from_uac(req, answer(req))
    value = refer_to(Address.parse("<sip:203@box>").uri, d.replaces(early_only=True))
    assert value.startswith("<sip:203@box?Replaces=call-1%3Bto-tag%3Dbob%3Bfrom-tag%3Dalice")
    refer = make_request("REFER", "sip:x@y", from_addr="<sip:a@b>", to_addr="<sip:c@d>",
                         headers=[("Refer-To", value)], via=Via("UDP", "h", None, {"branch": "z9hG4bKr"}))
    target = parse_message(refer.serialize()).refer_to
    ((name, raw),) = target.uri.headers
    rep = parse_replaces(raw)
    assert name == "Replaces" and rep.early_only
    # the peer (the UAS of that dialog) finds it by to-tag = its local tag
    peer_table = DialogTable()
    peer = Dialog.from_uas(req, answer(req))
    peer_table.add(peer)
    assert peer_table.match_replaces(rep) is peer
    assert refer_to(Address.parse("<sip:203@box>").uri) == "<sip:203@box>"
    assert "&Replaces=" in refer_to(Address.parse("<sip:203@box?x=1>").uri, d.replaces())


def _sent(req) -> bytes:
    layer = TransactionLayer()
    layer.set_sent_by("udp", "192.0.2.1", 5060)
    layer.send_request(req, Addr("udp", "192.0.2.5", 5060), 0.0)
    return layer.messages_to_send()[0][0]


def test_target_refresh_without_contact_and_other_responses_change_nothing():
    req = invite()
    d = Dialog.from_uas(req, answer(req, 180))
    assert "early" in repr(d)
    d.receive_request(make_request("INFO", "sip:box", from_addr="<sip:201@box>;tag=alice",
                                   to_addr="<sip:202@box>;tag=bob", call_id="call-1", cseq=11))
    d.receive_request(make_request("UPDATE", "sip:box", from_addr="<sip:201@box>;tag=alice",
                                   to_addr="<sip:202@box>;tag=bob", call_id="call-1", cseq=12))
    assert str(d.remote_target) == "sip:201@192.0.2.5:5060" and d.remote_cseq == 12
    upd = with_via(d.create_request("UPDATE"))
    d.receive_response(upd, answer(upd, contact=None))
    assert str(d.remote_target) == "sip:201@192.0.2.5:5060" and d.early
    d.receive_response(req, answer(req, contact="<sip:202@10.9.9.9>"))
    assert not d.early and [str(a.uri) for a in d.route_set] == []
    info = with_via(d.create_request("INFO"))
    d.receive_response(info, answer(info, contact="<sip:other@h>"))
    assert str(d.remote_target) == "sip:202@10.9.9.9"


def test_a_non_sip_first_route_is_treated_as_loose():
    req = invite("<urn:service:sos>")
    d = Dialog.from_uas(req, answer(req))
    bye = d.create_request("BYE")
    assert str(bye.uri) == "sip:201@192.0.2.5:5060" and bye.headers.get("route") == "<urn:service:sos>"


def test_adding_a_dialog_twice_replaces_it():
    table = DialogTable()
    req = invite()
    first, second = Dialog.from_uas(req, answer(req)), Dialog.from_uas(req, answer(req))
    table.add(first)
    table.add(second)
    assert len(table) == 1 and table.get(first.id) is second
    table.remove(second)
    assert len(table) == 0 and table._by_remote == {} and table._by_local == {}


def with_via(req):
    req.headers.prepend("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKdlg")
    return req
