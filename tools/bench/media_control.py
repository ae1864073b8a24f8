#!/usr/bin/env python3
"""A call's media control as the PBX does it, timed in the calling thread: two RTP channels
configured, a bridge of both, a stereo recording; 100 calls stay alive and the oldest is torn
down (recorder stop, bridge close, two channel closes) for every new one, a call every ~2 ms.

    tools/bench/media_control.py [calls]      # default 3000
"""
from __future__ import annotations

import collections
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from firmware.media import Engine  # noqa: E402


def main(n: int) -> None:
    folder = tempfile.mkdtemp(prefix="mediactl-")
    eng = Engine(bind_ip="127.0.0.1", rtp_ports=(30000, 34000), max_channels=1024)
    live: collections.deque = collections.deque()

    def setup(i: int):
        a, b = eng.rtp_channel(), eng.rtp_channel()
        a.configure(remote=("127.0.0.1", 9000 + 2 * (i % 500)), payload_type=0, telephone_event_pt=101,
                    inactivity_timeout_s=30)
        b.configure(remote=("127.0.0.1", 9001 + 2 * (i % 500)), payload_type=0, telephone_event_pt=101,
                    inactivity_timeout_s=30)
        br = eng.bridge([a, b])
        return a, b, br, eng.record(br, os.path.join(folder, f"{i}.wav"), stereo=True, left=[a])

    def teardown(call) -> None:
        a, b, br, rec = call
        rec.stop()
        br.close()
        a.close()
        b.close()

    for i in range(100):
        live.append(setup(i))
    cpu = lambda: time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)  # noqa: E731
    su = td = sw = tw = 0.0
    for i in range(100, 100 + n):
        t, c = time.perf_counter(), cpu()
        live.append(setup(i))
        su += cpu() - c
        sw += time.perf_counter() - t
        t, c = time.perf_counter(), cpu()
        teardown(live.popleft())
        td += cpu() - c
        tw += time.perf_counter() - t
        if i % 50 == 0:
            eng.poll_events()
        time.sleep(0.002)
    while live:
        teardown(live.popleft())
    eng.close()
    shutil.rmtree(folder, ignore_errors=True)
    print(f"per call: set-up wall {sw / n * 1e3:.3f} ms cpu {su / n * 1e3:.3f} ms; "
          f"tear-down wall {tw / n * 1e3:.3f} ms cpu {td / n * 1e3:.3f} ms; total wall {(sw + tw) / n * 1e3:.3f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
