"""The composition root: builds every part of the box and runs it on one asyncio loop.

    ConfigStore (TinyDB) ---> Pbx (firmware.pbx) <--- SIP endpoint (firmware.aio.sip_transport)
    CallStore (SQLite)  --->   |   |                <--- modem lines (firmware.aio.modem)
    Recordings          --->   |   +--> media Engine (C thread; events via loop.add_reader)
    LiveState <----------------+
    web_ui (aiohttp) reads BoxAPI(config, calls, reports, live, control=Pbx)
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware import __version__

log = logging.getLogger("firmware")

DEFAULT_DATA_DIR = "/var/lib/officebox"
DEMO_PROVISION = Path(__file__).resolve().parent.parent / "data" / "demo.toml"


@dataclass
class Options:
    """What the command line (or a test) asks of one run of the box. None = from the config."""

    data_dir: str
    sip_bind: tuple[str, int] | None = None
    web_bind: tuple[str, int] | None = None
    rtp_ports: tuple[int, int] | None = None
    provision: str | None = None
    demo: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


class Service:
    """One running box."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.data_dir = Path(options.data_dir).resolve()
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._closers: list[Any] = []
        self.credentials: list[Any] = []
        self.config: Any = None
        self.calls: Any = None
        self.engine: Any = None
        self.pbx: Any = None
        self.demo_modems: Any = None

    # ------------------------------------------------------------------ start-up
    def _open_config(self) -> None:
        from firmware.config import ProvisioningError
        from firmware.store.config_store import ConfigStore

        self.config = ConfigStore(self.data_dir)
        try:
            if self.options.provision:
                self.credentials += self.config.provision_file(self.options.provision)
                log.info("provisioned from %s", self.options.provision)
            elif self.options.demo and not self.config.is_provisioned():
                self.credentials += self.config.provision_file(DEMO_PROVISION)
        except ProvisioningError as e:
            raise SystemExit(f"provisioning file rejected, nothing changed:\n{e}") from None
        if self.options.demo:
            # The demo prints working credentials at every start: passwords are kept only as
            # hashes, so the demo extensions and users get fresh ones.
            have = {(c.kind, c.name) for c in self.credentials}
            prov = self.config.current()
            for ext in prov.extensions:
                if ("extension", ext.number) not in have:
                    self.credentials.append(_Cred("extension", ext.number,
                                                  self.config.set_password("extension", ext.number)))
            for user in prov.users:
                if ("user", user.name) not in have:
                    self.credentials.append(_Cred("user", user.name, self.config.set_password("user", user.name)))

    def _effective(self) -> tuple[tuple[str, int], tuple[str, int], tuple[int, int]]:
        from firmware.config import parse_port_range

        system = self.config.current().system
        sip = self.options.sip_bind or _hostport(system.sip_bind)
        web = self.options.web_bind or _hostport(system.web_bind)
        rtp = self.options.rtp_ports or parse_port_range(system.rtp_ports)
        return sip, web, rtp

    async def start(self) -> None:
        from aiohttp import web

        from firmware.api import BoxAPI
        from firmware.media import Engine
        from firmware.pbx.core import Pbx
        from firmware.pbx.live import LiveState
        from firmware.store.calls import CallStore
        from firmware.store.recordings import Recordings
        from firmware.store.reports import Reports
        from web_ui.app import create_app

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._open_config()
        prov = self.config.current()
        system = prov.system
        self.sip_bind, self.web_bind, self.rtp_ports = self._effective()

        self.calls = CallStore(self.data_dir / "calls.sqlite", country_code=system.country_code,
                               trunk_prefix=system.trunk_prefix, writer="process")
        self._closers.append(self.calls.close)
        if self.calls.recovery is not None:
            log.error("call store was damaged: %s", self.calls.recovery)
        interrupted = self.calls.mark_interrupted_calls()
        self.recordings = Recordings(self.data_dir, self.calls, min_free_mb=system.recording.min_free_mb,
                                     max_age_days=system.recording.max_age_days, timezone=system.timezone)
        repaired = self._repair_recordings(interrupted)
        if interrupted:
            log.warning("%d call(s) were cut by a power loss or crash; %d recording(s) repaired",
                        len(interrupted), repaired)
        self.reports = Reports(self.calls, timezone=system.timezone)

        bind_ip = self.sip_bind[0] if self.sip_bind[0] not in ("", "::") else "0.0.0.0"
        self.engine = Engine(bind_ip=bind_ip, rtp_ports=self.rtp_ports, kernel_relay=system.kernel_relay)
        self._closers.append(self.engine.close)
        est = self.engine.stats()
        if est.kernel_relay:
            log.info("media: established calls are relayed inside the kernel (eBPF)")
        elif system.kernel_relay:
            log.info("media: in-kernel relay unavailable (%s); the media engine relays every packet",
                     est.kernel_relay_error)
        loop = asyncio.get_running_loop()

        self.live = LiveState()
        from firmware.aio.netutil import local_address_for
        self.pbx = Pbx(config=self.config, calls=self.calls, recordings=self.recordings, engine=self.engine,
                       live=self.live, data_dir=self.data_dir, version=__version__, started_at=self.started_at,
                       local_address=local_address_for)
        self.engine.attach(loop, self.pbx.on_media_event)
        from firmware.aio.notify import Notifier
        self.notifier = Notifier(self.config.current, self.pbx.send_sms, self._reached)
        self.pbx.notify = self.notifier.emit
        self._closers.append(self.notifier.close)
        if self.options.demo:
            # the demo's GSM line is the modem simulator; its ports replace the demo trunks' devices
            from firmware.pbx.simdemo import DemoModems
            self.demo_modems = await DemoModems.start(self.data_dir, prov.trunks)
            if self.demo_modems is not None:
                self._closers.append(self.demo_modems.stop)
                self.pbx.carrier.overrides.update(self.demo_modems.overrides())
        await self.pbx.start(sip_bind=self.sip_bind, demo=self.options.demo)
        self._closers.append(self.pbx.stop)

        api = BoxAPI(version=__version__, data_dir=self.data_dir, config=self.config, calls=self.calls,
                     reports=self.reports, live=self.live, control=self.pbx)
        app = create_app(api)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = self.web_bind
        await web.TCPSite(runner, host or None, port).start()
        self._closers.append(runner.cleanup)

    def _reached(self, number: str, since: float) -> bool:
        """Whether a customer was connected (in or out) since a time: their missed call is dealt with."""
        return any(c.answered_at and c.answered_at >= since for c in self.calls.calls_of_number(number))

    def _repair_recordings(self, call_ids: list[str]) -> int:
        """Recordings of calls cut by a power loss: fix their WAV headers so they play."""
        from firmware.media import repair_wav
        from firmware.store.recordings import RecordingPathError

        n = 0
        for cid in call_ids:
            call = self.calls.get_call(cid)
            if call is None or not call.recording_path:
                continue
            try:
                path = self.recordings.resolve(call.recording_path)
            except (RecordingPathError, OSError):
                continue
            if not path.exists():
                continue
            try:
                result = repair_wav(path)
            except Exception as e:
                log.error("recording %s could not be repaired: %s", path, e)
                self.calls.set_recording(cid, state="failed", note=f"repair failed: {e}")
                continue
            n += 1
            self.calls.set_recording(cid, state="interrupted",
                                     note=f"the box lost power; {result.seconds:.1f} s kept")
        return n

    async def stop(self) -> None:
        for close in reversed(self._closers):
            try:
                r = close()
                if asyncio.iscoroutine(r):
                    await r
            except Exception:  # keep closing the rest
                log.exception("error while stopping")
        self._closers.clear()

    def request_stop(self) -> None:
        self._stop.set()

    def banner(self) -> str:
        web_host = _display_host(self.web_bind[0])
        sip_host = _display_host(self.sip_bind[0])
        if self.sip_bind[0] in ("0.0.0.0", "", "::"):
            # bound to every interface: show the address other machines on the LAN use
            from firmware.aio.netutil import local_address_for
            lan = local_address_for("192.0.2.1")  # TEST-NET-1: only the routing table is asked
            if lan and not lan.startswith("127."):
                sip_host = lan
                if self.web_bind[0] in ("0.0.0.0", "", "::"):
                    web_host = lan
        lines = [f"officebox {__version__} running",
                 f"  web page: http://{web_host}:{self.web_bind[1]}/",
                 f"  SIP:      {sip_host}:{self.sip_bind[1]} (UDP and TCP)",
                 f"  RTP:      ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
                 f"  data:     {self.data_dir}"]
        if self.credentials:
            lines.append("  credentials (shown once; passwords are stored only as hashes):")
            for c in self.credentials:
                what = "SIP extension" if c.kind == "extension" else "web user"
                lines.append(f"    {what:14} {c.name:10} password {c.password}")
            if any(c.kind == "extension" for c in self.credentials):
                lines.append(f"  softphones: register as <extension>@{sip_host}:{self.sip_bind[1]} with the password above")
        if self.demo_modems is not None:
            lines += self.demo_modems.instructions()
        lines.append("  Ctrl-C to stop")
        return "\n".join(lines)

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            # Everything built at start-up lives as long as the box: keep it out of the
            # collector's generations, and collect less often (a call leaves ~130 short-lived
            # objects per transaction; full collections paused the loop for 0.2-0.6 s under load).
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 20, 20)
            print(self.banner(), flush=True)
            await self._stop.wait()
        finally:
            await self.stop()
            print("officebox stopped", flush=True)


@dataclass(frozen=True)
class _Cred:
    kind: str
    name: str
    password: str


def options_from_args(args: argparse.Namespace) -> Options:
    data_dir = args.data_dir or (os.path.abspath("demo-data") if args.demo else DEFAULT_DATA_DIR)
    return Options(data_dir=data_dir, provision=args.provision, demo=args.demo, sip_bind=args.sip_bind,
                   web_bind=args.web_bind, rtp_ports=args.rtp_ports)


def run_from_args(args: argparse.Namespace) -> int:
    logging.basicConfig(level=os.environ.get("OFFICEBOX_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    service = Service(options_from_args(args))
    try:
        asyncio.run(service.run_forever())
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 1
        raise
    except OSError as e:
        print(f"officebox: cannot start: {e}", file=sys.stderr)
        return 1
    return 0
