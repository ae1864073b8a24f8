"""ConfigStore: seeding, field-keyed validation, credentials, tokens, subscribers, backup."""
import json
import os
import stat

import pytest

from firmware.config import ProvisioningError, load_provisioning, parse_provisioning
from firmware.store.config_store import (MASK, ConfigStore, ConfigStoreError, ConfigValidationError,
                                         digest_ha1, hash_password, verify_password)
from tests.conftest import DATA, ROOT

EXAMPLE = ROOT / "firmware" / "data" / "example.toml"


@pytest.fixture
def store(tmp_path):
    s = ConfigStore(tmp_path / "data")
    s.provision_file(DATA / "config" / "contract.toml")
    return s


def test_first_provision_generates_missing_passwords_once(tmp_path):
    s = ConfigStore(tmp_path / "d")
    assert not s.is_provisioned()
    gen = s.provision_file(EXAMPLE)
    assert s.is_provisioned()
    assert sorted((g.kind, g.name) for g in gen) == [("extension", "203"), ("user", "anna")]
    text = (tmp_path / "d" / "config.json").read_text()
    for g in gen:
        assert len(g.password) >= 22 and g.password not in text
    for clear in ("Kwiat-Lipa-Rzeka-42", "Wysoka-Wieza-Nad-Rzeka"):
        assert clear not in text
    assert s.provision_file(EXAMPLE) == []
    ha1 = s.sip_credentials("203").ha1
    pw = next(g.password for g in gen if g.name == "203")
    assert ha1["md5"] == digest_ha1("203", "sklep.example", pw, "md5")
    assert ha1["sha256"] == digest_ha1("203", "sklep.example", pw, "sha256")


def test_sip_credentials_are_rfc7616_ha1(store):
    c = store.sip_credentials("201")
    assert c.realm == "officebox" and c.username == "201"
    import hashlib
    assert c.ha1["md5"] == hashlib.md5(b"201:officebox:Blue-Kettle-Runs-2049").hexdigest()
    assert c.ha1["sha256"] == hashlib.sha256(b"201:officebox:Blue-Kettle-Runs-2049").hexdigest()
    assert store.sip_credentials("999") is None


def test_files_are_private(store):
    for name in ("config.json", "secret.key"):
        mode = stat.S_IMODE(os.stat(store.data_dir / name).st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert len((store.data_dir / "secret.key").read_bytes()) == 32
    assert ConfigStore(store.data_dir).secret == store.secret


def test_secret_with_open_permissions_is_tightened(tmp_path):
    s = ConfigStore(tmp_path)
    os.chmod(tmp_path / "secret.key", 0o644)
    ConfigStore(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "secret.key").st_mode) == 0o600
    (tmp_path / "secret.key").write_bytes(b"short")
    with pytest.raises(ConfigStoreError, match="holds 5 bytes, not 32"):
        ConfigStore(tmp_path)
    assert s.secret


def test_create_with_field_errors(store):
    with pytest.raises(ConfigValidationError) as ei:
        store.create("extension", {"number": "210", "password": "abc", "max_calls": 99, "colour": "red"})
    assert ei.value.errors == {
        "password": "extension 210: password is too short (3 characters; at least 12 are needed)",
        "max_calls": "99 is out of range (1 to 20)",
        "colour": "unknown key 'colour' in [extension]; known keys: auth_algorithms, call_waiting, dnd, email, language, "
                  "max_calls, mobile, name, no_answer, no_answer_timeout, number, password, permission, "
                  "pickup_group, record",
    }
    assert store.get("extension", "210") is None
    assert store.validate("extension", {"number": "210"}) == {}
    assert store.validate("extension", {"number": "201"}) == {
        "number": "number 201 is already used by the extension at extension #1"}


def test_create_generates_password_and_applies(store):
    seen = []
    store.subscribe(seen.append)
    r = store.create("extension", {"number": "210", "name": "New"})
    assert r.generated_password and len(r.generated_password) >= 22
    assert store.current().extension("210").name == "New"
    assert store.sip_credentials("210").ha1["md5"] == digest_ha1("210", "officebox", r.generated_password)
    assert [(c.section, c.key, c.action) for c in seen] == [("extension", "210", "create")]
    assert seen[0].after["number"] == "210"
    store.update("queue", "600", {"members": ["201", "202", "210"]})
    assert [m.extension for m in store.current().queue("600").members] == ["201", "202", "210"]


