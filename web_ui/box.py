"""The web page's view of the box: one place that calls firmware's public API (BoxAPI:
config store, call store, reports, live state, control). Views call this, never the stores
directly, so the mapping between what a page needs and what the firmware offers is here.
"""
from __future__ import annotations

import asyncio
import functools
import os
import secrets
import zoneinfo
from pathlib import Path
from typing import Any, Callable

from firmware import config as fwconfig
from firmware.api import BoxAPI, ControlError
from firmware.store.config_store import ConfigValidationError

SETUP_CODE_FILE = "setup-code"
SETUP_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@functools.lru_cache(maxsize=1)
def _zones() -> tuple[str, ...]:
    zones = sorted(z for z in zoneinfo.available_timezones()
                   if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/", "right/")))
    return tuple(zones) + ("UTC",)


class Box:
    """Adapter from the pages' needs to firmware's public API."""

    def __init__(self, api: BoxAPI, clock: Callable[[], float]) -> None:
        self.api = api
        self.clock = clock
        self.config = api.config
        self.calls = api.calls
        self.reports = api.reports

    def action(self, name: str) -> Callable[..., Any]:
        """The BoxControl method `name`; ControlError (shown to the user) when the running box
        does not offer it."""
        fn = getattr(self.api.control, name, None)
        if fn is None:
            raise ControlError("settings.unavailable")
        return fn

    async def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run a store read (a report query) on a worker thread: the event loop keeps serving
        calls, live boards and other pages meanwhile (each thread has its own read connection)."""
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kw))

    async def _offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a CPU-heavy call (scrypt) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))

    # -- system ---------------------------------------------------------------------------
    def system(self) -> dict[str, Any]:
        return self.config.get("system") or {}

    def system_language(self) -> str:
        return self.system().get("language", "") if self.config.is_provisioned() or self.has_admin() else ""

    def timezone(self) -> str:
        return self.system().get("timezone", "UTC") or "UTC"

    def timezones(self) -> tuple[str, ...]:
        return _zones()

    # -- users ------------------------------------------------------------------------------
    def users(self) -> list[dict[str, Any]]:
        return self.config.list("user")

    def has_admin(self) -> bool:
        return any(u.get("role") == "admin" for u in self.users())

    def user(self, name: str) -> dict[str, Any] | None:
        u = next((u for u in self.users() if u["name"] == name), None)
        if u is not None:
            u = {**u, "extension": u.get("extension") or "", "language": u.get("language") or ""}
        return u

    async def verify_login(self, name: str, password: str) -> dict[str, Any] | None:
        """The user when the password is right (scrypt runs off the event loop)."""
        rec = await self._offload(self.config.verify_user, name, password)
        return self.user(name) if rec is not None else None

    def password_problem(self, password: str, name: str = "") -> str | None:
        """Why a new web password is refused (a message key or the validator's text)."""
        if not password:
            return "form.required"
        if len(password) < 12:
            return "password.short"
        return "password.weak" if fwconfig.password_problem(password, name=name or None) else None

    async def set_password(self, name: str, password: str) -> dict[str, str]:
        try:
            await self._offload(self.config.set_password, "user", name, password)
        except ConfigValidationError as e:
            return e.errors
        return {}

    async def set_user_language(self, name: str, lang: str) -> None:
        u = self.user(name)
        if u is not None and u.get("language") != lang:
            await self._offload(self.config.update, "user", name, {"language": lang})

    async def first_admin(self, name: str, password: str, lang: str, tz: str) -> dict[str, str]:
        """Create the first admin and set the office language and time zone; uses up the
        setup code. Returns field errors (nothing stored when there are any)."""
        try:
            await self._offload(self.config.create, "user",
                                {"name": name, "password": password, "role": "admin", "language": lang})
        except ConfigValidationError as e:
            return e.errors
        await self._offload(self.config.update, "system", "", {"language": lang, "timezone": tz})
        self.clear_setup_code()
        return {}

    # -- API tokens -------------------------------------------------------------------------
    def user_for_token(self, token: str) -> dict[str, Any] | None:
        if not token or len(token) > 200:
            return None
        name = self.config.verify_api_token(token)
        return self.user(name) if name else None

    async def create_token(self, user: str, label: str) -> str:
        _, token = await self._offload(self.config.create_api_token, user, label)
        return token

    def tokens(self, user: str) -> list[dict[str, Any]]:
        return [{**t, "created": t["created_at"]} for t in self.config.api_tokens(user)]

    async def revoke_token(self, user: str, token_id: str) -> bool:
        if not any(t["id"] == token_id for t in self.config.api_tokens(user)):
            return False
        return bool(await self._offload(self.config.revoke_api_token, token_id))

    # -- queues and calls ---------------------------------------------------------------------
    def queues(self) -> list[dict[str, Any]]:
        return self.config.list("queue")

    def queue(self, number: str) -> dict[str, Any] | None:
        return next((q for q in self.queues() if q["number"] == number), None) if number else None

    def calls_of_number(self, number: str, limit: int = 6) -> list[Any]:
        return self.calls.calls_of_number(number, limit=limit) if number else []

    def last_call_to_note(self, ext: str, now: float, within_s: float = 3600) -> Any:
        """The agent's latest answered call of the last hour that has no disposition yet."""
        rows = self.calls.query(
            "SELECT id FROM calls WHERE answered_by = ? AND status = 'answered' AND disposition = '' "
            "AND ended_at IS NOT NULL AND ended_at > ? ORDER BY ended_at DESC LIMIT 1", (ext, now - within_s))
        return self.calls.get_call(rows[0]["id"]) if rows else None

    def agent_missed(self, ext: str, now: float) -> list[dict[str, Any]]:
        """Open missed-call entries of the agent's queues or of calls to the agent's phone."""
        queues = [q["number"] for q in self.queues()
                  if any((m if isinstance(m, str) else m.get("extension")) == ext for m in q.get("members", []))]
        live = self.api.live.agents.get(ext)
        if live is not None:
            queues = sorted(set(queues) | set(live.queues))
        marks = ",".join("?" * len(queues)) or "''"
        rows = self.calls.query(
            f"SELECT m.id, m.number, m.last_missed_at, m.queue, m.count FROM missed_calls m "
            f"WHERE m.closed_at IS NULL AND (m.queue IN ({marks}) OR EXISTS (SELECT 1 FROM missed_call_links l "
            f"JOIN calls c ON c.id = l.call_id WHERE l.missed_id = m.id AND c.to_extension = ?)) "
            f"ORDER BY m.last_missed_at DESC LIMIT 50", (*queues, ext))
        return [{"id": r["id"], "number": r["number"], "last": r["last_missed_at"], "queue": r["queue"],
                 "count": r["count"]} for r in rows]

    # -- first-run setup code ---------------------------------------------------------------------
    def _code_path(self) -> Path:
        return Path(self.api.data_dir) / SETUP_CODE_FILE

    def setup_code(self) -> str | None:
        """The one-time setup code while no admin exists (created on first call, 0600)."""
        if self.has_admin():
            self.clear_setup_code()
            return None
        p = self._code_path()
        try:
            code = p.read_text().strip()
            if len(code) == 9:
                return code
        except FileNotFoundError:
            pass
        raw = "".join(secrets.choice(SETUP_ALPHABET) for _ in range(8))
        code = f"{raw[:4]}-{raw[4:]}"
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(code + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        return code

    def check_setup_code(self, entered: str) -> bool:
        code = self.setup_code()
        if not code:
            return False
        norm = entered.strip().upper().replace(" ", "")
        if len(norm) == 8:
            norm = norm[:4] + "-" + norm[4:]
        return secrets.compare_digest(norm.encode(), code.encode())

    def clear_setup_code(self) -> None:
        try:
            self._code_path().unlink()
        except FileNotFoundError:
            pass
