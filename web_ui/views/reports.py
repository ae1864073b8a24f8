"""Manager's reports: call log (filters, recordings, CSV), a call's timeline, missed calls and
missed-not-returned, per-agent performance, queue KPIs and charts."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from firmware.api import ControlError
from web_ui.html import Markup, fmt, join
from web_ui.i18n import Translator
from web_ui.keys import BOX, CLOCK, MANAGERS, OPTIONS, access, ctx
from web_ui.views.common import (BadInput, Form, csrf_field, day_bounds, flash, input_field, page,
                                 parse_date, safe_next, table)
from web_ui.views.recordings import may_see_call, serve_recording

routes = web.RouteTableDef()

DIRECTIONS = ("inbound", "outbound", "internal")
STATUSES = ("answered", "missed", "abandoned", "busy", "no_answer", "failed", "rejected", "overflow",
            "voicemail", "in_progress")
MISSED = ("missed", "abandoned", "busy", "no_answer", "failed", "overflow", "voicemail")
PAGE_SIZE = 50
MAX_CSV_ROWS = 250_000


@dataclass
class Period:
    start: date
    end: date
    since: float
    until: float


@dataclass
class CallFilter:
    period: Period
    number: str = ""
    agent: str = ""
    queue: str = ""
    direction: str = ""
    status: str = ""
    page: int = 1

    def query(self, **override: Any) -> str:
        q = {"from": self.period.start.isoformat(), "to": self.period.end.isoformat(), "number": self.number,
             "agent": self.agent, "queue": self.queue, "direction": self.direction, "status": self.status,
             "page": self.page}
        q.update(override)
        return urlencode({k: v for k, v in q.items() if v not in ("", None, 1) or k in ("from", "to")})


def parse_period(request: web.Request, t: Translator, form: Form, default_days: int = 7) -> Period:
    """`from`/`to` (YYYY-MM-DD, local days, inclusive); errors go beside the fields."""
    today = date.fromtimestamp(request.app[CLOCK]()) if t.tz is None else \
        t.local(request.app[CLOCK]()).date()
    q = request.query
    start = today - timedelta(days=default_days - 1)
    end = today
    try:
        if q.get("from"):
            start = parse_date(q["from"], "from")
    except BadInput as e:
        form.error(e.field, e.message)
    try:
        if q.get("to"):
            end = parse_date(q["to"], "to")
    except BadInput as e:
        form.error(e.field, e.message)
    if form.ok and end < start:
        form.error("to", "error.range_order")
    max_days = request.app[OPTIONS].max_range_days
    if form.ok and (end - start).days + 1 > max_days:
        form.error("from", t("error.range_long", days=max_days))
    if not form.ok:
        start, end = today - timedelta(days=default_days - 1), today
    form.values.update({"from": (q.get("from") or start.isoformat())[:10], "to": (q.get("to") or end.isoformat())[:10]})
    since, until = day_bounds(t, start, end)
    return Period(start, end, since, until)


def parse_filter(request: web.Request, t: Translator, form: Form) -> CallFilter:
    q = request.query
    period = parse_period(request, t, form)
    f = CallFilter(period)
    f.number = "".join(ch for ch in q.get("number", "") if ch in "+0123456789*#")[:32]
    f.agent = "".join(ch for ch in q.get("agent", "") if ch.isdigit())[:8]
    f.queue = "".join(ch for ch in q.get("queue", "") if ch.isdigit())[:8]
    f.direction = q.get("direction", "") if q.get("direction", "") in DIRECTIONS else ""
    f.status = q.get("status", "") if q.get("status", "") in STATUSES + ("missed_all",) else ""
    if q.get("direction") and not f.direction:
        form.error("direction", "form.choice")
    if q.get("status") and not f.status:
        form.error("status", "form.choice")
    try:
        f.page = max(1, min(100_000, int(q.get("page", "1"))))
    except ValueError:
        f.page = 1
    form.values.update({"number": f.number, "agent": f.agent, "queue": f.queue, "direction": f.direction,
                        "status": f.status})
    return f


def filter_form(request: web.Request, form: Form, action: str, extra: Markup = Markup("")) -> Markup:
    t = ctx(request).t
    box = request.app[BOX]
    queues = [("", t("filter.any"))] + [(q["number"], f'{q["number"]} {q.get("name", "")}'.strip())
                                        for q in box.queues()]
    dirs = [("", t("filter.any"))] + [(d, t("dir." + d)) for d in DIRECTIONS]
    stats = [("", t("filter.any")), ("missed_all", t("status.missed_all"))] + [(s, t("status." + s)) for s in STATUSES]
    return fmt('<form method="get" action="{}" class="card filters" novalidate>{}{}{}{}{}{}{}{}'
               '<div class="actions"><button type="submit" class="primary">{}</button></div></form>',
               action,
               input_field(t, form, "from", t("filter.from"), type="date"),
               input_field(t, form, "to", t("filter.to"), type="date"),
               input_field(t, form, "number", t("filter.number"), type="search", inputmode="tel"),
               input_field(t, form, "agent", t("filter.agent"), type="search", inputmode="numeric"),
               input_field(t, form, "queue", t("filter.queue"), options=queues),
               input_field(t, form, "direction", t("filter.direction"), options=dirs),
               input_field(t, form, "status", t("filter.status"), options=stats),
               extra, t("filter.apply"))


def report_tabs(request: web.Request) -> Markup:
    t = ctx(request).t
    tabs = (("/reports/calls", "nav.calls"), ("/reports/missed", "nav.missed"), ("/reports/agents", "nav.agents"),
            ("/reports/kpi", "nav.kpi"))
    return fmt('<nav class="tabs" aria-label="{}">{}</nav>', t("nav.reports"),
               join(fmt('<a href="{}"{}>{}</a>', href, Markup(' aria-current="page"') if request.path == href else "",
                        t(key)) for href, key in tabs))


# -- call log ------------------------------------------------------------------------------
def _where(f: CallFilter) -> tuple[str, list[Any]]:
    sql = ["started_at >= ? AND started_at < ?"]
    params: list[Any] = [f.period.since, f.period.until]
    if f.number:
        sql.append("(external_number LIKE ? OR caller_number LIKE ? OR callee_number LIKE ?)")
        params += [f"%{f.number}%"] * 3
    if f.agent:
        sql.append("(answered_by = ? OR from_extension = ? OR to_extension = ?)")
        params += [f.agent] * 3
    if f.queue:
        sql.append("queue = ?")
        params.append(f.queue)
    if f.direction:
        sql.append("direction = ?")
        params.append(f.direction)
    if f.status == "missed_all":
        sql.append(f"status IN ({','.join('?' * len(MISSED))})")
        params += list(MISSED)
    elif f.status:
        sql.append("status = ?")
        params.append(f.status)
    return " AND ".join(sql), params


def call_log(request: web.Request, f: CallFilter, limit: int, offset: int) -> tuple[list[Any], int]:
    calls = request.app[BOX].calls
    where, params = _where(f)
    total = calls.query(f"SELECT COUNT(*) FROM calls WHERE {where}", params)[0][0]
    rows = calls.query(f"SELECT * FROM calls WHERE {where} ORDER BY started_at DESC LIMIT ? OFFSET ?",
                       [*params, limit, offset])
    return [dict(r) for r in rows], total


def recording_player(t: Translator, call: dict[str, Any]) -> Markup:
    if not call.get("recording_path") or call.get("recording_state") not in ("complete", "interrupted", "recording"):
        if call.get("recording_state") == "deleted":
            return fmt('<span class="muted" title="{}">{}</span>', call.get("recording_note", ""), t("rec.deleted"))
        return Markup("–")
    cid = call["id"]
    return fmt('<audio controls preload="none" src="/calls/{}/recording"></audio> '
               '<a href="/calls/{}/recording?download=1" class="small" title="{}">{}</a>',
               cid, cid, t("rec.download"), "⬇")


def call_row(t: Translator, c: dict[str, Any]) -> Markup:
    missed = c["status"] in MISSED
    return fmt('<tr class="{}"><td><a href="/calls/{}">{}</a></td><td>{}</td><td class="{}">{}</td><td>{}</td>'
               '<td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td>'
               '<td><span class="badge st-{}">{}</span></td><td>{}</td></tr>',
               "missed" if missed else "", c["id"], t.datetime(c["started_at"]), t("dir." + c["direction"]),
               "missed-text" if missed else "", c["caller_name"] or c["caller_number"], c["callee_number"],
               c["answered_by"] or "–", c["queue"] or "–", t.clock(c["wait_s"]) if c["wait_s"] is not None else "–",
               t.clock(c["talk_s"]) if c["talk_s"] is not None else "–", c["status"], t("status." + c["status"]),
               recording_player(t, c))


@routes.get("/reports/calls")
@access(*MANAGERS)
async def calls_page(request: web.Request) -> web.Response:
    t = ctx(request).t
    form = Form()
    f = parse_filter(request, t, form)
    rows, total = call_log(request, f, PAGE_SIZE, (f.page - 1) * PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))
    head = [t("col.time"), t("col.direction"), t("col.caller"), t("col.callee"), t("col.answered_by"),
            t("col.queue"), t("col.wait"), t("col.talk"), t("col.status"), t("col.recording")]
    pager = fmt('<div class="pager"><span class="muted">{}</span>{}{}</div>',
                t("pager.info", count=total, page=f.page, pages=pages),
                fmt('<a class="button small" href="?{}">{}</a>', f.query(page=f.page - 1), t("pager.prev"))
                if f.page > 1 else "",
                fmt('<a class="button small" href="?{}">{}</a>', f.query(page=f.page + 1), t("pager.next"))
                if f.page < pages else "")
    actions = fmt('<a class="button" href="/reports/calls.csv?{}" download>{}</a>', f.query(page=1), t("csv.export"))
    body = join([report_tabs(request), filter_form(request, form, "/reports/calls"),
                 fmt('<section class="card">{}{}</section>',
                     table(head, [call_row(t, c) for c in rows], cls="calls", empty=t("calls.none")), pager)])
    return page(request, t("calls.title"), body, actions=actions, status=200 if form.ok else 400)


@routes.get("/reports/calls.csv")
@access(*MANAGERS)
async def calls_csv(request: web.Request) -> web.StreamResponse:
    t = ctx(request).t
    form = Form()
    f = parse_filter(request, t, form)
    if not form.ok:
        raise web.HTTPBadRequest()
    where, params = _where(f)
    cols = ("id", "started_at", "answered_at", "ended_at", "direction", "caller_number", "caller_name",
            "callee_number", "external_number", "answered_by", "queue", "status", "wait_s", "ring_s", "talk_s",
            "hold_s", "hangup_side", "trunk", "disposition", "note", "recording_state")
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="calls-{f.period.start}-{f.period.end}.csv"'})
    await resp.prepare(request)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    calls = request.app[BOX].calls
    offset = 0
    while offset < MAX_CSV_ROWS:
        rows = calls.query(f"SELECT {', '.join(cols)} FROM calls WHERE {where} ORDER BY started_at LIMIT 5000 OFFSET ?",
                           [*params, offset])
        for r in rows:
            w.writerow([_csv_cell(v) for v in r])
        await resp.write(buf.getvalue().encode("utf-8"))
        buf.seek(0)
        buf.truncate()
        if len(rows) < 5000:
            break
        offset += len(rows)
    await resp.write_eof()
    return resp


def _csv_cell(v: Any) -> Any:
    """Neutralise spreadsheet formulas (CSV injection) in text cells."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") and not v[1:].replace(" ", "").isdigit():
        return "'" + v
    return "" if v is None else v


