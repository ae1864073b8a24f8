"""Command line of the modem simulator.

    python tools/modem_sim/run.py --link-dir DIR [--modem NAME=MODEL[,key=value...]]...
                                  [--control unix:PATH|tcp:HOST:PORT] [--demo]

Prints one JSON line {"ready": true, "modems": [...]} on stdout once the ports exist, then
serves the control socket until SIGINT/SIGTERM. `--demo` starts one EC25 "gsm1" whose far
end answers calls with a spoken prompt (espeak-ng) and then echoes what it hears.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from dataclasses import fields

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))                  # tools/ -> import modem_sim
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # repo root -> import firmware

from modem_sim.core import SimOptions  # noqa: E402
from modem_sim.runner import Simulator  # noqa: E402

DEMO_PROMPT = ("Hello, this is the demo mobile phone of the office box. "
               "After the tone I repeat everything you say.")


def _options(spec: str) -> tuple[str, SimOptions]:
    name, _, rest = spec.partition("=")
    if not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=MODEL[,key=value...], got {spec!r}")
    model, *pairs = rest.split(",")
    known = {f.name: f for f in fields(SimOptions)}
    kw: dict = {"model": model}
    for p in pairs:
        k, _, v = p.partition("=")
        if k not in known:
            raise argparse.ArgumentTypeError(f"unknown option {k!r} (known: {', '.join(known)})")
        text_field = "str" in str(known[k].type) and not any(
            t in str(known[k].type) for t in ("int", "float", "bool", "dict"))
        if text_field:
            kw[k] = None if v in ("null", "none") and "None" in str(known[k].type) else v.strip('"')
        else:
            try:
                kw[k] = json.loads(v)
            except ValueError:
                raise argparse.ArgumentTypeError(f"option {k}: {v!r} is not a JSON value") from None
    return name, SimOptions(**kw)


async def main_async(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    sim = Simulator(args.link_dir, loop=loop)
    specs = list(args.modem)
    if args.demo and not specs:
        specs = [("gsm1", SimOptions(model="ec25", answer_delay=2.0))]
    if not specs:
        print("no modems: give --modem NAME=MODEL or --demo", file=sys.stderr)
        return 2
    for name, opts in specs:
        sim.add_modem(name, opts)
    if args.demo:
        for name, _ in specs:
            try:
                sim.call("audio_prompt", name, text=args.prompt)
            except Exception as e:  # noqa: BLE001 - the demo still works with a plain echo
                print(f"demo prompt unavailable ({e}); echo only", file=sys.stderr)
                sim.call("audio_echo", name)
    if args.control:
        await sim.serve_control(args.control)
    print(json.dumps({"ready": True, "control": args.control,
                      "modems": [m.info() for m in sim.modems.values()]}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    sim.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="modem_sim", description=__doc__.splitlines()[0])
    p.add_argument("--link-dir", required=True, help="where the port symlinks go")
    p.add_argument("--modem", action="append", default=[], type=_options,
                   metavar="NAME=MODEL[,k=v]", help="a modem (sim800|sim7600|ec25|huawei|voicemodem)")
    p.add_argument("--control", help="control socket: unix:PATH or tcp:HOST:PORT")
    p.add_argument("--demo", action="store_true", help="one EC25 whose far end talks then echoes")
    p.add_argument("--prompt", default=DEMO_PROMPT, help="what the demo far end says")
    args = p.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
