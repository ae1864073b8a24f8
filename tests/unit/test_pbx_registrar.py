"""Registrar bindings (RFC 3261 10.3): several contacts, expiry, 423, wildcard, persistence."""
from firmware.pbx.registrar import ContactRequest, Registrar


class MemStore:
    def __init__(self):
        self.rows = {}

    def load_registrations(self):
        return list(self.rows.values())

    def save_registration(self, b):
        self.rows[(b["aor"], b["key"])] = b

    def delete_registration(self, aor, key):
        self.rows.pop((aor, key), None)


def reg(r, contacts, now, expires=None, wildcard=False, call_id="c1", cseq=1, ip="10.0.0.5", port=5060):
    return r.register("201", contacts, wildcard=wildcard, header_expires=expires, call_id=call_id, cseq=cseq,
                      transport="udp", source_ip=ip, source_port=port, user_agent="Yealink", now=now)


def test_two_devices_and_expiry():
    r = Registrar(min_expires=60)
    assert reg(r, [ContactRequest("sip:201@10.0.0.5:5060")], 0, expires=120).status == 200
    res = reg(r, [ContactRequest("sip:201@10.0.0.6:5062")], 1, expires=300, call_id="c2", ip="10.0.0.6", port=5062)
    assert [b.contact for b in res.bindings] == ["sip:201@10.0.0.6:5062", "sip:201@10.0.0.5:5060"]
    assert not res.bindings[0].nat
    assert r.get_timer() == 120
    assert [b.contact for b in r.expire(120)] == ["sip:201@10.0.0.5:5060"]
    assert len(r.lookup("201", 121)) == 1


def test_interval_too_brief():
    r = Registrar(min_expires=60)
    res = reg(r, [ContactRequest("sip:201@10.0.0.5")], 0, expires=30)
    assert (res.status, res.min_expires) == (423, 60)
    assert not r.is_registered("201", 0)


def test_max_expires_clamped_and_contact_param_wins():
    r = Registrar(max_expires=3600)
    b = reg(r, [ContactRequest("sip:201@10.0.0.5", expires=100000)], 0, expires=90).bindings[0]
    assert b.expires_at == 3600
    b = reg(r, [ContactRequest("sip:201@10.0.0.5", expires=90)], 0, expires=3000, cseq=2).bindings[0]
    assert b.expires_at == 90


def test_wildcard_unregister_and_its_rules():
    r = Registrar()
    reg(r, [ContactRequest("sip:201@10.0.0.5")], 0, expires=300)
    assert reg(r, [], 1, expires=300, wildcard=True, cseq=2).status == 400
    res = reg(r, [], 1, expires=0, wildcard=True, cseq=3)
    assert res.status == 200 and len(res.removed) == 1 and not r.is_registered("201", 2)


def test_out_of_order_register_ignored():
    r = Registrar()
    reg(r, [ContactRequest("sip:201@10.0.0.5")], 0, expires=300, cseq=5)
    reg(r, [ContactRequest("sip:201@10.0.0.5", expires=0)], 1, cseq=4)
    assert r.is_registered("201", 2)


def test_nat_detected_from_source_address():
    r = Registrar()
    b = reg(r, [ContactRequest("sip:201@192.168.1.20:5060")], 0, expires=300, ip="203.0.113.7", port=40123).bindings[0]
    assert b.nat and (b.source_ip, b.source_port) == ("203.0.113.7", 40123)


def test_bindings_survive_restart():
    store = MemStore()
    r = Registrar(store=store)
    reg(r, [ContactRequest("sip:201@10.0.0.5", instance="<urn:uuid:1>")], 0, expires=300)
    r2 = Registrar(store=store)
    assert r2.load(now=10) == 1
    assert r2.lookup("201", 10)[0].instance == "<urn:uuid:1>"
    assert Registrar(store=store).load(now=301) == 0 and store.rows == {}


def test_a_stored_binding_that_cannot_be_rung_is_dropped_at_restart():
    """Older versions bound any URI scheme; a tel: binding made every call to the extension fail."""
    store = MemStore()
    r = Registrar(store=store)
    reg(r, [ContactRequest("sip:201@10.0.0.5")], 0, expires=300)
    reg(r, [ContactRequest("tel:+48123456789")], 0, expires=300, call_id="c2")
    assert len(store.rows) == 2
    r2 = Registrar(store=store)
    assert r2.load(now=10) == 1
    assert [b.contact for b in r2.lookup("201", 10)] == ["sip:201@10.0.0.5"]
    assert len(store.rows) == 1


def test_a_restarted_phone_with_a_new_instance_id_replaces_its_old_binding():
    """pyVoIP makes a new +sip.instance on every start: a restart without deregistering must not
    leave two bindings that ring the same phone twice. Another phone behind the same NAT (another
    source port) keeps its own."""
    r = Registrar()
    reg(r, [ContactRequest("sip:201@10.0.0.5:5060", instance="<urn:uuid:1>")], 0, expires=300)
    reg(r, [ContactRequest("sip:201@10.0.0.5:5062", instance="<urn:uuid:9>")], 0, expires=300, call_id="c9",
        port=5062)
    res = reg(r, [ContactRequest("sip:201@10.0.0.5:5060", instance="<urn:uuid:2>")], 5, expires=300, call_id="c2")
    assert sorted(b.instance for b in r.lookup("201", 6)) == ["<urn:uuid:2>", "<urn:uuid:9>"]
    assert [b.instance for b in res.removed] == ["<urn:uuid:1>"]