# -- one call ------------------------------------------------------------------------------
@routes.get("/calls/{id}")
@access("admin", "manager", "agent")
async def call_detail(request: web.Request) -> web.Response:
    t = ctx(request).t
    call = request.app[BOX].calls.get_call(request.match_info["id"][:80])
    if call is None:
        raise web.HTTPNotFound()
    if not may_see_call(ctx(request).user, call):
        raise web.HTTPForbidden()
    c = call.as_dict()
    facts = [("col.time", t.datetime(call.started_at, seconds=True)), ("col.direction", t("dir." + call.direction)),
             ("col.caller", f"{call.caller_name} {call.caller_number}".strip()), ("col.callee", call.callee_number),
             ("col.answered_by", call.answered_by or "–"), ("col.queue", call.queue or "–"),
             ("col.status", t("status." + call.status)), ("col.wait", t.duration(call.wait_s)),
             ("col.talk", t.duration(call.talk_s)), ("col.hold", t.duration(call.hold_s)),
             ("col.trunk", call.trunk or "–"), ("col.disposition", call.disposition or "–"),
             ("col.note", call.note or "–")]
    dl = join(fmt("<dt>{}</dt><dd>{}</dd>", t(k), v) for k, v in facts)
    events = [fmt('<tr><td class="num">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td></tr>',
                  t.time(e.ts, seconds=True), t("event." + e.type) if t.has("event." + e.type) else e.type,
                  e.agent or "", e.queue or "", e.result or "", t.clock(e.seconds) if e.seconds is not None else "")
              for e in call.events]
    body = fmt('<div class="grid2"><section class="card"><dl class="facts">{}</dl></section>'
               '<section class="card"><h2>{}</h2>{}</section></div><section class="card"><h2>{}</h2>{}</section>',
               dl, t("col.recording"), recording_player(t, c), t("call.timeline"),
               table([t("col.time"), t("col.event"), t("col.agent"), t("col.queue"), t("col.result"), t("col.seconds")],
                     events, empty=t("call.no_events")))
    return page(request, t("call.title", number=call.external_number or call.caller_number), body)


