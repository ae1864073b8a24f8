"""The web page of a real running box in headless Chromium, with real phones (pjsua2): a call
appears on the live board and disappears, its recording plays, an agent's click-to-call rings
the agent's desk phone and then the colleague, and the language switch works."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.conftest import office, pj_phones  # noqa: F401  (fixtures)
from tests.integration.test_pbx_calls import tone_wav

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required"]
ART = Path(__file__).resolve().parent.parent / "artifacts" / "web"
ADMIN_PW = "Admin-pass-for-e2e-2026"
AGENT_PW = "Agent-pass-for-e2e-2026"

USERS = f"""
[[user]]
name = "admin"
password = "{ADMIN_PW}"
role = "admin"

[[user]]
name = "boris"
password = "{AGENT_PW}"
role = "agent"
extension = "202"
"""

if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed", allow_module_level=True)


def login(page, url: str, name: str, password: str) -> None:
    page.goto(url + "/login")
    page.fill("#f-name", name)
    page.fill("#f-password", password)
    with page.expect_navigation():
        page.click("button.primary")


@pytest.mark.parametrize("office", [USERS], indirect=True)
def test_live_board_recording_click_to_call_and_language_on_a_real_box(office, pj_phones, tmp_path):
    from playwright.sync_api import sync_playwright

    ART.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{office.box.web_port}"
    a = pj_phones("201")
    b = pj_phones("202")
    c = pj_phones("203", auto_answer=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        login(page, url, "admin", ADMIN_PW)
        page.goto(url + "/live")
        # a call between two desk phones appears on the live board...
        call = a.cmd("dial", uri=office.uri("203"), wait_confirmed=10)
        a.cmd("play", call=call["call"], wav=tone_wav(tmp_path, 600))
        page.wait_for_selector("#live .call-talking", timeout=10000)
        assert "201" in page.locator("#live").inner_text()
        page.screenshot(path=str(ART / "box-live.png"))
        c.wait_event("incoming", timeout=5)
        a.cmd("sleep", seconds=3)
        a.cmd("hangup", call=call["call"])
        # ...and disappears when it ends
        page.wait_for_selector("#live .call-talking", state="detached", timeout=10000)
        # its recording plays in the page
        time.sleep(1)
        with office.db() as db:
            cid = db.execute("SELECT id FROM calls WHERE caller_number='201' AND recording_state='complete'"
                             ).fetchone()["id"]
        page.goto(url + f"/calls/{cid}")
        audio = page.locator("audio")
        audio.evaluate("a => { a.muted = true; return a.play(); }")
        deadline = time.monotonic() + 10
        while not audio.evaluate("a => a.currentTime > 0.3") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert audio.evaluate("a => a.duration") > 2.5
        assert audio.evaluate("a => a.error") is None
        # language switch
        page.goto(url + "/reports/calls")
        with page.expect_navigation():
            page.click(".langswitch button[value='pl']")
        assert "Rejestr połączeń" in page.locator("h1").inner_text()
        with page.expect_navigation():
            page.click(".langswitch button[value='en']")
        page.close()
        # an agent clicks to call: the box rings the agent's own phone first, then the number
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        login(page, url, "boris", AGENT_PW)
        page.goto(url + "/agent")
        page.fill("#f-number", "203")
        with page.expect_navigation():
            page.click("form[action='/agent/call'] button.primary")
        inc = b.wait_event("incoming", timeout=10)
        b.cmd("answer", call=inc["call"])
        inc3 = c.wait_event("incoming", timeout=10)
        assert c.cmd("wait_state", call=inc3["call"], states=["CONFIRMED"], timeout=10)["state"] == "CONFIRMED"
        # they talk for a moment (a hang-up racing the box's handling of the answer in the
        # same few milliseconds is a different story)
        b.cmd("sleep", seconds=1)
        b.cmd("hangup", call=inc["call"])
        page.close()
        browser.close()
    rec = office.wait_call_record(lambda r: r["from_extension"] == "202")
    assert rec["to_extension"] == "203" and rec["answered_by"] == "203"
