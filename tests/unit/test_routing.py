"""Route decisions for calls to and from the carrier, without I/O (firmware.pbx.routing)."""
from __future__ import annotations

import pytest

from firmware.config import parse_provisioning
from firmware.pbx.routing import (
    billed_minutes,
    combine_failures,
    day_start,
    is_final,
    match_inbound,
    modem_dial_outcome,
    number_forms,
    plan_outbound,
    sip_failure_outcome,
    trunk_unavailable,
)

PROV = parse_provisioning("""
[system]
country_code = "48"

[[extension]]
number = "201"
password = "Secret-pass-201-abc"

[[extension]]
number = "202"
password = "Secret-pass-202-abc"

[[queue]]
number = "600"
members = ["201", "202"]

[[trunk]]
name = "gsm1"
type = "gsm"
model = "ec25"
device = "/dev/ttyUSB2"

[[trunk]]
name = "gsm2"
type = "gsm"
model = "sim7600"
device = "/dev/ttyUSB6"

[[trunk]]
name = "voip"
type = "sip"
host = "sip.example.net"
dids = ["+48221234567", "+48221234568"]

[route]
blacklist = ["+48700X.", "+48800123456"]
default = "600"

[[route.inbound]]
name = "VIP"
trunk = "*"
caller = "+48601XXXXXX"
destination = "202"

[[route.inbound]]
name = "service line"
trunk = "voip"
did = "+48221234568"
destination = "201"

[[route.inbound]]
name = "GSM"
trunk = "gsm1"
destination = "600"

[[route.outbound]]
name = "Mobiles"
pattern = "+48[4-8]XXXXXXXX"
trunks = ["gsm1", "gsm2", "voip"]
permission = "mobile"

[[route.outbound]]
name = "National"
pattern = "0XXXXXXXXX"
strip = 1
prepend = "+48"
trunks = ["voip", "gsm1"]

[[route.outbound]]
name = "International"
pattern = "00."
strip = 2
prepend = "+"
trunks = ["voip"]
permission = "international"
""")


def inbound(trunk: str, did: str, caller: str):
    return match_inbound(PROV.route, trunk=trunk, did=did, caller=caller, country_code="48")


def test_number_forms_cover_what_carriers_send():
    assert number_forms("0221234567", "48", "0") == ("0221234567", "+48221234567", "48221234567", "221234567")
    assert set(number_forms("221234567", "48")) >= {"+48221234567", "48221234567"}
    assert set(number_forms("48221234567", "48")) >= {"+48221234567", "221234567"}
    assert number_forms("+48600100200", "48") == ("+48600100200", "48600100200", "600100200")
    assert number_forms("0048600100200", "48")[1] == "+48600100200"
    assert number_forms("600", "48") == ("600",)     # too short to be a subscriber number
    assert number_forms("", "48") == ()
    assert number_forms("+7 912 (345) 67-89") == ("+79123456789", "79123456789")


def test_inbound_first_match_wins_by_trunk_did_and_caller():
    # the caller pattern route comes first, whatever the trunk
    d = inbound("voip", "+48221234568", "+48601222333")
    assert d.destination == "202" and d.route is not None and d.route.name == "VIP"
    # DID route: the provider sends the DID without '+' -- still the service line
    d = inbound("voip", "48221234568", "+48500111222")
    assert d.destination == "201" and "service line" in d.reason
    d = inbound("voip", "221234568", "0500111222")
    assert d.destination == "201"
    # trunk route
    d = inbound("gsm1", "", "+48500111222")
    assert d.destination == "600" and d.route.name == "GSM"
    # a national caller number matches the international caller pattern
    assert inbound("gsm1", "", "601222333").destination == "202"


def test_unmatched_call_goes_to_the_default_and_says_why():
    d = inbound("gsm2", "", "+48500111222")
    assert d.destination == "600" and d.route is None and not d.blacklisted
    assert "no inbound route matched" in d.reason and "gsm2" in d.reason
    d = inbound("voip", "+48221234567", "")           # withheld caller, other DID
    assert d.destination == "600" and "withheld" in d.reason


@pytest.mark.parametrize("caller", ["+48700123456", "0048700999", "48800123456", "800123456"])
def test_blacklist_rejects_before_any_route(caller):
    d = inbound("gsm1", "", caller)
    assert d.blacklisted and d.route is None and "blacklisted" in d.reason


