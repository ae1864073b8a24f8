"""Request pipeline: security headers, errors, sessions and API tokens, roles, CSRF."""
from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
import logging
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web

from web_ui.i18n import LANGUAGES, Translator, negotiate, zone
from web_ui.keys import BOX, CTX, SESSIONS, THROTTLE, Principal, RequestContext

log = logging.getLogger("web_ui")

COOKIE = "obx_session"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def wants_json(request: web.Request) -> bool:
    return is_api(request) or "application/json" in request.headers.get("Accept", "")


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on every response (pages, files, errors, streams)."""
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
    if request.secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
    c = request.get(CTX)
    if c is not None and c.new_cookie is not None:
        h.add("Set-Cookie", session_cookie(c.new_cookie, secure=request.secure))


def session_cookie(token: str, *, secure: bool) -> str:
    """Set-Cookie value of the session: HttpOnly, SameSite=Strict, Secure over https; an
    empty token deletes the cookie. (Written as a header here because the response's
    cookie jar is already serialised when on_response_prepare runs.)"""
    c: SimpleCookie = SimpleCookie()
    c[COOKIE] = token
    m = c[COOKIE]
    m["path"] = "/"
    m["httponly"] = True
    m["samesite"] = "Strict"
    if secure:
        m["secure"] = True
    if not token:
        m["max-age"] = 0
        m["expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
    return m.OutputString()


def client_ip(request: web.Request) -> str:
    """The peer address (forwarded headers are not trusted: the box is not behind a proxy)."""
    return request.remote or "?"


def _translator(request: web.Request, c: RequestContext) -> Translator:
    box = request.app[BOX]
    lang = ""
    if c.session and c.session.lang:
        lang = c.session.lang
    elif c.user and c.user.lang:
        lang = c.user.lang
    else:
        lang = box.system_language() or negotiate(request.headers.get("Accept-Language"))
    return Translator(lang if lang in LANGUAGES else "en", zone(box.timezone()))


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Session or API token -> Principal; language; setup redirect; roles; CSRF."""
    app = request.app
    box = app[BOX]
    sessions = app[SESSIONS]
    c = RequestContext(t=Translator("en"))
    request[CTX] = c
    token = request.cookies.get(COOKIE)
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and is_api(request):
        ip = client_ip(request)
        throttle = app[THROTTLE]
        if throttle.check(ip):
            raise web.HTTPTooManyRequests(text='{"error": "too many failed attempts"}',
                                          content_type="application/json")
        found = box.user_for_token(auth[7:].strip())
        if found is None:
            throttle.failure(ip)
            raise web.HTTPUnauthorized(text='{"error": "invalid API token"}', content_type="application/json",
                                       headers={"WWW-Authenticate": 'Bearer realm="officebox"'})
        c.user = Principal(found["name"], found["role"], found.get("extension", ""),
                           found.get("language", ""), via="token")
    else:
        s = sessions.get(token)
        if s is None and token:
            c.new_cookie = ""
        c.session, c.token = s, (token if s else None)
        if s and s.user:
            u = box.user(s.user)
            if u is None:
                sessions.drop(token)
                c.session, c.token, c.new_cookie = None, None, ""
            else:
                c.user = Principal(u["name"], u["role"], u.get("extension", ""), u.get("language", ""))
                s.role = u["role"]
    c.t = _translator(request, c)

    route = request.match_info.route
    h = getattr(route, "handler", None)
    public = getattr(h, "obx_public", False) or isinstance(route.resource, web.StaticResource)
    roles = getattr(h, "obx_roles", None)
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception
    if not box.has_admin() and not public and not is_api(request):
        raise web.HTTPSeeOther("/setup")
    if not public:
        if c.user is None:
            if wants_json(request):
                raise web.HTTPUnauthorized(text='{"error": "log in or send an API token"}',
                                           content_type="application/json",
                                           headers={"WWW-Authenticate": 'Bearer realm="officebox"'})
            nxt = request.path_qs if request.method == "GET" else "/"
            raise web.HTTPSeeOther("/login?next=" + quote(nxt, safe=""))
        if roles and c.user.role not in roles:
            raise web.HTTPForbidden()
    if request.method in UNSAFE and not (c.user is not None and c.user.via == "token"):
        await check_csrf(request, c)
    return await handler(request)


async def check_csrf(request: web.Request, c: RequestContext) -> None:
    """Synchronizer token: form field `_csrf` or header `X-CSRF-Token` must equal the
    session's token; a cross-site Origin is refused outright."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        o = urlsplit(origin)
        if o.netloc != request.host:
            raise CsrfError()
    elif origin == "null":
        raise CsrfError()
    if c.session is None:
        raise CsrfError()
    sent = request.headers.get("X-CSRF-Token", "")
    if not sent and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        sent = str(form.get("_csrf", ""))
    if not sent or not hmac.compare_digest(sent.encode(), c.session.csrf.encode()):
        raise CsrfError()


class CsrfError(web.HTTPForbidden):
    """A state-changing request without the session's CSRF token."""


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTML error pages in the user's language; JSON errors on /api/."""
    from web_ui.views.common import error_page

    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        if wants_json(request):
            kind = "csrf" if isinstance(e, CsrfError) else e.reason.lower()
            return web.json_response({"error": kind}, status=e.status, headers=_keep(e))
        return error_page(request, e.status, csrf=isinstance(e, CsrfError), headers=_keep(e))
    except Exception:
        log.exception("error in %s %s", request.method, request.path)
        if wants_json(request):
            return web.json_response({"error": "internal error"}, status=500)
        return error_page(request, 500)


def _keep(e: web.HTTPException) -> dict[str, Any]:
    return {k: v for k, v in e.headers.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")}
