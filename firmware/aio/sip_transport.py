"""SIP over UDP and TCP on asyncio: the thin I/O shell around :class:`TransactionLayer`.

Datagrams and stream segments go into the sans-I/O layer with ``now = loop.time()``; what the
layer wants sent goes out; its events go to ``on_event``; one ``loop.call_at`` timer is re-armed
from ``layer.get_timer()`` (aioquic's ``QuicConnectionProtocol`` pattern).

UDP is read straight from the event loop, not through an asyncio transport: each wake-up drains
up to :attr:`_Udp.batch` datagrams (one wake-up per datagram was a large share of the cost under
load), and the kernel's receive timestamp of each one tells how long it waited in the socket
buffer, which is what the transaction layer's overload guard needs
(:class:`~firmware.sip.overload.OverloadGuard`); the guard also hears how late the event loop
runs, for TCP. UDP leaves through the engine library's datagram sender
(``pbx_dgram_queue``, a C thread): the loop only copies each datagram into its queue, and the
send system call, which on loopback also runs the receiver's delivery, is paid off the loop. The
thread is woken after every few received datagrams' handling and at the end of a batch (per turn
of the loop, a ``call_soon``, for what timers and tasks send), not per datagram sent: a wake
costs the loop as much as several queued datagrams.
Without the built engine, or for a host name, the loop sends itself.

TCP connections are kept per remote address: responses go back on the connection the request
came in on, and requests to an address with an open connection (a phone behind NAT that
registered over TCP) reuse it. A double-CRLF ping is answered with a CRLF pong (RFC 5626).
Nothing a peer sends can raise out of this module: malformed input is answered as the parser's
``status_hint`` says, or dropped, and TU callbacks that raise are logged.
"""
from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from firmware.sip.errors import SipParseError
from firmware.sip.events import Addr, SipEvent
from firmware.sip.message import MAX_MESSAGE_SIZE, KeepAlive, Message, SipRequest, SipResponse, StreamParser
from firmware.sip.transaction import ClientTransaction, ServerTransaction, Timers, TransactionLayer
from firmware.sip.uri import SipUri

try:
    from firmware._pbxcore import ffi as _ffi, lib as _lib
except ImportError:  # the engine is not built (a bare checkout): the loop sends itself
    _ffi = _lib = None

log = logging.getLogger("firmware.sip")

EventHandler = Callable[[SipEvent], Any]
SourceFilter = Callable[[str], bool]


# Linux's value (asm-generic/socket.h): SCM_TIMESTAMPNS carries a struct timespec of the
# moment the datagram reached the socket (CLOCK_REALTIME).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@ll")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)


