"""Provisioning file -> configuration model: contract keys, line-precise errors, passwords."""
import math
import re
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from firmware.config import (ConfigIssue, Destination, ProvisioningError, check_file, compile_pattern,
                             generate_password, load_provisioning, match_pattern, parse_hours,
                             parse_provisioning, password_problem)
from tests.conftest import DATA, ROOT

HAS_ESPEAK = shutil.which("espeak-ng") is not None

BASE = '''
[system]
language = "en"

[[extension]]
number = "201"
password = "Blue-Kettle-Runs-2049"

[[extension]]
number = "202"
password = "Green-Window-Sky-3071"

[[trunk]]
name = "gsm1"
type = "gsm"
model = "ec25"
device = "/dev/ttyUSB2"

[[queue]]
number = "600"
members = ["201", "202"]

[[route.inbound]]
trunk = "gsm1"
destination = "600"

[[route.outbound]]
pattern = "0X."
trunks = ["gsm1"]
'''


def write_wav(path: Path, rate=8000, channels=1, width=2, seconds=0.1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x00" * int(rate * seconds) * channels * width)
    return path


def problems(text: str, tmp_path: Path) -> list[ConfigIssue]:
    f = tmp_path / "box.toml"
    f.write_text(text)
    return check_file(str(f))


def marked_line(text: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if "# HERE" in line:
            return i
    raise AssertionError("no # HERE marker")


def test_base_file_is_valid(tmp_path):
    assert problems(BASE, tmp_path) == []


def test_every_contract_key_is_parsed():
    p = load_provisioning(DATA / "config" / "contract.toml")
    s = p.system
    assert (s.language, s.sip_bind, s.web_bind, s.rtp_ports) == ("en", "0.0.0.0:5060", "0.0.0.0:8080", "10000-20000")
    e = p.extensions[0]
    assert (e.number, e.name, e.password) == ("201", "Anna", "Blue-Kettle-Runs-2049")
    assert p.extensions[1].password is None
    u = p.users[0]
    assert (u.name, u.password, u.role, u.extension) == ("admin", "Quiet-Harbour-Lamp-77", "admin", "201")
    g = p.trunk("gsm1")
    assert (g.type, g.model, g.device, g.audio_device) == ("gsm", "ec25", "/dev/ttyUSB2", "/dev/ttyUSB1")
    sip = p.trunk("itsp")
    assert (sip.host, sip.port, sip.username, sip.password, sip.register) == (
        "sip.example.net", 5070, "user1", "provider-pass", True)
    q = p.queue("600")
    assert (q.name, q.strategy, [m.extension for m in q.members], q.agent_timeout, q.max_wait, q.overflow,
            q.wrapup) == ("Sales", "ringall", ["201", "202"], 15, 300, "hangup", 10)
    m = p.ivr("500")
    assert (m.prompt, m.language, dict(m.options), m.timeout, m.invalid) == (
        "Press 1 for sales, 2 for service.", "en", {"1": "600", "2": "601"}, 5, "500")
    ri = p.route.inbound[0]
    assert (ri.trunk, ri.did, ri.caller, ri.destination) == ("gsm1", "*", "*", "500")
    ro = p.route.outbound[0]
    assert (ro.pattern, ro.strip, ro.prepend, ro.trunks, ro.permission) == ("0X.", 0, "", ("gsm1",), "mobile")


def test_defaults_for_product_settings():
    p = load_provisioning(DATA / "config" / "contract.toml")
    s = p.system
    assert s.auth_algorithms == ("md5", "sha256")
    assert s.security.exempt_ips == ()
    assert "friendly-scanner" in s.security.scanner_user_agents and "sipvicious" in s.security.scanner_user_agents
    assert s.recording.policy == "always"
    f = s.features
    assert (f.pickup, f.directed_pickup, f.queue_login, f.queue_pause, f.dnd_on, f.dnd_off, f.record,
            f.listen, f.whisper, f.barge, f.business_hours_override) == (
        "*8", "**", "*45", "*46", "*78", "*79", "*1", "*222", "*223", "*224", "*60")
    e = p.extensions[0]
    assert "international" not in e.permission and "premium" not in e.permission
    assert p.trunk("gsm1").max_calls == 1


def test_shipped_example_and_demo_files_are_valid():
    for name in ("example.toml", "demo.toml"):
        assert check_file(str(ROOT / "firmware" / "data" / name)) == []
    ex = load_provisioning(ROOT / "firmware" / "data" / "example.toml")
    assert ex.resolve("600") == Destination("queue", "600")
    assert ex.resolve("messagebox:209") == Destination("messagebox", "209")
    assert ex.resolve("external:+48600100200") == Destination("external", "+48600100200")
    assert ex.queue("601").members[1].penalty == 2
    assert ex.extension("201").permission == ("internal", "local", "mobile")
    assert ex.timeconditions[0].holidays == ("2026-12-24", "12-25", "12-26", "01-01")


CASES = [
    ("unknown key with a hint", BASE.replace('language = "en"', 'langauge = "en"  # HERE'),
     "unknown key 'langauge' in [system]; did you mean 'language'?"),
    ("wrong type", BASE.replace('[[queue]]\nnumber = "600"', '[[queue]]\nnumber = "600"\nagent_timeout = "15"  # HERE'),
     "must be a whole number, not the text '15'"),
    ("out of range", BASE.replace('[[queue]]\nnumber = "600"', '[[queue]]\nnumber = "600"\nwrapup = 9000  # HERE'),
     "9000 is out of range (0 to 600)"),
    ("bad choice", BASE.replace('language = "en"', 'language = "de"  # HERE'),
     "'de' is not one of en, pl, ru, bg"),
    ("duplicate extension", BASE + '\n[[extension]]\nnumber = "201"  # HERE\npassword = "Red-Lantern-Tide-5150"\n',
     "number 201 is already used by the extension at line 6"),
    ("queue number clashes with an extension", BASE + '\n[[queue]]\nnumber = "202"  # HERE\n',
     "number 202 is already used by the extension at line 10"),
    ("member that is no extension", BASE.replace('members = ["201", "202"]', 'members = ["201",\n  "299"]  # HERE'),
     "queue 600: member 299 is no extension"),
    ("route destination that does not exist", BASE.replace('destination = "600"', 'destination = "777"  # HERE'),
     "destination 777 does not exist"),
    ("trunk of an inbound route not defined", BASE.replace('trunk = "gsm1"\ndestination', 'trunk = "gsm9"  # HERE\ndestination'),
     "inbound route: trunk 'gsm9' is not defined"),
    ("trunk of an outbound route not defined", BASE.replace('trunks = ["gsm1"]', 'trunks = ["gsm1", "voip"]  # HERE'),
     "outbound route 0X.: trunk 'voip' is not defined"),
    ("weak password: short", BASE.replace('"Blue-Kettle-Runs-2049"', '"Abc-123"  # HERE'),
     "extension 201: password is too short (7 characters; at least 12 are needed)"),
    ("weak password: all digits", BASE.replace('"Blue-Kettle-Runs-2049"', '"123456789012"  # HERE'),
     "extension 201: password is all digits"),
    ("weak password: common", BASE.replace('"Blue-Kettle-Runs-2049"', '"Password2024!"  # HERE'),
     "extension 201: password is a common password"),
    ("weak password: the extension number", BASE.replace('"Blue-Kettle-Runs-2049"', '"201201201201"  # HERE'),
     "extension 201: password is all digits"),
    ("bad pattern", BASE.replace('pattern = "0X."', 'pattern = "0X[9-"  # HERE'),
     "bad pattern '0X[9-': '[' at position 3 is never closed"),
    ("bad port range", BASE.replace('language = "en"', 'language = "en"\nrtp_ports = "20000-10000"  # HERE'),
     "port range '20000-10000' must be LO-HI"),
    ("missing required key at the table header", BASE.replace('[[route.inbound]]\ntrunk = "gsm1"\ndestination = "600"',
                                                              '[[route.inbound]]  # HERE\ntrunk = "gsm1"'),
     "missing required key 'destination'"),
    ("gsm trunk without device", BASE.replace('device = "/dev/ttyUSB2"\n', '').replace('[[trunk]]', '[[trunk]]  # HERE'),
     "trunk gsm1: missing required key 'device'"),
    ("ivr option key", BASE + '\n[[ivr]]\nnumber = "500"\nprompt = "Hi"\noptions = { "1" = "600", "12" = "600" }  # HERE\n',
     "menu 500: option key '12' must be one of 0-9, * or #"),
    ("bad time-condition hours", BASE + '\n[[timecondition]]\nnumber = "700"\nhours = ["mon-fri 18:00-09:00"]  # HERE\n'
                                        'open = "600"\nclosed = "hangup"\n',
     "ends before it starts"),
    ("TOML syntax error", BASE.replace('language = "en"', 'language = "en  # HERE'),
     "TOML syntax error"),
]


@pytest.mark.parametrize("name,text,needle", CASES, ids=[c[0] for c in CASES])
def test_error_is_reported_at_its_line(tmp_path, name, text, needle):
    found = problems(text, tmp_path)
    assert len(found) == 1, found
    issue = found[0]
    assert issue.line == marked_line(text)
    assert needle in issue.message
    assert str(issue).startswith(f"{tmp_path / 'box.toml'}:{issue.line}: ")


def test_prompt_wav_missing_or_wrong_format(tmp_path):
    write_wav(tmp_path / "good.wav")
    write_wav(tmp_path / "wide.wav", rate=16000, channels=2)
    text = BASE + ('\n[[ivr]]\nnumber = "500"\nprompt = "good.wav"\ninvalid_prompt = "wide.wav"  # HERE\n'
                   'timeout_prompt = "prompts/none.wav"\n')
    found = problems(text, tmp_path)
    line = marked_line(text)
    assert [(i.line, i.message) for i in found] == [
        (line, f"prompt file '{tmp_path / 'wide.wav'}' is 16000 Hz, 2 channel(s), 16-bit; prompts must be "
               "8000 Hz mono 16-bit (sox in.wav -r 8000 -c 1 -b 16 out.wav)"),
        (line + 1, f"prompt file '{tmp_path / 'prompts/none.wav'}' does not exist"),
    ]


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng not installed")
def test_text_prompt_in_a_language_espeak_lacks(tmp_path):
    text = BASE + '\n[[ivr]]\nnumber = "500"\nlanguage = "xx"\nprompt = "Hello"  # HERE\n'
    found = problems(text, tmp_path)
    assert [(i.line, i.message) for i in found] == [
        (marked_line(text), "espeak-ng has no voice for language 'xx'; give a .wav path instead")]
    for lang in ("en", "pl", "ru", "bg"):
        assert problems(text.replace('"xx"', f'"{lang}"'), tmp_path) == []


def test_all_problems_at_once_sorted_by_line(tmp_path):
    text = (BASE.replace('language = "en"', 'language = "en"\nsip_bind = "nohost"')
            .replace('"Blue-Kettle-Runs-2049"', '"short"')
            .replace('members = ["201", "202"]', 'members = ["201", "203"]\nstrategy = "roundrobin"')
            .replace('pattern = "0X."', 'pattern = "0Q."'))
    found = problems(text, tmp_path)
    assert [i.line for i in found] == sorted(i.line for i in found)
    msgs = " | ".join(i.message for i in found)
    for needle in ("must be HOST:PORT", "password is too short", "member 203 is no extension",
                   "'roundrobin' is not one of", "unexpected character 'Q'"):
        assert needle in msgs
    assert len(found) == 5


def test_check_command_exit_codes(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE.replace('destination = "600"', 'destination = "777"'))
    r = subprocess.run([sys.executable, "-m", "firmware", "check", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert re.search(rf"^{re.escape(str(bad))}:\d+: destination 777 does not exist", r.stderr, re.M)
    good = tmp_path / "good.toml"
    good.write_text(BASE)
    r = subprocess.run([sys.executable, "-m", "firmware", "check", str(good)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_missing_and_non_utf8_files(tmp_path):
    assert [str(i) for i in check_file(str(tmp_path / "nope.toml"))] == [f"{tmp_path / 'nope.toml'}:0: file not found"]
    f = tmp_path / "latin1.toml"
    f.write_bytes(b'[system]\nlanguage = "en"\n# caf\xe9\n')
    assert [(i.line, i.message) for i in check_file(str(f))] == [(3, "the file is not UTF-8 text")]


def test_load_raises_provisioning_error_with_issues(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text(BASE.replace('number = "202"', 'number = "2"'))
    with pytest.raises(ProvisioningError) as ei:
        load_provisioning(f)
    assert [(i.line, i.message) for i in ei.value.issues] == [
        (10, "number '2' must be 2 to 8 digits"), (21, "queue 600: member 202 is no extension")]


@pytest.mark.parametrize("pw,reason", [
    ("short-pw", "too short"),
    ("123456789012", "all digits"),
    ("aaaaaaaaaaaaaa", "repeats one character"),
    ("administrator", "common password"),
    ("Qwertyuiop123!", "common password"),
    ("welcome12345", "common password"),
])
def test_weak_passwords_refused(pw, reason):
    assert reason in password_problem(pw, number="201")


def test_password_equal_to_number_or_name_refused():
    assert password_problem("anna.kowalska", name="anna.kowalska") == "password equals the user name"
    assert password_problem("1234567890123", number="1234567890123").startswith("password is all digits")
    assert password_problem("2012012012a0") is None


def test_generated_passwords_are_strong_and_unique():
    pws = {generate_password() for _ in range(200)}
    assert len(pws) == 200
    for pw in pws:
        assert len(pw) >= 22 and re.fullmatch(r"[A-Za-z0-9_-]+", pw)
        assert password_problem(pw) is None
    bits = 24 * math.log2(64)
    assert bits >= 128


@pytest.mark.parametrize("pattern,yes,no", [
    ("0X.", ["012", "0123456"], ["0", "01", "10"]),
    ("+48[4-8]XXXXXXXX", ["+48600100200"], ["+48900100200", "+4860010020"]),
    ("_NXX", ["200", "999"], ["100", "20"]),
    ("9!", ["9", "912"], ["8"]),
    ("Z#", ["1#"], ["0#"]),
])
def test_dial_patterns(pattern, yes, no):
    for n in yes:
        assert match_pattern(pattern, n), n
    for n in no:
        assert not match_pattern(pattern, n), n


@pytest.mark.parametrize("bad,msg", [
    ("0.X", "'.' may only end a pattern (position 2)"),
    ("[]1", "empty digit set '[]' at position 1"),
    ("[5-1]", "range 5-1 in '[5-1]' goes backwards"),
    ("1+2", "'+' may only start a pattern (position 2)"),
    ("", "empty pattern"),
])
def test_bad_patterns_say_why(bad, msg):
    with pytest.raises(ValueError) as ei:
        compile_pattern(bad)
    assert str(ei.value) == msg


def test_hours_and_time_condition():
    assert parse_hours("fri-mon 09:00-10:00")[:4] == [(4, 540, 600), (5, 540, 600), (6, 540, 600), (0, 540, 600)]
    import datetime as dt
    from zoneinfo import ZoneInfo
    p = parse_provisioning(BASE + '\n[[timecondition]]\nnumber = "700"\nhours = ["mon-fri 09:00-18:00"]\n'
                           'holidays = [2026-12-24, "01-01"]\nopen = "600"\nclosed = "hangup"\n', check_files=False)
    tc = p.timecondition("700")
    tz = ZoneInfo("Europe/Warsaw")
    assert tc.is_open(dt.datetime(2026, 11, 23, 9, 0, tzinfo=tz))        # Monday
    assert not tc.is_open(dt.datetime(2026, 11, 23, 18, 0, tzinfo=tz))
    assert not tc.is_open(dt.datetime(2026, 11, 22, 12, 0, tzinfo=tz))   # Sunday
    assert not tc.is_open(dt.datetime(2026, 12, 24, 12, 0, tzinfo=tz))   # holiday, a Thursday
    assert not tc.is_open(dt.datetime(2027, 1, 1, 12, 0, tzinfo=tz))     # every 1 January


def test_external_destination_needs_an_outbound_route(tmp_path):
    text = BASE.replace('destination = "600"', 'destination = "external:+4922123456"  # HERE')
    found = problems(text, tmp_path)
    assert [(i.line, i.message) for i in found] == [
        (marked_line(text), "no outbound route matches the external number +4922123456")]
    assert problems(BASE.replace('destination = "600"', 'destination = "external:0221234567"'), tmp_path) == []


def test_queue_overflow_to_mobiles_needs_mobile_numbers(tmp_path):
    text = BASE.replace('members = ["201", "202"]', 'members = ["201", "202"]\noverflow = "mobiles"  # HERE')
    found = problems(text, tmp_path)
    assert [i.line for i in found] == [marked_line(text)]
    assert "no member extension has a mobile number" in found[0].message
    fixed = text.replace('password = "Blue-Kettle-Runs-2049"', 'password = "Blue-Kettle-Runs-2049"\nmobile = "+48600100200"')
    assert problems(fixed, tmp_path) == []


def test_provisioning_reference_documents_every_key():
    import dataclasses
    from firmware.config import SECTIONS, FeatureCodes, QueueMember, Recording, Routes, Security, Smtp, field_docs
    text = (ROOT / "README.md").read_text()
    tables = {"security", "recording", "features", "smtp", "inbound", "outbound"}
    for cls in [*SECTIONS.values(), Security, Recording, FeatureCodes, Smtp, Routes, QueueMember]:
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            key = f.metadata.get("key", f.name)
            if key in tables:
                continue
            assert f"| `{key}` |" in text, (cls.__name__, key)
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"


def test_model_is_plain_data():
    """asdict / deepcopy work (the web page and the PBX copy and serialise the model)."""
    import copy
    import dataclasses
    import json
    p = load_provisioning(ROOT / "firmware" / "data" / "example.toml")
    assert copy.deepcopy(p) == p
    d = dataclasses.asdict(p)
    assert d["ivrs"][0]["options"]["1"] == "600"
    json.dumps(d)
