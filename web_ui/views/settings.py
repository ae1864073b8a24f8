"""Settings (admin): every configuration section edited through the config store's
validators (errors beside the field, nothing stored when invalid), users and roles, banned
IPs, trunks and modems (status, test, USSD), backup and restore with progress, system status.

Forms are built from the configuration model (firmware.config dataclasses and their field
metadata), so a field added to the model appears here with its widget and limits.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from aiohttp import web

from firmware import config as fwconfig
from firmware.api import ControlError
from firmware.store.config_store import MASK, ConfigStoreError, ConfigValidationError
from web_ui.html import Markup, fmt, join
from web_ui.i18n import LANGUAGE_NAMES, Translator
from web_ui.jobs import Job, JobFailed
from web_ui.keys import ADMINS, API, BOX, JOBS, SESSIONS, access, ctx
from web_ui.views.common import (Form, csrf_field, flash, form_errors_summary, input_field, page, table)

routes = web.RouteTableDef()

LIST_SECTIONS = ("extension", "user", "queue", "ivr", "timecondition", "trunk", "route.inbound",
                 "route.outbound", "notification")
NESTED = {"security": fwconfig.Security, "recording": fwconfig.Recording, "features": fwconfig.FeatureCodes,
          "smtp": fwconfig.Smtp}
SUMMARY = {"extension": ("number", "name", "permission"), "user": ("name", "role", "extension"),
           "queue": ("number", "name", "strategy", "members"), "ivr": ("number", "name", "prompt"),
           "timecondition": ("number", "name", "hours", "override"), "trunk": ("name", "type", "model", "host"),
           "route.inbound": ("name", "trunk", "did", "caller", "destination"),
           "route.outbound": ("name", "pattern", "trunks", "permission"), "notification": ("kind", "target", "events")}
BACKUP_MAX = 8 * 1024 * 1024


def section_cls(section: str) -> type:
    if section not in fwconfig.SECTIONS:
        raise web.HTTPNotFound()
    return fwconfig.SECTIONS[section]


def label(t: Translator, name: str) -> str:
    return t("field." + name) if t.has("field." + name) else name.replace("_", " ")


def _tp(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


# -- model -> form values -> model ----------------------------------------------------------
def to_form(cls: type, record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Form field values ("name" or "security.ban_attempts") from a TOML-shaped record."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = _tp(f)
        key = prefix + f.name
        if tp in ("Security", "Recording", "FeatureCodes", "Smtp"):
            out.update(to_form(NESTED[f.name], record.get(f.name) or {}, key + "."))
            continue
        v = record.get(f.name)
        if v is None:
            default = f.default if f.default is not dataclasses.MISSING else None
            v = None if default is dataclasses.MISSING else default
        if f.metadata.get("secret"):
            v = MASK if record.get(f.name) else ""
        elif tp.startswith("Mapping"):
            v = "\n".join(f"{k} = {x}" for k, x in (v or {}).items())
        elif tp.startswith("tuple[QueueMember"):
            v = "\n".join(m if isinstance(m, str) else (f'{m["extension"]}:{m.get("penalty", 0)}'
                                                         if m.get("penalty") else m["extension"]) for m in (v or ()))
        elif tp.startswith("tuple") and "item_choices" in f.metadata:
            v = list(v) if isinstance(v, (list, tuple)) else ([v] if v else [])
        elif tp.startswith("tuple"):
            v = "\n".join(str(x) for x in (v or ()))
        elif tp == "bool":
            v = bool(v)
        out[key] = "" if v is None else v
    return out


def from_form(cls: type, data: Any, form: Form, prefix: str = "", *, creating: bool) -> dict[str, Any]:
    """A TOML-shaped change from a submitted form; unparseable values become field errors."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = _tp(f)
        key = prefix + f.name
        if tp in ("Security", "Recording", "FeatureCodes", "Smtp"):
            out[f.name] = from_form(NESTED[f.name], data, form, key + ".", creating=creating)
            continue
        meta = f.metadata
        if tp.startswith("tuple") and "item_choices" in meta:
            picked = [str(x) for x in data.getall(key, [])]
            form.values[key] = picked
            if not picked and (tp.endswith("| None") or "highest_of" in meta):
                out[f.name] = None
                continue
            out[f.name] = picked
            continue
        raw = str(data.get(key, ""))
        form.values[key] = raw
        if raw == "" and isinstance(f.default, str) and f.default:
            continue
        if tp == "bool":
            out[f.name] = raw == "1"
        elif tp == "int":
            if raw.strip() == "":
                if f.default is dataclasses.MISSING:
                    form.error(key, "form.required")
                continue
            try:
                out[f.name] = int(raw.strip())
            except ValueError:
                form.error(key, "form.number")
        elif meta.get("secret"):
            if raw and raw != MASK:
                out[f.name] = raw
            elif raw == MASK:
                out[f.name] = MASK
        elif tp.startswith("Mapping"):
            opts: dict[str, str] = {}
            for line in raw.splitlines():
                if not line.strip():
                    continue
                k, sep, v = line.partition("=")
                if not sep or not k.strip() or not v.strip():
                    form.error(key, "form.options")
                    break
                opts[k.strip().strip('"')] = v.strip().strip('"')
            out[f.name] = opts
        elif tp.startswith("tuple[QueueMember"):
            members: list[Any] = []
            for line in raw.replace(",", "\n").splitlines():
                item = line.strip()
                if not item:
                    continue
                ext, sep, pen = item.partition(":")
                if sep:
                    try:
                        members.append({"extension": ext.strip(), "penalty": int(pen)})
                    except ValueError:
                        form.error(key, "form.members")
                else:
                    members.append(ext)
            out[f.name] = members
        elif tp.startswith("tuple"):
            out[f.name] = [x.strip() for x in raw.replace(",", "\n").splitlines() if x.strip()]
        elif tp == "str | None":
            out[f.name] = raw.strip() or None
        else:
            out[f.name] = raw.strip() if f.name not in ("script", "prompt") else raw
    return out


