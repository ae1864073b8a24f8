"""The SIP transport on loopback: SIPp both ways over UDP and TCP, stream framing, keep-alives,
RFC 4475 torture over UDP and TCP with a parallel OPTIONS exchange, and floods."""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import time

import pytest

from firmware.aio.sip_transport import SipEndpoint
from firmware.sip import (
    AckReceived,
    Addr,
    CancelReceived,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    Timers,
    TransportError,
    check_request,
    make_request,
    make_response,
    parse_message,
)
from firmware.sip.dialog import Dialog
from firmware.sip.sdp import SdpSession, parse_sdp
from tests.conftest import DATA, free_port, load

pytestmark = [pytest.mark.timeout(120)]

EXPECTED = json.loads((DATA / "sip/rfc4475/expected.json").read_text())
CASES = sorted(k for k in EXPECTED if not k.startswith("_"))
SIPP = shutil.which("sipp")
METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "INFO", "UPDATE")


class ToyTU:
    """A tiny UA core: OPTIONS/REGISTER/MESSAGE/BYE -> 200, INVITE -> 180 + 200 with SDP,
    INVITE to ``busy`` or anything odd -> 486. Records everything it sees."""

    def __init__(self) -> None:
        self.endpoint: SipEndpoint | None = None
        self.events: list = []
        self.acks = 0
        self.byes = 0
        self.sdp = SdpSession("127.0.0.1")

    def __call__(self, ev) -> None:
        self.events.append(ev)
        ep = self.endpoint
        assert ep is not None
        if isinstance(ev, AckReceived):
            self.acks += 1
            return
        if not isinstance(ev, RequestReceived):
            return
        req = ev.request
        error = check_request(req, methods=METHODS, supported=("replaces", "timer"),
                              content_types=("application/sdp", "multipart/mixed"))
        if error is not None:
            ep.send_response(ev.transaction, error)
            return
        if req.method == "INVITE":
            if req.uri.user != "tu" or req.content_type != "application/sdp":
                ep.send_response(ev.transaction, make_response(req, 486, to_tag="busy"))
                return
            ep.send_response(ev.transaction, make_response(req, 180, to_tag="tu"))
            answer = self.sdp.answer(parse_sdp(req.body), 40000)
            ok = make_response(req, 200, to_tag="tu", body=answer.sdp.serialize(), content_type="application/sdp")
            ok.headers.add("Contact", f"<{ep.contact_uri('tu', ev.source.transport)}>")
            ep.send_response(ev.transaction, ok)
            return
        if req.method == "BYE":
            self.byes += 1
        ep.send_response(ev.transaction, make_response(req, 200))


@pytest.fixture
async def served():
    tu = ToyTU()
    ep = await SipEndpoint.create(("127.0.0.1", 0), on_event=tu, timers=Timers(t1=0.1, t2=0.4, t4=0.5),
                                  tcp_partial_timeout=1.0)
    tu.endpoint = ep
    yield ep, tu
    await ep.close()


def udp_socket(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def options(port: int, branch: str, call_id: str, transport: str = "UDP", host: str = "127.0.0.1") -> bytes:
    return (f"OPTIONS sip:tu@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK{branch};rport\r\n"
            f"From: <sip:probe@{host}>;tag=p\r\nTo: <sip:tu@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
            f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


async def recv_until(sock: socket.socket, call_id: str, timeout: float, first: bool = False) -> list[bytes]:
    """Datagrams for ``call_id`` received within ``timeout`` seconds; with ``first``, stop at the
    first one that is not a 100 Trying."""
    loop = asyncio.get_running_loop()
    out = []
    deadline = loop.time() + timeout
    for _ in range(200):
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), left)
        except TimeoutError:
            break
        if call_id.encode() in data:
            out.append(data)
            if first and not data.startswith(b"SIP/2.0 100 "):
                break
    return out


