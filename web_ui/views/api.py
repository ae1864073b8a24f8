"""REST API (JSON) for CRM integration: call records, recordings, live state, click-to-call.

Authentication: `Authorization: Bearer <token>` with a per-user API token (created on the
account page, shown once, stored hashed), or the browser session plus the `X-CSRF-Token`
header for state-changing requests. The token's user role decides what it may read:
managers/admins everything, agents only their own calls.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from firmware.api import ControlError
from web_ui.keys import API, BOX, CLOCK, EVERYONE, MANAGERS, access, ctx
from web_ui.views.agent import clean_number
from web_ui.views.common import Form
from web_ui.views.recordings import may_see_call, serve_recording
from web_ui.views.reports import PAGE_SIZE, call_log, parse_filter

routes = web.RouteTableDef()

CALL_FIELDS = ("id", "started_at", "answered_at", "ended_at", "direction", "caller_number", "caller_name",
               "callee_number", "external_number", "from_extension", "to_extension", "answered_by", "queue",
               "status", "wait_s", "ring_s", "talk_s", "hold_s", "hangup_side", "trunk", "disposition", "note",
               "tags", "recording_state")


def _bad(errors: dict[str, str]) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=web.json_response({"error": "invalid request", "fields": errors}).text,
                              content_type="application/json")


def _public(call: dict[str, Any]) -> dict[str, Any]:
    out = {k: call.get(k) for k in CALL_FIELDS}
    out["recording_url"] = (f"/api/v1/calls/{call['id']}/recording"
                            if call.get("recording_path") and call.get("recording_state") in ("complete", "interrupted")
                            else None)
    return out


@routes.get("/api/v1/calls")
@access(*EVERYONE)
async def list_calls(request: web.Request) -> web.Response:
    """Call records, newest first. Query: from, to (YYYY-MM-DD), number, agent, queue,
    direction, status, limit (<= 500), offset."""
    c = ctx(request)
    form = Form()
    f = parse_filter(request, c.t, form)
    if c.user.role not in MANAGERS:
        if not c.user.extension:
            raise web.HTTPForbidden(text='{"error": "forbidden"}', content_type="application/json")
        f.agent = c.user.extension
    try:
        limit = int(request.query.get("limit", PAGE_SIZE))
        offset = int(request.query.get("offset", 0))
        if not (1 <= limit <= 500 and 0 <= offset <= 10_000_000):
            raise ValueError
    except ValueError:
        form.error("limit", "1..500")
    if not form.ok:
        raise _bad({k: (c.t(v) if c.t.has(v) else v) for k, v in form.errors.items()})
    rows, total = await call_log(request, f, limit, offset)
    return web.json_response({"total": total, "limit": limit, "offset": offset,
                              "calls": [_public(r) for r in rows]})


def _call_or_404(request: web.Request) -> Any:
    call = request.app[BOX].calls.get_call(request.match_info["id"][:80])
    if call is None:
        raise web.HTTPNotFound(text='{"error": "no such call"}', content_type="application/json")
    if not may_see_call(ctx(request).user, call):
        raise web.HTTPForbidden(text='{"error": "forbidden"}', content_type="application/json")
    return call


@routes.get("/api/v1/calls/{id}")
@access(*EVERYONE)
async def get_call(request: web.Request) -> web.Response:
    call = _call_or_404(request)
    d = call.as_dict()
    out = _public(d)
    out["events"] = [{k: e[k] for k in ("ts", "type", "agent", "queue", "result", "seconds")} for e in d["events"]]
    out["legs"] = d["legs"]
    return web.json_response(out)


@routes.get("/api/v1/calls/{id}/recording")
@access(*EVERYONE)
async def get_recording(request: web.Request) -> web.StreamResponse:
    return await serve_recording(request, request.match_info["id"], request.query.get("download") == "1")


@routes.get("/api/v1/missed")
@access(*MANAGERS)
async def missed(request: web.Request) -> web.Response:
    """Customers missed and not yet reached (oldest first)."""
    now = request.app[CLOCK]()
    box = request.app[BOX]
    entries = await box.run(box.reports.missed_not_returned, now=now, limit=5000)
    return web.json_response({"missed": [
        {"number": e.number, "first_missed_at": e.first_missed_at, "last_missed_at": e.last_missed_at,
         "count": e.count, "queue": e.queue, "waiting_s": round(e.waiting_s, 1), "last_call_id": e.last_call_id}
        for e in entries]})


@routes.get("/api/v1/live")
@access(*MANAGERS)
async def live(request: web.Request) -> web.Response:
    snap = request.app[API].live.snapshot()
    snap["now"] = request.app[CLOCK]()
    return web.json_response(snap)


@routes.post("/api/v1/originate")
@access(*EVERYONE)
async def originate(request: web.Request) -> web.Response:
    """Click-to-call: JSON {"number": "...", "extension": "201"}; the box rings the
    extension's phone, then dials the number. Agents may only use their own extension."""
    c = ctx(request)
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError
    except ValueError:
        raise _bad({"_": "body must be a JSON object"}) from None
    errors: dict[str, str] = {}
    number = clean_number(str(body.get("number", "")))
    if number is None:
        errors["number"] = "a phone number of 2-32 digits (+, *, # allowed)"
    ext = str(body.get("extension") or c.user.extension or "")
    if not ext:
        errors["extension"] = "required (this user has no extension)"
    elif c.user.role not in MANAGERS and ext != c.user.extension:
        raise web.HTTPForbidden(text='{"error": "agents may only call from their own extension"}',
                                content_type="application/json")
    elif not any(e["number"] == ext for e in request.app[BOX].config.list("extension")):
        errors["extension"] = "no such extension"
    if errors:
        raise _bad(errors)
    try:
        call_id = await request.app[BOX].action("originate")(ext, number, note=str(body.get("note", ""))[:200])
    except ControlError as e:
        t = ctx(request).t
        return web.json_response({"error": t(str(e)) if t.has(str(e)) else str(e)}, status=409)
    return web.json_response({"call_id": call_id, "extension": ext, "number": number}, status=201)
