"""Every route, role and bad input through the aiohttp test client, on real stores."""
from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.web.conftest import ADMIN_PW, AGENT_PW, MANAGER_PW, Client, write_wav_bytes
from web_ui.keys import WebOptions

MANAGER_PAGES = ("/live", "/live/state", "/reports/calls", "/reports/missed", "/reports/calls.csv",
                 "/reports/agents", "/reports/kpi", "/api/v1/missed")
ADMIN_PAGES = ("/settings", "/settings/system", "/settings/extension", "/settings/user", "/settings/queue",
               "/settings/ivr", "/settings/timecondition", "/settings/trunk", "/settings/route.inbound",
               "/settings/route.outbound", "/settings/notification", "/settings/bans", "/settings/backup",
               "/settings/trunks-status", "/settings/extension/201", "/settings/user/anna")


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def _as(make_client, name: str, pw: str) -> Client:
    cl = await make_client()
    await cl.login(name, pw)
    return cl


# -- first run ----------------------------------------------------------------------------------
async def test_first_run_redirects_to_setup_and_needs_the_setup_code(box, make_client):
    cl = await make_client()
    code = (box.data_dir / "setup-code").read_text().strip()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    assert oct(os.stat(box.data_dir / "setup-code").st_mode & 0o777) == "0o600"
    r, _ = await cl.get("/reports/calls", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/setup"
    r, text = await cl.get("/setup")
    assert r.status == 200 and 'name="code"' in text
    form = {"code": "AAAA-BBBB", "name": "owner", "password": "a long enough passphrase", "confirm":
            "a long enough passphrase", "language": "pl", "timezone": "Europe/Warsaw"}
    r, text = await cl.post("/setup", form)
    assert r.status == 400 and 'id="e-code"' in text
    assert box.config.list("user") == []
    r, text = await cl.post("/setup", {**form, "code": code, "password": "short", "confirm": "short"})
    assert r.status == 400 and 'id="e-password"' in text and box.config.list("user") == []
    r, _ = await cl.post("/setup", {**form, "code": code.lower().replace("-", "")})
    assert r.status == 303 and r.headers["Location"] == "/setup/extensions"
    assert [u["name"] for u in box.config.list("user")] == ["owner"]
    assert box.config.get("system")["timezone"] == "Europe/Warsaw"
    assert not (box.data_dir / "setup-code").exists()
    r, text = await cl.get("/account")
    assert r.status == 200 and "Moje konto" in text
    r, _ = await cl.get("/setup", allow_redirects=False)
    assert r.status == 303


async def test_setup_code_guessing_is_locked_out(box, make_client):
    cl = await make_client()
    await cl.get("/setup")
    form = {"name": "x", "password": "a long enough passphrase", "confirm": "a long enough passphrase",
            "language": "en", "timezone": "UTC"}
    statuses = []
    for i in range(6):
        r, _ = await cl.post("/setup", {**form, "code": f"ZZZZ-ZZZ{i + 2}"})
        statuses.append(r.status)
    assert statuses[:5] == [400] * 5 and statuses[5] == 429
    code = (box.data_dir / "setup-code").read_text().strip()
    r, _ = await cl.post("/setup", {**form, "code": code})
    assert r.status == 429 and box.config.list("user") == []


# -- login, sessions, CSRF -----------------------------------------------------------------------
async def test_login_sets_a_strict_httponly_cookie_and_rotates_it(seeded, make_client):
    cl = await make_client()
    r, _ = await cl.get("/login")
    before = r.headers.get("Set-Cookie", "")
    assert "HttpOnly" in before and "SameSite=Strict" in before and "Path=/" in before
    r, _ = await cl.post("/login", {"name": "maria", "password": MANAGER_PW})
    after = r.headers["Set-Cookie"]
    assert r.status == 303 and r.headers["Location"] == "/live"
    assert after.split(";")[0] != before.split(";")[0]


async def test_wrong_password_and_lockout(seeded, make_client):
    cl = await make_client()
    await cl.get("/login")
    for _ in range(5):
        r, text = await cl.post("/login", {"name": "maria", "password": "wrong password!!"})
        assert r.status == 401 and 'id="e-password"' in text
    r, text = await cl.post("/login", {"name": "maria", "password": MANAGER_PW})
    assert r.status == 429 and "15 min" in text
    other = await make_client()
    await other.login("admin", ADMIN_PW)


async def test_lockout_ends_after_the_lockout_time(seeded, make_client):
    clock = FakeClock()
    cl = await make_client(clock=clock)
    await cl.get("/login")
    for _ in range(5):
        await cl.post("/login", {"name": "anna", "password": "not her password"})
    r, _ = await cl.post("/login", {"name": "anna", "password": AGENT_PW})
    assert r.status == 429
    clock.now += 901
    r, _ = await cl.post("/login", {"name": "anna", "password": AGENT_PW})
    assert r.status == 303 and r.headers["Location"] == "/agent"


@pytest.mark.parametrize("path,data", [("/logout", {}), ("/account/tokens", {"label": "crm"}),
                                       ("/agent/status", {"status": "dnd"}), ("/settings/bans/lift", {"ip": "203.0.113.9"}),
                                       ("/settings/extension", {"number": "250"})])
async def test_state_changing_requests_need_the_csrf_token(seeded, make_client, path, data):
    cl = await _as(make_client, "admin", ADMIN_PW)
    r, text = await cl.post(path, data, csrf=False)
    assert r.status == 403 and "Form expired" in text
    r, _ = await cl.post(path, {**data, "_csrf": "forged-token"}, csrf=False)
    assert r.status == 403
    assert seeded.control.actions == [] and seeded.config.get("extension", "250") is None


async def test_cross_site_origin_is_refused_even_with_the_token(seeded, make_client):
    cl = await _as(make_client, "admin", ADMIN_PW)
    r, _ = await cl.post("/settings/bans/lift", {"ip": "203.0.113.9"}, headers={"Origin": "http://evil.example"})
    assert r.status == 403 and seeded.control.actions == []
    r, _ = await cl.post("/settings/bans/lift", {"ip": "203.0.113.9"})
    assert r.status == 303 and seeded.control.actions == [("lift_ban", "203.0.113.9")]


async def test_logout_ends_the_session(seeded, make_client):
    cl = await _as(make_client, "maria", MANAGER_PW)
    r, _ = await cl.post("/logout", {})
    assert r.status == 303
    r, _ = await cl.get("/live", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] in ("/login?next=/live", "/login?next=%2Flive")


async def test_open_redirect_after_login_is_refused(seeded, make_client):
    cl = await make_client()
    await cl.get("/login")
    r, _ = await cl.post("/login", {"name": "maria", "password": MANAGER_PW, "next": "//evil.example/x"})
    assert r.status == 303 and r.headers["Location"] == "/live"


# -- roles ------------------------------------------------------------------------------------
async def test_unauthenticated_requests_go_to_login_or_get_401(seeded, make_client):
    cl = await make_client()
    for path in MANAGER_PAGES + ADMIN_PAGES + ("/agent", "/account"):
        if path.startswith("/api/"):
            continue
        r, _ = await cl.get(path, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/login"), path
    r, text = await cl.get("/api/v1/calls")
    assert r.status == 401 and json.loads(text) == {"error": "log in or send an API token"}


async def test_roles_matrix(seeded, make_client):
    admin = await _as(make_client, "admin", ADMIN_PW)
    manager = await _as(make_client, "maria", MANAGER_PW)
    agent = await _as(make_client, "anna", AGENT_PW)
    for path in MANAGER_PAGES:
        assert (await admin.get(path))[0].status == 200, path
        assert (await manager.get(path))[0].status == 200, path
        assert (await agent.get(path))[0].status == 403, path
    for path in ADMIN_PAGES:
        assert (await admin.get(path))[0].status == 200, path
        assert (await manager.get(path))[0].status == 403, path
        assert (await agent.get(path))[0].status == 403, path
    assert (await agent.get("/agent"))[0].status == 200
    assert (await manager.get("/agent"))[0].status == 200
    assert (await admin.get("/agent"))[0].status == 403
    r, text = await agent.get("/settings")
    assert "Not allowed" in text and "/settings/system" not in text


async def test_security_headers_on_pages_files_and_errors(seeded, make_client):
    cl = await make_client()
    for path in ("/login", "/static/app.css", "/nope"):
        r, _ = await cl.get(path)
        h = r.headers
        assert "script-src 'self'" in h["Content-Security-Policy"] and "unsafe-inline" not in h["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "same-origin"
    r, text = await cl.get("/login")
    assert "<script>" not in text and " style=" not in text and " on" + "click=" not in text


# -- reports and recordings ----------------------------------------------------------------------
async def test_call_log_filters_and_bad_dates(seeded, make_client):
    now = time.time()
    seeded.add_call(started=now - 3000, number="+48601000001")
    seeded.add_call(started=now - 2000, number="+48601000002", status="missed", agent="")
    cl = await _as(make_client, "maria", MANAGER_PW)
    r, text = await cl.get("/reports/calls")
    assert r.status == 200 and "+48601000001" in text and "+48601000002" in text
    assert 'class="missed"' in text
    r, text = await cl.get("/reports/calls?status=missed_all")
    assert "+48601000002" in text and "+48601000001" not in text
    r, text = await cl.get("/reports/calls?number=000001")
    assert "+48601000001" in text and "+48601000002" not in text
    r, text = await cl.get("/reports/calls?from=2026-13-45&to=yesterday")
    assert r.status == 400 and 'id="e-from"' in text and 'id="e-to"' in text
    r, text = await cl.get("/reports/calls?from=2001-01-01&to=2026-01-01")
    assert r.status == 400 and "400" in text and 'id="e-from"' in text
    r, text = await cl.get("/reports/calls?from=2026-05-02&to=2026-05-01")
    assert r.status == 400 and 'id="e-to"' in text
    r, text = await cl.get("/reports/calls?direction=sideways&page=-4")
    assert r.status == 400 and 'id="e-direction"' in text


async def test_csv_export_of_a_filtered_list(seeded, make_client):
    now = time.time()
    seeded.add_call(started=now - 3000, number="+48601000001")
    cid = seeded.add_call(started=now - 2000, number="+48601000002", status="missed", agent="")
    seeded.calls.set_note(cid, note="=HYPERLINK(\"http://x\")")
    seeded.calls.flush()
    cl = await _as(make_client, "maria", MANAGER_PW)
    r = await cl.c.get("/reports/calls.csv?status=missed_all")
    text = await r.text()
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    lines = text.strip().splitlines()
    assert lines[0].startswith("started,direction") and len(lines) == 2 and "+48601000002" in lines[1]
    assert "'=HYPERLINK" in lines[1]
    r = await cl.c.get("/reports/calls.csv?from=bad")
    assert r.status == 400


def _recording(box, name: str = "2026/05/01/call1.wav") -> str:
    path = box.data_dir / "recordings" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(write_wav_bytes(2.0))
    return "recordings/" + name


async def test_recording_is_served_with_range_to_allowed_roles(seeded, make_client):
    rel = _recording(seeded)
    cid = seeded.add_call(started=time.time() - 100, agent="202", recording=rel)
    size = (seeded.data_dir / rel).stat().st_size
    manager = await _as(make_client, "maria", MANAGER_PW)
    r = await manager.c.get(f"/calls/{cid}/recording")
    assert r.status == 200 and r.headers["Content-Type"] == "audio/wav" and len(await r.read()) == size
    r = await manager.c.get(f"/calls/{cid}/recording", headers={"Range": "bytes=100-199"})
    assert r.status == 206 and r.headers["Content-Range"] == f"bytes 100-199/{size}" and len(await r.read()) == 100
    r = await manager.c.get(f"/calls/{cid}/recording?download=1")
    assert "attachment" in r.headers["Content-Disposition"]
    agent = await _as(make_client, "anna", AGENT_PW)
    r = await agent.c.get(f"/calls/{cid}/recording")
    assert r.status == 403
    own = seeded.add_call(started=time.time() - 50, agent="201", recording=rel)
    r = await agent.c.get(f"/calls/{own}/recording")
    assert r.status == 200


@pytest.mark.parametrize("evil", ["../config.json", "recordings/../config.json", "/etc/passwd",
                                  "recordings/2026/../../secret.key", "recordings/link.wav"])
async def test_recording_paths_outside_the_recordings_folder_are_refused(seeded, make_client, evil):
    (seeded.data_dir / "recordings").mkdir(parents=True, exist_ok=True)
    os.symlink(seeded.data_dir / "config.json", seeded.data_dir / "recordings" / "link.wav")
    cid = seeded.add_call(started=time.time() - 100, recording=evil)
    cl = await _as(make_client, "maria", MANAGER_PW)
    r = await cl.c.get(f"/calls/{cid}/recording")
    assert r.status == 404
    for path in ("/calls/..%2F..%2Fconfig.json/recording", "/calls/%2e%2e/recording",
                 "/calls/x;rm -rf/recording", "/api/v1/calls/..%2Fsecret.key/recording"):
        r = await cl.c.get(path)
        assert r.status in (403, 404), path
        assert b"secret" not in await r.read()


async def test_call_detail_and_agent_visibility(seeded, make_client):
    cid = seeded.add_call(started=time.time() - 100, agent="202")
    manager = await _as(make_client, "maria", MANAGER_PW)
    r, text = await manager.get(f"/calls/{cid}")
    assert r.status == 200 and "entered queue" in text
    agent = await _as(make_client, "anna", AGENT_PW)
    assert (await agent.get(f"/calls/{cid}"))[0].status == 403
    assert (await manager.get("/calls/does-not-exist"))[0].status == 404


async def test_missed_not_returned_and_call_back(seeded, make_client):
    now = time.time()
    seeded.add_call(started=now - 600, number="+48601000009", status="missed", agent="")
    seeded.add_call(started=now - 500, number="+48601000008", status="missed", agent="")
    seeded.add_call(started=now - 100, number="+48601000008", direction="outbound", agent="201")
    cl = await _as(make_client, "maria", MANAGER_PW)
    r, text = await cl.get("/reports/missed")
    open_part = text.split("Missed calls in the period")[0]
    assert "+48601000009" in open_part and "+48601000008" not in open_part
    r, _ = await cl.post("/reports/missed/callback", {"number": "+48601000009"})
    assert r.status == 303 and seeded.control.actions == [("originate", "203", "+48601000009")]
    r, _ = await cl.post("/reports/missed/callback", {"number": "<script>"})
    assert seeded.control.actions == [("originate", "203", "+48601000009")]


# -- live board --------------------------------------------------------------------------------
async def test_live_board_stream_sends_a_snapshot_per_change(seeded, make_client):
    from firmware.pbx.live import LiveCall

    cl = await _as(make_client, "maria", MANAGER_PW)
    r = await cl.c.get("/live/stream")
    assert r.headers["Content-Type"] == "text/event-stream"

    async def next_snapshot() -> dict:
        for _ in range(50):
            line = await r.content.readline()
            if line.startswith(b"data: "):
                return json.loads(line[6:])
        raise AssertionError("no snapshot")

    first = await next_snapshot()
    assert "No calls right now." in first["html"]
    seeded.live.put_call(LiveCall(id="c1", started_at=time.time(), state="ringing", direction="inbound",
                                  caller="+48601555666", callee="600", agent="201"))
    second = await next_snapshot()
    assert "+48601555666" in second["html"] and "ringing" in second["html"]
    seeded.live.put_call(LiveCall(id="c2", started_at=time.time(), state="queued", direction="inbound",
                                  caller="<img src=x onerror=alert(1)>", callee="600"))
    third = await next_snapshot()
    assert "<img" not in third["html"] and "&lt;img" in third["html"]
    r.close()


# -- agent panel -----------------------------------------------------------------------------------
async def test_agent_panel_actions_and_note(seeded, make_client):
    from firmware.pbx.live import LiveAgent, LiveCall

    seeded.live.put_agent(LiveAgent(extension="201", name="Anna", state="available", since=time.time() - 30))
    old = seeded.add_call(started=time.time() - 86400, number="+48601777888", agent="201")
    seeded.calls.set_note(old, disposition="order", note="wants red shoes")
    seeded.calls.flush()
    seeded.live.put_call(LiveCall(id="live1", started_at=time.time(), state="ringing", direction="inbound",
                                  caller="+48601777888", callee="600", queue="600", agent="201"))
    cl = await _as(make_client, "anna", AGENT_PW)
    r, text = await cl.get("/agent")
    assert r.status == 200 and 'id="popup"' in text and "wants red shoes" in text
    assert "Greet the customer" in text
    await cl.post("/agent/status", {"status": "paused", "reason": "lunch"})
    await cl.post("/agent/queue", {"queue": "600", "login": "1"})
    await cl.post("/agent/call", {"number": "0601 222 333"})
    r, _ = await cl.post("/agent/status", {"status": "sleeping"})
    assert r.status == 400
    r, _ = await cl.post("/agent/queue", {"queue": "999", "login": "1"})
    assert r.status == 400
    assert seeded.control.actions == [("agent_status", "201", "paused", "lunch"), ("agent_queue", "201", "600", True),
                                      ("originate", "201", "0601222333")]
    seeded.live.end_call("live1")
    done = seeded.add_call(started=time.time() - 200, number="+48601777888", agent="201")
    r, text = await cl.get("/agent")
    assert 'id="note-form"' in text
    r, _ = await cl.post("/agent/note", {"call": done, "disposition": "complaint", "note": "broken zip"})
    assert r.status == 303
    c = seeded.calls.get_call(done)
    assert (c.disposition, c.note) == ("complaint", "broken zip")
    other = seeded.add_call(started=time.time() - 200, agent="202")
    r, _ = await cl.post("/agent/note", {"call": other, "disposition": "order"})
    assert r.status == 403


async def test_agent_sees_own_missed_calls_and_control_errors(seeded, make_client):
    seeded.add_call(started=time.time() - 300, number="+48601999000", status="missed", agent="")
    cl = await _as(make_client, "anna", AGENT_PW)
    r, text = await cl.get("/agent")
    assert "+48601999000" in text and 'class="missed"' in text
    seeded.control.fail_with = "extension 201 is not registered"
    r, text = await cl.post("/agent/call", {"number": "+48601999000"}, allow_redirects=True)
    assert "extension 201 is not registered" in text


# -- settings ----------------------------------------------------------------------------------------
async def test_settings_form_errors_beside_fields_and_nothing_stored(seeded, make_client):
    cl = await _as(make_client, "admin", ADMIN_PW)
    r, text = await cl.post("/settings/extension", {"number": "2x1", "name": "Bad", "max_calls": "many",
                                                     "no_answer_timeout": "20"})
    assert r.status == 400 and 'id="e-max_calls"' in text
    r, text = await cl.post("/settings/extension", {"number": "2x1", "name": "Bad", "max_calls": "2",
                                                     "no_answer_timeout": "20"})
    assert r.status == 400 and 'id="e-number"' in text
    assert seeded.config.get("extension", "2x1") is None
    r, text = await cl.post("/settings/queue/600", {"number": "600", "name": "Sales", "members": "201\n299",
                                                    "strategy": "ringall", "agent_timeout": "15"})
    assert r.status == 400 and 'id="e-members"' in text
    assert [m if isinstance(m, str) else m["extension"] for m in seeded.config.get("queue", "600")["members"]] == ["201", "202"]


async def test_settings_create_extension_shows_generated_password_once(seeded, make_client):
    cl = await _as(make_client, "admin", ADMIN_PW)
    r, text = await cl.post("/settings/extension", {"number": "204", "name": "Dora", "max_calls": "2",
                                                     "no_answer_timeout": "20", "permission": ["internal", "local"]})
    assert r.status == 200
    m = re.search(r'<code class="secret">([^<]+)</code>', text)
    assert m and len(m.group(1)) >= 16
    assert '<svg class="qr"' in text and f"password: {m.group(1)}" in text
    assert seeded.config.get("extension", "204")["name"] == "Dora"
    r, text = await cl.get("/settings/extension")
    assert m.group(1) not in text


async def test_settings_user_role_change_applies_to_live_session(seeded, make_client):
    admin = await _as(make_client, "admin", ADMIN_PW)
    manager = await _as(make_client, "maria", MANAGER_PW)
    assert (await manager.get("/live"))[0].status == 200
    r, _ = await admin.post("/settings/user/maria", {"name": "maria", "role": "agent", "extension": "203",
                                                     "password": "********"})
    assert r.status == 303
    assert (await manager.get("/live"))[0].status == 403
    r, _ = await admin.post("/settings/user/admin/delete", {})
    assert seeded.config.get("user", "admin") is not None


async def test_system_settings_validate_nested_fields(seeded, make_client):
    cl = await _as(make_client, "admin", ADMIN_PW)
    r, text = await cl.get("/settings/system")
    form = dict(re.findall(r'<input type="(?:text|number)" value="([^"]*)" id="f-([^"]+)"', text))
    data = {v: k for k, v in form.items()}
    data.update({"language": "bg", "timezone": "Europe/Sofia", "security.ban_attempts": "0",
                 "recording.policy": "always", "auth_algorithms": ["md5"]})
    r, text = await cl.post("/settings/system", data)
    assert r.status == 400 and 'id="e-security.ban_attempts"' in text
    assert seeded.config.get("system")["language"] == "en"
    data["security.ban_attempts"] = "7"
    r, text = await cl.post("/settings/system", data)
    assert r.status == 303, text[:2000]
    sysrec = seeded.config.get("system")
    assert sysrec["language"] == "bg" and sysrec["security"]["ban_attempts"] == 7


async def test_backup_then_restore_with_progress_and_invalid_files(seeded, make_client):
    import asyncio

    cl = await _as(make_client, "admin", ADMIN_PW)
    r, text = await cl.post("/settings/backup", {})
    assert r.status == 202 and "<progress" in text
    job = re.search(r'data-job="([^"]+)"', text).group(1)
    for _ in range(100):
        state = json.loads((await cl.get(f"/jobs/{job}"))[1])
        if state["state"] != "running":
            break
        await asyncio.sleep(0.02)
    assert state["state"] == "done" and state["progress"] == 1.0
    r = await cl.c.get(f"/jobs/{job}/result")
    blob = await r.read()
    assert "attachment" in r.headers["Content-Disposition"] and b"officebox_config" in blob
    seeded.config.create("extension", {"number": "299", "name": "Temp"})
    for bad, status in ((b"not json at all", 400), (b'{"officebox_config": 2, "data": {}}', 400),
                        (b"x" * (9 * 1024 * 1024), 413)):
        r = await cl.c.post("/settings/restore?x=1", data={"_csrf": cl.csrf, "file": io.BytesIO(bad)})
        assert r.status == status, bad[:20]
    assert seeded.config.get("extension", "299") is not None
    r = await cl.c.post("/settings/restore", data={"file": io.BytesIO(blob)})
    assert r.status == 403
    r = await cl.c.post("/settings/restore", data={"_csrf": cl.csrf, "file": io.BytesIO(blob)})
    text = await r.text()
    job = re.search(r'data-job="([^"]+)"', text).group(1)
    for _ in range(100):
        state = json.loads((await cl.get(f"/jobs/{job}"))[1])
        if state["state"] != "running":
            break
        await asyncio.sleep(0.02)
    assert state["state"] == "done"
    assert seeded.config.get("extension", "299") is None


async def test_oversized_upload_is_refused(seeded, make_client):
    cl = await make_client(options=WebOptions(print_setup_code=False, max_upload_bytes=1024))
    await cl.login("admin", ADMIN_PW)
    r = await cl.c.post("/settings/restore", data={"_csrf": cl.csrf, "file": io.BytesIO(b"x" * 5000)})
    assert r.status == 413


async def test_trunks_bans_and_ussd(seeded, make_client):
    cl = await _as(make_client, "admin", ADMIN_PW)
    r, text = await cl.get("/settings/trunks-status")
    assert "gsm1" in text and "Yealink T46U" in text
    r, text = await cl.post("/settings/trunks-status/gsm1/test", {}, allow_redirects=True)
    assert "signal=21" in text
    r, text = await cl.post("/settings/trunks-status/ussd", {"trunk": "gsm1", "code": "*100#"}, allow_redirects=True)
    assert "Balance 12.50" in text
    r, text = await cl.post("/settings/trunks-status/ussd", {"trunk": "gsm1", "code": "*100#; reboot"},
                            allow_redirects=True)
    assert ("modem_ussd", "gsm1", "*100#; reboot") not in seeded.control.actions
    r, text = await cl.post("/settings/trunks-status/sms", {"trunk": "gsm1", "number": "+48 600 100 200",
                                                             "text": "Ваш заказ готов"}, allow_redirects=True)
    assert ("send_sms", "gsm1", "+48600100200", "Ваш заказ готов") in seeded.control.actions
    assert "SMS sent" in text
    r, text = await cl.post("/settings/trunks-status/sms", {"trunk": "gsm1", "number": "call me", "text": "x"},
                            allow_redirects=True)
    assert "at most 1000 characters" in text
    assert not any(a[0] == "send_sms" and a[2] == "call me" for a in seeded.control.actions)
    r, text = await cl.post("/settings/bans/lift", {"ip": "203.0.113.9"}, allow_redirects=True)
    assert "No banned addresses." in text


# -- account and REST API ----------------------------------------------------------------------
async def test_api_token_lifecycle_and_rest_endpoints(seeded, make_client):
    cid = seeded.add_call(started=time.time() - 100, agent="202", recording=_recording(seeded))
    cl = await _as(make_client, "maria", MANAGER_PW)
    r, text = await cl.post("/account/tokens", {"label": "CRM"})
    token = re.search(r'id="new-token">([^<]+)<', text).group(1)
    r, text = await cl.get("/account")
    assert token not in text and "CRM" in text
    api = await make_client()
    h = {"Authorization": f"Bearer {token}"}
    r = await api.c.get("/api/v1/calls", headers=h)
    data = await r.json()
    assert r.status == 200 and data["total"] == 1 and data["calls"][0]["id"] == cid
    assert data["calls"][0]["recording_url"] == f"/api/v1/calls/{cid}/recording"
    r = await api.c.get(f"/api/v1/calls/{cid}", headers=h)
    assert (await r.json())["events"][0]["type"] == "queue_enter"
    r = await api.c.get(f"/api/v1/calls/{cid}/recording", headers={**h, "Range": "bytes=0-43"})
    assert r.status == 206 and (await r.read())[:4] == b"RIFF"
    r = await api.c.get("/api/v1/live", headers=h)
    assert set(await r.json()) >= {"calls", "agents", "queues", "now"}
    r = await api.c.post("/api/v1/originate", json={"number": "+48601000123", "extension": "201"}, headers=h)
    assert r.status == 201 and (await r.json())["call_id"] == "call-+48601000123"
    r = await api.c.post("/api/v1/originate", json={"number": "abc", "extension": "999"}, headers=h)
    assert r.status == 400 and set((await r.json())["fields"]) == {"number", "extension"}
    r = await api.c.post("/api/v1/originate", data="not json", headers=h)
    assert r.status == 400
    r = await api.c.get("/api/v1/calls?from=2026-99-99", headers=h)
    assert r.status == 400 and "from" in (await r.json())["fields"]
    r = await api.c.get("/api/v1/calls?limit=100000", headers=h)
    assert r.status == 400
    tid = seeded.config.api_tokens("maria")[0]["id"]
    await cl.post(f"/account/tokens/{tid}/revoke", {})
    r = await api.c.get("/api/v1/calls", headers=h)
    assert r.status == 401


async def test_api_agent_token_sees_only_own_calls(seeded, make_client):
    seeded.add_call(started=time.time() - 100, agent="202")
    own = seeded.add_call(started=time.time() - 50, agent="201")
    cl = await _as(make_client, "anna", AGENT_PW)
    r, text = await cl.post("/account/tokens", {"label": "mine"})
    h = {"Authorization": "Bearer " + re.search(r'id="new-token">([^<]+)<', text).group(1)}
    api = await make_client()
    data = await (await api.c.get("/api/v1/calls", headers=h)).json()
    assert [c["id"] for c in data["calls"]] == [own]
    assert (await api.c.get("/api/v1/live", headers=h)).status == 403
    r = await api.c.post("/api/v1/originate", json={"number": "+48601000123", "extension": "202"}, headers=h)
    assert r.status == 403


async def test_api_bad_tokens_are_throttled(seeded, make_client):
    api = await make_client()
    statuses = []
    for i in range(21):
        r = await api.c.get("/api/v1/calls", headers={"Authorization": f"Bearer obx_dead{i}_beef"})
        statuses.append(r.status)
    assert statuses[:20] == [401] * 20 and statuses[20] == 429


async def test_password_change_logs_out_other_sessions(seeded, make_client):
    a = await _as(make_client, "maria", MANAGER_PW)
    b = await make_client(same_as=a)
    await b.login("maria", MANAGER_PW)
    r, text = await a.post("/account/password", {"current": "wrong", "password": "x", "confirm": "y"})
    assert r.status == 400 and 'id="e-current"' in text and 'id="e-password"' in text
    new = "a brand new long passphrase"
    r, _ = await a.post("/account/password", {"current": MANAGER_PW, "password": new, "confirm": new})
    assert r.status == 303
    assert (await a.get("/live"))[0].status == 200
    assert (await b.get("/live", allow_redirects=False))[0].status == 303
    c = await make_client(same_as=a)
    await c.login("maria", new)


async def test_language_switch_and_translated_pages(seeded, make_client):
    cl = await _as(make_client, "maria", MANAGER_PW)
    for lang, word in (("pl", "Rejestr połączeń"), ("ru", "Журнал звонков"), ("bg", "Дневник на обажданията"),
                       ("en", "Call log")):
        r, _ = await cl.post("/lang", {"lang": lang, "next": "/reports/calls"})
        assert r.status == 303 and r.headers["Location"] == "/reports/calls"
        r, text = await cl.get("/reports/calls")
        assert f'<html lang="{lang}">' in text and word in text
    assert seeded.config.get("user", "maria")["language"] == "en"
    r, _ = await cl.post("/lang", {"lang": "xx", "next": "https://evil.example/"})
    assert r.headers["Location"] == "/"


async def test_unknown_routes_and_methods(seeded, make_client):
    cl = await _as(make_client, "admin", ADMIN_PW)
    r, text = await cl.get("/no/such/page")
    assert r.status == 404 and "Not found" in text
    r, _ = await cl.get("/settings/nosection")
    assert r.status == 404
    r, _ = await cl.get("/settings/extension/999")
    assert r.status == 404
    r = await cl.c.delete("/live")
    assert r.status == 405


async def test_agent_performance_and_kpi_pages_show_figures_with_formulas(seeded, make_client):
    now = time.time()
    seeded.add_call(started=now - 4000, agent="201", wait=10, talk=120)
    seeded.add_call(started=now - 3000, agent="201", wait=30, talk=3)
    seeded.add_call(started=now - 2000, status="abandoned", agent="", wait=40)
    seeded.add_call(started=now - 1000, direction="outbound", agent="202", number="+48601000077", talk=45)
    cl = await _as(make_client, "maria", MANAGER_PW)
    r, text = await cl.get("/reports/agents?short=5&long=30")
    assert r.status == 200
    row = re.search(r"<tr><td><strong>201</strong>.*?</tr>", text).group(0)
    cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)
    assert cells[0] == "2" and cells[1] == "0" and cells[3] == "0:20"
    assert cells[9] == "1"
    assert "answered calls shorter than 5 s" in text
    r, text = await cl.get("/reports/kpi")
    assert r.status == 200 and text.count("<svg") >= 5
    assert "66.7%" in text and "answered calls ÷ calls offered to the queue" in text
    assert "calls with talk time of at least 60 s" in text
    r, text = await cl.get("/reports/kpi?target=-3&from=2026-01-01&to=2026-01-01")
    assert r.status == 400 and 'id="e-target"' in text
    await cl.post("/lang", {"lang": "ru"})
    r, text = await cl.get("/reports/kpi")
    assert "66,7" in text and "Доля принятых" in text


async def test_prompt_upload_checks_the_wav_and_tts_preview(seeded, make_client):
    import io
    import wave

    cl = await _as(make_client, "admin", ADMIN_PW)
    r = await cl.c.post("/settings/prompts", data={"_csrf": cl.csrf, "name": "../../welcome", "file": io.BytesIO(write_wav_bytes(0.5))})
    text = await r.text()
    assert r.status == 200 and "welcome.wav" in text
    assert (seeded.config.prompts_dir / "welcome.wav").is_file()
    assert not (seeded.data_dir.parent / "welcome.wav").exists()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(b"\0" * 400)
    r = await cl.c.post("/settings/prompts", data={"_csrf": cl.csrf, "name": "music", "file": io.BytesIO(buf.getvalue())})
    assert r.status == 400 and 'id="e-file"' in await r.text()
    r = await cl.c.post("/settings/prompts", data={"_csrf": cl.csrf, "name": "x", "file": io.BytesIO(b"MZ\x90\x00 not audio")})
    assert r.status == 400
    assert sorted(p.name for p in seeded.config.prompts_dir.iterdir()) == ["welcome.wav"]
    r = await cl.c.get("/settings/prompts/welcome.wav")
    assert r.status == 200 and (await r.read())[:4] == b"RIFF"
    assert (await cl.c.get("/settings/prompts/..%2Fconfig.json")).status == 404
    r, _ = await cl.post("/settings/prompts/preview", {"text": "Dzień dobry", "language": "pl"})
    assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
    assert ("prompt_preview", "Dzień dobry", "pl") in seeded.control.actions


async def test_manager_listens_in_to_a_running_call(seeded, make_client):
    from firmware.pbx.live import LiveCall

    seeded.live.put_call(LiveCall(id="talk1", started_at=time.time() - 30, state="talking", direction="inbound",
                                  caller="+48601000555", callee="600", agent="201", answered_at=time.time() - 20))
    cl = await _as(make_client, "maria", MANAGER_PW)
    r, text = await cl.get("/live")
    assert 'value="whisper"' in text
    r, _ = await cl.post("/live/listen", {"call": "talk1", "mode": "whisper"})
    assert r.status == 303 and seeded.control.actions == [("listen", "talk1", "203", "whisper")]
    r, _ = await cl.post("/live/listen", {"call": "talk1", "mode": "record"})
    assert r.status == 400
    r, _ = await cl.post("/live/listen", {"call": "gone", "mode": "listen"})
    assert r.status == 400


async def test_actions_the_running_box_does_not_offer_yet_are_reported_not_crashed(seeded, make_client):
    class Partial:
        def bans(self):
            return []

    seeded.api.control = Partial()
    admin = await _as(make_client, "admin", ADMIN_PW)
    r, text = await admin.get("/settings/trunks-status")
    assert r.status == 200 and "does not report this yet" in text
    assert (await admin.get("/settings"))[0].status == 200
    r, text = await admin.post("/settings/trunks-status/gsm1/test", {}, allow_redirects=True)
    assert r.status == 200 and "does not report this yet" in text
    agent = await _as(make_client, "anna", AGENT_PW)
    r, text = await agent.post("/agent/call", {"number": "+48601000001"}, allow_redirects=True)
    assert r.status == 200 and "does not report this yet" in text
    r, text = await agent.post("/account/tokens", {"label": "x"})
    token = re.search(r'id="new-token">([^<]+)<', text).group(1)
    api = await make_client()
    r = await api.c.post("/api/v1/originate", json={"number": "+48601000001"},
                         headers={"Authorization": f"Bearer {token}"})
    assert r.status == 409 and "does not report this yet" in (await r.json())["error"]


async def _finish_job(cl: Client, text: str) -> tuple[dict, Any]:
    import asyncio

    job = re.search(r'data-job="([^"]+)"', text).group(1)
    for _ in range(200):
        state = json.loads((await cl.get(f"/jobs/{job}"))[1])
        if state["state"] != "running":
            break
        await asyncio.sleep(0.02)
    r = await cl.c.get(f"/jobs/{job}/result")
    return state, r


async def test_provisioning_import_checks_lines_then_applies_with_progress(seeded, make_client):
    cl = await _as(make_client, "admin", ADMIN_PW)
    bad = b'[[extension]]\nnumber = "205"\nname = "Eve"\n\n[[extension]]\nnumber = "2x6"\nmax_calls = 900\n'
    r = await cl.c.post("/settings/import", data={"_csrf": cl.csrf, "file": io.BytesIO(bad)})
    assert r.status == 202
    state, r = await _finish_job(cl, await r.text())
    text = await r.text()
    assert state["state"] == "failed" and r.status == 400 and "6: " in text
    assert seeded.config.get("extension", "205") is None
    good = "".join(f'[[extension]]\nnumber = "{n}"\nname = "{m}"\n\n' for n, m in (
        ("201", "Anna"), ("202", "Boris"), ("203", "Cvetan"), ("205", "Eve"))).encode()
    r = await cl.c.post("/settings/import", data={"_csrf": cl.csrf, "file": io.BytesIO(good)})
    state, r = await _finish_job(cl, await r.text())
    text = await r.text()
    assert state["state"] == "done" and r.status == 200
    assert len(re.findall(r'<code class="secret">', text)) == 1
    assert [e["number"] for e in seeded.config.list("extension")] == ["201", "202", "203", "205"]
    assert seeded.config.get("user", "admin") is not None
    assert not list(seeded.data_dir.glob(".import-*"))
