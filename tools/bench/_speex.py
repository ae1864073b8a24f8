"""speexdsp's jitter buffer bound through cffi for the benchmarks only (never shipped).

The module is compiled on first use into a cache folder (Debian libspeexdsp-dev needed):

    from tools.bench._speex import load
    ffi, lib = load()
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

from cffi import FFI

CDEF = """
typedef struct JitterBuffer_ JitterBuffer;
typedef struct {
    char *data; uint32_t len; uint32_t timestamp; uint32_t span; uint16_t sequence; uint32_t user_data;
} JitterBufferPacket;
#define JITTER_BUFFER_OK 0
#define JITTER_BUFFER_MISSING 1
#define JITTER_BUFFER_INSERTION 2
#define JITTER_BUFFER_SET_MARGIN 0
#define JITTER_BUFFER_SET_DELAY_STEP 6
#define JITTER_BUFFER_SET_CONCEALMENT_SIZE 8
#define JITTER_BUFFER_SET_MAX_LATE_RATE 10
#define JITTER_BUFFER_SET_LATE_COST 12
JitterBuffer *jitter_buffer_init(int step_size);
void jitter_buffer_reset(JitterBuffer *jitter);
void jitter_buffer_destroy(JitterBuffer *jitter);
void jitter_buffer_put(JitterBuffer *jitter, const JitterBufferPacket *packet);
int jitter_buffer_get(JitterBuffer *jitter, JitterBufferPacket *packet, int32_t desired_span, int32_t *start_offset);
int jitter_buffer_get_pointer_timestamp(JitterBuffer *jitter);
void jitter_buffer_tick(JitterBuffer *jitter);
int jitter_buffer_ctl(JitterBuffer *jitter, int request, void *ptr);
int jitter_buffer_update_delay(JitterBuffer *jitter, JitterBufferPacket *packet, int32_t *start_offset);
"""

_MODULE = "_bench_speexjb"


def load(cache_dir: str | None = None):
    """(ffi, lib) of speexdsp's jitter buffer; compiles the binding on first use."""
    cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), f"officebox-bench-{os.getuid()}")
    os.makedirs(cache_dir, exist_ok=True)
    for name in os.listdir(cache_dir):
        if name.startswith(_MODULE) and name.endswith(".so"):
            break
    else:
        ffi = FFI()
        ffi.cdef(CDEF)
        ffi.set_source(_MODULE, "#include <speex/speex_jitter.h>", libraries=["speexdsp"])
        try:
            ffi.compile(tmpdir=cache_dir, verbose=False)
        except Exception as exc:  # noqa: BLE001 - any build failure means the peer is missing
            raise RuntimeError("cannot build the speexdsp binding (is libspeexdsp-dev installed?): "
                               f"{exc}") from exc
        name = next(n for n in os.listdir(cache_dir) if n.startswith(_MODULE) and n.endswith(".so"))
    spec = importlib.util.spec_from_file_location(_MODULE, os.path.join(cache_dir, name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules.setdefault(_MODULE, mod)
    return mod.ffi, mod.lib
