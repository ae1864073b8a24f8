"""Manager's reports: call log (filters, recordings, CSV), a call's timeline, missed calls and
missed-not-returned, per-agent performance, queue KPIs and charts."""
from __future__ import annotations

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
OPEN_MISSED_LIMIT = 300


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
def store_filter(f: CallFilter) -> Any:
    """The report store's CallFilter for the page's filters."""
    from firmware.store.reports import CallFilter as StoreFilter

    status: tuple[str, ...] = ()
    if f.status == "missed_all":
        status = ("missed",)
    elif f.status:
        status = (f.status,)
    return StoreFilter(since=f.period.since, until=f.period.until, number=f.number, extension=f.agent,
                       queue=f.queue, direction=f.direction, status=status, missed_like=f.status == "missed_all")


async def call_log(request: web.Request, f: CallFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the filtered call log (newest first) and the number of matching calls."""
    box = request.app[BOX]
    page_ = await box.run(box.reports.call_log, store_filter(f), limit=limit, offset=offset)
    return [c.as_dict() for c in page_.calls], page_.total


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
    rows, total = await call_log(request, f, PAGE_SIZE, (f.page - 1) * PAGE_SIZE)
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
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="calls-{f.period.start}-{f.period.end}.csv"'})
    await resp.prepare(request)
    rows = 0
    box = request.app[BOX]
    chunks = box.reports.call_log_csv(store_filter(f))
    while rows <= MAX_CSV_ROWS:
        chunk = await box.run(next, chunks, None)
        if chunk is None:
            break
        await resp.write(chunk.encode("utf-8"))
        rows += chunk.count("\n")
    await resp.write_eof()
    return resp


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
    entries = await box.run(box.reports.missed_not_returned, now=now, limit=OPEN_MISSED_LIMIT)
    open_rows = [fmt('<tr class="missed"><td class="missed-text">{}</td><td>{}</td><td>{}</td><td class="num">{}</td>'
                     '<td class="num"><span class="timer" data-since="{}">{}</span></td><td>{}</td><td>{}</td></tr>',
                     e.number, t.datetime(e.first_missed_at), t.datetime(e.last_missed_at), e.count,
                     e.first_missed_at, t.clock(e.waiting_s), e.queue or "–",
                     fmt('<form method="post" action="/reports/missed/callback" class="inline">{}'
                         '<input type="hidden" name="number" value="{}"><button type="submit" class="small primary">{}</button></form>',
                         csrf_field(request), e.number, t("missed.call_back")) if can_call else "")
                 for e in entries]
    rows, total = await call_log(request, f, 200, 0)
    body = join([report_tabs(request),
                 fmt('<section class="card"><h2>{}</h2><p class="muted">{}</p>{}</section>',
                     t("missed.open_title", count=f"{len(entries)}+" if len(entries) >= OPEN_MISSED_LIMIT else len(entries)),
                     t("missed.open_help"),
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
            await request.app[BOX].action("originate")(c.user.extension, number)
            flash(request, "agent.calling")
        except ControlError as e:
            c.session.flash.append(("error", str(e)))
    raise web.HTTPSeeOther(safe_next(str(data.get("next", "")), "/reports/missed"))


# -- per-agent performance -----------------------------------------------------------------------
def _int_param(request: web.Request, form: Form, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name, "")
    form.values[name] = raw or str(default)
    if not raw:
        return default
    try:
        v = int(raw)
        if not lo <= v <= hi:
            raise ValueError
        return v
    except ValueError:
        form.error(name, ctx(request).t("error.int_range", lo=lo, hi=hi))
        return default


def formulas(t: Translator, names: tuple[str, ...], **kw: Any) -> Markup:
    """Each KPI's formula in words, as the page computes it."""
    return fmt('<section class="card formula-list"><h2>{}</h2><dl class="facts">{}</dl></section>', t("kpi.formulas"),
               join(fmt("<dt>{}</dt><dd>{}</dd>", t("kpi." + n), t("formula." + n, **kw)) for n in names))


def period_form(request: web.Request, form: Form, action: str, extra: Markup = Markup("")) -> Markup:
    t = ctx(request).t
    return fmt('<form method="get" action="{}" class="card filters" novalidate>{}{}{}'
               '<div class="actions"><button type="submit" class="primary">{}</button></div></form>',
               action, input_field(t, form, "from", t("filter.from"), type="date"),
               input_field(t, form, "to", t("filter.to"), type="date"), extra, t("filter.apply"))


STATE_ORDER = ("available", "in_call", "ringing", "wrapup", "paused", "dnd")
STATE_COLOURS = {"available": "#2da44e", "in_call": "#1f6feb", "ringing": "#8250df", "wrapup": "#d29922",
                 "paused": "#bf8700", "dnd": "#e5534b"}


def _state_bar(t: Translator, states: dict[str, float]) -> Markup:
    total = sum(states.get(s, 0) for s in STATE_ORDER)
    if total <= 0:
        return Markup("–")
    x = 0.0
    parts = []
    for s in STATE_ORDER:
        w = 160 * states.get(s, 0) / total
        if w <= 0:
            continue
        parts.append(fmt('<rect x="{:.1f}" y="0" width="{:.1f}" height="14" fill="{}"><title>{}: {}</title></rect>',
                         x, w, STATE_COLOURS[s], t("agent." + s), t.duration(states[s])))
        x += w
    return fmt('<svg class="statebar-svg" viewBox="0 0 160 14" width="160" height="14" role="img" aria-label="{}">{}</svg>',
               ", ".join(f"{t('agent.' + s)} {t.duration(states[s])}" for s in STATE_ORDER if states.get(s)),
               join(parts))


@routes.get("/reports/agents")
@access(*MANAGERS)
async def agents_page(request: web.Request) -> web.Response:
    t = ctx(request).t
    box = request.app[BOX]
    form = Form()
    period = parse_period(request, t, form)
    long_s = _int_param(request, form, "long", 30, 1, 3600)
    short_s = _int_param(request, form, "short", 5, 1, 120)
    names = {e["number"]: e.get("name", "") for e in box.config.list("extension")}
    rows = []
    perf = await box.run(box.reports.agent_performance, period.since, period.until, long_call_s=long_s,
                         short_call_s=short_s)
    for a in perf:
        suspicious = a.short_answered > 0 or a.rings_caller_hung_up > 0
        rows.append(fmt(
            '<tr><td><strong>{}</strong> {}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>'
            '<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>'
            '<td class="num">{} / {}</td><td class="num">{}</td><td class="num{}">{}</td><td class="num{}">{}</td><td>{}</td></tr>',
            a.agent, names.get(a.agent, ""), t.num(a.answered), t.num(a.made), t.num(a.unique_customers),
            t.clock(a.avg_wait_s) if a.avg_wait_s is not None else "–", t.num(a.long_outgoing),
            t.num(a.unique_outgoing_customers), t.duration(a.talk_s), t.num(a.rings_answered), t.num(a.rings_offered),
            t.clock(a.avg_ring_to_answer_s) if a.avg_ring_to_answer_s is not None else "–",
            " missed-text" if a.short_answered else "", t.num(a.short_answered),
            " missed-text" if a.rings_caller_hung_up else "", t.num(a.rings_caller_hung_up),
            _state_bar(t, a.state_s)))
    head = [t("col.agent"), t("kpi.answered"), t("kpi.made"), t("kpi.unique"), t("kpi.avg_wait_for_agent"),
            t("kpi.long_outgoing_n", n=long_s), t("kpi.unique_out"), t("col.talk"), t("kpi.ring_answer_rate"),
            t("kpi.ring_to_answer"), t("kpi.short_answered_n", n=short_s), t("kpi.caller_gave_up"), t("kpi.time_in_state")]
    extra = join([input_field(t, form, "long", t("kpi.long_param"), type="number", min=1, max=3600),
                  input_field(t, form, "short", t("kpi.short_param"), type="number", min=1, max=120)])
    legend = fmt('<div class="legend">{}</div>', join(fmt('<span><i class="sw-{}"></i>{}</span>', s, t("agent." + s))
                                                        for s in STATE_ORDER))
    body = join([report_tabs(request), period_form(request, form, "/reports/agents", extra),
                 fmt('<section class="card">{}{}</section>', table(head, rows, empty=t("agents.none")), legend),
                 formulas(t, ("avg_wait_for_agent", "long_outgoing", "short_answered", "ring_answer_rate",
                              "caller_gave_up"), long=long_s, short=short_s)])
    return page(request, t("agents.title"), body, status=200 if form.ok else 400)


# -- queue KPIs and charts ---------------------------------------------------------------------
@routes.get("/reports/kpi")
@access(*MANAGERS)
async def kpi_page(request: web.Request) -> web.Response:
    from web_ui import charts

    t = ctx(request).t
    box = request.app[BOX]
    reports = box.reports
    form = Form()
    period = parse_period(request, t, form, default_days=14)
    target_s = _int_param(request, form, "target", 60, 1, 3600)
    since, until = period.since, period.until
    queues = {q["number"]: q for q in box.queues()}
    thresholds = {n: (int(q.get("service_level_s", 20)), int(q.get("short_abandon_s", 5))) for n, q in queues.items()}
    import asyncio

    (kpis, days, trend, waits, grid, target, out) = await asyncio.gather(
        box.run(reports.queue_kpis, since, until, thresholds=thresholds),
        box.run(reports.calls_per_day, since, until),
        box.run(reports.trend, since, until),
        box.run(reports.wait_distribution, since, until, bucket_s=15, max_s=300),
        box.run(reports.weekday_hour, since, until),
        box.run(reports.target_calls, since, until, min_talk_s=target_s, limit=1),
        box.run(reports.outgoing_calls, since, until, long_call_s=30, limit=1))
    cards = []
    for k in kpis:
        name = (queues.get(k.queue) or {}).get("name") or k.queue
        tiles = [("answer_rate", t.pct(k.answer_rate), f"{t.num(k.answered)} / {t.num(k.offered)}"),
                 ("asa", t.clock(k.asa_s) if k.asa_s is not None else "–", ""),
                 ("abandon_rate", t.pct(k.abandon_rate), t("kpi.short_abandons", n=t.num(k.short_abandoned),
                                                             s=k.short_abandon_s)),
                 ("service_level", t.pct(k.service_level), t("kpi.within", s=k.service_level_s)),
                 ("aht", t.clock(k.aht_s) if k.aht_s is not None else "–", "")]
        cards.append(fmt('<section class="card"><h2>{} <span class="muted">{}</span></h2><div class="kpis">{}</div></section>',
                         name, k.queue,
                         join(fmt('<div class="tile{}"><span class="num">{}</span><span class="lbl">{}</span>'
                                  '<span class="formula">{}</span><span class="formula">{}</span></div>',
                                  " bad" if key == "abandon_rate" and (k.abandon_rate or 0) > 0.1 else "", val,
                                  t("kpi." + key), sub, t("formula." + key, sl=k.service_level_s, sa=k.short_abandon_s))
                              for key, val, sub in tiles)))
    labels = [_short_day(t, d.day) for d in days]
    per_day = charts.stacked_bars(t("chart.per_day"), labels,
                                  [(t("status.answered"), charts.OK, [d.answered for d in days]),
                                   (t("status.missed"), charts.BAD, [d.missed for d in days])],
                                  lambda v: t.num(v))
    asa_chart = charts.line_chart(t("chart.asa"), labels, [(t("kpi.asa"), charts.ACCENT, [d.asa_s for d in trend])],
                                  lambda v: t.clock(v), width=460, height=200)
    ab_chart = charts.line_chart(t("chart.abandon"), labels,
                                 [(t("kpi.abandon_rate"), charts.BAD, [d.abandon_rate for d in trend])],
                                 lambda v: t.pct(v, 0), width=460, height=200)
    wlabels = [f"{w.lo_s}–{w.hi_s}" if w.hi_s is not None else f"{w.lo_s}+" for w in waits]
    wait_chart = charts.stacked_bars(t("chart.waits"), wlabels,
                                     [(t("status.answered"), charts.OK, [w.answered for w in waits]),
                                      (t("status.abandoned"), charts.WARN, [w.abandoned for w in waits])],
                                     lambda v: t.num(v))
    heat = charts.heatmap(t("chart.heatmap"), [t.weekday(i) for i in range(7)], [str(h) for h in range(24)],
                          grid.calls, grid.missed, lambda v: t.num(v), t("status.missed"), t("kpi.calls"))
    totals = fmt('<div class="kpis">{}</div>', join(
        fmt('<div class="tile"><span class="num">{}</span><span class="lbl">{}</span><span class="formula">{}</span></div>',
            v, lab, f) for v, lab, f in (
            (t.num(sum(d.total for d in days)), t("kpi.calls"), ""),
            (t.num(sum(d.missed for d in days)), t("status.missed"), t("formula.missed")),
            (t.num(target.total), t("kpi.target_calls"), t("formula.target_call", n=target_s)),
            (t.num(out.calls), t("kpi.outgoing"), t("kpi.outgoing_sub", connected=t.num(out.connected),
                                                      unique=t.num(out.unique_customers))),
            (t.duration(out.talk_s), t("kpi.outgoing_talk"), ""))))
    legend_day = fmt('<div class="legend"><span><i class="c-ok"></i>{}</span><span><i class="c-bad"></i>{}</span></div>',
                     t("status.answered"), t("status.missed"))
    legend_wait = fmt('<div class="legend"><span><i class="c-ok"></i>{}</span><span><i class="c-warn"></i>{}</span></div>',
                      t("status.answered"), t("status.abandoned"))
    extra = input_field(t, form, "target", t("kpi.target_param"), type="number", min=1, max=3600)
    body = join([report_tabs(request), period_form(request, form, "/reports/kpi", extra), totals,
                 join(cards) if cards else fmt('<section class="card"><p class="empty">{}</p></section>', t("kpi.no_queue_calls")),
                 fmt('<section class="card"><h2>{}</h2>{}{}</section>', t("chart.per_day"), per_day, legend_day),
                 fmt('<div class="grid2"><section class="card"><h2>{}</h2>{}</section><section class="card"><h2>{}</h2>{}</section></div>',
                     t("chart.asa"), asa_chart, t("chart.abandon"), ab_chart),
                 fmt('<section class="card"><h2>{}</h2>{}<p class="legend"><span><i class="c-acc"></i>{}</span>'
                     '<span><i class="c-bad"></i>{}</span></p></section>',
                     t("chart.heatmap"), heat, t("kpi.calls"), t("chart.missed_dot")),
                 fmt('<section class="card"><h2>{}</h2>{}{}</section>', t("chart.waits"), wait_chart, legend_wait),
                 formulas(t, ("answer_rate", "asa", "abandon_rate", "service_level", "aht", "target_call", "missed"),
                          sl=(kpis[0].service_level_s if kpis else 20), sa=(kpis[0].short_abandon_s if kpis else 5),
                          n=target_s)])
    return page(request, t("kpi.title"), body, status=200 if form.ok else 400)


def _short_day(t: Translator, iso: str) -> str:
    d = date.fromisoformat(iso)
    return f"{d.day}.{d.month:02d}" if t.lang != "en" else f"{d.day} {t('month.%d' % d.month)}"
