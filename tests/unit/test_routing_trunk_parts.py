"""Sans-I/O parts of the trunks: the DTMF cross-check of modem legs and the SIP registration
client's timing and server failover (injected time)."""
from __future__ import annotations

import pytest

from firmware.pbx.modemleg import DtmfMerger
from firmware.pbx.siptrunk import RegistrationPlan


def test_one_key_press_reported_by_both_detectors_is_delivered_once():
    m = DtmfMerger()
    assert m.offer("5", "module", 10.00)
    assert not m.offer("5", "inband", 10.25)     # the in-band detector reports it at its end
    assert m.offer("7", "inband", 11.0)          # the module missed this one: still delivered
    assert not m.offer("7", "module", 11.1)


def test_quick_repeats_pair_up_one_by_one():
    m = DtmfMerger()
    got = [m.offer(d, s, t) for d, s, t in [
        ("1", "module", 0.0), ("1", "inband", 0.15), ("1", "module", 0.35), ("1", "inband", 0.5),
        ("1", "module", 0.7)]]
    assert got == [True, False, True, False, True]


def test_same_source_repeats_are_never_swallowed():
    m = DtmfMerger()
    assert all(m.offer("9", "inband", t) for t in (0.0, 0.2, 0.4))


def test_an_old_unpaired_report_expires():
    m = DtmfMerger(window=1.2)
    assert m.offer("3", "module", 0.0)
    assert m.offer("3", "inband", 5.0)           # much later: a new press


def test_registration_refreshes_before_the_granted_expiry():
    p = RegistrationPlan(["sip.example.net"], 3600)
    assert p.succeeded(3600, now=100.0) == 100.0 + 3540.0
    assert p.registered and p.expires_at == 3700.0
    # a registrar granting less than asked (Contact expires=10): refresh after 5 s
    assert p.succeeded(10, now=200.0) == 205.0
    assert p.succeeded(60, now=0.0) == 48.0
    assert RegistrationPlan.refresh_delay(2) == 1.0


def test_primary_that_does_not_answer_fails_over_to_backup_at_once():
    p = RegistrationPlan(["primary.example", "backup.example"], 600)
    assert p.server == "primary.example"
    nxt = p.server_failed("no answer within 5 s", now=10.0)
    assert p.server == "backup.example" and nxt == pytest.approx(10.1)
    assert p.last_error.startswith("no answer")
    assert p.succeeded(600, now=11.0) == 11.0 + 540.0
    assert p.server == "backup.example"          # stays on the server that works
    # the backup dies too: back to the primary, then the retry waits grow
    t1 = p.server_failed("503 Service Unavailable", now=600.0, status=503)
    assert p.server == "primary.example" and t1 == pytest.approx(600.1)
    t2 = p.server_failed("timeout", now=601.0)
    t3 = p.server_failed("timeout", now=610.0)
    assert t2 - 601.0 < t3 - 610.0


def test_single_server_retries_with_growing_waits_and_loses_the_binding_at_expiry():
    p = RegistrationPlan(["sip.example.net"], 120)
    p.succeeded(120, now=0.0)
    waits = [p.server_failed("timeout", now=t) - t for t in (100.0, 110.0, 130.0)]
    assert waits == sorted(waits) and waits[0] >= 2.0
    assert not p.registered                       # the binding expired at 120 s


def test_refused_credentials_wait_long_before_trying_again():
    p = RegistrationPlan(["sip.example.net", "backup.example"], 600)
    nxt = p.challenge_failed("credentials refused", now=0.0, status=401)
    assert nxt == RegistrationPlan.AUTH_RETRY_S and p.server == "sip.example.net" and not p.registered
    assert p.last_status == 401


def test_a_plan_needs_a_server():
    with pytest.raises(ValueError):
        RegistrationPlan([], 600)
