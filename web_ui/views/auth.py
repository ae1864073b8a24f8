"""Login, logout, language switch, own account (password, API tokens), first-run wizard."""
from __future__ import annotations

import ipaddress
import math

from aiohttp import web

from web_ui.html import Markup, fmt, join
from web_ui.i18n import LANGUAGE_NAMES, LANGUAGES
from web_ui.keys import BOX, SESSIONS, THROTTLE, access, ctx
from web_ui.middlewares import client_ip
from web_ui.views.common import (Form, csrf_field, flash, form_errors_summary, input_field, page,
                                 safe_next, table)

routes = web.RouteTableDef()

MIN_PASSWORD = 12


def _lang_options() -> list[tuple[str, str]]:
    return [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES]


def _wait_minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


# -- login / logout ----------------------------------------------------------------------
def _login_page(request: web.Request, form: Form, status: int = 200, notice: str = "") -> web.Response:
    t = ctx(request).t
    body = fmt('<form method="post" action="/login" class="card narrow" novalidate>{}{}{}{}{}'
               '<input type="hidden" name="next" value="{}">'
               '<div class="actions"><button type="submit" class="primary">{}</button></div></form>',
               csrf_field(request), Markup(notice), form_errors_summary(t, form),
               input_field(t, form, "name", t("login.name"), required=True, autocomplete="username",
                           autofocus=True),
               input_field(t, form, "password", t("login.password"), type="password", required=True,
                           autocomplete="current-password"),
               safe_next(request.query.get("next") or str(form.values.get("next", "")), "/"),
               t("login.submit"))
    return page(request, t("login.title"), body, status=status, body_class="auth")


@routes.get("/login")
@access(public=True)
async def login_form(request: web.Request) -> web.Response:
    if not request.app[BOX].has_admin():
        raise web.HTTPSeeOther("/setup")
    return _login_page(request, Form())


@routes.post("/login")
@access(public=True)
async def login(request: web.Request) -> web.Response:
    c = ctx(request)
    t = c.t
    box = request.app[BOX]
    data = await request.post()
    name = str(data.get("name", "")).strip()[:64]
    password = str(data.get("password", ""))[:1024]
    form = Form({"name": name, "next": str(data.get("next", ""))})
    ip = client_ip(request)
    throttle = request.app[THROTTLE]
    wait = throttle.check(ip, name)
    if wait:
        notice = fmt('<div class="flash error" role="alert">{}</div>',
                     t("login.locked", minutes=_wait_minutes(wait)))
        return _login_page(request, form, 429, notice)
    if not name:
        form.error("name", "form.required")
    if not password:
        form.error("password", "form.required")
    if not form.ok:
        return _login_page(request, form, 400)
    user = await box.verify_login(name, password)
    if user is None:
        throttle.failure(ip, name)
        form.error("password", "login.bad")
        return _login_page(request, form, 401)
    throttle.success(ip, name)
    token, _ = request.app[SESSIONS].login(c.token, user["name"], user["role"])
    c.new_cookie = token
    target = safe_next(str(data.get("next", "")), "")
    if not target or target == "/":
        target = home_of(user["role"])
    raise web.HTTPSeeOther(target)


def home_of(role: str) -> str:
    return "/agent" if role == "agent" else "/live"


@routes.post("/logout")
@access()
async def logout(request: web.Request) -> web.Response:
    c = ctx(request)
    if c.token:
        request.app[SESSIONS].drop(c.token)
    c.new_cookie = ""
    raise web.HTTPSeeOther("/login")


@routes.get("/")
@access()
async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(home_of(ctx(request).user.role))


@routes.post("/lang")
@access(public=True)
async def set_language(request: web.Request) -> web.Response:
    data = await request.post()
    lang = str(data.get("lang", ""))
    c = ctx(request)
    if lang in LANGUAGES and c.session is not None:
        c.session.lang = lang
        if c.user is not None:
            await request.app[BOX].set_user_language(c.user.name, lang)
    raise web.HTTPSeeOther(safe_next(str(data.get("next", "")), "/"))


