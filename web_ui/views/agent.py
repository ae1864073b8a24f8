"""The agent panel: queue log-in/out, status, the incoming-call pop-up (caller, previous calls
and notes, queue, call script), after-call disposition and note, click-to-call, own missed
calls in red. Live parts come over Server-Sent Events (GET /agent/stream)."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from firmware.api import ControlError
from web_ui.html import Markup, fmt, join
from web_ui.keys import API, BOX, CLOCK, EVERYONE, access, ctx
from web_ui.views.common import csrf_field, flash, page, safe_next, table
from web_ui.views.live import event_stream

routes = web.RouteTableDef()

DISPOSITIONS = ("order", "question", "complaint", "callback", "wrong_number", "spam", "other")
PAUSE_REASONS = ("break", "lunch", "training", "meeting", "other")
NUMBER_CHARS = set("+0123456789*#")


def _ext(request: web.Request) -> str:
    user = ctx(request).user
    if not user.extension:
        raise web.HTTPForbidden()
    return user.extension


def _queues(request: web.Request, ext: str) -> list[dict[str, Any]]:
    """Queues this agent is a static member of, or may log in to (every queue)."""
    return request.app[BOX].queues()


def render_live(request: web.Request, ext: str) -> Markup:
    """The live part of the panel: my state, the current call pop-up, my last call to note."""
    c = ctx(request)
    t = c.t
    box = request.app[BOX]
    snap = request.app[API].live.snapshot()
    now = request.app[CLOCK]()
    me = next((a for a in snap["agents"] if a["extension"] == ext), None)
    state = me["state"] if me else "offline"
    since = fmt('<span class="timer" data-since="{}">{}</span>', me["since"], t.clock(now - me["since"])) if me else ""
    head = fmt('<div class="card statebar"><span>{}</span> <span class="badge agent-{}" id="my-state">{}</span>'
               '{} <span class="muted">{}</span></div>',
               t("agent.my_state"), state, t("agent." + state),
               fmt(' <span class="muted">({})</span>', me["reason"]) if me and me["reason"] else "", since)
    mine = [x for x in snap["calls"] if x["agent"] == ext and x["state"] in ("ringing", "talking", "held")]
    popups = []
    for call in mine:
        number = call["caller"] if call["direction"] != "outbound" else call["callee"]
        history = box.calls_of_number(number, limit=6)
        hist_rows = [fmt('<tr><td>{}</td><td>{}</td><td><span class="badge st-{}">{}</span></td><td>{}</td><td>{}</td></tr>',
                         t.datetime(h.started_at), t("dir." + h.direction), h.status, t("status." + h.status),
                         t("disp." + h.disposition) if h.disposition in DISPOSITIONS else h.disposition, h.note)
                     for h in history if h.id != call["id"]]
        queue = box.queue(call["queue"]) if call["queue"] else None
        script = queue.get("script", "") if queue else ""
        popups.append(fmt(
            '<section class="card popup {}" id="popup" data-call="{}"><p class="muted">{} · {}</p>'
            '<p class="caller">{}</p><p>{}</p>{}<h3>{}</h3>{}</section>',
            "talking" if call["state"] != "ringing" else "", call["id"],
            t("call." + call["state"]), t("dir." + call["direction"]), number, call["caller_name"],
            fmt('<p><strong>{}:</strong> {}</p>', t("col.queue"), (queue or {}).get("name") or call["queue"])
            if call["queue"] else "",
            t("agent.previous"),
            table([t("col.time"), t("col.direction"), t("col.status"), t("col.disposition"), t("col.note")],
                  hist_rows, empty=t("agent.first_call"))))
        if script:
            popups.append(fmt('<section class="card"><h2>{}</h2><div class="script">{}</div></section>',
                              t("agent.script"), script))
    note_form = Markup("")
    last = box.last_call_to_note(ext, now)
    if last is not None and not mine:
        opts = join(fmt('<button type="submit" name="disposition" value="{}">{}</button>', d, t("disp." + d))
                    for d in DISPOSITIONS)
        number = last.external_number or last.caller_number
        note_form = fmt('<form method="post" action="/agent/note" class="card" id="note-form">{}'
                        '<input type="hidden" name="call" value="{}"><h2>{}</h2><p>{} · {} · {}</p>'
                        '<div class="field"><label for="f-note">{}</label><textarea id="f-note" name="note" maxlength="2000"></textarea></div>'
                        '<p class="muted">{}</p><div class="actions">{}</div></form>',
                        csrf_field(request), last.id, t("agent.after_call"), number, t.datetime(last.started_at),
                        t.duration(last.talk_s), t("col.note"), t("agent.pick_category"), opts)
    return join([head, join(popups), note_form])


@routes.get("/agent")
@access(*EVERYONE)
async def panel(request: web.Request) -> web.Response:
    c = ctx(request)
    t = c.t
    ext = _ext(request)
    box = request.app[BOX]
    live = request.app[API].live.snapshot()
    me = next((a for a in live["agents"] if a["extension"] == ext), None)
    logged = set(me["queues"]) if me else set()
    statebtns = fmt(
        '<form method="post" action="/agent/status" class="card"><h2>{}</h2>{}<div class="actions">'
        '<button type="submit" name="status" value="available" class="primary">{}</button>'
        '<select name="reason" aria-label="{}">{}</select>'
        '<button type="submit" name="status" value="paused">{}</button>'
        '<button type="submit" name="status" value="dnd">{}</button></div></form>',
        t("agent.status"), csrf_field(request), t("agent.available"), t("agent.reason"),
        join(fmt('<option value="{}">{}</option>', r, t("pause." + r)) for r in PAUSE_REASONS),
        t("agent.pause"), t("agent.dnd"))
    qrows = []
    for q in _queues(request, ext):
        inq = q["number"] in logged
        qrows.append(fmt('<tr><td>{}</td><td>{}</td><td>{}</td><td><form method="post" action="/agent/queue" class="inline">{}'
                         '<input type="hidden" name="queue" value="{}"><input type="hidden" name="login" value="{}">'
                         '<button type="submit" class="small{}">{}</button></form></td></tr>',
                         q["number"], q.get("name", ""), t("agent.logged_in") if inq else t("agent.logged_out"),
                         csrf_field(request), q["number"], "0" if inq else "1", "" if inq else " primary",
                         t("agent.logout_queue") if inq else t("agent.login_queue")))
    queues = fmt('<section class="card"><h2>{}</h2>{}</section>', t("agent.queues"),
                 table([t("col.queue"), t("col.name"), t("col.state"), ""], qrows, empty=t("agent.no_queues")))
    dial = fmt('<form method="post" action="/agent/call" class="card row">{}<div class="field">'
               '<label for="f-number">{}</label><input id="f-number" name="number" type="tel" inputmode="tel" '
               'maxlength="32" required autocomplete="off"></div><button type="submit" class="primary">{}</button></form>',
               csrf_field(request), t("agent.number"), t("agent.call"))
    missed = box.agent_missed(ext, request.app[CLOCK]())
    mrows = [fmt('<tr class="missed"><td class="missed-text">{}</td><td>{}</td><td>{}</td><td class="num">{}</td>'
                 '<td><form method="post" action="/agent/call" class="inline">{}<input type="hidden" name="number" value="{}">'
                 '<button type="submit" class="small primary">{}</button></form></td></tr>',
                 m["number"], t.datetime(m["last"]), m["queue"] or "–", m["count"], csrf_field(request),
                 m["number"], t("missed.call_back"))
             for m in missed]
    missed_html = fmt('<section class="card"><h2>{}</h2>{}</section>', t("agent.missed"),
                      table([t("col.number"), t("col.last_call"), t("col.queue"), t("col.count"), ""], mrows,
                            empty=t("agent.no_missed")))
    body = fmt('<p class="status muted" id="live-status" aria-live="polite" data-ok="{}" data-lost="{}"></p>'
               '<div id="agent-live" data-stream="/agent/stream" data-now="{}">{}</div>'
               '<div class="grid2"><div>{}{}</div><div>{}</div></div>{}',
               t("live.connected"), t("live.reconnecting"), request.app[CLOCK](), render_live(request, ext),
               statebtns, dial, queues, missed_html)
    return page(request, t("agent.title", ext=ext), body)


@routes.get("/agent/stream")
@access(*EVERYONE)
async def agent_stream(request: web.Request) -> web.StreamResponse:
    ext = _ext(request)

    def make() -> dict[str, Any]:
        return {"now": request.app[CLOCK](), "version": request.app[API].live.version,
                "html": render_live(request, ext)}

    return await event_stream(request, make)


async def _act(request: web.Request, start: Any, ok_key: str) -> None:
    try:
        await start()
        flash(request, ok_key)
    except ControlError as e:
        ctx(request).session.flash.append(("error", str(e)))


@routes.post("/agent/status")
@access(*EVERYONE)
async def set_status(request: web.Request) -> web.Response:
    ext = _ext(request)
    data = await request.post()
    status = str(data.get("status", ""))
    reason = str(data.get("reason", ""))
    if status not in ("available", "paused", "dnd"):
        raise web.HTTPBadRequest()
    if reason not in PAUSE_REASONS or status != "paused":
        reason = ""
    await _act(request, lambda: request.app[BOX].action("agent_status")(ext, status, reason), "agent.status_set")
    raise web.HTTPSeeOther("/agent")


@routes.post("/agent/queue")
@access(*EVERYONE)
async def queue_login(request: web.Request) -> web.Response:
    ext = _ext(request)
    data = await request.post()
    queue = str(data.get("queue", ""))
    if request.app[BOX].queue(queue) is None:
        raise web.HTTPBadRequest()
    login = str(data.get("login", "")) == "1"
    await _act(request, lambda: request.app[BOX].action("agent_queue")(ext, queue, login),
               "agent.queue_in" if login else "agent.queue_out")
    raise web.HTTPSeeOther("/agent")


def clean_number(text: str) -> str | None:
    n = "".join(ch for ch in text.strip() if ch not in " -().")
    if not 2 <= len(n) <= 32 or not set(n) <= NUMBER_CHARS or "+" in n[1:]:
        return None
    return n


@routes.post("/agent/call")
@access(*EVERYONE)
async def click_to_call(request: web.Request) -> web.Response:
    ext = _ext(request)
    data = await request.post()
    number = clean_number(str(data.get("number", "")))
    if number is None:
        flash(request, "agent.bad_number", "error")
    else:
        await _act(request, lambda: request.app[BOX].action("originate")(ext, number), "agent.calling")
    raise web.HTTPSeeOther(safe_next(str(data.get("next", "")), "/agent"))


@routes.post("/agent/note")
@access(*EVERYONE)
async def save_note(request: web.Request) -> web.Response:
    ext = _ext(request)
    data = await request.post()
    call_id = str(data.get("call", ""))
    disposition = str(data.get("disposition", ""))
    note = str(data.get("note", ""))[:2000]
    box = request.app[BOX]
    call = box.calls.get_call(call_id) if call_id else None
    if call is None or ext not in (call.answered_by, call.from_extension, call.to_extension):
        raise web.HTTPForbidden()
    if disposition not in DISPOSITIONS:
        raise web.HTTPBadRequest()
    box.calls.set_note(call_id, disposition=disposition, note=note)
    box.calls.flush()
    flash(request, "agent.noted")
    raise web.HTTPSeeOther("/agent")
