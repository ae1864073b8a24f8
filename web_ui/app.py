"""aiohttp application factory."""
from __future__ import annotations

import html
from typing import Any

from aiohttp import web

SERVICE = web.AppKey("service", Any)


async def status_page(request: web.Request) -> web.Response:
    st = request.app[SERVICE].status()
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in st.items())
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>Office box - status</title></head>
<body><h1>Office box</h1><table>{rows}</table></body></html>"""
    return web.Response(text=body, content_type="text/html")


async def status_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE].status())


def create_app(service: Any) -> web.Application:
    app = web.Application()
    app[SERVICE] = service
    app.add_routes([web.get("/", status_page), web.get("/status.json", status_json)])
    return app
