"""Page layout, error pages, forms with errors beside fields, small parsing helpers."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta
from typing import Any, Iterable, Sequence

from aiohttp import web

from web_ui.html import Markup, attrs, fmt, join, render
from web_ui.i18n import LANGUAGE_NAMES, LANGUAGES, Translator
from web_ui.keys import API, MANAGERS, SESSIONS, ctx

PRODUCT = "Office box"

NAV = (
    # (href, message key, roles, needs extension)
    ("/live", "nav.live", MANAGERS, False),
    ("/reports/calls", "nav.calls", MANAGERS, False),
    ("/reports/missed", "nav.missed", MANAGERS, False),
    ("/reports/agents", "nav.agents", MANAGERS, False),
    ("/reports/kpi", "nav.kpi", MANAGERS, False),
    ("/agent", "nav.panel", ("agent", "manager", "admin"), True),
    ("/settings", "nav.settings", ("admin",), False),
)


def ensure_session(request: web.Request) -> str:
    """The CSRF token for forms on this page, creating an anonymous session if needed."""
    c = ctx(request)
    if c.session is None:
        token, s = request.app[SESSIONS].create()
        c.session, c.token, c.new_cookie = s, token, token
    return c.session.csrf


def csrf_field(request: web.Request) -> Markup:
    return fmt('<input type="hidden" name="_csrf" value="{}">', ensure_session(request))


def page(request: web.Request, title: str, content: Any, *, status: int = 200, actions: Any = "",
         body_class: str = "", headers: dict[str, str] | None = None) -> web.Response:
    """A full HTML page in the layout, translated navigation by role."""
    c = ctx(request)
    t = c.t
    csrf = ensure_session(request)
    user = c.user
    items = []
    if user is not None:
        for href, key, roles, needs_ext in NAV:
            if user.role in roles and (not needs_ext or user.extension or user.role == "agent"):
                cur = request.path == href or request.path.startswith(href + "/")
                items.append(fmt('<a href="{}"{}>{}</a>', href,
                                 Markup(' aria-current="page"') if cur else "", t(key)))
        userbox = fmt('<a href="/account" class="who" title="{}">{}</a>'
                      '<form method="post" action="/logout" class="inline">{}'
                      '<button type="submit" class="link">{}</button></form>',
                      t("nav.account"), user.name, csrf_field(request), t("nav.logout"))
    else:
        userbox = Markup("")
    flash = Markup("")
    if c.session and c.session.flash:
        flash = join(fmt('<div class="flash {}" role="status">{}</div>', kind, t(key))
                     for kind, key in c.session.flash)
        c.session.flash.clear()
    buttons = join(fmt('<button type="submit" name="lang" value="{}"{}>{}</button>', code,
                       Markup(' aria-pressed="true"') if code == t.lang else "", LANGUAGE_NAMES[code])
                   for code in LANGUAGES)
    body = render("layout.html", lang=t.lang, csrf=csrf, title=title, product=PRODUCT,
                  version=request.app[API].version, nav=join(items), nav_label=t("nav.label"),
                  userbox=userbox, flash=flash, actions=actions, content=content,
                  lang_label=t("lang.label"), lang_buttons=buttons, next=request.path_qs,
                  body_class=body_class)
    return web.Response(text=body, content_type="text/html", status=status, headers=headers)


def error_page(request: web.Request, status: int, *, csrf: bool = False,
               headers: dict[str, str] | None = None) -> web.Response:
    from web_ui.keys import CTX, RequestContext

    if request.get(CTX) is None:
        request[CTX] = RequestContext(t=Translator("en"))
    t = ctx(request).t
    key = "csrf" if csrf else str(status) if status in (400, 401, 403, 404, 405, 413, 429) else "500"
    content = fmt('<div class="card"><p>{}</p><p><a href="/">{}</a></p></div>',
                  t(f"error.{key}.text"), t("error.home"))
    return page(request, t(f"error.{key}.title"), content, status=status, headers=headers)


def flash(request: web.Request, key: str, kind: str = "ok") -> None:
    s = ctx(request).session
    if s is not None:
        s.flash.append((kind, key))


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go to after a form (never another site: no scheme, no //host)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


# -- forms ---------------------------------------------------------------------------------
@dataclass
class Form:
    """Values and field errors of one submitted form (errors are message keys or text)."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)

    @property
    def ok(self) -> bool:
        return not self.errors


def input_field(t: Translator, form: Form, name: str, label: str, *, type: str = "text",
                help: str = "", options: Sequence[tuple[str, str]] | None = None,
                required: bool = False, **extra: Any) -> Markup:
    """A labelled input/select/textarea with its error beside it (aria-invalid + describedby)."""
    fid = "f-" + name
    value = form.values.get(name, "")
    err = form.errors.get(name)
    desc = " ".join(x for x in (("e-" + name) if err else "", ("h-" + name) if help else "") if x)
    common = attrs(id=fid, name=name, required=required, aria_invalid="true" if err else None,
                   aria_describedby=desc or None, **extra)
    if options is not None:
        opts = join(fmt('<option value="{}"{}>{}</option>', v, Markup(" selected") if str(value) == v else "", lab)
                    for v, lab in options)
        control = fmt("<select{}>{}</select>", common, opts)
    elif type == "textarea":
        control = fmt("<textarea{}>{}</textarea>", common, value)
    elif type == "checkbox":
        control = fmt('<input type="checkbox" value="1"{}{}>', common, Markup(" checked") if value else "")
    else:
        shown = "" if type == "password" else value
        control = fmt('<input type="{}" value="{}"{}>', type, shown, common)
    parts = [fmt('<label for="{}">{}</label>', fid, label), control]
    if err:
        parts.append(fmt('<p class="field-error" id="e-{}">{}</p>', name, t(err) if t.has(err) else err))
    if help:
        parts.append(fmt('<p class="help" id="h-{}">{}</p>', name, help))
    cls = "field" + (" has-error" if err else "") + (" check" if type == "checkbox" else "")
    return fmt('<div class="{}">{}</div>', cls, join(parts))


def form_errors_summary(t: Translator, form: Form) -> Markup:
    if form.ok:
        return Markup("")
    return fmt('<div class="flash error" role="alert">{}</div>', t("form.has_errors"))


# -- parsing -------------------------------------------------------------------------------
class BadInput(ValueError):
    """A query or form value that cannot be understood; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_date(text: str, field: str) -> date:
    try:
        d = date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(field, "error.date") from None
    if not 2000 <= d.year <= 2100:
        raise BadInput(field, "error.date")
    return d


def day_bounds(t: Translator, start: date, end: date) -> tuple[float, float]:
    """Unix seconds of local midnight at `start` and at the day after `end`."""
    a = datetime.combine(start, dtime(0), t.tz).timestamp()
    b = datetime.combine(end + timedelta(days=1), dtime(0), t.tz).timestamp()
    return a, b


def table(head: Iterable[Any], rows: Iterable[Any], *, cls: str = "", empty: str = "") -> Markup:
    """A scrollable table; rows are Markup '<tr>..</tr>' strings."""
    rows = list(rows)
    if not rows and empty:
        return fmt('<p class="empty">{}</p>', empty)
    return fmt('<div class="tablewrap"><table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table></div>',
               cls, join(fmt('<th scope="col">{}</th>', h) for h in head), join(rows))