# -- own account: password and API tokens ------------------------------------------------------
def _account_page(request: web.Request, form: Form, new_token: str = "", status: int = 200) -> web.Response:
    c = ctx(request)
    t = c.t
    box = request.app[BOX]
    user = c.user
    info = fmt('<div class="card"><dl class="facts"><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd>'
               '<dt>{}</dt><dd>{}</dd></dl></div>',
               t("login.name"), user.name, t("users.role"), t("role." + user.role),
               t("users.extension"), user.extension or "–")
    pw = fmt('<form method="post" action="/account/password" class="card" novalidate><h2>{}</h2>{}{}{}{}{}'
             '<div class="actions"><button type="submit" class="primary">{}</button></div></form>',
             t("account.password"), csrf_field(request), form_errors_summary(t, form),
             input_field(t, form, "current", t("account.current"), type="password", required=True,
                         autocomplete="current-password"),
             input_field(t, form, "password", t("account.new"), type="password", required=True,
                         autocomplete="new-password", help=t("password.rule", n=MIN_PASSWORD)),
             input_field(t, form, "confirm", t("account.confirm"), type="password", required=True,
                         autocomplete="new-password"),
             t("account.change"))
    shown = ""
    if new_token:
        shown = fmt('<div class="flash ok" role="status"><p>{}</p><p><code class="secret" id="new-token">{}</code></p></div>',
                    t("tokens.shown_once"), new_token)
    rows = [fmt('<tr><td>{}</td><td>{}</td><td>{}</td><td><form method="post" action="/account/tokens/{}/revoke" '
                'class="inline">{}<button type="submit" class="danger small" data-confirm="{}">{}</button></form></td></tr>',
                tk["label"], t.datetime(tk["created"]), t.datetime(tk.get("last_used")) if tk.get("last_used") else "–",
                tk["id"], csrf_field(request), t("tokens.revoke_confirm"), t("tokens.revoke"))
            for tk in box.tokens(user.name)]
    tokens = fmt('<section class="card"><h2>{}</h2><p class="muted">{}</p>{}{}'
                 '<form method="post" action="/account/tokens" class="row">{}'
                 '<div class="field"><label for="f-label">{}</label><input id="f-label" name="label" maxlength="60" required></div>'
                 '<button type="submit">{}</button></form></section>',
                 t("tokens.title"), t("tokens.help"), Markup(shown),
                 table([t("tokens.label"), t("tokens.created"), t("tokens.last_used"), ""], rows, empty=t("tokens.none")),
                 csrf_field(request), t("tokens.label"), t("tokens.create"))
    return page(request, t("account.title"), join([info, pw, tokens]), status=status)


@routes.get("/account")
@access()
async def account(request: web.Request) -> web.Response:
    return _account_page(request, Form())


@routes.post("/account/password")
@access()
async def change_password(request: web.Request) -> web.Response:
    c = ctx(request)
    box = request.app[BOX]
    data = await request.post()
    form = Form()
    current = str(data.get("current", ""))
    new = str(data.get("password", ""))
    if await box.verify_login(c.user.name, current) is None:
        form.error("current", "account.current_bad")
    problem = box.password_problem(new, c.user.name)
    if problem:
        form.error("password", problem)
    elif new != str(data.get("confirm", "")):
        form.error("confirm", "password.mismatch")
    if not form.ok:
        return _account_page(request, form, status=400)
    await box.set_password(c.user.name, new)
    request.app[SESSIONS].drop_user(c.user.name, keep=c.session)
    flash(request, "account.changed")
    raise web.HTTPSeeOther("/account")


@routes.post("/account/tokens")
@access()
async def create_token(request: web.Request) -> web.Response:
    c = ctx(request)
    data = await request.post()
    label = str(data.get("label", "")).strip()[:60] or "API"
    token = await request.app[BOX].create_token(c.user.name, label)
    return _account_page(request, Form(), new_token=token)


@routes.post("/account/tokens/{id}/revoke")
@access()
async def revoke_token(request: web.Request) -> web.Response:
    c = ctx(request)
    if not await request.app[BOX].revoke_token(c.user.name, request.match_info["id"]):
        raise web.HTTPNotFound()
    flash(request, "tokens.revoked")
    raise web.HTTPSeeOther("/account")