def widgets(t: Translator, cls: type, form: Form, prefix: str = "", *, section: str) -> Markup:
    parts = []
    groups = []
    for f in dataclasses.fields(cls):
        tp = _tp(f)
        key = prefix + f.name
        meta = f.metadata
        lab = label(t, f.name)
        if tp in ("Security", "Recording", "FeatureCodes", "Smtp"):
            groups.append(fmt('<fieldset><legend>{}</legend><div class="formgrid">{}</div></fieldset>',
                              label(t, f.name), widgets(t, NESTED[f.name], form, key + ".", section=section)))
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        if tp.startswith("tuple") and "item_choices" in meta:
            chosen = set(form.values.get(key) or [])
            boxes = join(fmt('<label class="inline-check"><input type="checkbox" name="{}" value="{}"{}> {}</label> ',
                             key, c, Markup(" checked") if c in chosen else "", _choice(t, f.name, c))
                         for c in meta["item_choices"])
            err = form.errors.get(key)
            parts.append(fmt('<div class="field{}"><span class="lbl">{}</span><div>{}</div>{}</div>',
                             " has-error" if err else "", lab, boxes,
                             fmt('<p class="field-error" id="e-{}">{}</p>', key, t(err) if t.has(err) else err)
                             if err else ""))
        elif tp == "bool":
            parts.append(input_field(t, form, key, lab, type="checkbox"))
        elif "choices" in meta:
            opts = [(str(c), _choice(t, f.name, str(c))) for c in meta["choices"]]
            if tp == "str | None":
                opts = [("", t("settings.default"))] + opts
            parts.append(input_field(t, form, key, lab, options=opts, required=required))
        elif f.name == "language" and tp == "str | None":
            parts.append(input_field(t, form, key, lab, options=[("", t("settings.default"))] +
                                     [(c, n) for c, n in LANGUAGE_NAMES.items()]))
        elif tp == "int":
            parts.append(input_field(t, form, key, lab, type="number", min=meta.get("ge"), max=meta.get("le"),
                                     required=required))
        elif tp.startswith(("Mapping", "tuple")):
            help_key = {"Mapping": "help.options", "tuple[QueueMember": "help.members"}
            hk = next((v for k, v in help_key.items() if tp.startswith(k)), "help.lines")
            parts.append(input_field(t, form, key, lab, type="textarea", help=t(hk), required=required))
        elif f.name == "script" or meta.get("prompt"):
            parts.append(input_field(t, form, key, lab, type="textarea", required=required,
                                     help=t("help.prompt") if meta.get("prompt") else ""))
        elif meta.get("secret"):
            parts.append(input_field(t, form, key, lab, type="password", autocomplete="new-password",
                                     help=t("help.secret")))
        else:
            parts.append(input_field(t, form, key, lab, required=required))
    return join([join(parts), join(groups)])


def _choice(t: Translator, field: str, value: str) -> str:
    for k in (f"choice.{field}.{value}", f"choice.{value}"):
        if t.has(k):
            return t(k)
    return value


def settings_tabs(request: web.Request, current: str) -> Markup:
    t = ctx(request).t
    items = [("/settings", "settings.overview", "")] + [(f"/settings/{s}", f"section.{s}", s)
                                                        for s in ("system",) + LIST_SECTIONS] + \
            [("/settings/prompts", "prompts.title", "prompts"),
             ("/settings/trunks-status", "settings.trunk_status", "trunks-status"),
             ("/settings/bans", "settings.bans", "bans"), ("/settings/backup", "settings.backup", "backup")]
    return fmt('<nav class="tabs" aria-label="{}">{}</nav>', t("nav.settings"),
               join(fmt('<a href="{}"{}>{}</a>', href, Markup(' aria-current="page"') if cur == current else "", t(key))
                    for href, key, cur in items))


def _errors_into(form: Form, errors: dict[str, str]) -> None:
    names = set(form.values)
    for k, msg in errors.items():
        field = k
        while field and field not in names:
            field = field.rpartition(".")[0]
        form.error(field or "_", msg)


# -- overview and system status ---------------------------------------------------------------
@routes.get("/settings")
@access(*ADMINS)
async def overview(request: web.Request) -> web.Response:
    t = ctx(request).t
    fn = getattr(request.app[API].control, "system_status", None)
    st = fn() if fn else {}
    disk = st.get("disk") or {}
    total, free = disk.get("total") or 0, disk.get("free") or 0
    tiles = [("settings.version", st.get("version", request.app[API].version)),
             ("settings.uptime", t.duration(st.get("uptime_s"))),
             ("settings.disk_free", f"{t.num(free / 2**30, 1)} / {t.num(total / 2**30, 1)} GB" if total else "–"),
             ("settings.cpu", t.num(st.get("cpu_load") if not isinstance(st.get("cpu_load"), (list, tuple))
                                    else st["cpu_load"][0], 2) if st.get("cpu_load") is not None else "–"),
             ("settings.temperature", f"{t.num(st['temperature_c'], 1)} °C" if st.get("temperature_c") is not None else "–")]
    flags = st.get("under_voltage") or {}
    alarms = [k for k, v in (flags.items() if isinstance(flags, dict) else []) if v]
    if st.get("recording_alarm"):
        alarms.append(str(st["recording_alarm"]))
    body = join([settings_tabs(request, ""),
                 fmt('<div class="tiles">{}</div>', join(fmt('<div class="tile"><span class="num">{}</span>'
                                                             '<span class="lbl">{}</span></div>', v, t(k)) for k, v in tiles)),
                 fmt('<div class="flash warn">{}: {}</div>', t("settings.alarms"), ", ".join(alarms)) if alarms else "",
                 fmt('<section class="card"><h2>{}</h2><ul class="links">{}</ul></section>', t("settings.sections"),
                     join(fmt('<li><a href="/settings/{}">{}</a> <span class="muted">({})</span></li>', s, t("section." + s),
                              len(request.app[BOX].config.list(s))) for s in LIST_SECTIONS))])
    return page(request, t("nav.settings"), body)


