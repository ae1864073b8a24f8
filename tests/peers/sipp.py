"""Running SIPp (Debian sip-tester) on loopback with our scenario files and reading its stats."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent.parent / "data" / "sipp"


@dataclass
class SippResult:
    returncode: int
    stats: dict
    errors: str = ""
    messages: str = ""

    @property
    def successful(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", 0))

    @property
    def failed(self) -> int:
        return int(self.stats.get("FailedCall(C)", 0))


def read_stats(path: Path) -> dict:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return {}
    out = {}
    for k, v in zip(rows[0], rows[-1]):
        try:
            out[k] = float(v) if "." in v else int(v)
        except ValueError:
            out[k] = v
    return out


@dataclass
class Sipp:
    """One SIPp process. `scenario` is a file in tests/data/sipp/ (templated: @NAME@ markers
    are replaced from `template`) or a built-in name ("uac", "uas")."""

    workdir: Path
    scenario: str
    target: str | None = None
    port: int = 0
    media_port: int = 0
    ctrl_port: int = 0
    args: list[str] = field(default_factory=list)
    template: dict[str, str] = field(default_factory=dict)
    transport: str = "u1"
    name: str = "sipp"
    proc: subprocess.Popen | None = None

    def _scenario_args(self) -> list[str]:
        if self.scenario in ("uac", "uas", "uac_pcap", "regexp", "branchc", "branchs"):
            return ["-sn", self.scenario]
        text = (SCENARIOS / self.scenario).read_text()
        for k, v in self.template.items():
            text = text.replace(f"@{k}@", v)
        path = self.workdir / f"{self.name}_{self.scenario}"
        path.write_text(text)
        return ["-sf", str(path)]

    def command(self) -> list[str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [shutil.which("sipp") or "sipp"]
        if self.target:
            cmd.append(self.target)
        cmd += self._scenario_args()
        cmd += ["-i", "127.0.0.1", "-p", str(self.port), "-mi", "127.0.0.1", "-mp", str(self.media_port),
                "-cp", str(self.ctrl_port), "-t", self.transport, "-nostdin",
                "-trace_stat", "-stf", str(self.workdir / f"{self.name}.csv"), "-fd", "1",
                "-trace_err", "-error_file", str(self.workdir / f"{self.name}_errors.log"),
                "-trace_msg", "-message_file", str(self.workdir / f"{self.name}_messages.log")]
        return cmd + self.args

    def start(self) -> "Sipp":
        cmd = self.command()
        log = open(self.workdir / f"{self.name}.out", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        return self

    def wait(self, timeout: float) -> SippResult:
        assert self.proc
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            try:
                rc = self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        return self.result(rc)

    def stop(self) -> SippResult:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # finish calls, then exit
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.result(self.proc.returncode if self.proc else -1)

    def result(self, rc: int) -> SippResult:
        def rd(name: str) -> str:
            p = self.workdir / name
            return p.read_text(errors="replace") if p.exists() else ""
        return SippResult(rc, read_stats(self.workdir / f"{self.name}.csv"),
                          rd(f"{self.name}_errors.log"), rd(f"{self.name}_messages.log"))

    def run(self, timeout: float = 60.0) -> SippResult:
        return self.start().wait(timeout)


def sipp_env_ok() -> bool:
    return shutil.which("sipp") is not None and os.geteuid() == 0
