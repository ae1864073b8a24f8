"""Safe Python objects over the C media engine (the only importer of firmware._pbxcore)."""
from __future__ import annotations

from firmware._pbxcore import ffi, lib  # noqa: F401


def engine_version() -> str:
    return ffi.string(lib.pbx_version()).decode()
