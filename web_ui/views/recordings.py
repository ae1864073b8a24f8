"""Recordings: served by call record id only, to the roles allowed, with HTTP Range.

The client never names a file: the handler looks up the call record, takes the path the
record names, resolves it inside the data directory's recordings/ folder (symlinks and '..'
resolved first) and refuses anything that ends up outside it.
"""
from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from web_ui.keys import API, BOX, MANAGERS, Principal, ctx

CALL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")


def may_see_call(user: Principal, call: object) -> bool:
    """Managers and admins see every call; an agent only calls their extension took part in."""
    if user.role in MANAGERS:
        return True
    ext = user.extension
    return bool(ext) and ext in (getattr(call, "answered_by", ""), getattr(call, "from_extension", ""),
                                 getattr(call, "to_extension", ""))


def recording_file(request: web.Request, call_id: str) -> tuple[Path, object]:
    """The recording file of a call the requester may hear, or an HTTP error."""
    if not CALL_ID.match(call_id):
        raise web.HTTPNotFound()
    call = request.app[BOX].calls.get_call(call_id)
    user = ctx(request).user
    if call is None:
        raise web.HTTPNotFound()
    if user is None or not may_see_call(user, call):
        raise web.HTTPForbidden()
    rel = call.recording_path
    if not rel or call.recording_state not in ("complete", "interrupted", "recording"):
        raise web.HTTPNotFound()
    base = (Path(request.app[API].data_dir) / "recordings").resolve()
    candidate = Path(rel)
    if not candidate.is_absolute():
        candidate = Path(request.app[API].data_dir) / candidate
    try:
        path = candidate.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        raise web.HTTPNotFound() from None
    if not path.is_relative_to(base) or not path.is_file():
        raise web.HTTPNotFound()
    return path, call


async def serve_recording(request: web.Request, call_id: str, download: bool) -> web.StreamResponse:
    path, call = recording_file(request, call_id)
    headers = {"Cache-Control": "private, no-store"}
    if download:
        stamp = re.sub(r"[^0-9A-Za-z_-]", "_", call_id)[:40]
        headers["Content-Disposition"] = f'attachment; filename="call-{stamp}{path.suffix.lower()}"'
    # FileResponse answers Range requests with 206 and Content-Range (HTML5 audio seeking).
    resp = web.FileResponse(path, headers=headers)
    resp.content_type = "audio/wav" if path.suffix.lower() == ".wav" else "application/octet-stream"
    return resp