def test_references_are_checked_on_update_and_delete(store):
    with pytest.raises(ConfigValidationError) as ei:
        store.update("queue", "600", {"members": ["201", "299"]})
    assert ei.value.errors == {"members.1": "queue 600: member 299 is no extension"}
    with pytest.raises(ConfigValidationError) as ei:
        store.delete("extension", "202")
    assert "queue 600: member 202 is no extension" in ei.value.errors["_"]
    with pytest.raises(ConfigStoreError, match="no extension '999'"):
        store.delete("extension", "999")


def test_system_nested_update_and_errors(store):
    with pytest.raises(ConfigValidationError) as ei:
        store.update("system", "", {"security": {"ban_attempts": 0}, "timezone": "Nowhere/City"})
    assert ei.value.errors == {"security.ban_attempts": "0 is out of range (1 to 1000)",
                               "timezone": "unknown time zone 'Nowhere/City' (use a name like Europe/Warsaw or UTC)"}
    store.update("system", "", {"security": {"ban_attempts": 3}})
    cur = store.current().system
    assert cur.security.ban_attempts == 3 and cur.security.ban_time_s == 3600


def test_secrets_masked_and_kept(store):
    t = store.get("trunk", "itsp")
    assert t["password"] == MASK
    store.update("trunk", "itsp", {**t, "port": 5080})
    assert store.current().trunk("itsp").password == "provider-pass"
    assert store.current().trunk("itsp").port == 5080
    ext = store.get("extension", "201")
    assert ext["has_password"] and "password" not in ext


def test_password_change_and_renumbering(store):
    with pytest.raises(ConfigValidationError) as ei:
        store.set_password("extension", "201", "201201201201")
    assert "all digits" in ei.value.errors["password"]
    pw = store.set_password("extension", "201")
    assert store.sip_credentials("201").ha1["md5"] == digest_ha1("201", "officebox", pw)
    store.update("queue", "600", {"members": ["202"]})
    store.update("queue", "601", {"members": ["202"]})
    store.update("user", "admin", {"extension": ""})
    with pytest.raises(ConfigValidationError) as ei:
        store.update("extension", "201", {"number": "205"})
    assert "needs a new password" in ei.value.errors["password"]
    store.update("extension", "201", {"number": "205", "password": "Brand-New-Secret-99"})
    assert store.sip_credentials("201") is None
    assert store.sip_credentials("205").ha1["md5"] == digest_ha1("205", "officebox", "Brand-New-Secret-99")


def test_web_users_scrypt_and_tokens(store):
    assert store.verify_user("admin", "Quiet-Harbour-Lamp-77")["role"] == "admin"
    assert store.verify_user("admin", "wrong") is None
    assert store.verify_user("nobody", "Quiet-Harbour-Lamp-77") is None
    raw = json.loads((store.data_dir / "config.json").read_text())
    hashes = [d["hash"] for d in raw["credentials"].values() if d["id"] == "user:admin"]
    assert hashes[0].startswith("scrypt$16384$8$1$")
    tid, token = store.create_api_token("admin", "crm")
    assert token not in (store.data_dir / "config.json").read_text()
    assert store.verify_api_token(token) == "admin"
    assert store.verify_api_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.verify_api_token("garbage") is None
    assert [t["label"] for t in store.api_tokens("admin")] == ["crm"]
    assert store.revoke_api_token(tid) and store.verify_api_token(token) is None


def test_hash_password_roundtrip():
    h = hash_password("correct horse battery")
    assert verify_password(h, "correct horse battery")
    assert not verify_password(h, "correct horse batterY")
    assert not verify_password("md5$abc", "x")