def test_withheld_caller_is_never_blacklisted():
    assert not inbound("gsm1", "", "").blacklisted


def test_outbound_pattern_strip_prepend_and_trunk_order():
    p = plan_outbound(PROV.route.outbound, "+48601222333")
    assert p.route.name == "Mobiles" and p.number == "+48601222333" and p.trunks == ("gsm1", "gsm2", "voip")
    p = plan_outbound(PROV.route.outbound, "0221234567")
    assert p.route.name == "National" and p.number == "+48221234567" and p.trunks == ("voip", "gsm1")
    p = plan_outbound(PROV.route.outbound, "004930123456")
    assert p.route.name == "International" and p.number == "+4930123456"
    assert plan_outbound(PROV.route.outbound, "+48221234567") is None    # landline in + form: no route
    assert plan_outbound(PROV.route.outbound, "12") is None


@pytest.mark.parametrize("outcome,final", [
    ("answered", True), ("busy", True), ("no_answer", True), ("rejected", True), ("cancelled", True),
    ("no_route", True), ("no_network", False), ("congestion", False), ("no_channel", False),
    ("minutes_exhausted", False), ("unavailable", False), ("failed", False)])
def test_failover_reasons(outcome, final):
    assert is_final(outcome) is final


@pytest.mark.parametrize("status,outcome", [
    (486, "busy"), (600, "busy"), (480, "no_answer"), (404, "no_route"), (484, "no_route"),
    (603, "rejected"), (487, "cancelled"), (503, "congestion"), (500, "failed"), (408, "failed"),
    (401, "unavailable"), (407, "unavailable"), (403, "unavailable"), (488, "failed")])
def test_sip_failures_map_to_final_or_failover(status, outcome):
    assert sip_failure_outcome(status) == outcome


def test_modem_dial_results():
    assert modem_dial_outcome("answered", True) == "answered"
    assert modem_dial_outcome("busy", True) == "busy"
    assert modem_dial_outcome("no_answer", True) == "no_answer"
    assert modem_dial_outcome("invalid_number", False) == "no_route"
    # NO CARRIER before the far end rang is the network failing; after ringing, the callee
    assert modem_dial_outcome("no_carrier", False) == "no_network"
    assert modem_dial_outcome("no_carrier", True) == "no_answer"
    assert modem_dial_outcome("no_dialtone", False) == "no_network"
    assert modem_dial_outcome("congestion", False) == "congestion"
    assert modem_dial_outcome("error", False) == "failed"


def test_trunk_limits():
    ok = dict(kind="gsm", in_use=0, max_calls=1)
    assert trunk_unavailable(**ok) is None
    assert trunk_unavailable(**{**ok, "in_use": 1}) == "no_channel"
    assert trunk_unavailable(**ok, registered=False) == "no_network"
    assert trunk_unavailable(**ok, ready=False) == "unavailable"
    assert trunk_unavailable(**ok, minutes_used=300, minutes_per_day=300) == "minutes_exhausted"
    assert trunk_unavailable(**ok, minutes_used=299, minutes_per_day=300) is None
    assert trunk_unavailable(**ok, minutes_used=5000, minutes_per_day=0) is None   # 0: no limit
    assert trunk_unavailable(kind="sip", in_use=3, max_calls=4, registered=False) is None


def test_minutes_are_billed_per_started_minute_and_count_calls_in_progress():
    assert billed_minutes([(0.0, 59.0), (100.0, 161.0), (200.0, 200.0)], now=1000.0) == 1 + 2
    assert billed_minutes([(900.0, None)], now=1000.0) == 2
    assert billed_minutes([], now=1.0) == 0


def test_day_start_is_local_midnight():
    # 2024-03-05 00:30 in Warsaw (UTC+1) is 2024-03-04 23:30 UTC
    t = 1709595000.0
    assert day_start(t, "Europe/Warsaw") == 1709593200.0
    assert day_start(t, "UTC") == 1709510400.0
    assert day_start(t, "No/Such_Zone") == 1709510400.0


def test_all_trunks_failed_outcome():
    assert combine_failures(["no_network", "no_channel"]) == "congestion"
    assert combine_failures(["no_network", "failed"]) == "failed"
    assert combine_failures([]) == "no_route"
