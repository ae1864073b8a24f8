"""Helpers of the SIP benchmark (tools/bench/sip.py): SIPp processes, the box and Kamailio as
child processes on loopback, per-process CPU from /proc, free ports.

Nothing here is specific to one measurement; sip.py composes the runs.
"""
from __future__ import annotations

import csv
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "sipp"
KAMAILIO_DIR = Path(__file__).resolve().parent / "kamailio"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A peer could not be started or a run could not be measured."""


# ------------------------------------------------------------------------------ ports
def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port the kernel just gave out on 127.0.0.1 (UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_sip_port() -> int:
    """A port free for both UDP and TCP (the box binds both on one port)."""
    for _ in range(100):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise BenchError("no port free for both UDP and TCP")


def free_block(n: int) -> int:
    """The (even) start of n consecutive UDP ports that look free on 127.0.0.1."""
    for _ in range(200):
        base = (free_port() & ~1)
        if base + n > 64000:
            base = 20000 + (base % 20000) & ~1
        ok = True
        for p in range(base, base + n, max(1, n // 25)):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise BenchError(f"no block of {n} free UDP ports")


# ------------------------------------------------------------------------------ CPU
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """User + system CPU time of one thread of a process, in seconds."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (the box's call-store writer is a child process)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def tree_cpu_seconds(pids: list[int]) -> float:
    """Sum of cpu_seconds over several processes (Kamailio forks workers); gone ones count 0."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            pass
    return total


def children_of(pid: int) -> list[int]:
    """Every descendant of pid (from /proc/*/stat parent links)."""
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        frontier += kids
    return out


def loadavg() -> float:
    """The 1-minute load average."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ------------------------------------------------------------------------------ SIPp
def read_stats(path: Path) -> dict[str, float | str]:
    """The last row of a SIPp -trace_stat file as {column: value}."""
    rows = read_stat_rows(path)
    return rows[-1] if rows else {}


def read_stat_rows(path: Path) -> list[dict[str, float | str]]:
    """Every row of a SIPp -trace_stat file (one per -fd period, plus the final one)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return []
    out = []
    for row in rows[1:]:
        d: dict[str, float | str] = {}
        for k, v in zip(rows[0], row):
            try:
                d[k] = float(v)
            except ValueError:
                d[k] = v
        out.append(d)
    return out


def sipp_time(text: float | str) -> float:
    """SIPp's "HH:MM:SS:uuuuuu" (or "HH:MM:SS:mmm") durations in seconds."""
    parts = str(text).split(":")
    if len(parts) < 3:
        return float(text)
    h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
    frac = 0.0
    if len(parts) > 3:  # SIPp 3.6 writes microseconds (6 digits); older ones milliseconds
        frac = int(parts[3]) / (1e6 if len(parts[3]) == 6 else 1e3)
    if len(parts) > 4:
        frac += int(parts[4]) / 1e6
    return h * 3600 + m * 60 + s + frac


@dataclass
class SippResult:
    returncode: int
    stats: dict[str, float | str]
    rows: list[dict[str, float | str]]
    errors: str
    wall_s: float
    cpu_s: float = 0.0
    """CPU time SIPp itself used (it shares the machine with what it measures)."""

    @property
    def elapsed_s(self) -> float:
        """Seconds from SIPp's start to its last statistics row (microsecond timestamps)."""
        try:
            start = float(str(self.stats["StartTime"]).split("\t")[-1])
            end = float(str(self.stats["CurrentTime"]).split("\t")[-1])
        except (KeyError, ValueError):
            return self.wall_s
        return end - start if end > start else self.wall_s

    def count(self, name: str) -> int:
        """A cumulative counter, e.g. "SuccessfulCall" (the "(C)" column)."""
        v = self.stats.get(f"{name}(C)", 0)
        return int(v) if isinstance(v, float) else 0

    @property
    def successful(self) -> int:
        return self.count("SuccessfulCall")

    @property
    def failed(self) -> int:
        return self.count("FailedCall")

    @property
    def created(self) -> int:
        return self.count("OutgoingCall") or self.count("IncomingCall")

    def user_counter(self, name: str) -> int:
        """A scenario counter (counter="name" on a message): SIPp names its column "name(C)"."""
        for k, v in self.stats.items():
            if k.startswith(name) and k.endswith("(C)") and isinstance(v, float):
                return int(v)
        return 0

    def response_time_ms(self, n: int = 1) -> float | None:
        """Average of response-time measure n (rtd="true" marks), in ms, over the whole run."""
        v = self.stats.get(f"ResponseTime{n}(C)")
        if v is None or v == "":
            return None
        return sipp_time(v) * 1000


@dataclass
class Sipp:
    """One SIPp process on 127.0.0.1. `scenario` is a file in tools/bench/sipp/ with @NAME@
    markers replaced from `template`."""

    workdir: Path
    name: str
    scenario: str
    target: str | None = None
    port: int = 0
    media_port: int = 0
    args: list[str] = field(default_factory=list)
    template: dict[str, str] = field(default_factory=dict)
    ip: str = "127.0.0.1"
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    _children_cpu: float = 0.0

    def command(self) -> list[str]:
        text = (SCENARIOS / self.scenario).read_text()
        for k, v in self.template.items():
            text = text.replace(f"@{k}@", v)
        leftover = re.findall(r"@[A-Z][A-Z0-9_]*@", text)
        if leftover:
            raise BenchError(f"{self.scenario}: template markers left: {sorted(set(leftover))}")
        path = self.workdir / f"{self.name}.xml"
        path.write_text(text)
        sipp = shutil.which("sipp")
        if sipp is None:
            raise BenchError("SIPp (Debian package sip-tester) is not installed")
        cmd = [sipp]
        if self.target:
            cmd.append(self.target)
        cmd += ["-sf", str(path), "-i", self.ip, "-p", str(self.port or free_port()),
                "-mi", self.ip, "-mp", str(self.media_port or free_block(8)),
                "-cp", str(free_port()), "-nostdin", "-t", "u1",
                "-trace_stat", "-stf", str(self.workdir / f"{self.name}.csv"), "-fd", "1",
                "-trace_err", "-error_file", str(self.workdir / f"{self.name}_errors.log"),
                "-max_socket", "4096", "-buff_size", str(4 << 20)]
        return cmd + self.args

    def start(self) -> Sipp:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        cmd = self.command()
        self.started_at = time.monotonic()
        self._children_cpu = _children_cpu()
        with open(self.workdir / f"{self.name}.out", "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        return self

    def wait(self, timeout: float) -> SippResult:
        """Wait for the end of the run; past `timeout`, ask SIPp to finish (SIGUSR1), then kill."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        return self.result(rc)

    def stop(self) -> SippResult:
        """Finish calls in progress and exit (a UAS that runs until told)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.result(self.proc.returncode if self.proc is not None else -1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def result(self, rc: int) -> SippResult:
        err = self.workdir / f"{self.name}_errors.log"
        rows = read_stat_rows(self.workdir / f"{self.name}.csv")
        return SippResult(rc, rows[-1] if rows else {}, rows,
                          err.read_text(errors="replace")[-4000:] if err.exists() else "",
                          time.monotonic() - self.started_at, _children_cpu() - self._children_cpu)

    def run(self, timeout: float) -> SippResult:
        return self.start().wait(timeout)


def _children_cpu() -> float:
    """CPU of every reaped child so far: SIPp runs one at a time, so a difference is its own."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------ the box
class Box:
    """`python -m firmware run` on loopback ports, from a provisioning text."""

    def __init__(self, workdir: Path, provision: str, *, rtp_ports: int = 4000, profile: str | None = None,
                 launcher: list[str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        self.sip_port = free_sip_port()
        self.web_port = free_port(socket.SOCK_STREAM)
        rtp = free_block(rtp_ports)
        prov = workdir / "box.toml"
        prov.write_text(provision)
        self.log_path = workdir / "box.log"
        args = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []),
                *(launcher or ["-m", "firmware"]), "run", "--provision", str(prov), "--data-dir", str(self.data_dir),
                "--sip-bind", f"127.0.0.1:{self.sip_port}", "--web-bind", f"127.0.0.1:{self.web_port}",
                "--rtp-ports", f"{rtp}-{rtp + rtp_ports - 1}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OFFICEBOX_LOG": os.environ.get("OFFICEBOX_LOG", "WARNING")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the box exited at start:\n{self.output()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.web_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise BenchError(f"the box did not start in 30 s:\n{self.output()[-3000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return tree_cpu_seconds(descendants(self.proc.pid))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------------------ Kamailio
KAMAILIO_CFG = KAMAILIO_DIR / "kamailio.cfg"


class Kamailio:
    """Debian's kamailio as a registrar on 127.0.0.1 from tools/bench/kamailio/kamailio.cfg.

    `auth=True` asks digest credentials (password ``<prefix><user><suffix>``, no database:
    ``pv_www_authenticate`` computes it from the user name); `auth=False` is the plain
    registrar, the upper bound of any registrar on this machine."""

    def __init__(self, workdir: Path, *, auth: bool, password_prefix: str, password_suffix: str,
                 children: int = 2) -> None:
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not os.path.exists(binary):
            raise BenchError("kamailio (Debian package kamailio) is not installed")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_sip_port()
        defines = {
            "LISTEN": f"udp:127.0.0.1:{self.port}",
            "RUNDIR": str(workdir),
            "CHILDREN": str(children),
            "PW_PREFIX": password_prefix,
            "PW_SUFFIX": password_suffix,
        }
        cfg = workdir / "kamailio.cfg"
        text = KAMAILIO_CFG.read_text()
        for k, v in defines.items():
            text = text.replace(f"@{k}@", v)
        if auth:
            text = "#!define WITH_AUTH\n" + text
        cfg.write_text(text)
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise BenchError(f"kamailio rejected its config:\n{check.stderr[-3000:]}")
        self.pid_file = workdir / "kamailio.pid"
        with open(workdir / "kamailio.log", "wb") as log:
            self.proc = subprocess.Popen([binary, "-f", str(cfg), "-DD", "-E", "-P", str(self.pid_file),
                                          "-m", "64", "-M", "8"], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"kamailio exited:\n{(workdir / 'kamailio.log').read_text()[-3000:]}")
            if self._answers():
                self.pids = [self.proc.pid] + children_of(self.proc.pid)
                return
            time.sleep(0.1)
        self.stop()
        raise BenchError("kamailio did not answer OPTIONS in 15 s")

    def _answers(self) -> bool:
        msg = (f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-probe{time.monotonic_ns()};rport\r\n"
               "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:probe@127.0.0.1>\r\n"
               f"Call-ID: probe-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
               "Content-Length: 0\r\n\r\n").encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.bind(("127.0.0.1", 0))
            s.sendto(msg, ("127.0.0.1", self.port))
            try:
                return s.recv(4096).startswith(b"SIP/2.0")
            except OSError:
                return False

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
