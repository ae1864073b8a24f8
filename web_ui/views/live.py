"""The live board: calls in progress, callers waiting per queue, ringing calls, agents' states.

The page is rendered complete on the server (usable without JavaScript) and then kept up to
date over Server-Sent Events (GET /live/stream): one `snapshot` event per change of the
box's LiveState (coalesced), and a comment line as a heartbeat.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from aiohttp import web

from web_ui.html import Markup, fmt, join
from web_ui.i18n import Translator
from web_ui.keys import API, BOX, CLOCK, MANAGERS, OPTIONS, STREAMS, access, ctx
from web_ui.views.common import csrf_field, page, table

routes = web.RouteTableDef()

CALL_STATES = ("routing", "ivr", "queued", "ringing", "talking", "held", "ended")
AGENT_STATES = ("offline", "available", "ringing", "in_call", "wrapup", "paused", "dnd")


def board_data(request: web.Request) -> dict[str, Any]:
    """The LiveState snapshot plus the server's clock (the page counts time from it)."""
    snap = request.app[API].live.snapshot()
    snap["now"] = request.app[CLOCK]()
    return snap


def _since(t: Translator, now: float, ts: float | None) -> Markup:
    if not ts:
        return Markup("–")
    return fmt('<span class="timer" data-since="{}">{}</span>', ts, t.clock(now - ts))


def render_board(request: web.Request, snap: dict[str, Any]) -> Markup:
    t = ctx(request).t
    now = snap["now"]
    calls = snap["calls"]
    waiting = sum(len(q["waiting"]) for q in snap["queues"])
    ringing = sum(1 for c in calls if c["state"] == "ringing")
    talking = sum(1 for c in calls if c["state"] in ("talking", "held"))
    free = sum(1 for a in snap["agents"] if a["state"] == "available")
    tiles = join(fmt('<div class="tile {}"><span class="num" id="{}">{}</span><span class="lbl">{}</span></div>',
                     cls, tid, n, t(key))
                 for cls, tid, n, key in (("talk", "n-talking", talking, "live.talking"),
                                          ("wait", "n-waiting", waiting, "live.waiting"),
                                          ("ring", "n-ringing", ringing, "live.ringing"),
                                          ("free", "n-free", free, "live.available")))
    wrows = []
    for q in snap["queues"]:
        for pos, (call_id, caller, since) in enumerate(q["waiting"], 1):
            wrows.append(fmt('<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>',
                             q["name"] or q["number"], caller, pos, _since(t, now, since)))
    user = ctx(request).user
    can_listen = bool(user and user.extension)

    def listen(c: dict[str, Any]) -> Markup:
        if not can_listen or c["state"] not in ("talking", "held"):
            return Markup("")
        return fmt('<form method="post" action="/live/listen" class="inline">{}<input type="hidden" name="call" value="{}">'
                   '<button type="submit" name="mode" value="listen" class="small">{}</button> '
                   '<button type="submit" name="mode" value="whisper" class="small">{}</button> '
                   '<button type="submit" name="mode" value="barge" class="small">{}</button></form>',
                   csrf_field(request), c["id"], t("live.listen"), t("live.whisper"), t("live.barge"))

    crows = [fmt('<tr data-call="{}"><td>{}</td><td>{}</td><td>{}</td><td><span class="badge call-{}">{}</span></td>'
                 '<td>{}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>',
                 c["id"], t("dir." + c["direction"]), c["caller_name"] or c["caller"], c["callee"], c["state"],
                 t("call." + c["state"]), c["agent"] or "–", c["queue"] or "–",
                 _since(t, now, c["answered_at"] or c["started_at"]), listen(c))
             for c in calls]
    arows = [fmt('<tr><td>{}</td><td>{}</td><td><span class="badge agent-{}">{}</span>{}</td><td class="num">{}</td><td>{}</td></tr>',
                 a["extension"], a["name"], a["state"], t("agent." + a["state"]),
                 fmt(' <span class="muted">{}</span>', a["reason"]) if a["reason"] else "",
                 _since(t, now, a["since"]), ", ".join(a["queues"]) or "–")
             for a in snap["agents"]]
    return fmt('<div class="tiles">{}</div><div class="grid2">'
               '<section class="card"><h2>{}</h2><div id="waiting">{}</div></section>'
               '<section class="card"><h2>{}</h2><div id="agents">{}</div></section></div>'
               '<section class="card"><h2>{}</h2><div id="calls">{}</div></section>',
               tiles, t("live.waiting_title"),
               table([t("col.queue"), t("col.caller"), t("col.position"), t("col.waiting")], wrows,
                     empty=t("live.none_waiting")),
               t("live.agents_title"),
               table([t("col.extension"), t("col.name"), t("col.state"), t("col.in_state"), t("col.queues")], arows,
                     empty=t("live.none_agents")),
               t("live.calls_title"),
               table([t("col.direction"), t("col.caller"), t("col.callee"), t("col.state"), t("col.agent"),
                      t("col.queue"), t("col.duration"), ""], crows, empty=t("live.none_calls")))


