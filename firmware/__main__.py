"""Command line of the box (a contract: installers and checks rely on it).

    python -m firmware run [--provision FILE.toml] [--data-dir DIR]
                           [--sip-bind HOST:PORT] [--web-bind HOST:PORT]
                           [--rtp-ports LO-HI] [--demo]
    python -m firmware check FILE.toml
    python -m firmware bans [--data-dir DIR] list | lift IP
"""
from __future__ import annotations

import argparse
import sys


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]")
    try:
        p = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number in {text!r}") from None
    if not 0 <= p <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return host, p


def _portrange(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI, got {text!r}") from None
    if not sep or not (1024 <= a < b <= 65535) or (b - a) < 3:
        raise argparse.ArgumentTypeError(
            f"RTP port range {text!r} must be LO-HI with 1024 <= LO < HI <= 65535 and room for two calls")
    return a, b


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m firmware", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the box")
    run.add_argument("--provision", metavar="FILE.toml", help="seed the configuration from a provisioning file")
    run.add_argument("--data-dir", metavar="DIR", help="where config, call records and recordings live")
    run.add_argument("--sip-bind", metavar="HOST:PORT", type=_hostport, help="SIP UDP+TCP address (default 0.0.0.0:5060)")
    run.add_argument("--web-bind", metavar="HOST:PORT", type=_hostport, help="web page address (default 0.0.0.0:8080)")
    run.add_argument("--rtp-ports", metavar="LO-HI", type=_portrange, help="RTP port range (default 10000-20000)")
    run.add_argument("--demo", action="store_true", help="simulated GSM modem and demo extensions; prints credentials")

    chk = sub.add_parser("check", help="validate a provisioning file (exit 1 with line-precise errors)")
    chk.add_argument("file", metavar="FILE.toml")

    bans = sub.add_parser("bans", help="list or lift SIP bans (brute-force and scanner protection)")
    bans.add_argument("--data-dir", metavar="DIR", default=None, help="the box's data directory")
    bans_sub = bans.add_subparsers(dest="action", required=True)
    bans_sub.add_parser("list", help="banned addresses with reason and end time")
    lift = bans_sub.add_parser("lift", help="lift the ban of an address (a running box notices within seconds)")
    lift.add_argument("ip")
    return p


def _bans(args: argparse.Namespace) -> int:
    import ipaddress
    import os
    import time

    from firmware.aio.service import DEFAULT_DATA_DIR
    from firmware.store.calls import CallStore

    data_dir = args.data_dir or DEFAULT_DATA_DIR
    path = os.path.join(data_dir, "calls.sqlite")
    if not os.path.exists(path):
        print(f"no call store in {data_dir} (use --data-dir)", file=sys.stderr)
        return 1
    store = CallStore(path)
    try:
        now = time.time()
        if args.action == "list":
            rows = [b for b in store.load_bans() if b[3] > now]
            if not rows:
                print("no banned addresses")
            for ip, reason, at, until in rows:
                print(f"{ip:40} until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(until))}  {reason}")
            return 0
        try:
            ipaddress.ip_address(args.ip)
        except ValueError:
            print(f"{args.ip!r} is not an IP address", file=sys.stderr)
            return 2
        if not any(b[0] == args.ip for b in store.load_bans()):
            print(f"{args.ip} is not banned", file=sys.stderr)
            return 1
        store.delete_ban(args.ip)
        store.flush()
        print(f"ban of {args.ip} lifted")
        return 0
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from firmware.config import check_file

        problems = check_file(args.file)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return 1
        print(f"{args.file}: OK")
        return 0
    if args.command == "bans":
        return _bans(args)
    if args.command == "run":
        from firmware.aio.service import run_from_args

        return run_from_args(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