# -- system section ------------------------------------------------------------------------------
def _system_page(request: web.Request, form: Form, status: int = 200) -> web.Response:
    t = ctx(request).t
    body = fmt('{}<form method="post" action="/settings/system" class="card" novalidate>{}{}<div class="formgrid">{}</div>'
               '<div class="actions"><button type="submit" class="primary">{}</button></div></form>',
               settings_tabs(request, "system"), csrf_field(request), form_errors_summary(t, form),
               widgets(t, fwconfig.System, form, section="system"), t("form.save"))
    return page(request, t("section.system"), body, status=status)


@routes.get("/settings/system")
@access(*ADMINS)
async def system_form(request: web.Request) -> web.Response:
    return _system_page(request, Form(to_form(fwconfig.System, request.app[BOX].system())))


@routes.post("/settings/system")
@access(*ADMINS)
async def system_save(request: web.Request) -> web.Response:
    data = await request.post()
    form = Form()
    change = from_form(fwconfig.System, data, form, creating=False)
    if form.ok:
        try:
            request.app[BOX].config.update("system", "", change)
        except ConfigValidationError as e:
            _errors_into(form, e.errors)
    if not form.ok:
        return _system_page(request, form, 400)
    flash(request, "form.saved")
    raise web.HTTPSeeOther("/settings/system")


# -- list sections -----------------------------------------------------------------------------
def _cell(t: Translator, v: Any) -> str:
    if isinstance(v, bool):
        return t("yes") if v else t("no")
    if isinstance(v, (list, tuple)):
        return ", ".join(x if isinstance(x, str) else str(x.get("extension", x)) for x in v)
    return "" if v is None else str(v)[:60]


def _list_page(request: web.Request, section: str, form: Form, status: int = 200, shown: str = "") -> web.Response:
    t = ctx(request).t
    cls = section_cls(section)
    records = request.app[BOX].config.list(section)
    cols = SUMMARY[section]
    rows = [fmt('<tr>{}<td><a class="button small" href="/settings/{}/{}">{}</a></td></tr>',
                join(fmt("<td>{}</td>", _cell(t, r.get(c))) for c in cols), section, r["id"], t("form.edit"))
            for r in records]
    body = fmt('{}{}<section class="card">{}</section>'
               '<form method="post" action="/settings/{}" class="card" novalidate><h2>{}</h2>{}{}<div class="formgrid">{}</div>'
               '<div class="actions"><button type="submit" class="primary">{}</button></div></form>',
               settings_tabs(request, section), Markup(shown),
               table([label(t, c) for c in cols] + [""], rows, empty=t("settings.none")),
               section, t("form.add"), csrf_field(request), form_errors_summary(t, form),
               widgets(t, cls, form, section=section), t("form.add"))
    return page(request, t("section." + section), body, status=status)


def softphone_text(request: web.Request, number: str, password: str) -> str:
    """What a softphone needs, as text (also put in the QR code)."""
    host = request.url.host or "officebox"
    sip = str(request.app[BOX].system().get("sip_bind", "0.0.0.0:5060"))
    port = sip.rpartition(":")[2] or "5060"
    return f"sip:{number}@{host}:{port}\nuser: {number}\npassword: {password}\nserver: {host}:{port}"


def _generated(t: Translator, section: str, key: str, password: str, request: web.Request | None = None) -> str:
    from web_ui.qr import svg

    extra = Markup("")
    if section == "extension" and request is not None:
        text = softphone_text(request, key, password)
        extra = fmt('<div class="qrbox">{}<pre class="mono">{}</pre></div><p class="muted">{}</p>',
                    svg(text, label=t("settings.qr_label", name=key)), text, t("settings.softphone_hint"))
    return fmt('<div class="flash ok" role="status"><p>{}</p><p><code class="secret">{}</code></p>{}</div>',
               t("settings.password_once", name=key), password, extra)


@routes.get("/settings/{section:extension|user|queue|ivr|timecondition|trunk|route\\.inbound|route\\.outbound|notification}")
@access(*ADMINS)
async def section_list(request: web.Request) -> web.Response:
    section = request.match_info["section"]
    if section not in LIST_SECTIONS:
        raise web.HTTPNotFound()
    cls = section_cls(section)
    return _list_page(request, section, Form(to_form(cls, {})))