@routes.get("/live")
@access(*MANAGERS)
async def live_page(request: web.Request) -> web.Response:
    t = ctx(request).t
    snap = board_data(request)
    body = fmt('<p class="status muted" id="live-status" aria-live="polite" data-ok="{}" data-lost="{}"></p>'
               '<div id="live" data-stream="/live/stream" data-now="{}">{}</div>',
               t("live.connected"), t("live.reconnecting"), snap["now"], render_board(request, snap))
    return page(request, t("live.title"), body, body_class="live")


@routes.get("/live/state")
@access(*MANAGERS)
async def live_state(request: web.Request) -> web.Response:
    return web.json_response(board_data(request))


async def event_stream(request: web.Request, make: Callable[[], dict[str, Any]]) -> web.StreamResponse:
    """Server-Sent Events: a `snapshot` now and after every LiveState change (at most about
    4 per second), heartbeats in between; ends when the client goes or the app stops."""
    live = request.app[API].live
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    changed = asyncio.Event()
    unsubscribe = live.subscribe(lambda version: changed.set())
    closing = asyncio.Event()

    class _Handle:
        def close(self) -> None:
            closing.set()
            changed.set()

    handle = _Handle()
    request.app[STREAMS].add(handle)
    heartbeat = request.app[OPTIONS].sse_heartbeat_s
    try:
        await resp.write(b"retry: 2000\n\n")
        while not closing.is_set():
            changed.clear()
            data = json.dumps(make(), separators=(",", ":"))
            await resp.write(f"event: snapshot\ndata: {data}\n\n".encode())
            while not changed.is_set():
                try:
                    await asyncio.wait_for(changed.wait(), heartbeat)
                except asyncio.TimeoutError:
                    await resp.write(b": keep-alive\n\n")
            await asyncio.sleep(0.25)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
        request.app[STREAMS].discard(handle)
    return resp


@routes.get("/live/stream")
@access(*MANAGERS)
async def live_stream(request: web.Request) -> web.StreamResponse:
    def make() -> dict[str, Any]:
        snap = board_data(request)
        return {"now": snap["now"], "version": snap["version"], "html": render_board(request, snap)}

    return await event_stream(request, make)


@routes.post("/live/listen")
@access(*MANAGERS)
async def listen_in(request: web.Request) -> web.Response:
    """Ring the manager's phone and join a running call: listen, whisper to the agent, or barge in."""
    from firmware.api import ControlError
    from web_ui.views.common import flash

    c = ctx(request)
    data = await request.post()
    call_id = str(data.get("call", ""))[:80]
    mode = str(data.get("mode", ""))
    if mode not in ("listen", "whisper", "barge") or call_id not in request.app[API].live.calls:
        raise web.HTTPBadRequest()
    if not c.user.extension:
        flash(request, "missed.no_extension", "error")
    else:
        try:
            await request.app[BOX].action("listen")(call_id, c.user.extension, mode)
            flash(request, "live.listening")
        except ControlError as e:
            c.session.flash.append(("error", str(e)))
    raise web.HTTPSeeOther("/live")
