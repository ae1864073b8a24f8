"""aiohttp application factory of the box's web page.

    app = create_app(api)          # api: firmware.api.BoxAPI of the running box

Routes are grouped by view module (web_ui/views/*); every handler is marked with the roles
that may call it (web_ui.keys.access), and the middlewares enforce login, roles and CSRF.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from aiohttp import web

from firmware.api import BoxAPI
from web_ui.box import Box
from web_ui.jobs import Jobs
from web_ui.keys import API, BOX, CLOCK, JOBS, OPTIONS, SESSIONS, STREAMS, THROTTLE, WebOptions
from web_ui.middlewares import context_middleware, error_middleware, on_prepare
from web_ui.sessions import LoginThrottle, SessionStore

log = logging.getLogger("web_ui")

STATIC = Path(__file__).resolve().parent / "static"


def create_app(api: BoxAPI, *, options: WebOptions | None = None,
               clock: Callable[[], float] = time.time) -> web.Application:
    """The web application for one box.

    `api` gives the stores, the live state and the box's actions; `options` tunes limits;
    `clock` (unix seconds) is injected so tests can move time (sessions, lock-outs).
    At start-up, when no admin user exists yet, a one-time setup code is written to the data
    directory and printed on the console as ``setup code: XXXX-XXXX``.
    """
    from web_ui.views import agent, api as rest, auth, live, reports, settings

    opts = options or WebOptions()
    app = web.Application(middlewares=[error_middleware, context_middleware],
                          client_max_size=opts.max_upload_bytes)
    app[API] = api
    app[BOX] = Box(api, clock)
    app[OPTIONS] = opts
    app[CLOCK] = clock
    app[SESSIONS] = SessionStore(clock)
    app[THROTTLE] = LoginThrottle(clock)
    app[JOBS] = Jobs(clock)
    app[STREAMS] = set()
    for module in (auth, live, reports, agent, settings, rest):
        app.add_routes(module.routes)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(on_prepare)
    app.on_startup.append(_announce_setup_code)
    app.on_shutdown.append(_close_streams)
    return app


async def _announce_setup_code(app: web.Application) -> None:
    code = app[BOX].setup_code()
    if code and app[OPTIONS].print_setup_code:
        print(f"setup code: {code}", flush=True)
        log.warning("no admin user yet: open the web page and enter setup code %s", code)


async def _close_streams(app: web.Application) -> None:
    for stream in list(app[STREAMS]):
        stream.close()
