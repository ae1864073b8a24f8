"""System status for the web page: disk, CPU, memory, temperature and Raspberry Pi power flags."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

# Raspberry Pi firmware "get_throttled" bits (documented for `vcgencmd get_throttled`).
THROTTLE_BITS = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred",
    17: "ARM frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}
THROTTLED_PATHS = ("/sys/devices/platform/soc/soc:firmware/get_throttled",
                   "/sys/devices/platform/soc:firmware/get_throttled")


def board_model() -> str:
    for p in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            return Path(p).read_text().strip("\x00\n ")
        except OSError:
            continue
    return os.uname().machine


def temperature_c() -> float | None:
    base = Path("/sys/class/thermal")
    try:
        zones = sorted(base.glob("thermal_zone*"))
    except OSError:
        return None
    for z in zones:
        try:
            return int((z / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
    return None


def throttled_flags() -> list[str] | None:
    for p in THROTTLED_PATHS:
        try:
            raw = int(Path(p).read_text().strip(), 16)
        except (OSError, ValueError):
            continue
        return [text for bit, text in THROTTLE_BITS.items() if raw & (1 << bit)]
    return None


def disk(path: str) -> dict[str, int]:
    u = shutil.disk_usage(path)
    return {"total": u.total, "used": u.used, "free": u.free}


def memory() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, v = line.split(":", 1)
            if k in ("MemTotal", "MemAvailable"):
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return {"total": out.get("MemTotal", 0), "available": out.get("MemAvailable", 0)}


def system_status(data_dir: str, started_at: float, version: str) -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    try:
        boot_uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        boot_uptime = None
    return {
        "version": version,
        "board": board_model(),
        "uptime_s": round(time.time() - started_at, 1),
        "system_uptime_s": boot_uptime,
        "disk": disk(data_dir),
        "memory": memory(),
        "load": [load1, load5, load15],
        "cpus": os.cpu_count(),
        "temperature_c": temperature_c(),
        "throttled": throttled_flags(),
    }
