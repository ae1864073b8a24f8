"""Overload control on a real socket: a TU that needs 10 ms per new call is sent a burst far
beyond what it can do; new calls waiting in the socket buffer get 503 with Retry-After, every
request gets exactly one final answer, and requests inside dialogs still reach the TU."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

from firmware.aio.sip_transport import SipEndpoint
from firmware.sip import RequestReceived, TransactionLayer, make_response, parse_message
from firmware.sip.overload import OverloadGuard

pytestmark = [pytest.mark.timeout(60)]

WORK_S = 0.01


class SlowTU:
    """Answers INVITE with 486 and BYE with 200, blocking the event loop 10 ms per INVITE."""

    def __init__(self) -> None:
        self.endpoint: SipEndpoint | None = None
        self.methods: list[str] = []

    def __call__(self, ev) -> None:
        if not isinstance(ev, RequestReceived):
            return
        self.methods.append(ev.request.method)
        assert self.endpoint is not None
        if ev.request.method == "INVITE":
            time.sleep(WORK_S)
            self.endpoint.send_response(ev.transaction, make_response(ev.request, 486))
        else:
            self.endpoint.send_response(ev.transaction, make_response(ev.request, 200))


def request(method: str, port: int, i: int, to_tag: str = "") -> bytes:
    return (f"{method} sip:tu@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{method}-{i};rport\r\n"
            f"From: <sip:caller@127.0.0.1>;tag=f{i}\r\nTo: <sip:tu@127.0.0.1>{';tag=' + to_tag if to_tag else ''}\r\n"
            f"Call-ID: {method}-{i}@flood\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:caller@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n").encode()


async def test_a_burst_beyond_capacity_gets_503_and_loses_no_transaction():
    tu = SlowTU()
    layer = TransactionLayer(auto_trying=False, overload=OverloadGuard(target=0.05, interval=0.25, limit=0.4))
    ep = await SipEndpoint.create(("127.0.0.1", 0), on_event=tu, transports=("udp",), layer=layer)
    tu.endpoint = ep
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    try:
        n = 300  # 3 s of work for the TU, sent at once
        for i in range(n):
            sock.sendto(request("INVITE", port, i), ep.local_addr)
            if i == n // 2:
                sock.sendto(request("BYE", port, 0, to_tag="t0"), ep.local_addr)
        finals: dict[str, set[int]] = {}
        retry_after: set[str] = set()
        deadline = loop.time() + 20
        for _ in range(20 * n):
            if len(finals) >= n + 1 or loop.time() > deadline:
                break
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65535), max(0.01, deadline - loop.time()))
            except TimeoutError:
                break
            resp = parse_message(data)
            # (a final answer the flood never ACKs is retransmitted: the same status again)
            finals.setdefault(resp.call_id, set()).add(resp.status)
            if resp.status == 503:
                retry_after.add(resp.headers.get("Retry-After") or "")
        assert len(finals) == n + 1, f"{n + 1 - len(finals)} requests never got an answer"
        assert all(len(v) == 1 for v in finals.values())
        statuses = [next(iter(v)) for k, v in finals.items() if k.startswith("INVITE")]
        refused, served = statuses.count(503), statuses.count(486)
        assert refused + served == n
        assert refused > n // 3, "the guard let a 3 s queue build up"
        assert served >= 10, "the guard refused calls the TU had time for"
        assert finals["BYE-0@flood"] == {200}
        assert "" not in retry_after and all(5 <= int(v) <= 10 for v in retry_after)
        assert tu.methods.count("INVITE") == served and "BYE" in tu.methods
        assert layer.stats["overload_rejected"] == refused
    finally:
        sock.close()
        await ep.close()


async def test_a_burst_the_tu_drains_quickly_is_absorbed_whole():
    tu = SlowTU()
    layer = TransactionLayer(auto_trying=False, overload=OverloadGuard())
    ep = await SipEndpoint.create(("127.0.0.1", 0), on_event=tu, transports=("udp",), layer=layer)
    tu.endpoint = ep
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    try:
        for i in range(10):  # 100 ms of work at once
            sock.sendto(request("INVITE", port, 1000 + i), ep.local_addr)
        statuses = []
        for _ in range(50):
            if len(statuses) == 10:
                break
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)
            statuses.append(parse_message(data).status)
        assert statuses == [486] * 10
    finally:
        sock.close()
        await ep.close()
