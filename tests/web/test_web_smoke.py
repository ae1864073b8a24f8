"""First end-to-end checks of the web app with the real stores."""
from __future__ import annotations

import re

from tests.web.conftest import ADMIN_PW, AGENT_PW, MANAGER_PW


async def test_pages_render_for_each_role(seeded, make_client):
    seeded.add_call(started=seeded.calls.clock() - 3600)
    seeded.add_call(started=seeded.calls.clock() - 1800, status="missed", agent="")
    cl = await make_client()
    await cl.login("admin", ADMIN_PW)
    for path in ("/live", "/reports/calls", "/reports/missed", "/settings", "/settings/system",
                 "/settings/extension", "/settings/user", "/settings/queue", "/settings/ivr",
                 "/settings/timecondition", "/settings/trunk", "/settings/route.inbound",
                 "/settings/route.outbound", "/settings/notification", "/settings/bans",
                 "/settings/backup", "/settings/trunks-status", "/settings/extension/201", "/account"):
        r, text = await cl.get(path)
        assert r.status == 200, (path, r.status, text[:3000])


def test_readme_screenshots_are_small_pngs_that_the_readme_section_names():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    section = (root / "web_ui" / "README-section.md").read_text()
    names = re.findall(r"\(web_ui/static/screenshots/([\w-]+\.png)\)", section)
    assert len(names) >= 6
    for name in names:
        data = (root / "web_ui" / "static" / "screenshots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 400_000, name
