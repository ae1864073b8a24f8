"""Random bytes for tags, branches, Call-IDs, nonces and SDP session ids, drawn from
``os.urandom`` in blocks.

A call set-up draws about a dozen of them. One getrandom() system call each, which also lets
any waiting thread take the interpreter lock, was measurable at 400 call set-ups per second.
The block is the kernel's CSPRNG output and each byte is used once; a forked child drops the
block it inherited, so parent and child never hand out the same bytes.
"""
from __future__ import annotations

import os
import threading

BLOCK = 4096
_lock = threading.Lock()
_buf = b""
_pos = 0


def token_bytes(nbytes: int) -> bytes:
    """``nbytes`` random bytes (as :func:`secrets.token_bytes`)."""
    global _buf, _pos
    with _lock:
        end = _pos + nbytes
        if end > len(_buf):
            _buf, _pos, end = os.urandom(max(BLOCK, nbytes)), 0, nbytes
        chunk = _buf[_pos:end]
        _pos = end
    return chunk


def token_hex(nbytes: int) -> str:
    """``2 * nbytes`` random hex digits (as :func:`secrets.token_hex`)."""
    return token_bytes(nbytes).hex()


def _forget() -> None:
    global _buf, _pos
    _buf, _pos = b"", 0


os.register_at_fork(after_in_child=_forget)
