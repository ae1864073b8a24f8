"""Notice texts in the office's languages and webhook signatures."""
import hashlib
import hmac

from firmware.aio.notify import TEXTS, render, sign


def test_every_event_in_every_language():
    for event, table in TEXTS.items():
        assert set(table) == {"en", "pl", "ru", "bg"}, event


def test_missed_call_text():
    assert render("missed_call", "pl", {"number": "+48600100200", "time": "10:15", "queue": "600"}) == (
        "Nieodebrane połączenie od +48600100200 o 10:15 (queue 600). Oddzwoń: lista nieodebranych "
        "pokazuje je, dopóki klient nie zostanie obsłużony.")
    assert "+48600100200 at 10:15." in render("missed_call", "en", {"number": "+48600100200", "time": "10:15"})


def test_unknown_language_falls_back_and_missing_values_do_not_crash():
    assert render("ban", "de", {"ip": "1.2.3.4", "reason": "x"}) == "Address 1.2.3.4 was banned: x."
    assert render("ban", "en", {"ip": "1.2.3.4"}).startswith("ban: ip=1.2.3.4")


def test_signature_is_hmac_sha256_of_the_body():
    body = b'{"event": "missed_call"}'
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