@routes.post("/settings/{section:extension|user|queue|ivr|timecondition|trunk|route\\.inbound|route\\.outbound|notification}")
@access(*ADMINS)
async def section_create(request: web.Request) -> web.Response:
    section = request.match_info["section"]
    if section not in LIST_SECTIONS:
        raise web.HTTPNotFound()
    t = ctx(request).t
    cls = section_cls(section)
    data = await request.post()
    form = Form()
    record = from_form(cls, data, form, creating=True)
    if section == "user" and form.ok:
        pw = record.get("password")
        if pw:
            problem = request.app[BOX].password_problem(pw, str(record.get("name", "")))
            if problem:
                form.error("password", problem)
    if form.ok:
        try:
            saved = request.app[BOX].config.create(section, {k: v for k, v in record.items() if v is not None})
        except ConfigValidationError as e:
            _errors_into(form, e.errors)
    if not form.ok:
        return _list_page(request, section, form, 400)
    shown = _generated(t, section, saved.key, saved.generated_password, request) if saved.generated_password else ""
    flash(request, "form.saved")
    if shown:
        return _list_page(request, section, Form(to_form(cls, {})), shown=shown)
    raise web.HTTPSeeOther(f"/settings/{section}")


def _edit_page(request: web.Request, section: str, key: str, form: Form, status: int = 200, shown: str = "") -> web.Response:
    t = ctx(request).t
    cls = section_cls(section)
    extra = Markup("")
    if section in ("extension", "user"):
        extra = fmt('<form method="post" action="/settings/{}/{}/password" class="card">{}<h2>{}</h2><p class="muted">{}</p>'
                    '<button type="submit">{}</button></form>', section, key, csrf_field(request),
                    t("settings.new_password"), t("settings.new_password_help"), t("settings.generate"))
    body = fmt('{}{}<form method="post" action="/settings/{}/{}" class="card" novalidate>{}{}<div class="formgrid">{}</div>'
               '<div class="actions"><button type="submit" class="primary">{}</button></div></form>{}'
               '<form method="post" action="/settings/{}/{}/delete" class="card">{}<button type="submit" class="danger" '
               'data-confirm="{}">{}</button></form>',
               settings_tabs(request, section), Markup(shown), section, key, csrf_field(request),
               form_errors_summary(t, form), widgets(t, cls, form, section=section), t("form.save"), extra,
               section, key, csrf_field(request), t("form.delete_confirm"), t("form.delete"))
    return page(request, f"{t('section.' + section)}: {key}", body, status=status)


def _record(request: web.Request, section: str, key: str) -> dict[str, Any]:
    if section not in LIST_SECTIONS:
        raise web.HTTPNotFound()
    rec = request.app[BOX].config.get(section, key)
    if rec is None:
        raise web.HTTPNotFound()
    return rec


@routes.get("/settings/{section:extension|user|queue|ivr|timecondition|trunk|route\\.inbound|route\\.outbound|notification}/{key}")
@access(*ADMINS)
async def record_form(request: web.Request) -> web.Response:
    section, key = request.match_info["section"], request.match_info["key"]
    rec = _record(request, section, key)
    return _edit_page(request, section, key, Form(to_form(section_cls(section), rec)))


@routes.post("/settings/{section:extension|user|queue|ivr|timecondition|trunk|route\\.inbound|route\\.outbound|notification}/{key}")
@access(*ADMINS)
async def record_save(request: web.Request) -> web.Response:
    section, key = request.match_info["section"], request.match_info["key"]
    _record(request, section, key)
    data = await request.post()
    form = Form()
    change = from_form(section_cls(section), data, form, creating=False)
    if section == "user" and form.ok and change.get("password") not in (None, MASK):
        problem = request.app[BOX].password_problem(change["password"], key)
        if problem:
            form.error("password", problem)
    if form.ok:
        try:
            saved = request.app[BOX].config.update(section, key, change)
        except ConfigValidationError as e:
            _errors_into(form, e.errors)
    if not form.ok:
        return _edit_page(request, section, key, form, 400)
    if section == "user":
        request.app[SESSIONS].update_role(saved.key, saved.data.get("role", ""))
    flash(request, "form.saved")
    raise web.HTTPSeeOther(f"/settings/{section}/{saved.key}")


@routes.post("/settings/{section:extension|user|queue|ivr|timecondition|trunk|route\\.inbound|route\\.outbound|notification}/{key}/delete")
@access(*ADMINS)
async def record_delete(request: web.Request) -> web.Response:
    section, key = request.match_info["section"], request.match_info["key"]
    _record(request, section, key)
    c = ctx(request)
    if section == "user" and key == c.user.name:
        flash(request, "settings.not_self", "error")
        raise web.HTTPSeeOther(f"/settings/{section:extension|user|queue|ivr|timecondition|trunk|route\\.inbound|route\\.outbound|notification}/{key}")
    try:
        request.app[BOX].config.delete(section, key)
    except ConfigValidationError as e:
        form = Form(to_form(section_cls(section), _record(request, section, key)))
        form.error("_", "; ".join(e.errors.values()))
        c.session.flash.append(("error", "; ".join(e.errors.values())))
        raise web.HTTPSeeOther(f"/settings/{section:extension|user|queue|ivr|timecondition|trunk|route\\.inbound|route\\.outbound|notification}/{key}")
    if section == "user":
        request.app[SESSIONS].drop_user(key)
    flash(request, "form.deleted")
    raise web.HTTPSeeOther(f"/settings/{section}")


@routes.post("/settings/{section:extension|user|queue|ivr|timecondition|trunk|route\\.inbound|route\\.outbound|notification}/{key}/password")
@access(*ADMINS)
async def record_password(request: web.Request) -> web.Response:
    section, key = request.match_info["section"], request.match_info["key"]
    rec = _record(request, section, key)
    if section not in ("extension", "user"):
        raise web.HTTPNotFound()
    t = ctx(request).t
    password = request.app[BOX].config.set_password(section, key, None)
    if section == "user":
        request.app[SESSIONS].drop_user(key)
    return _edit_page(request, section, key, Form(to_form(section_cls(section), rec)),
                      shown=_generated(t, section, key, password, request))


