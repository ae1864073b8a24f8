"""The demo's simulated GSM line: the modem simulator (tools/modem_sim/run.py) as a child
process whose ports replace the demo trunks' devices.

`python -m firmware run --demo` starts it for every GSM/FXO trunk whose ``device`` lies under
``sim/`` (firmware/data/demo.toml): one simulated module per trunk, of the trunk's model, with
a "mobile phone" at the far end that answers after 2 s, speaks a prompt and then echoes. Its
control socket lets anyone make the mobile call the box (`DemoModems.instructions`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("firmware.pbx.trunks")

__all__ = ["SIM_PREFIX", "DemoModems"]

SIM_PREFIX = "sim/"
"""Trunk devices starting with this are the demo simulator's (relative to the data dir)."""

RUN_PY = Path(__file__).resolve().parents[2] / "tools" / "modem_sim" / "run.py"


class DemoModems:
    """The running simulator: its ports per trunk and how to stop it."""

    def __init__(self, proc: asyncio.subprocess.Process, link_dir: Path, control: Path,
                 modems: list[dict[str, Any]]) -> None:
        self.proc = proc
        self.link_dir = link_dir
        self.control = control
        self.modems = modems

    @classmethod
    async def start(cls, data_dir: Path, trunks: Any, *, timeout: float = 60.0) -> DemoModems | None:
        """Start the simulator for the demo trunks; None when there are none (or no simulator
        in this installation). Raises RuntimeError when it does not come up."""
        demo = [t for t in trunks if t.type in ("gsm", "fxo") and t.device.startswith(SIM_PREFIX)]
        if not demo:
            return None
        if not RUN_PY.exists():
            log.warning("demo: no modem simulator at %s; the demo trunks stay offline", RUN_PY)
            return None
        link_dir = Path(data_dir) / "sim"
        if link_dir.exists():
            shutil.rmtree(link_dir)  # links of an earlier run point to ptys that are gone
        link_dir.mkdir(parents=True)
        control = link_dir / "control.sock"
        args = [sys.executable, str(RUN_PY), "--link-dir", str(link_dir), "--control", f"unix:{control}", "--demo"]
        for t in demo:
            spec = f"{t.name}={t.model},answer_delay=2.0"
            if t.imei:
                spec += f",imei={t.imei}"
            args += ["--modem", spec]
        log_path = link_dir / "simulator.log"
        with open(log_path, "wb") as errlog:
            proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=errlog,
                                                        start_new_session=True)
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            ready = json.loads(line.decode() or "{}")
            if not ready.get("ready"):
                raise ValueError(line.decode(errors="replace").strip() or "no ready line")
        except (TimeoutError, ValueError) as e:
            await _terminate(proc)
            err = log_path.read_text(errors="replace")[-400:]
            raise RuntimeError(f"the demo modem simulator did not start: {e} {err}") from None
        me = cls(proc, link_dir, control, ready.get("modems", []))
        log.info("demo: simulated modems %s in %s", ", ".join(m["name"] for m in me.modems), link_dir)
        return me

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Trunk name -> the simulator's ports and IMEI (for Trunks.overrides)."""
        out = {}
        for m in self.modems:
            out[m["name"]] = {"device": m["at"], "audio_device": m.get("audio") or "", "imei": m["imei"],
                              "scan": [str(self.link_dir / f"{m['name']}-usb*")]}
        return out

    def instructions(self) -> list[str]:
        """Banner lines: how to use the simulated line(s)."""
        lines = []
        for m in self.modems:
            lines.append(f"  simulated {m['model'].upper()} on trunk {m['name']} (IMEI {m['imei']}): "
                         "dial +<number> or 0<number> from a demo extension to call its mobile phone")
            req = json.dumps({"cmd": "incoming_call", "modem": m["name"], "number": "+48600100200"})
            lines.append(f"    make the mobile call the box:  echo '{req}' | socat - UNIX-CONNECT:{self.control}")
        return lines

    async def stop(self) -> None:
        await _terminate(self.proc)


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