# -- first run -----------------------------------------------------------------------------------
def local_network(ip: str) -> bool:
    """Loopback, private (RFC 1918 / ULA) or link-local: the office LAN, not the internet."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped:
        a = a.ipv4_mapped
    return a.is_loopback or a.is_private or a.is_link_local


def _setup_page(request: web.Request, form: Form, status: int = 200) -> web.Response:
    t = ctx(request).t
    box = request.app[BOX]
    zones = [(z, z) for z in box.timezones()]
    body = fmt('<div class="card narrow"><p>{}</p><ol class="steps"><li aria-current="step">{}</li><li>{}</li><li>{}</li></ol></div>'
               '<form method="post" action="/setup" class="card narrow" novalidate>{}{}{}{}{}{}{}{}{}'
               '<div class="actions"><button type="submit" class="primary">{}</button></div></form>',
               t("setup.intro"), t("setup.step_admin"), t("setup.step_extensions"), t("setup.step_trunk"),
               csrf_field(request), form_errors_summary(t, form),
               input_field(t, form, "code", t("setup.code"), required=True, autocomplete="off",
                           help=t("setup.code_help"), autofocus=True),
               input_field(t, form, "name", t("login.name"), required=True, autocomplete="username"),
               input_field(t, form, "password", t("account.new"), type="password", required=True,
                           autocomplete="new-password", help=t("password.rule", n=MIN_PASSWORD)),
               input_field(t, form, "confirm", t("account.confirm"), type="password", required=True,
                           autocomplete="new-password"),
               input_field(t, form, "language", t("setup.language"), options=_lang_options()),
               input_field(t, form, "timezone", t("setup.timezone"), options=zones),
               Markup(""), t("setup.create_admin"))
    return page(request, t("setup.title"), body, status=status, body_class="auth")


@routes.get("/setup")
@access(public=True)
async def setup_form(request: web.Request) -> web.Response:
    box = request.app[BOX]
    if box.has_admin():
        raise web.HTTPSeeOther("/")
    if not local_network(client_ip(request)):
        raise web.HTTPForbidden()
    t = ctx(request).t
    return _setup_page(request, Form({"name": "admin", "language": t.lang,
                                      "timezone": box.timezone() or "UTC"}))


@routes.post("/setup")
@access(public=True)
async def setup_submit(request: web.Request) -> web.Response:
    c = ctx(request)
    box = request.app[BOX]
    if box.has_admin():
        raise web.HTTPSeeOther("/")
    ip = client_ip(request)
    if not local_network(ip):
        raise web.HTTPForbidden()
    data = await request.post()
    form = Form({k: str(data.get(k, "")).strip() for k in ("code", "name", "language", "timezone")})
    throttle = request.app[THROTTLE]
    wait = throttle.check(ip, "#setup")
    if wait:
        form.error("code", c.t("login.locked", minutes=_wait_minutes(wait)))
        return _setup_page(request, form, 429)
    if not box.check_setup_code(form.values["code"]):
        throttle.failure(ip, "#setup")
        form.error("code", "setup.code_bad")
    name = form.values["name"]
    password = str(data.get("password", ""))
    if not name:
        form.error("name", "form.required")
    problem = box.password_problem(password, name)
    if problem:
        form.error("password", problem)
    elif password != str(data.get("confirm", "")):
        form.error("confirm", "password.mismatch")
    if form.values["language"] not in LANGUAGES:
        form.error("language", "form.choice")
    if form.values["timezone"] not in box.timezones():
        form.error("timezone", "form.choice")
    if form.ok:
        errors = await box.first_admin(name, password, form.values["language"], form.values["timezone"])
        for k, v in errors.items():
            form.error(k, v)
    if not form.ok:
        return _setup_page(request, form, 400)
    throttle.success(ip, "#setup")
    token, s = request.app[SESSIONS].login(c.token, name, "admin")
    s.lang = form.values["language"]
    c.new_cookie = token
    raise web.HTTPSeeOther("/setup/extensions")


def _steps(t, current: int) -> Markup:
    names = ("setup.step_admin", "setup.step_extensions", "setup.step_trunk")
    return fmt('<ol class="steps">{}</ol>', join(fmt("<li{}>{}</li>", Markup(' aria-current="step"') if i == current else "",
                                                     t(k)) for i, k in enumerate(names)))


EXT_ROWS = 4


def _ext_page(request: web.Request, form: Form, created: list[tuple[str, str, str]], status: int = 200) -> web.Response:
    t = ctx(request).t
    rows = join(fmt('<div class="row">{}{}</div>',
                    input_field(t, form, f"number{i}", t("field.number"), inputmode="numeric", maxlength=8),
                    input_field(t, form, f"name{i}", t("field.name"), maxlength=40)) for i in range(EXT_ROWS))
    done = Markup("")
    if created:
        done = fmt('<div class="flash ok" role="status"><p>{}</p>{}</div>', t("settings.softphone_hint"),
                   table([t("field.number"), t("field.name"), t("field.password")],
                         [fmt('<tr><td>{}</td><td>{}</td><td><code class="secret">{}</code></td></tr>', n, nm, pw)
                          for n, nm, pw in created]))
    body = fmt('<div class="card narrow">{}<p>{}</p></div>{}'
               '<form method="post" action="/setup/extensions" class="card narrow" novalidate>{}{}{}'
               '<div class="actions"><button type="submit" class="primary">{}</button>'
               '<a class="button" href="/setup/trunk">{}</a></div></form>',
               _steps(t, 1), t("setup.ext_intro"), done, csrf_field(request), form_errors_summary(t, form), rows,
               t("form.add"), t("setup.next"))
    return page(request, t("setup.ext_title"), body, status=status, body_class="auth")


@routes.get("/setup/extensions")
@access("admin")
async def setup_extensions(request: web.Request) -> web.Response:
    return _ext_page(request, Form(), [])


@routes.post("/setup/extensions")
@access("admin")
async def setup_extensions_add(request: web.Request) -> web.Response:
    from firmware.store.config_store import ConfigValidationError

    data = await request.post()
    box = request.app[BOX]
    form = Form({k: str(v).strip() for k, v in data.items() if k != "_csrf"})
    wanted = [(i, form.values.get(f"number{i}", ""), form.values.get(f"name{i}", "")) for i in range(EXT_ROWS)]
    wanted = [w for w in wanted if w[1] or w[2]]
    for i, number, name in wanted:
        if not number:
            form.error(f"number{i}", "form.required")
        else:
            errors = box.config.validate("extension", {"number": number, "name": name})
            for k, msg in errors.items():
                form.error(f"number{i}" if k in ("number", "_") else f"name{i}", msg)
    numbers = [w[1] for w in wanted]
    for i, number, _ in wanted:
        if number and numbers.count(number) > 1:
            form.error(f"number{i}", "form.duplicate")
    if not form.ok:
        return _ext_page(request, form, [], 400)
    created = []
    for i, number, name in wanted:
        try:
            saved = box.config.create("extension", {"number": number, "name": name})
        except ConfigValidationError as e:
            form.error(f"number{i}", "; ".join(e.errors.values()))
            continue
        created.append((number, name, saved.generated_password or ""))
    return _ext_page(request, Form(), created, 200 if form.ok else 400)


def _trunk_page(request: web.Request, form: Form, status: int = 200) -> web.Response:
    from firmware import config as fwconfig

    t = ctx(request).t
    types = [(x, t("choice." + x)) for x in fwconfig.TRUNK_TYPES]
    models = [("", "–")] + [(m, m) for m in fwconfig.GSM_MODELS + fwconfig.FXO_MODELS]
    body = fmt('<div class="card narrow">{}<p>{}</p></div>'
               '<form method="post" action="/setup/trunk" class="card narrow" novalidate>{}{}{}{}'
               '<fieldset><legend>{}</legend>{}{}</fieldset><fieldset><legend>{}</legend>{}{}{}</fieldset>'
               '<div class="actions"><button type="submit" class="primary">{}</button><a class="button" href="/live">{}</a></div></form>',
               _steps(t, 2), t("setup.trunk_intro"), csrf_field(request), form_errors_summary(t, form),
               input_field(t, form, "name", t("field.name"), required=True),
               input_field(t, form, "type", t("field.type"), options=types),
               t("choice.gsm") + " / " + t("choice.fxo"),
               input_field(t, form, "model", t("field.model"), options=models),
               input_field(t, form, "device", t("field.device"), placeholder="/dev/ttyUSB2"),
               t("choice.sip"),
               input_field(t, form, "host", t("field.host")),
               input_field(t, form, "username", t("field.username"), autocomplete="off"),
               input_field(t, form, "password", t("field.password"), type="password", autocomplete="new-password"),
               t("setup.finish"), t("setup.skip"))
    return page(request, t("setup.trunk_title"), body, status=status, body_class="auth")


@routes.get("/setup/trunk")
@access("admin")
async def setup_trunk(request: web.Request) -> web.Response:
    return _trunk_page(request, Form({"name": "gsm1", "type": "gsm"}))


@routes.post("/setup/trunk")
@access("admin")
async def setup_trunk_add(request: web.Request) -> web.Response:
    from firmware.store.config_store import ConfigValidationError

    data = await request.post()
    form = Form({k: str(data.get(k, "")).strip() for k in ("name", "type", "model", "device", "host", "username")})
    v = form.values
    rec: dict = {"name": v["name"], "type": v["type"]}
    if v["type"] == "sip":
        rec.update({"host": v["host"], "username": v["username"], "password": str(data.get("password", "")),
                    "register": bool(v["username"])})
    else:
        rec.update({"model": v["model"], "device": v["device"]})
    try:
        request.app[BOX].config.create("trunk", {k: x for k, x in rec.items() if x not in ("", None)})
    except ConfigValidationError as e:
        for k, msg in e.errors.items():
            form.error(k if k in form.values else "name", msg)
        return _trunk_page(request, form, 400)
    flash(request, "setup.done")
    raise web.HTTPSeeOther("/live")