# -- trunks and modems -------------------------------------------------------------------------
def control_list(request: web.Request, name: str) -> list[dict[str, Any]] | None:
    """A list from a BoxControl method, or None when the running box does not offer it yet."""
    fn = getattr(request.app[API].control, name, None)
    if fn is None:
        return None
    return list(fn())


def _unavailable(t: Translator, rows: list | None) -> Markup:
    return fmt('<p class="muted">{}</p>', t("settings.unavailable")) if rows is None else Markup("")

@routes.get("/settings/trunks-status")
@access(*ADMINS)
async def trunks_status(request: web.Request) -> web.Response:
    t = ctx(request).t
    trunks = control_list(request, "trunks")
    regs_raw = control_list(request, "registrations")
    rows = []
    for tr in trunks or []:
        name = str(tr.get("name", ""))
        faults = tr.get("faults") or tr.get("last_faults") or []
        rows.append(fmt('<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
                        '<td><form method="post" action="/settings/trunks-status/{}/test" class="inline">{}'
                        '<button type="submit" class="small">{}</button></form></td></tr>',
                        name, tr.get("type", ""), tr.get("health") or tr.get("status") or "–",
                        tr.get("signal") if tr.get("signal") is not None else "–", tr.get("sim") or "–",
                        tr.get("registration") or tr.get("registered") or "–",
                        "; ".join(str(f) for f in faults[-3:]) or "–", name, csrf_field(request), t("trunk.test")))
    ussd = fmt('<form method="post" action="/settings/trunks-status/ussd" class="card row">{}<div class="field"><label for="f-trunk">{}</label>'
               '<input id="f-trunk" name="trunk" required maxlength="32"></div><div class="field"><label for="f-code">{}</label>'
               '<input id="f-code" name="code" required maxlength="32" placeholder="*100#"></div>'
               '<button type="submit">{}</button></form>', csrf_field(request), t("field.trunk"), t("trunk.ussd_code"),
               t("trunk.ussd_send"))
    minutes = [fmt('<tr><td>{}</td><td>{}</td></tr>', tr.get("name"),
                   f'{tr.get("minutes_today")}' + (f' / {tr["minutes_per_day"]}' if tr.get("minutes_per_day") else ""))
               for tr in trunks or [] if tr.get("minutes_today") is not None]
    gsm_lines = [str(tr.get("name")) for tr in trunks or [] if tr.get("type") == "gsm"]
    received = [fmt('<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>', m.get("trunk", ""), m.get("sender", ""),
                    t.datetime(m["received_at"]) if isinstance(m.get("received_at"), (int, float)) else "",
                    m.get("text", ""))
                for tr in trunks or [] for m in (tr.get("sms_recent") or [])]
    sms = Markup("")
    if gsm_lines:
        options = join(fmt('<option value="{}">{}</option>', n, n) for n in gsm_lines)
        sms = fmt('<section class="card"><h2>{}</h2>'
                  '<form method="post" action="/settings/trunks-status/sms" class="row">{}'
                  '<div class="field"><label for="f-sms-trunk">{}</label><select id="f-sms-trunk" name="trunk">{}</select></div>'
                  '<div class="field"><label for="f-sms-to">{}</label><input id="f-sms-to" name="number" required maxlength="20" placeholder="+48600100200"></div>'
                  '<div class="field"><label for="f-sms-text">{}</label><input id="f-sms-text" name="text" required maxlength="1000"></div>'
                  '<button type="submit">{}</button></form>{}{}</section>',
                  t("trunk.sms_title"), csrf_field(request), t("field.trunk"), options, t("trunk.sms_to"),
                  t("trunk.sms_text"), t("trunk.sms_send"),
                  table([t("field.trunk"), t("trunk.sms_from"), t("trunk.sms_received"), t("trunk.sms_text")], received,
                        empty=t("settings.none")),
                  table([t("field.trunk"), t("trunk.minutes_today")], minutes, empty=t("settings.none")) if minutes else "")
    regs = [fmt('<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>', r.get("extension"), r.get("source") or r.get("contact"),
                r.get("user_agent", ""), t("yes") if r.get("reachable", True) else t("no"))
            for r in regs_raw or []]
    body = join([settings_tabs(request, "trunks-status"),
                 fmt('<section class="card"><h2>{}</h2>{}{}</section>', t("settings.trunk_status"), _unavailable(t, trunks),
                     table([t("field.name"), t("field.type"), t("trunk.health"), t("trunk.signal"), t("trunk.sim"),
                            t("trunk.registration"), t("trunk.faults"), ""], rows, empty=t("settings.none"))),
                 ussd, sms,
                 fmt('<section class="card"><h2>{}</h2>{}{}</section>', t("settings.registrations"), _unavailable(t, regs_raw),
                     table([t("col.extension"), t("trunk.source"), t("trunk.user_agent"), t("trunk.reachable")], regs,
                           empty=t("settings.none")))])
    return page(request, t("settings.trunk_status"), body)


@routes.post("/settings/trunks-status/{name}/test")
@access(*ADMINS)
async def trunk_test(request: web.Request) -> web.Response:
    c = ctx(request)
    name = request.match_info["name"]
    try:
        findings = await request.app[BOX].action("modem_test")(name)
        c.session.flash.append(("ok", f"{name}: " + ", ".join(f"{k}={v}" for k, v in findings.items())))
    except ControlError as e:
        c.session.flash.append(("error", f"{name}: {e}"))
    raise web.HTTPSeeOther("/settings/trunks-status")