class _Udp:
    """The UDP socket of an endpoint, driven by ``loop.add_reader``/``add_writer``."""

    batch = 64
    """Datagrams read per wake-up at most (then other callbacks and timers get their turn)."""
    wake_every = 4
    """Received datagrams handled between wake-ups of the native sender (when they sent)."""
    max_backlog = 10000
    """Datagrams queued for sending (in the native sender, or while the socket buffer is full);
    more are dropped."""
    send_wait_ms = 50
    """How long a send waits for room in the native sender's queue before dropping."""

    def __init__(self, endpoint: SipEndpoint, sock: socket.socket, native: bool = True) -> None:
        self.endpoint = endpoint
        self.sock = sock
        self.loop = endpoint._loop
        self.timestamps = _enable_timestamps(sock)
        self._buf = bytearray(65536)
        self._view = memoryview(self._buf)
        self._out: deque[tuple[bytes, tuple[str, int]]] = deque()
        self.closed = False
        self.sender: Any = None
        self._wake_pending = False
        self._reading = False
        if native and _lib is not None:
            out = _ffi.new("pbx_dgram_sender_t **")
            rc = _lib.pbx_dgram_sender_open(sock.fileno(), self.max_backlog, out)
            if rc == 0:
                self.sender = out[0]
            else:
                log.warning("native UDP sender unavailable (%s): sending from the event loop",
                            _ffi.string(_lib.pbx_strerror(rc)).decode())
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock, view, endpoint = self.sock, self._view, self.endpoint
        # What the handling of received datagrams sent leaves after every `wake_every` of them
        # and at the end of the batch (one wake each), not per datagram sent: a wake costs the
        # loop as much as several sends, and a closed-loop client waits for the answers.
        self._reading = True
        try:
            for i in range(self.batch):
                if self.closed:
                    return
                arrived: float | None = None
                try:
                    if self.timestamps:
                        n, anc, _, addr = sock.recvmsg_into((view,), _ANC_SIZE)
                        for level, kind, cdata in anc:
                            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= _TIMESPEC.size:
                                sec, nsec = _TIMESPEC.unpack_from(cdata)
                                arrived = sec + nsec * 1e-9
                    else:
                        n, addr = sock.recvfrom_into(view)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:  # an ICMP error of an earlier send, reported here
                    log.debug("UDP receive: %s", e)
                    continue
                endpoint._datagram(bytes(view[:n]), addr[0], addr[1], arrived)
                if self._wake_pending and i % self.wake_every == self.wake_every - 1:
                    self._wake()
        finally:
            self._reading = False
            if self._wake_pending:
                self._wake()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.closed:
            return
        if self.sender is not None:
            rc = _lib.pbx_dgram_queue(self.sender, addr[0].encode(), addr[1], data, len(data), self.send_wait_ms)
            if rc == 0:
                if not self._wake_pending:
                    self._wake_pending = True
                    if not self._reading:
                        self.loop.call_soon(self._wake)
                return
            if rc == _lib.PBX_EFULL:
                log.warning("UDP send queue full: datagram to %s dropped", addr)
                return
            # PBX_EINVAL: not an IP address (a host name) or no datagram size: the socket decides
        if not self._out:
            try:
                self.sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(self.sock.fileno(), self._writable)
            except OSError as e:
                log.debug("UDP send to %s failed: %s", addr, e)
                return
        if len(self._out) >= self.max_backlog:
            log.warning("UDP send queue full: datagram to %s dropped", addr)
            return
        self._out.append((data, addr))

    def _wake(self) -> None:
        self._wake_pending = False
        if self.sender is not None:
            _lib.pbx_dgram_wake(self.sender)

    def _writable(self) -> None:
        while self._out and not self.closed:
            data, addr = self._out[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("UDP send to %s failed: %s", addr, e)
            self._out.popleft()
        if not self.closed:
            self.loop.remove_writer(self.sock.fileno())

    def send_stats(self) -> dict[str, int]:
        """Counters of the native sender (empty without one)."""
        if self.sender is None:
            return {}
        st = _ffi.new("pbx_dgram_stats_t *")
        _lib.pbx_dgram_sender_get_stats(self.sender, st)
        return {k: int(getattr(st, k)) for k in ("queued", "sent", "failed", "dropped", "send_calls",
                                                  "cpu_ns", "last_errno", "backlog")}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.loop.remove_writer(self.sock.fileno())
        self._out.clear()
        if self.sender is not None:
            sender, self.sender = self.sender, None
            _lib.pbx_dgram_sender_close(sender)  # sends what is queued, then the socket may go
        self.sock.close()


class _Tcp(asyncio.Protocol):
    """One TCP connection (accepted or opened by us)."""

    def __init__(self, endpoint: SipEndpoint, remote: Addr | None) -> None:
        self.endpoint = endpoint
        self.remote = remote
        self.transport: asyncio.Transport | None = None
        self.parser = StreamParser(endpoint.max_size)
        self.last_activity = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.last_activity = self.endpoint._loop.time()
        peer = transport.get_extra_info("peername")
        if self.remote is None:
            self.remote = Addr("tcp", peer[0], peer[1])
        self.endpoint._tcp_opened(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.endpoint._loop.time()
        self.endpoint._segment(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint._tcp_closed(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SipEndpoint:
    """A SIP endpoint listening on UDP and TCP. Create with :meth:`create`.

    ``on_event(event)`` receives every :mod:`firmware.sip.events` event (it may return an
    awaitable, which is run as a task). ``accept_source(ip)`` is asked before anything from
    ``ip`` is parsed (per datagram, per TCP segment and per new connection): the security
    policy's rate limiter and ban list plug in here.
    """

    def __init__(self, layer: TransactionLayer, on_event: EventHandler | None,
                 accept_source: SourceFilter | None, *, max_size: int, tcp_idle_timeout: float,
                 tcp_partial_timeout: float, max_connections: int) -> None:
        self.layer = layer
        """The sans-I/O transaction layer (inspect ``layer.stats`` for counters)."""
        self.on_event = on_event
        """Event callback."""
        self.accept_source = accept_source
        """Source filter, or ``None`` to accept everything."""
        self.max_size = max_size
        self.tcp_idle_timeout = tcp_idle_timeout
        """Seconds an idle TCP connection is kept."""
        self.tcp_partial_timeout = tcp_partial_timeout
        """Seconds a TCP connection may sit on an incomplete message (RFC 4475 clerr)."""
        self.max_connections = max_connections
        """TCP connections accepted at most (more are closed at once)."""
        self.max_connections_per_source = 32
        """TCP connections one address may hold, unless ``trusted_source(ip)`` says it is a
        registered phone's, a trunk's or a call's: one address opening idle connections must not
        take every slot from the phones."""
        self.trusted_source: Callable[[str], bool] | None = None
        self.udp_receive_buffer = 4 * 1024 * 1024
        """Bytes of kernel receive buffer asked for the UDP socket (bursts of calls)."""
        self.native_send = True
        """UDP sent by the engine library's sender thread (when built); False: by the loop."""
        self.advertised_host = "127.0.0.1"
        """Host written in our Via headers and suggested for Contact."""
        self.stats = {"filtered": 0, "tcp_accepted": 0, "tcp_refused": 0, "callback_errors": 0,
                      "keepalives": 0}
        """Transport counters."""
        self._loop = asyncio.get_running_loop()
        self._udp: _Udp | None = None
        self._lag_timer: asyncio.TimerHandle | None = None
        self._server: asyncio.Server | None = None
        self._conns: dict[Addr, _Tcp] = {}
        self._per_source: dict[str, int] = {}
        self._connecting: dict[Addr, list[bytes]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._processing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        self._port = 0

    @classmethod
    async def create(cls, bind: tuple[str, int] = ("0.0.0.0", 5060), *, timers: Timers | None = None,
                     on_event: EventHandler | None = None, accept_source: SourceFilter | None = None,
                     transports: tuple[str, ...] = ("udp", "tcp"), advertise: str | None = None,
                     layer: TransactionLayer | None = None, max_size: int = MAX_MESSAGE_SIZE,
                     tcp_idle_timeout: float = 600.0, tcp_partial_timeout: float = 32.0,
                     max_connections: int = 1024,
                     accept_request: Callable[[SipRequest, Addr], bool] | None = None,
                     udp_receive_buffer: int = 4 * 1024 * 1024, native_send: bool = True) -> SipEndpoint:
        """Bind UDP and TCP on ``bind`` (port 0: one free port shared by both).

        ``accept_request(request, source)`` is the layer's post-parse filter (see
        :attr:`TransactionLayer.accept_request`): scanner user agents are dropped there.
        ``native_send=False`` sends UDP from the event loop instead of the engine's sender thread.
        """
        layer = layer if layer is not None else TransactionLayer(timers=timers, max_size=max_size, accept_request=accept_request)
        self = cls(layer, on_event, accept_source, max_size=max_size, tcp_idle_timeout=tcp_idle_timeout,
                   tcp_partial_timeout=tcp_partial_timeout, max_connections=max_connections)
        self.udp_receive_buffer = udp_receive_buffer
        self.native_send = native_send
        host, port = bind
        for attempt in range(20):
            try:
                await self._bind(host, port, transports)
                break
            except OSError as e:
                await self._unbind()
                if port != 0 or e.errno != errno.EADDRINUSE or attempt == 19:
                    raise
        self.advertised_host = advertise or _guess_host(host)
        for t in transports:
            layer.set_sent_by(t, self.advertised_host, self._port)
        self._sweeper = self._loop.create_task(self._sweep())
        if layer.overload is not None:
            self._watch_lag(self._loop.time())
        return self

    async def _bind(self, host: str, port: int, transports: tuple[str, ...]) -> None:
        if "udp" in transports:
            sock = await self._udp_socket(host, port)
            self._udp = _Udp(self, sock, self.native_send)
            port = sock.getsockname()[1]
        if "tcp" in transports:
            self._server = await self._loop.create_server(lambda: _Tcp(self, None), host, port,
                                                          reuse_address=True)
            port = self._server.sockets[0].getsockname()[1]
        self._port = port

    async def _udp_socket(self, host: str, port: int) -> socket.socket:
        infos = await self._loop.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        error: OSError = OSError(f"cannot resolve {host}")
        for family, _, proto, _, addr in infos:
            sock = socket.socket(family, socket.SOCK_DGRAM, proto)
            try:
                sock.setblocking(False)
                _grow_receive_buffer(sock, self.udp_receive_buffer)
                sock.bind(addr)
                return sock
            except OSError as e:
                sock.close()
                error = e
        raise error

    async def _unbind(self) -> None:
        if self._udp is not None:
            self._udp.close()
        self._udp = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._server = None

    # --- public API -----------------------------------------------------------------------
    @property
    def local_addr(self) -> tuple[str, int]:
        """``(host, port)`` the endpoint is bound to (the same port for UDP and TCP)."""
        if self._udp is not None:
            return self._udp.sock.getsockname()[:2]
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    def contact_uri(self, user: str | None = None, transport: str = "udp") -> SipUri:
        """A Contact URI reaching this endpoint."""
        params: dict[str, str | None] = {} if transport == "udp" else {"transport": transport}
        return SipUri(host=self.advertised_host, user=user, port=self._port, params=params)

    def send_request(self, request: SipRequest, dest: Addr) -> ClientTransaction:
        """Send a request through a new client transaction."""
        txn = self.layer.send_request(request, dest, self._loop.time())
        self._process()
        return txn

    def send_response(self, target: ServerTransaction | SipRequest, response: SipResponse) -> None:
        """Send a response through the server transaction of ``target``."""
        self.layer.send_response(target, response, self._loop.time())
        self._process()

    def send_final_stateless(self, txn: ServerTransaction, response: SipResponse) -> None:
        """Answer with a final non-2xx response and forget the transaction (see
        :meth:`TransactionLayer.send_final_stateless`)."""
        self.layer.send_final_stateless(txn, response)
        self._process()

    def send_stateless(self, message: Message, dest: Addr) -> None:
        """Send a message outside any transaction (ACK of a 2xx...)."""
        self.layer.send_stateless(message, dest)
        self._process()

    def cancel(self, invite: ClientTransaction, reason: str | None = None) -> ClientTransaction | None:
        """CANCEL a pending INVITE (see :meth:`TransactionLayer.cancel`)."""
        txn = self.layer.cancel(invite, self._loop.time(), reason)
        self._process()
        return txn

    def send_keepalive(self, dest: Addr) -> None:
        """A CRLF keep-alive (RFC 5626 double CRLF) to ``dest``, opening no new TCP connection."""
        if dest.transport == "udp":
            self._transmit(b"\r\n\r\n", dest)
        elif dest in self._conns:
            self._conns[dest].write(b"\r\n\r\n")

    async def resolve(self, uri: SipUri) -> Addr:
        """Where to send a request for ``uri``: its ``maddr`` or host resolved without blocking
        (A/AAAA records; no NAPTR/SRV), its port or 5060, its ``transport`` parameter or UDP."""
        host = uri.params.get("maddr") or uri.host
        port = uri.port or 5060
        infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host}")
        return Addr(uri.transport, str(infos[0][4][0]), port)

    def has_connection(self, dest: Addr) -> bool:
        """Whether a TCP connection to ``dest`` is open."""
        return dest in self._conns

    async def close(self) -> None:
        """Stop listening, close every connection, cancel timers and tasks."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._lag_timer is not None:
            self._lag_timer.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self._conns.values()):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        await self._unbind()
        conns = [c.closed for c in self._conns.values()]
        if conns:
            await asyncio.wait(conns, timeout=2)

    # --- input ------------------------------------------------------------------------------
    def _accepted(self, ip: str) -> bool:
        if self.accept_source is None:
            return True
        try:
            ok = bool(self.accept_source(ip))
        except Exception:
            log.exception("accept_source(%s) failed", ip)
            ok = True
        if not ok:
            self.stats["filtered"] += 1
        return ok

    def _datagram(self, data: bytes, ip: str, port: int, arrived: float | None = None) -> None:
        if self._closed or not self._accepted(ip):
            return
        if not data.strip(b"\r\n \t"):
            self.stats["keepalives"] += 1
            return
        now = self._loop.time()
        if arrived is not None and self.layer.overload is not None:
            self.layer.overload.note_delay(time.time() - arrived, now)
        try:
            self.layer.receive_datagram(data, Addr("udp", ip, port), now)
        except Exception:
            log.exception("SIP datagram from %s:%d broke the stack", ip, port)
        self._process()

    def _segment(self, conn: _Tcp, data: bytes) -> None:
        remote = conn.remote
        assert remote is not None
        if self._closed:
            return
        if not self._accepted(remote.host):
            conn.close()
            return
        conn.parser.feed(data)
        now = self._loop.time()
        while True:
            try:
                item = conn.parser.next_event()
            except SipParseError as e:
                self.layer.reject(e, remote)
                if e.fatal:
                    self._process()
                    conn.close()
                    return
                continue
            except Exception:
                log.exception("SIP stream from %s broke the parser", remote)
                conn.close()
                return
            if item is None:
                break
            if item is KeepAlive.PING:
                self.stats["keepalives"] += 1
                self._process()
                conn.write(b"\r\n")
                continue
            if item is KeepAlive.PONG:
                continue
            try:
                self.layer.receive(item, remote, now)
            except Exception:
                log.exception("SIP message from %s broke the stack", remote)
        self._process()

    def _tcp_opened(self, conn: _Tcp) -> None:
        assert conn.remote is not None
        host = conn.remote.host
        held = self._per_source.get(host, 0)
        if (len(self._conns) >= self.max_connections or not self._accepted(host)
                or (held >= self.max_connections_per_source
                    and not (self.trusted_source is not None and self.trusted_source(host)))):
            self.stats["tcp_refused"] += 1
            conn.close()
            return
        self.stats["tcp_accepted"] += 1
        old = self._conns.get(conn.remote)
        self._conns[conn.remote] = conn
        if old is not None and old is not conn:
            old.close()
        else:
            self._per_source[host] = held + 1

    def _tcp_closed(self, conn: _Tcp) -> None:
        remote = conn.remote
        if remote is None or self._conns.get(remote) is not conn:
            return
        del self._conns[remote]
        n = self._per_source.pop(remote.host, 0) - 1
        if n > 0:
            self._per_source[remote.host] = n
        if not self._closed:
            self.layer.transport_error(remote, self._loop.time(), "connection closed")
            self._process()

    # --- output -----------------------------------------------------------------------------
    def _process(self) -> None:
        if self._processing or self._closed:
            return
        self._processing = True
        try:
            while True:
                out = self.layer.messages_to_send()
                for data, dest in out:
                    self._transmit(data, dest)
                event = self.layer.next_event()
                if event is not None:
                    self._dispatch(event)
                elif not out:
                    break
        finally:
            self._processing = False
        self._arm()

    def _dispatch(self, event: SipEvent) -> None:
        if self.on_event is None:
            return
        try:
            result = self.on_event(event)
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("SIP event handler failed on %r", event)
            return
        if result is not None and inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            self.stats["callback_errors"] += 1
            log.error("SIP event task failed", exc_info=task.exception())

    def _transmit(self, data: bytes, dest: Addr) -> None:
        if dest.transport == "udp":
            if self._udp is not None:
                self._udp.sendto(data, (dest.host, dest.port))
            return
        conn = self._conns.get(dest)
        if conn is not None:
            conn.write(data)
            return
        pending = self._connecting.get(dest)
        if pending is not None:
            pending.append(data)
            return
        self._connecting[dest] = [data]
        task = self._loop.create_task(self._connect(dest))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _connect(self, dest: Addr) -> None:
        try:
            _, conn = await asyncio.wait_for(
                self._loop.create_connection(lambda: _Tcp(self, dest), dest.host, dest.port),
                timeout=self.layer.timers.t1 * 64)
        except (TimeoutError, OSError) as e:
            self._connecting.pop(dest, None)
            self.layer.transport_error(dest, self._loop.time(), f"cannot connect: {e}")
            self._process()
            return
        for data in self._connecting.pop(dest, []):
            conn.write(data)

    def _arm(self) -> None:
        when = self.layer.get_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None and not self._closed:
            self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.layer.handle_timer(self._loop.time())
        except Exception:
            log.exception("SIP timer handling failed")
        self._process()

    LAG_PERIOD = 0.1
    """Seconds between two looks at how late the event loop runs (for the overload guard)."""

    def _watch_lag(self, due: float) -> None:
        now = self._loop.time()
        if self.layer.overload is not None:
            self.layer.overload.note_lag(now - due, now)
        if not self._closed:
            self._lag_timer = self._loop.call_at(now + self.LAG_PERIOD, self._watch_lag, now + self.LAG_PERIOD)

    async def _sweep(self) -> None:
        refused = 0
        while True:
            await asyncio.sleep(min(5.0, self.tcp_partial_timeout / 4, self.tcp_idle_timeout / 4))
            now = self._loop.time()
            st = self._udp.send_stats() if self._udp is not None else {}
            if st.get("failed", 0) > refused:
                # what sendto() raised on the loop before: now counted by the sender thread
                log.debug("%d UDP datagram(s) refused by the kernel (last: %s)", st["failed"] - refused,
                          os.strerror(st["last_errno"]))
                refused = st["failed"]
            for conn in list(self._conns.values()):
                idle = now - conn.last_activity
                if idle > self.tcp_idle_timeout or (conn.parser.buffered and idle > self.tcp_partial_timeout):
                    conn.close()


def _enable_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp each received datagram (SO_TIMESTAMPNS); False where it cannot."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def _grow_receive_buffer(sock: Any, size: int) -> None:
    """A call burst must queue in the kernel, not be dropped while Python is busy: ask for a
    large receive buffer (beyond net.core.rmem_max when we may)."""
    if sock is None or size <= 0:
        return
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    for opt in (force, socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            return
        except OSError:
            continue


def _guess_host(bind_host: str) -> str:
    if bind_host not in ("0.0.0.0", "", "::"):
        return bind_host
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return "127.0.0.1"
    for info in infos:
        ip = str(info[4][0])
        if not ip.startswith("127."):
            return ip
    return "127.0.0.1"


__all__ = ["SipEndpoint"]