def test_reprovision_replaces_only_sections_in_the_file(store, tmp_path):
    store.create("extension", {"number": "210", "name": "web-made"})
    f = tmp_path / "queues.toml"
    f.write_text('[[queue]]\nnumber = "600"\nmembers = ["210"]\n\n[[queue]]\nnumber = "601"\n\n'
                 '[[queue]]\nnumber = "650"\nmembers = ["210"]\n')
    assert store.provision_file(f) == []
    cur = store.current()
    assert [q.number for q in cur.queues] == ["600", "601", "650"]
    assert cur.extension("210") is not None and cur.trunk("gsm1") is not None
    bad = tmp_path / "bad.toml"
    bad.write_text('[[extension]]\nnumber = "201"\n\n[[extension]]\nnumber = "202"\nmax_calls = 0\n')
    with pytest.raises(ProvisioningError) as ei:
        store.provision_file(bad)
    assert [(i.line, i.message) for i in ei.value.issues] == [
        (0, "queue 600: member 210 is no extension"), (0, "queue 650: member 210 is no extension"),
        (6, "0 is out of range (1 to 20)")]
    assert store.current().extension("210") is not None


def test_reprovision_keeps_credentials_of_unchanged_extensions(store):
    before = store.sip_credentials("202")
    prov = load_provisioning(DATA / "config" / "contract.toml")
    assert store.provision(prov) == []
    assert store.sip_credentials("202") == before


def test_realm_change_regenerates_credentials(store):
    text = (DATA / "config" / "contract.toml").read_text().replace('language = "en"', 'language = "en"\nrealm = "new.realm"', 1)
    gen = store.provision(parse_provisioning(text, check_files=False))
    assert [(g.kind, g.name) for g in gen] == [("extension", "202")]
    assert store.sip_credentials("202").realm == "new.realm"
    assert store.sip_credentials("201").ha1["md5"] == digest_ha1("201", "new.realm", "Blue-Kettle-Runs-2049")


def test_routes_keep_order_and_can_move(store):
    store.create("route.outbound", {"pattern": "00.", "trunks": ["itsp"], "permission": "international"})
    ids = [r["id"] for r in store.list("route.outbound")]
    assert [r.pattern for r in store.current().route.outbound] == ["0X.", "00."]
    store.move("route.outbound", ids[1], 0)
    assert [r.pattern for r in store.current().route.outbound] == ["00.", "0X."]


def test_backup_restore_roundtrip_and_invalid_restore(store, tmp_path):
    blob = store.backup()
    other = ConfigStore(tmp_path / "other")
    other.restore(blob)
    assert other.current() == store.current()
    assert other.sip_credentials("201") == store.sip_credentials("201")
    for bad in (b"not json", b'{"x": 1}', json.dumps({"officebox_config": 1, "data": {
            "extension": {"1": {"id": "201", "data": {"number": "201", "max_calls": 0}}}}}).encode()):
        with pytest.raises(ConfigValidationError):
            other.restore(bad)
    assert other.current() == store.current()


def test_unreadable_config_falls_back_to_previous_version(store):
    store.update("system", "", {"nat_keepalive_s": 30})
    (store.data_dir / "config.json").write_text('{"truncated": ')
    again = ConfigStore(store.data_dir)
    assert again._storage.recovered_from_backup
    assert again.current().extension("201") is not None
    assert list(store.data_dir.glob("config.json.damaged-*"))


def test_field_help_for_forms(store):
    docs = store.fields("queue")
    assert "seconds" in docs["agent_timeout"].lower()
    assert set(store.sections()) >= {"system", "extension", "queue", "route.inbound"}


def test_route_blacklist_and_default(store):
    assert store.get("route") == {"blacklist": [], "default": "hangup"}
    with pytest.raises(ConfigValidationError) as ei:
        store.update("route", "", {"blacklist": ["0X.", "12[9-"], "default": "999"})
    assert ei.value.errors == {"blacklist.1": "bad pattern '12[9-': '[' at position 3 is never closed",
                               "default": "destination 999 does not exist (no extension, queue, menu or time "
                                          "condition has that number; use external:NUMBER for an outside number)"}
    store.update("route", "", {"blacklist": ["+48700X."], "default": "500"})
    cur = store.current().route
    assert (cur.blacklist, cur.default, len(cur.inbound), len(cur.outbound)) == (("+48700X.",), "500", 1, 1)
    with pytest.raises(ConfigValidationError):
        store.update("route", "", {"inbound": []})