@routes.post("/settings/trunks-status/sms")
@access(*ADMINS)
async def trunk_sms(request: web.Request) -> web.Response:
    c = ctx(request)
    data = await request.post()
    trunk = str(data.get("trunk", ""))[:32]
    number = str(data.get("number", "")).strip().replace(" ", "")
    text = str(data.get("text", "")).strip()
    if not number or not number.lstrip("+").isdigit() or len(number) > 20 or not text or len(text) > 1000:
        c.session.flash.append(("error", "trunk.sms_bad"))
    else:
        try:
            await request.app[BOX].action("send_sms")(trunk, number, text)
            c.session.flash.append(("ok", "trunk.sms_sent"))
        except ControlError as e:
            c.session.flash.append(("error", f"{trunk}: {e}"))
    raise web.HTTPSeeOther("/settings/trunks-status")


@routes.post("/settings/trunks-status/ussd")
@access(*ADMINS)
async def trunk_ussd(request: web.Request) -> web.Response:
    c = ctx(request)
    data = await request.post()
    trunk, code = str(data.get("trunk", ""))[:32], str(data.get("code", "")).strip()[:32]
    if not code or not set(code) <= set("0123456789*#"):
        c.session.flash.append(("error", "trunk.ussd_bad"))
    else:
        try:
            answer = await request.app[BOX].action("modem_ussd")(trunk, code)
            c.session.flash.append(("ok", f"{trunk} {code}: {answer}"))
        except ControlError as e:
            c.session.flash.append(("error", f"{trunk}: {e}"))
    raise web.HTTPSeeOther("/settings/trunks-status")


# -- bans --------------------------------------------------------------------------------------
@routes.get("/settings/bans")
@access(*ADMINS)
async def bans(request: web.Request) -> web.Response:
    t = ctx(request).t
    rows = [fmt('<tr><td class="mono">{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method="post" action="/settings/bans/lift" '
                'class="inline">{}<input type="hidden" name="ip" value="{}"><button type="submit" class="small">{}</button></form></td></tr>',
                b["ip"], b.get("reason", ""), t.datetime(b.get("banned_at")), t.datetime(b.get("until")),
                csrf_field(request), b["ip"], t("bans.lift"))
            for b in control_list(request, "bans") or []]
    body = join([settings_tabs(request, "bans"), fmt('<section class="card"><p class="muted">{}</p>{}</section>', t("bans.help"),
                 table([t("bans.ip"), t("bans.reason"), t("bans.since"), t("bans.until"), ""], rows, empty=t("bans.none")))])
    return page(request, t("settings.bans"), body)


@routes.post("/settings/bans/lift")
@access(*ADMINS)
async def lift_ban(request: web.Request) -> web.Response:
    data = await request.post()
    ip = str(data.get("ip", ""))[:64]
    try:
        lifted = request.app[BOX].action("lift_ban")(ip)
    except ControlError as e:
        ctx(request).session.flash.append(("error", str(e)))
        raise web.HTTPSeeOther("/settings/bans")
    if lifted:
        flash(request, "bans.lifted")
    else:
        flash(request, "bans.not_found", "error")
    raise web.HTTPSeeOther("/settings/bans")


# -- backup and restore (long operations with progress) ----------------------------------------
def _backup_page(request: web.Request, error: str = "", status: int = 200, *, import_error: str = "",
                 shown: Markup | str = "") -> web.Response:
    t = ctx(request).t
    problems = Markup("")
    if import_error:
        problems = fmt('<div class="flash error" role="alert"><p>{}</p><pre class="mono">{}</pre></div>',
                       t("import.invalid"), import_error)
    body = join([settings_tabs(request, "backup"), Markup(shown), problems,
                 fmt('<section class="card"><h2>{}</h2><p class="muted">{}</p><form method="post" action="/settings/backup">{}'
                     '<button type="submit" class="primary">{}</button></form></section>',
                     t("backup.title"), t("backup.help"), csrf_field(request), t("backup.create")),
                 fmt('<section class="card"><h2>{}</h2><p class="muted">{}</p>'
                     '<form method="post" action="/settings/restore" enctype="multipart/form-data" novalidate>{}'
                     '<div class="field{}"><label for="f-file">{}</label><input type="file" id="f-file" name="file" accept=".json,application/json" required{}>{}</div>'
                     '<button type="submit" class="danger" data-confirm="{}">{}</button></form></section>',
                     t("restore.title"), t("restore.help"), csrf_field(request), " has-error" if error else "",
                     t("restore.file"), Markup(' aria-invalid="true" aria-describedby="e-file"') if error else "",
                     fmt('<p class="field-error" id="e-file">{}</p>', t(error) if t.has(error) else error) if error else "",
                     t("restore.confirm"), t("restore.submit")),
                 fmt('<section class="card"><h2>{}</h2><p class="muted">{}</p>'
                     '<form method="post" action="/settings/import" enctype="multipart/form-data" novalidate>{}'
                     '<div class="field"><label for="f-toml">{}</label><input type="file" id="f-toml" name="file" accept=".toml" required></div>'
                     '<button type="submit" data-confirm="{}">{}</button></form></section>',
                     t("import.title"), t("import.help"), csrf_field(request), t("import.file"), t("import.confirm"),
                     t("import.submit"))])
    return page(request, t("settings.backup"), body, status=status)


@routes.get("/settings/backup")
@access(*ADMINS)
async def backup_page(request: web.Request) -> web.Response:
    return _backup_page(request)