@routes.get("/calls/{id}/recording")
@access("admin", "manager", "agent")
async def recording(request: web.Request) -> web.StreamResponse:
    return await serve_recording(request, request.match_info["id"], request.query.get("download") == "1")


# -- missed calls ---------------------------------------------------------------------------
@routes.get("/reports/missed")
@access(*MANAGERS)
async def missed_page(request: web.Request) -> web.Response:
    c = ctx(request)
    t = c.t
    box = request.app[BOX]
    now = request.app[CLOCK]()
    form = Form()
    f = parse_filter(request, t, form)
    f.status = "missed_all"
    can_call = bool(c.user.extension)
    entries = box.calls.missed_entries(open_only=True)
    entries.sort(key=lambda e: e.first_missed_at)
    open_rows = [fmt('<tr class="missed"><td class="missed-text">{}</td><td>{}</td><td>{}</td><td class="num">{}</td>'
                     '<td class="num"><span class="timer" data-since="{}">{}</span></td><td>{}</td></tr>',
                     e.number, t.datetime(e.first_missed_at), t.datetime(e.last_missed_at), e.count,
                     e.first_missed_at, t.clock(now - e.first_missed_at), e.queue or "–",
                     fmt('<form method="post" action="/reports/missed/callback" class="inline">{}'
                         '<input type="hidden" name="number" value="{}"><button type="submit" class="small primary">{}</button></form>',
                         csrf_field(request), e.number, t("missed.call_back")) if can_call else "")
                 for e in entries[:500]]
    rows, total = call_log(request, f, 200, 0)
    body = join([report_tabs(request),
                 fmt('<section class="card"><h2>{}</h2><p class="muted">{}</p>{}</section>',
                     t("missed.open_title", count=len(entries)), t("missed.open_help"),
                     table([t("col.number"), t("col.first_missed"), t("col.last_call"), t("col.count"),
                            t("col.waiting"), t("col.queue"), ""], open_rows, empty=t("missed.none_open"))),
                 filter_form(request, form, "/reports/missed"),
                 fmt('<section class="card"><h2>{}</h2>{}</section>', t("missed.period_title", count=total),
                     table([t("col.time"), t("col.direction"), t("col.caller"), t("col.callee"), t("col.answered_by"),
                            t("col.queue"), t("col.wait"), t("col.talk"), t("col.status"), t("col.recording")],
                           [call_row(t, r) for r in rows], cls="calls", empty=t("calls.none")))])
    return page(request, t("missed.title"), body, status=200 if form.ok else 400)


@routes.post("/reports/missed/callback")
@access(*MANAGERS)
async def missed_callback(request: web.Request) -> web.Response:
    from web_ui.views.agent import clean_number

    c = ctx(request)
    data = await request.post()
    number = clean_number(str(data.get("number", "")))
    if not c.user.extension:
        flash(request, "missed.no_extension", "error")
    elif number is None:
        flash(request, "agent.bad_number", "error")
    else:
        try:
            await request.app[BOX].api.control.originate(c.user.extension, number)
            flash(request, "agent.calling")
        except ControlError as e:
            c.session.flash.append(("error", str(e)))
    raise web.HTTPSeeOther(safe_next(str(data.get("next", "")), "/reports/missed"))
