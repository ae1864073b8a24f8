"""Typed application state (aiohttp AppKeys) and the per-request context."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from web_ui.i18n import Translator
from web_ui.sessions import LoginThrottle, Session, SessionStore

if TYPE_CHECKING:
    from firmware.api import BoxAPI
    from web_ui.box import Box
    from web_ui.jobs import Jobs

ROLES = ("admin", "manager", "agent")
MANAGERS = ("admin", "manager")
ADMINS = ("admin",)
EVERYONE = ROLES

API: web.AppKey["BoxAPI"] = web.AppKey("api", object)  # type: ignore[arg-type]
BOX: web.AppKey["Box"] = web.AppKey("box", object)  # type: ignore[arg-type]
SESSIONS = web.AppKey("sessions", SessionStore)
THROTTLE = web.AppKey("throttle", LoginThrottle)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock", object)  # type: ignore[arg-type]
JOBS: web.AppKey["Jobs"] = web.AppKey("jobs", object)  # type: ignore[arg-type]
OPTIONS: web.AppKey["WebOptions"] = web.AppKey("options", object)  # type: ignore[arg-type]
STREAMS: web.AppKey[set] = web.AppKey("streams", set)

CTX = web.RequestKey("obx_ctx", object)
"""request[CTX]: the RequestContext of the request."""


@dataclass
class WebOptions:
    """Knobs of the web app (tests shorten them)."""

    max_upload_bytes: int = 64 * 1024 * 1024
    """Largest request body (backup restore, prompt upload), bytes."""
    max_range_days: int = 400
    """Longest report period a page accepts, days."""
    sse_heartbeat_s: float = 15.0
    """Seconds between keep-alive comments on the live event streams."""
    print_setup_code: bool = True
    """Print `setup code: XXXX-XXXX` on the console at start when no admin exists."""


@dataclass
class Principal:
    """Who is making the request."""

    name: str
    role: str
    extension: str = ""
    lang: str = ""
    via: str = "session"
    """session | token"""


@dataclass
class RequestContext:
    t: Translator
    session: Session | None = None
    token: str | None = None
    """Cookie token of the session (None when none was sent or it expired)."""
    new_cookie: str | None = None
    """A session token to set on the response."""
    user: Principal | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


def ctx(request: web.Request) -> RequestContext:
    return request[CTX]


def access(*roles: str, public: bool = False) -> Callable[[Any], Any]:
    """Mark a handler with the roles that may call it, or `public` (no login needed).
    Handlers without a mark need a login (any role)."""

    def mark(handler: Any) -> Any:
        handler.obx_roles = tuple(roles)
        handler.obx_public = public
        return handler

    return mark
