"""ConfigStore.sip_credentials answers from an index: every change of the stored configuration
must show at once (password changes, renumbering, removal, another store on the same file)."""
import pytest

from firmware.store.config_store import ConfigStore, digest_ha1
from tests.conftest import DATA


@pytest.fixture
def store(tmp_path):
    s = ConfigStore(tmp_path / "data")
    s.provision_file(DATA / "config" / "contract.toml")
    return s


def test_password_change_shows_at_once(store):
    before = store.sip_credentials("201")
    pw = store.set_password("extension", "201")
    after = store.sip_credentials("201")
    assert after.ha1["md5"] == digest_ha1("201", "officebox", pw)
    assert after.ha1["md5"] != before.ha1["md5"]


def test_renumbered_and_removed_extensions(store):
    assert store.sip_credentials("201") is not None and store.sip_credentials("205") is None
    store.update("queue", "600", {"members": ["202"]})
    store.update("queue", "601", {"members": ["202"]})
    store.update("user", "admin", {"extension": ""})
    store.update("extension", "201", {"number": "205", "password": "Brand-New-Secret-99"})
    assert store.sip_credentials("201") is None
    assert store.sip_credentials("205").ha1["md5"] == digest_ha1("205", "officebox", "Brand-New-Secret-99")


def test_callers_cannot_change_the_cached_answer(store):
    c = store.sip_credentials("202")
    c.ha1["md5"] = "0" * 32
    assert store.sip_credentials("202").ha1["md5"] != "0" * 32


def test_a_store_reopened_on_the_file_sees_the_change(store, tmp_path):
    other = ConfigStore(tmp_path / "data")
    assert other.sip_credentials("202") == store.sip_credentials("202")
    pw = store.set_password("extension", "202")
    reopened = ConfigStore(tmp_path / "data")
    assert reopened.sip_credentials("202").ha1["md5"] == digest_ha1("202", "officebox", pw)


def test_unknown_extension(store):
    assert store.sip_credentials("999") is None
    assert store.sip_credentials("") is None
