"""The composition root: builds every part of the box and runs it on one asyncio loop."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from firmware import __version__

log = logging.getLogger("firmware")

DEFAULT_DATA_DIR = "/var/lib/officebox"


@dataclass
class Options:
    """What the command line (or a test) asks of one run of the box."""

    data_dir: str
    sip_bind: tuple[str, int] = ("0.0.0.0", 5060)
    web_bind: tuple[str, int] = ("0.0.0.0", 8080)
    rtp_ports: tuple[int, int] = (10000, 20000)
    provision: str | None = None
    demo: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Service:
    """One running box."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._runners: list[Any] = []

    def status(self) -> dict[str, Any]:
        from firmware.media import engine_version

        return {
            "version": __version__,
            "engine": engine_version(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "data_dir": self.options.data_dir,
            "sip_bind": "%s:%d" % self.options.sip_bind,
            "web_bind": "%s:%d" % self.options.web_bind,
        }

    async def start(self) -> None:
        from aiohttp import web

        from web_ui.app import create_app

        os.makedirs(self.options.data_dir, exist_ok=True)
        app = create_app(self)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = self.options.web_bind
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runners.append(runner)
        log.info("web page on http://%s:%d/", host if host != "0.0.0.0" else "127.0.0.1", port)

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    def request_stop(self) -> None:
        self._stop.set()

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        print(f"officebox {__version__} running; web page on http://%s:%d/ (Ctrl-C to stop)" % (
            "127.0.0.1" if self.options.web_bind[0] in ("0.0.0.0", "") else self.options.web_bind[0],
            self.options.web_bind[1]), flush=True)
        try:
            await self._stop.wait()
        finally:
            await self.stop()
            print("officebox stopped", flush=True)


def options_from_args(args: argparse.Namespace) -> Options:
    data_dir = args.data_dir or (os.path.abspath("demo-data") if args.demo else DEFAULT_DATA_DIR)
    opts = Options(data_dir=data_dir, provision=args.provision, demo=args.demo)
    if args.sip_bind:
        opts.sip_bind = args.sip_bind
    if args.web_bind:
        opts.web_bind = args.web_bind
    if args.rtp_ports:
        opts.rtp_ports = args.rtp_ports
    return opts


def run_from_args(args: argparse.Namespace) -> int:
    logging.basicConfig(level=os.environ.get("OFFICEBOX_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = Service(options_from_args(args))
    asyncio.run(service.run_forever())
    return 0
