"""JSON-lines command loop shared by the phone agents that run as subprocesses.

A test writes one JSON object per line on the agent's stdin ({"id": n, "cmd": ..., ...}) and
reads replies ({"id": n, "ok": true, ...}) and unsolicited events ({"event": ...}) on stdout.
"""
from __future__ import annotations

import json
import sys
import threading
import traceback
from typing import Any, Callable

_out_lock = threading.Lock()


def emit(obj: dict[str, Any]) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def event(name: str, **data: Any) -> None:
    emit({"event": name, **data})


def serve(handlers: dict[str, Callable[..., Any]], pump: Callable[[], None] | None = None) -> None:
    """Read commands until EOF or a "quit" command. `pump` runs between commands (pjsua2)."""
    import select

    while True:
        if pump is not None:
            r, _, _ = select.select([sys.stdin], [], [], 0.01)
            if not r:
                pump()
                continue
        line = sys.stdin.readline()
        if not line:
            return
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        mid, cmd = msg.pop("id", None), msg.pop("cmd")
        if cmd == "quit":
            emit({"id": mid, "ok": True})
            return
        try:
            result = handlers[cmd](**msg) or {}
            emit({"id": mid, "ok": True, **result})
        except Exception as e:  # reported to the test, which decides
            emit({"id": mid, "ok": False, "error": f"{type(e).__name__}: {e}",
                  "trace": traceback.format_exc()})
