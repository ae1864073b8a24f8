"""cffi build script for the media engine (API mode).

Used by setup.py (``cffi_modules``) and runnable directly for an in-place build.
The cdef is taken from the public header between the PBX_CDEF markers, so the
header stays the single source of truth.
"""
import glob
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "include", "pbxcore.h")


def _cdef_from_header(path: str) -> str:
    text = open(path, encoding="utf-8").read()
    m = re.search(r"/\* PBX_CDEF_BEGIN \*/(.*?)/\* PBX_CDEF_END \*/", text, re.S)
    if not m:
        raise SystemExit(f"{path}: no PBX_CDEF_BEGIN/END markers")
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    body = "\n".join(l for l in body.splitlines() if not l.lstrip().startswith("#"))
    return body


def _rel(p: str) -> str:
    # setuptools requires sources relative to setup.py's directory.
    return os.path.relpath(p, os.getcwd())


ffibuilder = FFI()
ffibuilder.cdef(_cdef_from_header(HEADER))
ffibuilder.set_source(
    "firmware._pbxcore",
    '#include "pbxcore.h"',
    sources=sorted(_rel(p) for p in glob.glob(os.path.join(HERE, "src", "*.c"))),
    include_dirs=[_rel(os.path.join(HERE, "include"))],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden"],
    libraries=["pthread", "m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
