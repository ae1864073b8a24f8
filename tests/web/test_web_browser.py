"""The web page in a real browser: headless Chromium (Debian's) driven by Playwright.

One browser for the module; each test gets its own page. Screenshots go to
tests/artifacts/web/ (looked at by a person: the page must look like a product)."""
from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from firmware.pbx.live import LiveAgent, LiveCall, LiveQueue
from tests.web.conftest import ADMIN_PW, AGENT_PW, MANAGER_PW, Box, write_wav_bytes
from web_ui.app import create_app
from web_ui.keys import WebOptions

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required"]
ART = Path(__file__).resolve().parent.parent / "artifacts" / "web"
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}

if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed", allow_module_level=True)


async def start_server(box: Box) -> tuple[web.AppRunner, str]:
    app = create_app(box.api, options=WebOptions(print_setup_code=False, sse_heartbeat_s=2))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def fill_calls(box: Box, days: int = 14, seed: int = 6) -> None:
    """A fortnight of a small shop's calls: business hours, three agents, ~15 % missed."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    rng = random.Random(seed)
    now = time.time()
    midnight = datetime.now(ZoneInfo("Europe/Warsaw")).replace(hour=0, minute=0, second=0, microsecond=0)
    agents = ("201", "202", "203")
    for d in range(days):
        for _ in range(rng.randint(18, 34)):
            hour = rng.choice((9, 9, 10, 10, 10, 11, 11, 12, 13, 14, 14, 15, 16, 17))
            started = (midnight - timedelta(days=d)).timestamp() + hour * 3600 + rng.randint(0, 3599)
            if started > now - 60:
                continue
            r = rng.random()
            number = f"+48601{rng.randint(100000, 100300)}"
            if r < 0.12:
                box.add_call(started=started, status="missed", agent="", wait=rng.uniform(15, 90), number=number)
            elif r < 0.16:
                box.add_call(started=started, status="abandoned", agent="", wait=rng.uniform(2, 40), number=number)
            elif r < 0.30:
                box.add_call(started=started, direction="outbound", agent=rng.choice(agents), wait=rng.uniform(3, 12),
                             talk=rng.uniform(10, 300), number=number)
            else:
                box.add_call(started=started, agent=rng.choice(agents), wait=rng.uniform(2, 45),
                             talk=rng.uniform(20, 420), number=number)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    from playwright.async_api import async_playwright

    ART.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        await b.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(tmp_path_factory):
    """A seeded box with a fortnight of calls and one real recording, served over HTTP."""
    box = Box(tmp_path_factory.mktemp("shop") / "data")
    box.seed_users()
    fill_calls(box)
    rec = box.data_dir / "recordings" / "2026" / "05" / "04" / "call-demo.wav"
    rec.parent.mkdir(parents=True)
    rec.write_bytes(write_wav_bytes(6.0))
    box.recorded = box.add_call(started=time.time() - 1800, agent="201", number="+48601234567", wait=6, talk=6,
                                recording="recordings/2026/05/04/call-demo.wav")
    runner, url = await start_server(box)
    box.url = url
    yield box
    await runner.cleanup()
    box.close()


async def login(page, url: str, name: str, password: str) -> None:
    await page.goto(url + "/login")
    await page.fill("#f-name", name)
    await page.fill("#f-password", password)
    async with page.expect_navigation():
        await page.click("button.primary")


async def shot(page, name: str, full: bool = True) -> None:
    await page.screenshot(path=str(ART / f"{name}.png"), full_page=full)


async def wait_until(probe, timeout: float = 10.0) -> None:
    """Poll an async probe (the page's CSP forbids string-eval waits) at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def no_horizontal_scroll(page) -> bool:
    return await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


async def test_setup_wizard_from_first_start(browser, tmp_path):
    box = Box(tmp_path / "fresh")
    runner, url = await start_server(box)
    try:
        page = await browser.new_page(viewport=LAPTOP)
        await page.goto(url + "/")
        assert page.url.endswith("/setup")
        await shot(page, "setup")
        code = (box.data_dir / "setup-code").read_text().strip()
        await page.fill("#f-code", "WRNG-CODE")
        await page.fill("#f-name", "owner")
        await page.fill("#f-password", "a long enough passphrase")
        await page.fill("#f-confirm", "a long enough passphrase")
        await page.select_option("#f-language", "bg")
        await page.select_option("#f-timezone", "Europe/Sofia")
        async with page.expect_navigation():
            await page.click("button.primary")
        assert await page.locator("#e-code").is_visible()
        await page.fill("#f-code", code)
        await page.fill("#f-password", "a long enough passphrase")
        await page.fill("#f-confirm", "a long enough passphrase")
        async with page.expect_navigation():
            await page.click("button.primary")
        assert page.url.endswith("/setup/extensions")
        assert "Вътрешни номера" in await page.content()
        await page.fill("#f-number0", "201")
        await page.fill("#f-name0", "Anna")
        await page.fill("#f-number1", "202")
        await page.fill("#f-name1", "Boris")
        async with page.expect_navigation():
            await page.click("button.primary")
        secrets = await page.locator("code.secret").all_text_contents()
        assert len(secrets) == 2 and all(len(s) >= 16 for s in secrets)
        await shot(page, "setup-extensions")
        async with page.expect_navigation():
            await page.click("a.button[href='/setup/trunk']")
        await page.select_option("#f-type", "gsm")
        await page.select_option("#f-model", "ec25")
        await page.fill("#f-device", "/dev/ttyUSB2")
        async with page.expect_navigation():
            await page.click("button.primary")
        assert page.url.endswith("/live")
        assert box.config.get("trunk", "gsm1")["model"] == "ec25"
        assert [e["number"] for e in box.config.list("extension")] == ["201", "202"]
        await page.close()
    finally:
        await runner.cleanup()
        box.close()


async def test_reports_with_data_and_recording_playback(browser, shop):
    page = await browser.new_page(viewport=LAPTOP)
    await login(page, shop.url, "maria", MANAGER_PW)
    await page.goto(shop.url + "/reports/calls")
    rows = await page.locator("table.calls tbody tr").count()
    assert rows == 50
    assert await page.locator("tr.missed").count() > 0
    await shot(page, "calls", full=False)
    await page.goto(shop.url + f"/calls/{shop.recorded}")
    audio = page.locator("audio")
    await audio.evaluate("a => { a.muted = true; return a.play(); }")
    await wait_until(lambda: audio.evaluate("a => a.currentTime > 0.2"))
    await audio.evaluate("a => { a.pause(); a.currentTime = 4.5; }")
    await wait_until(lambda: audio.evaluate("a => a.readyState >= 2 && !a.seeking && Math.abs(a.currentTime - 4.5) < 0.1"))
    assert await audio.evaluate("a => a.duration") == pytest.approx(6.0, abs=0.05)
    assert await audio.evaluate("a => a.error") is None
    await page.goto(shop.url + "/reports/kpi")
    assert await page.locator("svg.chart").count() >= 5
    await shot(page, "kpi")
    await page.evaluate("window.scrollTo(0, 250)")
    await shot(page, "kpi-top", full=False)
    await page.goto(shop.url + "/reports/agents")
    await shot(page, "agents", full=False)
    await page.goto(shop.url + "/reports/missed")
    await shot(page, "missed", full=False)
    await page.close()


async def test_live_board_shows_a_call_appear_and_disappear(browser, shop):
    page = await browser.new_page(viewport=LAPTOP)
    await login(page, shop.url, "maria", MANAGER_PW)
    assert page.url.endswith("/live")
    now = time.time()
    for ext, name, state in (("201", "Anna", "available"), ("202", "Boris", "in_call"), ("203", "Cvetan", "paused")):
        shop.live.put_agent(LiveAgent(extension=ext, name=name, state=state, since=now - 125, queues=("600",),
                                      reason="lunch" if state == "paused" else ""))
    shop.live.put_queue(LiveQueue(number="600", name="Sales", waiting=(("w1", "+48601700800", now - 42),)))
    await page.wait_for_selector("text=+48601700800")
    shop.live.put_call(LiveCall(id="live-1", started_at=now - 5, state="ringing", direction="inbound",
                                caller="+48601555666", callee="600", queue="600", agent="201"))
    await page.wait_for_selector("#live >> text=+48601555666", timeout=5000)
    shop.live.update_call("live-1", time.time(), state="talking", answered_at=time.time())
    await page.wait_for_selector("#live .call-talking", timeout=5000)
    await asyncio.sleep(1.1)
    await shot(page, "live")
    shop.live.end_call("live-1")
    await page.wait_for_selector("#live >> text=+48601555666", state="detached", timeout=5000)
    await page.set_viewport_size(PHONE)
    await page.reload()
    await shot(page, "live-phone")
    assert await no_horizontal_scroll(page)
    await page.close()


async def test_agent_panel_popup_and_click_to_call(browser, shop):
    page = await browser.new_page(viewport=LAPTOP)
    await login(page, shop.url, "anna", AGENT_PW)
    assert page.url.endswith("/agent")
    shop.live.put_call(LiveCall(id="pop-1", started_at=time.time(), state="ringing", direction="inbound",
                                caller="+48601234567", callee="600", queue="600", agent="201"))
    await page.wait_for_selector("#popup", timeout=5000)
    assert "Greet the customer" in await page.content()
    await shot(page, "agent")
    await shot(page, "agent-top", full=False)
    shop.live.end_call("pop-1")
    await page.wait_for_selector("#popup", state="detached", timeout=5000)
    await page.fill("#f-number", "+48 601 222 333")
    async with page.expect_navigation():
        await page.click("form[action='/agent/call'] button.primary")
    assert ("originate", "201", "+48601222333") in shop.control.actions
    await page.close()


async def test_language_switch_and_phone_layout(browser, shop):
    page = await browser.new_page(viewport=LAPTOP)
    await login(page, shop.url, "admin", ADMIN_PW)
    await page.goto(shop.url + "/reports/calls")
    async with page.expect_navigation():
        await page.click(".langswitch button[value='pl']")
    assert "Rejestr połączeń" in await page.locator("h1").inner_text()
    async with page.expect_navigation():
        await page.click(".langswitch button[value='ru']")
    assert await page.locator("h1").inner_text() == "Журнал звонков"
    await page.goto(shop.url + "/settings")
    await shot(page, "settings-ru", full=False)
    await page.goto(shop.url + "/settings/queue/600")
    await shot(page, "settings-queue-ru")
    async with page.expect_navigation():
        await page.click(".langswitch button[value='en']")
    await page.set_viewport_size(PHONE)
    for path in ("/reports/kpi", "/reports/calls", "/settings/extension"):
        await page.goto(shop.url + path)
        assert await no_horizontal_scroll(page), path
    await page.goto(shop.url + "/reports/kpi")
    await shot(page, "kpi-phone", full=False)
    await page.close()