def _job_page(request: web.Request, job: Job, title_key: str, done_url: str) -> web.Response:
    t = ctx(request).t
    body = fmt('<section class="card" data-job="{}" data-done="{}"><p data-step>{}</p><progress max="1" value="{}"></progress>'
               '<p class="muted"><a href="{}">{}</a></p></section>', job.id, done_url, t("job.running"), job.progress,
               done_url, t("job.continue"))
    return page(request, t(title_key), body, status=202)


@routes.post("/settings/backup")
@access(*ADMINS)
async def backup_start(request: web.Request) -> web.Response:
    box = request.app[BOX]
    import asyncio

    async def body(job: Job) -> dict[str, Any]:
        job.advance(0.1, "job.backup_config")
        blob = await asyncio.get_running_loop().run_in_executor(None, box.config.backup)
        job.advance(0.9, "job.backup_ready")
        return {"blob": blob}

    job = request.app[JOBS].start("backup", ctx(request).user.name, body)
    return _job_page(request, job, "backup.title", f"/jobs/{job.id}/result")


@routes.post("/settings/restore")
@access(*ADMINS)
async def restore_start(request: web.Request) -> web.Response:
    data = await request.post()
    f = data.get("file")
    if f is None or not hasattr(f, "file"):
        return _backup_page(request, "restore.no_file", 400)
    blob = f.file.read(BACKUP_MAX + 1)
    if len(blob) > BACKUP_MAX:
        return _backup_page(request, "restore.too_big", 413)
    box = request.app[BOX]
    try:
        doc = json.loads(blob.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("officebox_config") != 1:
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        return _backup_page(request, "restore.invalid", 400)
    import asyncio

    async def body(job: Job) -> dict[str, Any]:
        job.advance(0.2, "job.restore_check")
        try:
            await asyncio.get_running_loop().run_in_executor(None, box.config.restore, blob)
        except (ConfigValidationError, ConfigStoreError) as e:
            raise JobFailed(str(e)) from None
        job.advance(0.95, "job.restore_applied")
        return {}

    job = request.app[JOBS].start("restore", ctx(request).user.name, body)
    return _job_page(request, job, "restore.title", f"/jobs/{job.id}/result")


@routes.post("/settings/import")
@access(*ADMINS)
async def import_start(request: web.Request) -> web.Response:
    """Apply a provisioning file (TOML) to the running box: checked line by line first, then the
    sections it contains replace the stored ones (see ConfigStore.provision); progress shown."""
    import asyncio
    import os
    import tempfile

    data = await request.post()
    f = data.get("file")
    if f is None or not hasattr(f, "file"):
        return _backup_page(request, "restore.no_file", 400)
    blob = f.file.read(BACKUP_MAX + 1)
    if len(blob) > BACKUP_MAX:
        return _backup_page(request, "restore.too_big", 413)
    box = request.app[BOX]
    fd, tmp = tempfile.mkstemp(dir=box.config.data_dir, prefix=".import-", suffix=".toml")
    with os.fdopen(fd, "wb") as out:
        out.write(blob)

    async def body(job: Job) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            job.advance(0.2, "job.import_check")
            try:
                await loop.run_in_executor(None, fwconfig.load_provisioning, tmp)
            except fwconfig.ProvisioningError as e:
                raise JobFailed("\n".join(f"{i.line}: {i.message}" for i in e.issues[:30])) from None
            job.advance(0.6, "job.import_apply")
            try:
                generated = await loop.run_in_executor(None, box.config.provision_file, tmp)
            except fwconfig.ProvisioningError as e:
                raise JobFailed("\n".join(i.message for i in e.issues[:30])) from None
            return {"generated": [(g.kind, g.name, g.password) for g in generated]}
        finally:
            os.unlink(tmp)

    job = request.app[JOBS].start("import", ctx(request).user.name, body)
    return _job_page(request, job, "import.title", f"/jobs/{job.id}/result")


@routes.get("/jobs/{id}")
@access(*ADMINS)
async def job_state(request: web.Request) -> web.Response:
    t = ctx(request).t
    job = request.app[JOBS].get(request.match_info["id"])
    if job is None or job.owner != ctx(request).user.name:
        raise web.HTTPNotFound()
    d = job.public()
    d.pop("result")
    d["step_text"] = t(job.step) if job.step else t("job.running")
    return web.json_response(d)


@routes.get("/jobs/{id}/result")
@access(*ADMINS)
async def job_result(request: web.Request) -> web.StreamResponse:
    t = ctx(request).t
    job = request.app[JOBS].get(request.match_info["id"])
    if job is None or job.owner != ctx(request).user.name:
        raise web.HTTPNotFound()
    if job.state == "running":
        return _job_page(request, job, f"{job.kind}.title", f"/jobs/{job.id}/result")
    if job.state == "failed":
        if job.kind == "import":
            return _backup_page(request, "", 400, import_error=job.error)
        return _backup_page(request, job.error or "job.failed", 400)
    if job.kind == "import":
        creds = job.result.pop("generated", [])
        shown = fmt('<div class="flash ok" role="status"><p>{}</p>{}</div>', t("import.done"),
                    table([t("field.type"), t("field.name"), t("field.password")],
                          [fmt('<tr><td>{}</td><td>{}</td><td><code class="secret">{}</code></td></tr>',
                               t("section." + kind), name, pw) for kind, name, pw in creds]) if creds else "")
        return _backup_page(request, shown=shown)
    if job.kind == "backup":
        stamp = t.local(job.started).strftime("%Y%m%d-%H%M")
        return web.Response(body=job.result["blob"], content_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="officebox-backup-{stamp}.json"'})
    flash(request, "restore.done")
    raise web.HTTPSeeOther("/settings")


# -- prompts: upload a WAV, hear a text-to-speech preview ----------------------------------------
PROMPT_MAX = 16 * 1024 * 1024
PROMPT_NAME = __import__("re").compile(r"[^A-Za-z0-9_-]+")


def _prompts_page(request: web.Request, form: Form, status: int = 200, shown: str = "") -> web.Response:
    t = ctx(request).t
    folder = request.app[BOX].config.prompts_dir
    files = sorted(p.name for p in folder.glob("*.wav")) if folder.is_dir() else []
    rows = [fmt('<tr><td class="mono">{}</td><td><audio controls preload="none" src="/settings/prompts/{}"></audio></td></tr>',
                name, name) for name in files]
    langs = [(c, n) for c, n in LANGUAGE_NAMES.items()]
    body = join([settings_tabs(request, "prompts"), Markup(shown),
                 fmt('<section class="card"><h2>{}</h2><p class="muted">{}</p>{}</section>', t("prompts.title"),
                     t("prompts.help"), table([t("field.name"), ""], rows, empty=t("settings.none"))),
                 fmt('<form method="post" action="/settings/prompts" enctype="multipart/form-data" class="card" novalidate>{}'
                     '<h2>{}</h2>{}{}<div class="field{}"><label for="f-file">{}</label><input type="file" id="f-file" '
                     'name="file" accept=".wav,audio/wav"{}>{}</div><button type="submit" class="primary">{}</button></form>',
                     csrf_field(request), t("prompts.upload"), form_errors_summary(t, form),
                     input_field(t, form, "name", t("field.name"), required=True, maxlength=40),
                     " has-error" if form.errors.get("file") else "", t("prompts.file"),
                     Markup(' aria-invalid="true" aria-describedby="e-file"') if form.errors.get("file") else "",
                     fmt('<p class="field-error" id="e-file">{}</p>', form.errors["file"]) if form.errors.get("file") else "",
                     t("prompts.upload")),
                 fmt('<form method="post" action="/settings/prompts/preview" class="card" novalidate>{}<h2>{}</h2>{}{}'
                     '<button type="submit">{}</button></form>', csrf_field(request), t("prompts.preview"),
                     input_field(t, Form({"language": t.lang}), "text", t("field.prompt"), type="textarea", maxlength=500),
                     input_field(t, Form({"language": t.lang}), "language", t("field.language"), options=langs),
                     t("prompts.listen"))])
    return page(request, t("prompts.title"), body, status=status)


@routes.get("/settings/prompts")
@access(*ADMINS)
async def prompts(request: web.Request) -> web.Response:
    return _prompts_page(request, Form())


@routes.post("/settings/prompts")
@access(*ADMINS)
async def prompt_upload(request: web.Request) -> web.Response:
    import asyncio
    import os
    import tempfile
    from pathlib import Path

    t = ctx(request).t
    data = await request.post()
    name = PROMPT_NAME.sub("-", str(data.get("name", "")).strip()).strip("-")[:40]
    form = Form({"name": str(data.get("name", ""))})
    if not name:
        form.error("name", "form.required")
    f = data.get("file")
    if f is None or not hasattr(f, "file"):
        form.error("file", t("restore.no_file"))
        return _prompts_page(request, form, 400)
    blob = f.file.read(PROMPT_MAX + 1)
    if len(blob) > PROMPT_MAX:
        form.error("file", t("restore.too_big"))
    if not form.ok:
        return _prompts_page(request, form, 400)
    folder = Path(request.app[BOX].config.prompts_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".upload")
    with os.fdopen(fd, "wb") as out:
        out.write(blob)
    problem = await asyncio.get_running_loop().run_in_executor(None, fwconfig.wav_problem, Path(tmp))
    if problem:
        os.unlink(tmp)
        form.error("file", t("prompts.bad_wav"))
        return _prompts_page(request, form, 400)
    os.replace(tmp, folder / f"{name}.wav")
    return _prompts_page(request, Form(), shown=fmt('<div class="flash ok" role="status">{}</div>',
                                                    t("prompts.saved", name=f"{name}.wav")))


@routes.get("/settings/prompts/{name}")
@access(*ADMINS)
async def prompt_file(request: web.Request) -> web.StreamResponse:
    from pathlib import Path

    name = request.match_info["name"]
    if not __import__("re").fullmatch(r"[A-Za-z0-9_-]{1,40}\.wav", name):
        raise web.HTTPNotFound()
    path = Path(request.app[BOX].config.prompts_dir) / name
    if not path.is_file():
        raise web.HTTPNotFound()
    resp = web.FileResponse(path)
    resp.content_type = "audio/wav"
    return resp


@routes.post("/settings/prompts/preview")
@access(*ADMINS)
async def prompt_preview(request: web.Request) -> web.StreamResponse:
    data = await request.post()
    text = str(data.get("text", "")).strip()[:500]
    lang = str(data.get("language", "en"))
    if not text or lang not in LANGUAGE_NAMES:
        form = Form({"text": text})
        form.error("text", "form.required")
        return _prompts_page(request, form, 400)
    try:
        wav = await request.app[BOX].action("prompt_preview")(text, lang)
    except ControlError as e:
        ctx(request).session.flash.append(("error", str(e)))
        raise web.HTTPSeeOther("/settings/prompts")
    return web.Response(body=wav, content_type="audio/wav", headers={"Content-Disposition": 'inline; filename="preview.wav"'})