async def run_sipp(*args: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(SIPP, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError("sipp did not finish:\n" + out.decode(errors="replace")[-3000:])
    return proc.returncode or 0, out.decode(errors="replace")


def sipp_common(tmp_path) -> list[str]:
    return ["-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)), "-mp", str(free_port(socket.SOCK_DGRAM)),
            "-cp", str(free_port(socket.SOCK_DGRAM)), "-nostdin", "-timeout", "30s", "-timeout_error",
            "-trace_err", "-error_file", str(tmp_path / "sipp_err.log")]


# --- SIPp -------------------------------------------------------------------------------------
@pytest.mark.peers
@pytest.mark.skipif(SIPP is None, reason="sipp is not installed")
@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_sipp_options_and_calls_are_served(served, tmp_path, transport):
    ep, tu = served
    host, port = ep.local_addr
    target = f"{host}:{port}"
    rc, out = await run_sipp(target, "-sf", str(DATA / "sip/sipp/options_uac.xml"), "-s", "tu", "-t", transport,
                             "-m", "5", "-r", "50", *sipp_common(tmp_path))
    assert rc == 0, out[:1500] + "\n...\n" + out[-1500:]
    rc, out = await run_sipp(target, "-sn", "uac", "-s", "tu", "-t", transport, "-m", "10", "-r", "20", "-l", "10",
                             "-d", "100", *sipp_common(tmp_path))
    assert rc == 0, out[:1500] + "\n...\n" + out[-1500:]
    assert tu.byes == 10 and tu.acks >= 10
    rc, out = await run_sipp(target, "-sf", str(DATA / "sip/sipp/invite_busy_uac.xml"), "-s", "busy",
                             "-t", transport, "-m", "5", "-r", "20", *sipp_common(tmp_path))
    assert rc == 0, out[:1500] + "\n...\n" + out[-1500:]
    busy = [e for e in tu.events if isinstance(e, RequestReceived) and e.request.uri.user == "busy"]
    assert len(busy) == 5
    await asyncio.sleep(0.2)
    assert all(e.transaction.state.name in ("CONFIRMED", "TERMINATED") for e in busy)


@pytest.mark.peers
@pytest.mark.skipif(SIPP is None, reason="sipp is not installed")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_we_call_a_sipp_uas_ack_its_200_and_hang_up(tmp_path, transport):
    responses: list = []
    got = asyncio.Event()

    def on_event(ev):
        if isinstance(ev, ResponseReceived):
            responses.append(ev.response)
            if ev.response.status >= 200:
                got.set()

    ep = await SipEndpoint.create(("127.0.0.1", 0), on_event=on_event)
    try:
        sipp_port = free_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
        args = ["-sn", "uas", "-i", "127.0.0.1", "-p", str(sipp_port), "-mp", str(free_port(socket.SOCK_DGRAM)),
                "-cp", str(free_port(socket.SOCK_DGRAM)), "-m", "1", "-nostdin", "-timeout", "30s",
                "-t", "u1" if transport == "udp" else "t1"]
        proc = await asyncio.create_subprocess_exec(SIPP, *args, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        dest = Addr(transport, "127.0.0.1", sipp_port)
        sdp = SdpSession("127.0.0.1").offer(41000)
        invite = None
        for _ in range(50):
            await asyncio.sleep(0.1)
            invite = make_request("INVITE", f"sip:sipp@127.0.0.1:{sipp_port}", from_addr="<sip:box@127.0.0.1>",
                                  to_addr=f"<sip:sipp@127.0.0.1:{sipp_port}>",
                                  contact=f"<{ep.contact_uri('box', transport)}>",
                                  body=sdp.serialize(), content_type="application/sdp")
            txn = ep.send_request(invite, dest)
            try:
                await asyncio.wait_for(got.wait(), 1.0 if transport == "udp" else 0.5)
                break
            except TimeoutError:
                if not txn.terminated:
                    ep.layer.transport_error(dest, 0, "retry")
        assert got.is_set() and responses[-1].status == 200
        dialog = Dialog.from_uac(invite, responses[-1])
        ep.send_stateless(dialog.create_ack(invite), dest)
        got.clear()
        ep.send_request(dialog.create_request("BYE"), dest)
        await asyncio.wait_for(got.wait(), 5)
        assert responses[-1].status == 200 and responses[-1].cseq.method == "BYE"
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        await ep.close()


# --- framing, keep-alives, errors ---------------------------------------------------------------------
async def test_tcp_framing_keepalive_and_split_messages(served):
    ep, _ = served
    r, w = await asyncio.open_connection(*ep.local_addr)
    lport = w.get_extra_info("sockname")[1]
    two = options(lport, "a1", "tcp-1", "TCP") + options(lport, "a2", "tcp-2", "TCP")
    w.write(two + b"\r\n\r\n")
    first = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
    second = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
    assert b"tcp-1" in first and b"tcp-2" in second and first.startswith(b"SIP/2.0 200")
    assert await asyncio.wait_for(r.readexactly(2), 5) == b"\r\n"
    split = options(lport, "a3", "tcp-3", "TCP")
    for i in range(0, len(split), 7):
        w.write(split[i:i + 7])
        await w.drain()
        await asyncio.sleep(0.002)
    third = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
    assert b"tcp-3" in third
    assert ep.has_connection(Addr("tcp", "127.0.0.1", lport))
    w.write(options(lport, "a4", "tcp-4", "TCP").replace(b"Content-Length: 0\r\n", b""))
    fourth = await asyncio.wait_for(r.read(), 5)
    assert fourth.startswith(b"SIP/2.0 400 Missing Content-Length header") and b"tcp-4" in fourth
    w.close()


async def test_udp_responses_go_to_the_source_and_carry_received_rport(served):
    ep, _ = served
    s = udp_socket()
    loop = asyncio.get_running_loop()
    msg = options(5999, "nat", "nat-1", host="10.1.2.3")
    await loop.sock_sendto(s, msg, ep.local_addr)
    (resp,) = await recv_until(s, "nat-1", 2, first=True)
    via = parse_message(resp).top_via
    assert via.received == "127.0.0.1" and via.rport == s.getsockname()[1]
    await loop.sock_sendto(s, b"\r\n\r\n", ep.local_addr)
    for _ in range(100):
        if ep.stats["keepalives"]:
            break
        await asyncio.sleep(0.01)
    assert ep.stats["keepalives"] == 1 and ep.layer.stats["rejected"] == 0
    s.close()


@pytest.mark.parametrize("native", [True, False], ids=["engine-sender", "loop-sender"])
async def test_a_burst_of_udp_messages_leaves_whole_and_in_order(native):
    """500 stateless messages sent in one go (as a burst of calls makes the box send) reach
    the phone intact and in the order given, through the engine's sender thread or the loop;
    closing the endpoint right after sending still delivers them."""
    ep = await SipEndpoint.create(("127.0.0.1", 0), native_send=native)
    assert (ep._udp.sender is not None) is native
    phone = udp_socket()
    phone.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    dest = Addr("udp", "127.0.0.1", phone.getsockname()[1])
    sent = []
    for i in range(500):
        req = make_request("MESSAGE", f"sip:phone@127.0.0.1:{dest.port}", from_addr="<sip:box@127.0.0.1>",
                           to_addr="<sip:phone@127.0.0.1>", call_id=f"burst-{i}",
                           body=b"x" * (i % 700), content_type="text/plain")
        sent.append((f"burst-{i}", b"x" * (i % 700)))
        ep.send_stateless(req, dest)
    if native:
        stats = ep._udp.send_stats()
        assert stats["queued"] == 500 and stats["dropped"] == 0
    await ep.close()
    got = []
    phone.setblocking(True)
    phone.settimeout(2.0)
    for _ in range(500):
        try:
            got.append(phone.recv(65535))
        except TimeoutError:
            break
    phone.close()
    assert [(m.call_id, m.body) for m in map(parse_message, got)] == sent


async def test_a_datagram_the_kernel_refuses_is_logged_and_the_next_one_leaves(caplog):
    ep = await SipEndpoint.create(("127.0.0.1", 0), tcp_partial_timeout=0.2)
    phone = udp_socket()
    caplog.set_level("DEBUG", logger="firmware.sip")
    # a broadcast without SO_BROADCAST: the kernel says EACCES
    ep.send_keepalive(Addr("udp", "255.255.255.255", 5060))
    ep.send_keepalive(Addr("udp", "127.0.0.1", phone.getsockname()[1]))
    loop = asyncio.get_running_loop()
    assert await asyncio.wait_for(loop.sock_recv(phone, 100), 2) == b"\r\n\r\n"
    for _ in range(100):
        if "refused by the kernel" in caplog.text:
            break
        await asyncio.sleep(0.02)
    assert "1 UDP datagram(s) refused by the kernel (last: Permission denied)" in caplog.text
    await ep.close()
    phone.close()


async def test_transport_error_and_crashing_callbacks_do_not_stop_the_endpoint():
    seen = []

    def boom(ev):
        seen.append(ev)
        raise RuntimeError("TU bug")

    ep = await SipEndpoint.create(("127.0.0.1", 0), on_event=boom)
    try:
        dead = Addr("tcp", "127.0.0.1", free_port())
        ep.send_request(make_request("OPTIONS", f"sip:x@127.0.0.1:{dead.port}", from_addr="<sip:a@b>",
                                     to_addr="<sip:x@y>"), dead)
        for _ in range(100):
            if any(isinstance(e, TransportError) for e in seen):
                break
            await asyncio.sleep(0.02)
        err = next(e for e in seen if isinstance(e, TransportError))
        assert err.dest == dead and "cannot connect" in err.reason
        s = udp_socket()
        await asyncio.get_running_loop().sock_sendto(s, options(1, "x", "alive"), ep.local_addr)
        for _ in range(100):
            if any(isinstance(e, RequestReceived) for e in seen):
                break
            await asyncio.sleep(0.02)
        assert ep.stats["callback_errors"] >= 2
        s.close()
    finally:
        await ep.close()


async def test_async_handlers_and_cancel_over_udp():
    events = []
    ep: SipEndpoint

    async def handler(ev):
        events.append(ev)
        if isinstance(ev, RequestReceived) and ev.request.method == "INVITE":
            await asyncio.sleep(0.01)
            ep.send_response(ev.transaction, make_response(ev.request, 180, to_tag="r"))

    ep = await SipEndpoint.create(("127.0.0.1", 0), on_event=handler)
    try:
        s = udp_socket()
        port = s.getsockname()[1]
        loop = asyncio.get_running_loop()
        inv = make_request("INVITE", "sip:tu@127.0.0.1", from_addr="<sip:a@127.0.0.1>", to_addr="<sip:tu@127.0.0.1>",
                           call_id="cancel-1", via=None)
        inv.headers.prepend("Via", f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKcan")
        await loop.sock_sendto(s, inv.serialize(), ep.local_addr)
        got = await recv_until(s, "cancel-1", 0.5)
        assert [d.split(b"\r\n")[0] for d in got] == [b"SIP/2.0 100 Trying", b"SIP/2.0 180 Ringing"]
        from firmware.sip import make_cancel
        await loop.sock_sendto(s, make_cancel(parse_message(inv.serialize())).serialize(), ep.local_addr)
        got = await recv_until(s, "cancel-1", 0.5)
        assert b"SIP/2.0 200 OK" in got[0] and b"CANCEL" in got[0] and got[1].startswith(b"SIP/2.0 487")
        assert any(isinstance(e, CancelReceived) for e in events)
        s.close()
    finally:
        await ep.close()


# --- torture -------------------------------------------------------------------------------------------
def expected_answer(name: str, transport: str) -> tuple[int | None, str | None]:
    """(status, reason) the endpoint must send for a torture message, or (None, None) for silence."""
    exp = EXPECTED[name]
    data = load(f"sip/rfc4475/{name}.dat")
    if transport == "tcp" and name == "clerr":
        return None, None
    if transport == "tcp" and name == "inv2543":
        return 400, "Missing Content-Length header"
    if exp["parse"] != "ok":
        return tuple(exp["parse"])  # type: ignore[return-value]
    if data.startswith(b"SIP/"):
        return None, None
    if "tu" in exp:
        return exp["tu"], None
    method = data.split(b" ", 1)[0]
    return (486 if method == b"INVITE" else 200), None


def status_line(data: bytes) -> tuple[int, str]:
    """Status code and reason of a response (which may copy the broken headers it answers)."""
    version, code, reason = data.split(b"\r\n", 1)[0].decode("utf-8", "replace").split(" ", 2)
    assert version == "SIP/2.0"
    return int(code), reason


def call_id_of(data: bytes) -> str:
    """The Call-ID of a raw message (its branch when it has none: RFC 4475 insuf)."""
    m = re.search(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*(\S+)", data) or re.search(rb"branch=([^;\s]+)", data)
    assert m is not None
    return m.group(1).decode("utf-8", "surrogateescape")


async def ping_forever(ep: SipEndpoint, stats: dict) -> None:
    s = udp_socket("127.0.0.9")
    loop = asyncio.get_running_loop()
    port = s.getsockname()[1]
    try:
        for i in range(10_000):
            cid = f"ping-{i}"
            stats["sent"] += 1
            await loop.sock_sendto(s, options(port, f"ping{i}", cid, host="127.0.0.9"), ep.local_addr)
            got = await recv_until(s, cid, 1.0, first=True)
            if got and got[0].startswith(b"SIP/2.0 200"):
                stats["answered"] += 1
            await asyncio.sleep(0.02)
    finally:
        s.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_every_rfc4475_message_gets_its_answer_while_options_keep_flowing(served, transport):
    ep, tu = served
    stats = {"sent": 0, "answered": 0}
    pinger = asyncio.create_task(ping_forever(ep, stats))
    loop = asyncio.get_running_loop()
    failures = []
    try:
        for name in CASES:
            data = load(f"sip/rfc4475/{name}.dat")
            status, reason = expected_answer(name, transport)
            cid = call_id_of(data)
            if transport == "udp":
                s = udp_socket()
                await loop.sock_sendto(s, data, ep.local_addr)
                got = await recv_until(s, cid, 0.4 if status is None else 2.0, first=status is not None)
                s.close()
            else:
                r, w = await asyncio.open_connection(*ep.local_addr)
                w.write(data)
                got = []
                for _ in range(4):
                    if got and status is not None and name != "dblreq" and not got[-1].startswith(b"SIP/2.0 100 "):
                        break
                    try:
                        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 2.0 if status and not got else 0.4)
                    except (TimeoutError, asyncio.IncompleteReadError):
                        break
                    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
                    got.append(head + await r.readexactly(length))
                if name == "clerr":
                    closed = await asyncio.wait_for(r.read(), 5)
                    assert closed == b"", "the half message must be dropped with its connection"
                w.close()
            answers = [status_line(g) for g in got if cid.encode() in g]
            answers = [a for a in answers if a[0] != 100]
            if status is None:
                if answers:
                    failures.append((name, "answered", answers[0]))
                continue
            if not answers:
                failures.append((name, "no answer"))
                continue
            code, phrase = answers[0]
            if code != status or (reason is not None and phrase != reason):
                failures.append((name, code, phrase))
            if name == "dblreq" and transport == "tcp":
                assert [a[0] for a in answers] == [200]
    finally:
        pinger.cancel()
        await asyncio.gather(pinger, return_exceptions=True)
    assert failures == [], failures
    assert stats["sent"] >= 10 and stats["answered"] >= stats["sent"] - 1
    rejected = [e for e in tu.events if isinstance(e, MessageRejected)]
    assert len(rejected) >= 15


# --- floods ----------------------------------------------------------------------------------------------
async def test_a_100_message_flood_from_one_source_does_not_stall_another(served):
    ep, tu = served
    loop = asyncio.get_running_loop()
    flooder, victim = udp_socket("127.0.0.2"), udp_socket("127.0.0.3")
    fport, vport = flooder.getsockname()[1], victim.getsockname()[1]
    start = time.perf_counter()
    for i in range(100):
        flooder.sendto(options(fport, f"f{i}", f"flood-{i}", host="127.0.0.2"), ep.local_addr)
    await loop.sock_sendto(victim, options(vport, "v", "victim-1", host="127.0.0.3"), ep.local_addr)
    got = await recv_until(victim, "victim-1", 2.0, first=True)
    latency = time.perf_counter() - start
    assert got and got[0].startswith(b"SIP/2.0 200") and latency < 1.5
    await asyncio.sleep(0.2)
    flooded = sum(1 for e in tu.events if isinstance(e, RequestReceived) and e.request.call_id.startswith("flood-"))
    assert flooded == 100
    flooder.close()
    victim.close()


async def test_accept_source_hook_limits_a_flooder_before_parsing():
    counts: dict[str, int] = {}

    def limit(ip: str) -> bool:
        counts[ip] = counts.get(ip, 0) + 1
        return counts[ip] <= 10

    tu = ToyTU()
    ep = await SipEndpoint.create(("127.0.0.1", 0), on_event=tu, accept_source=limit)
    tu.endpoint = ep
    try:
        loop = asyncio.get_running_loop()
        flooder, victim = udp_socket("127.0.0.4"), udp_socket("127.0.0.5")
        fport, vport = flooder.getsockname()[1], victim.getsockname()[1]
        for i in range(100):
            flooder.sendto(b"\x00garbage that would cost parsing" if i % 2 else
                           options(fport, f"g{i}", f"gflood-{i}", host="127.0.0.4"), ep.local_addr)
        await loop.sock_sendto(victim, options(vport, "v2", "victim-2", host="127.0.0.5"), ep.local_addr)
        got = await recv_until(victim, "victim-2", 2.0, first=True)
        assert got and got[0].startswith(b"SIP/2.0 200")
        assert ep.stats["filtered"] == 90 and ep.layer.stats["requests"] <= 6 + 1
        r, w = await asyncio.open_connection(*ep.local_addr, local_addr=("127.0.0.4", 0))
        assert await asyncio.wait_for(r.read(), 5) == b""
        assert ep.stats["tcp_refused"] == 1
        w.close()
        flooder.close()
        victim.close()
    finally:
        await ep.close()


async def test_resolve_targets_and_drop_scanner_user_agents():
    events = []
    ep = await SipEndpoint.create(("127.0.0.1", 0), on_event=events.append,
                                  accept_request=lambda req, src: "sipvicious" not in (req.user_agent or ""))
    try:
        from firmware.sip import SipUri
        assert await ep.resolve(SipUri(host="trunk.invalid", port=5080, params={"maddr": "127.0.0.1",
                                                                                "transport": "TCP"})) == \
            Addr("tcp", "127.0.0.1", 5080)
        local = await ep.resolve(SipUri(host="localhost"))
        assert local.host in ("127.0.0.1", "::1") and local.port == 5060 and local.transport == "udp"
        s = udp_socket()
        port = s.getsockname()[1]
        scan = options(port, "scan", "scan-1").replace(b"Content-Length", b"User-Agent: sipvicious\r\nContent-Length")
        await asyncio.get_running_loop().sock_sendto(s, scan, ep.local_addr)
        assert await recv_until(s, "scan-1", 0.3) == []
        assert [(e.status, e.reason) for e in events if isinstance(e, MessageRejected)] == [(None, "filtered")]
        s.close()
    finally:
        await ep.close()


async def test_tcp_requests_reuse_the_phones_connection_and_new_connections_carry_responses():
    a_events, b_events = [], []
    b = await SipEndpoint.create(("127.0.0.1", 0), on_event=b_events.append)
    a = await SipEndpoint.create(("127.0.0.1", 0), on_event=a_events.append, tcp_idle_timeout=0.6)
    try:
        # a phone connects to A and says something; A then calls the phone on that connection
        r, w = await asyncio.open_connection(*a.local_addr)
        lport = w.get_extra_info("sockname")[1]
        w.write(b"\r\n\r\n")
        assert await asyncio.wait_for(r.readexactly(2), 5) == b"\r\n"
        phone = Addr("tcp", "127.0.0.1", lport)
        assert a.has_connection(phone) and str(a.contact_uri("box", "tcp")).endswith(";transport=tcp")
        a.send_keepalive(phone)
        assert await asyncio.wait_for(r.readexactly(4), 5) == b"\r\n\r\n"
        a.send_request(make_request("OPTIONS", f"sip:phone@127.0.0.1:{lport};transport=tcp",
                                    from_addr="<sip:box@127.0.0.1>", to_addr="<sip:phone@127.0.0.1>"), phone)
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"OPTIONS sip:phone@") and b"SIP/2.0/TCP" in head
        # idle connections are swept
        assert await asyncio.wait_for(r.read(), 5) == b""
        for _ in range(50):
            if not a.has_connection(phone):
                break
            await asyncio.sleep(0.02)
        assert not a.has_connection(phone)
        # A opens a connection to B; B answers on it
        dest = Addr("tcp", "127.0.0.1", b.local_addr[1])
        a.send_keepalive(dest)
        txn = a.send_request(make_request("OPTIONS", f"sip:b@127.0.0.1:{dest.port};transport=tcp",
                                          from_addr="<sip:a@127.0.0.1>", to_addr="<sip:b@127.0.0.1>"), dest)
        a.send_request(make_request("OPTIONS", f"sip:b@127.0.0.1:{dest.port};transport=tcp",
                                    from_addr="<sip:a@127.0.0.1>", to_addr="<sip:b@127.0.0.1>"), dest)
        for _ in range(100):
            reqs = [e for e in b_events if isinstance(e, RequestReceived)]
            if len(reqs) == 2:
                break
            await asyncio.sleep(0.02)
        for ev in reqs:
            b.send_response(ev.transaction, make_response(ev.request, 200))
        for _ in range(100):
            if sum(isinstance(e, ResponseReceived) for e in a_events) == 2:
                break
            await asyncio.sleep(0.02)
        assert next(e.transaction for e in a_events if isinstance(e, ResponseReceived)) is txn
        assert a.has_connection(dest)
        w.close()
    finally:
        await a.close()
        await b.close()
        await a.close()


async def test_connection_limits_and_broken_policy_callbacks():
    def broken(ip: str) -> bool:
        raise ValueError("policy bug")

    ep = await SipEndpoint.create(("127.0.0.1", 0), accept_source=broken, max_connections=1,
                                  transports=("tcp",))
    try:
        r1, w1 = await asyncio.open_connection(*ep.local_addr)
        w1.write(b"\r\n\r\n")
        assert await asyncio.wait_for(r1.readexactly(2), 5) == b"\r\n"
        r2, w2 = await asyncio.open_connection(*ep.local_addr)
        assert await asyncio.wait_for(r2.read(), 5) == b""
        assert ep.stats["tcp_refused"] == 1 and ep.stats["tcp_accepted"] == 1
        ep.send_keepalive(Addr("tcp", "127.0.0.1", 1))
        ep.send_stateless(make_request("OPTIONS", "sip:x@127.0.0.1", from_addr="<sip:a@b>", to_addr="<sip:x@y>"),
                          Addr("udp", "127.0.0.1", 9))
        w1.close()
        w2.close()
    finally:
        await ep.close()


async def test_one_address_cannot_take_every_tcp_slot():
    """An unknown address may hold 32 TCP connections; more are closed at once, so idle
    connections from one host (each kept 10 minutes) cannot lock the phones out. A trusted
    address (a registered phone's, a trunk's: an office NAT) is not capped."""
    ep = await SipEndpoint.create(("127.0.0.1", 0), transports=("tcp",))
    ep.trusted_source = lambda ip: ip == "127.0.0.1"
    loop = asyncio.get_running_loop()
    socks = []

    async def connect(source: str) -> bool:
        """True while the box keeps the connection open (a keep-alive ping is answered)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((source, 0))
        socks.append(s)
        await loop.sock_connect(s, ep.local_addr)
        await loop.sock_sendall(s, b"\r\n\r\n")
        try:
            return await asyncio.wait_for(loop.sock_recv(s, 16), 5) == b"\r\n"
        except (ConnectionResetError, BrokenPipeError):
            return False
    try:
        stranger = [await connect("127.0.0.2") for _ in range(40)]
        assert stranger.count(True) == 32 and not any(stranger[32:])
        assert all([await connect("127.0.0.1") for _ in range(40)])
        assert ep.stats["tcp_refused"] == 8
        for s in socks[:5]:   # a stranger's connection that closes frees its slot
            s.close()
        await asyncio.sleep(0.2)
        assert await connect("127.0.0.2")
    finally:
        for s in socks:
            s.close()
        await ep.close()


@pytest.mark.parametrize("algorithms", [("MD5", "SHA-256"), ("SHA-256",)])
async def test_authenticated_register_over_the_wire(algorithms):
    """The UAC side of the report's example: REGISTER, 401, REGISTER with credentials, 200."""
    from firmware.sip import DigestClient, DigestServer, PasswordCredentials, Via

    users = {"201": PasswordCredentials.of("201", "officebox", "s3cret-201")}
    server = DigestServer("officebox", b"\x07" * 32, algorithms=algorithms)
    results = []

    def registrar(ev):
        if isinstance(ev, RequestReceived):
            result = server.verify(ev.request, users.get, time.time())
            results.append(result)
            resp = make_response(ev.request, 200) if result.ok else \
                server.challenge(ev.request, time.time(), stale=result.stale)
            reg.send_response(ev.transaction, resp)

    reg = await SipEndpoint.create(("127.0.0.1", 0), on_event=registrar)
    answers: asyncio.Queue = asyncio.Queue()
    phone = await SipEndpoint.create(("127.0.0.1", 0), on_event=lambda ev: isinstance(ev, ResponseReceived)
                                     and answers.put_nowait(ev.response))
    try:
        dest = Addr("udp", *reg.local_addr)
        aor = f"<sip:201@127.0.0.1:{dest.port}>"
        request = make_request("REGISTER", f"sip:127.0.0.1:{dest.port}", from_addr=aor, to_addr=aor,
                               contact=f"<{phone.contact_uri('201')}>", headers=[("Expires", "300")])
        phone.send_request(request, dest)
        challenge = await asyncio.wait_for(answers.get(), 5)
        assert challenge.status == 401
        again = DigestClient("201", "s3cret-201", algorithms=["SHA-256", "MD5"]).authorize(request, challenge)
        phone.send_request(again, dest)
        ok = await asyncio.wait_for(answers.get(), 5)
        assert ok.status == 200 and again.cseq.seq == 2
        assert [r.reason for r in results] == ["no credentials", "ok"]
        assert results[1].algorithm == algorithms[0]
        assert isinstance(again.top_via, Via) and again.top_via.branch != request.top_via.branch
    finally:
        await phone.close()
        await reg.close()
