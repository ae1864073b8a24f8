"""Safe Python objects over the C media engine.

The engine runs its own thread (epoll + a 20 ms clock); these objects only send it
control calls through one ordered queue. Calls whose result nobody waits for (creating
channels, bridges and recorders, configure, bridge add/remove, close/stop) are posted:
their arguments are checked here, synchronously, and the call returns without waiting for
the engine thread; a later failure there is logged (a recorder's becomes RecorderError).
Queries (stats, relaying, ...) are round trips and see every call made before them.
Handles are freed deterministically by ``close()`` / ``with`` blocks, and by the garbage
collector as a backstop. Errors are :mod:`firmware.media.errors` exceptions; no C pointer
ever leaves this module.

Typical use from the B2BUA::

    eng = Engine(bind_ip="192.168.1.10", rtp_ports=(10000, 20000))
    loop.add_reader(eng.fileno(), lambda: handle(eng.poll_events()))
    a = eng.rtp_channel(); b = eng.rtp_channel()
    a.configure(remote=("192.168.1.21", 4000), payload_type=0, telephone_event_pt=101)
    b.configure(remote=("10.0.0.1", 30000), payload_type=8, telephone_event_pt=101)
    br = eng.bridge([a, b])                 # relays without decoding when it can
    rec = eng.record(br, "/data/rec/x.wav", stereo=True, left=[a])
"""
from __future__ import annotations

import logging
import os
import threading
import weakref
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Sequence

from firmware._pbxcore import ffi, lib

from .errors import Busy, InvalidArgument, InvalidState, MediaError, NotFound, TableFull, error_for
from .events import (ChannelError, DleEvent, DtmfReceived, MediaEvent, PlayerDone, RecorderError,
                     RecorderStopped, RtpResumed, RtpSourceLatched, RtpTimeout)
from .jitter import JbStats
from .tones import ToneSpec, tone_spec
from .wav import read_wav_pcm

__all__ = [
    "Engine", "RtpChannel", "PcmChannel", "Channel", "Bridge", "Sound", "Player", "Recorder",
    "ChannelStats", "EngineStats", "DIRECTIONS", "SAMPLE_FORMATS", "MEMBER_MODES",
]

DIRECTIONS = {"sendrecv": lib.PBX_DIR_SENDRECV, "sendonly": lib.PBX_DIR_SENDONLY,
              "recvonly": lib.PBX_DIR_RECVONLY, "inactive": lib.PBX_DIR_INACTIVE}
SAMPLE_FORMATS = {"s16le": lib.PBX_PCM_S16LE, "ulaw": lib.PBX_PCM_ULAW, "alaw": lib.PBX_PCM_ALAW,
                  "u8": lib.PBX_PCM_U8}
MEMBER_MODES = {"full": lib.PBX_MEMBER_FULL, "listen": lib.PBX_MEMBER_LISTEN,
                "whisper": lib.PBX_MEMBER_WHISPER}
_PLAYER_END = {lib.PBX_PLAYER_FINISHED: "finished", lib.PBX_PLAYER_STOPPED: "stopped",
               lib.PBX_PLAYER_TARGET_GONE: "target_gone"}
_DTMF_DIGITS = frozenset("0123456789*#ABCD")
_OPS = {lib.PBX_OP_CHANNEL_CREATE: "rtp_channel", lib.PBX_OP_CHANNEL_CONFIGURE: "configure",
        lib.PBX_OP_CHANNEL_DESTROY: "channel.close", lib.PBX_OP_BRIDGE_CREATE: "bridge",
        lib.PBX_OP_BRIDGE_ADD: "bridge.add", lib.PBX_OP_BRIDGE_REMOVE: "bridge.remove",
        lib.PBX_OP_BRIDGE_DESTROY: "bridge.close", lib.PBX_OP_PLAYER_STOP: "player.stop",
        lib.PBX_OP_SOUND_RELEASE: "sound.close", lib.PBX_OP_RECORDER_CREATE: "record",
        lib.PBX_OP_RECORDER_STOP: "recorder.stop"}
_ID_CHANNEL, _ID_BRIDGE = 1, 2
_MAX_MEMBERS = 64

log = logging.getLogger("firmware.media")


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise error_for(rc, what)
    return rc


@dataclass(frozen=True)
class ChannelStats:
    """Counters of one channel (a snapshot)."""

    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    #: Truncated packets, wrong RTP version, CSRC/extension/padding beyond the packet.
    dropped_malformed: int
    dropped_unknown_pt: int
    #: From an address not (yet) accepted by the latching rule (RTP Bleed protection).
    dropped_source: int
    #: Received while the direction forbids receiving (hold).
    dropped_direction: int
    #: Over the per-tick packet budget (floods).
    dropped_flood: int
    send_errors: int
    rtcp_in: int
    dtmf_in: int
    dtmf_out: int
    source_changes: int
    dle_events: int
    bridged: bool
    #: Forwarded without decoding right now.
    relaying: bool
    #: Received audio goes through the jitter buffer right now.
    decoding: bool
    #: Received audio is forwarded inside the kernel right now (the counters still add up).
    kernel_relay: bool
    local_port: int
    #: Where the channel sends now (None before the remote is known).
    remote: tuple[str, int] | None
    #: The channel's jitter buffer (meaningful while it decodes): received, lost,
    #: late_discarded, duplicated, concealed_samples, current/target delay, jitter_ms, ...
    jitter: JbStats


@dataclass(frozen=True)
class EngineStats:
    """Counters of the engine thread."""

    ticks: int
    ticks_missed: int
    events_dropped: int
    commands: int
    channels: int
    bridges: int
    players: int
    recorders: int
    #: CPU time the engine thread has used, in seconds.
    cpu_s: float
    #: The in-kernel relay (eBPF) is loaded; when asked for and refused, the OS error why.
    kernel_relay: bool = False
    kernel_relay_error: str = ""
    #: RTP packets relayed inside the kernel so far (read back about once a second).
    packets_kernel: int = 0
    #: Time the kernel spent in the relay program and the packets it looked at; counted only
    #: while the sysctl kernel.bpf_stats_enabled is 1 (a measurement aid), else 0.
    kernel_relay_run_s: float = 0.0
    kernel_relay_runs: int = 0
    #: RTP packets the engine thread sent itself, and the system calls that sent them.
    packets_sent: int = 0
    send_calls: int = 0


class _Core:
    """The C engine pointer plus what the handles share. Internal."""

    def __init__(self, params: Any) -> None:
        out = ffi.new("pbx_engine_t **")
        _check(lib.pbx_engine_create(params, out), "engine")
        self.ptr = out[0]
        # Reentrant: a garbage-collector finalizer may release a handle on a thread that is
        # already inside a call.
        self.lock = threading.RLock()
        self.closed = False
        self.recorder_paths: dict[int, str] = {}
        # Bridge membership as posted (checked here: bridge.add answers without a round trip).
        self.bridge_of: dict[int, int] = {}
        self.members: dict[int, set[int]] = {}
        self.fd = lib.pbx_engine_fd(self.ptr)

    def call(self, fn: Callable[..., int], *args: Any, what: str = "engine") -> int:
        with self.lock:
            if self.closed:
                raise InvalidState(f"{what}: the engine is closed")
            return _check(fn(self.ptr, *args), what)

    def call_quiet(self, fn: Callable[..., int], *args: Any) -> int:
        """Best-effort release from close()/finalizers: never raises."""
        with self.lock:
            if self.closed:
                return 0
            return fn(self.ptr, *args)

    def forget(self, obj_id: int) -> None:
        """A channel or bridge is being closed: drop its membership (under the lock)."""
        kind = obj_id >> 28
        if kind == _ID_CHANNEL:
            b = self.bridge_of.pop(obj_id, None)
            if b is not None:
                self.members.get(b, set()).discard(obj_id)
        elif kind == _ID_BRIDGE:
            for ch in self.members.pop(obj_id, ()):
                self.bridge_of.pop(ch, None)

    def destroy(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            ptr, self.ptr = self.ptr, ffi.NULL
        lib.pbx_engine_destroy(ptr)


def _release(core: _Core, fn_name: str, obj_id: int) -> None:
    with core.lock:
        core.forget(obj_id)
        core.call_quiet(getattr(lib, fn_name), obj_id)


class _Handle:
    """An engine object addressed by id, freed once by close() (idempotent).

    Channels, bridges and sounds are also freed by the garbage collector when the last
    reference goes. Players and recorders are not: they live until they finish, are
    stopped, or their target (channel/bridge) or the engine is closed, so a prompt
    started without keeping its Player still plays to the end.
    """

    _destroy_fn = ""
    _release_on_gc = True

    def __init__(self, engine: "Engine", obj_id: int) -> None:
        self._engine = engine
        self._core = engine._core
        self.id = obj_id
        self._alive = True
        self._finalizer = (weakref.finalize(self, _release, self._core, self._destroy_fn, obj_id)
                           if self._release_on_gc else None)

    @property
    def closed(self) -> bool:
        return not self._alive or self._core.closed

    def close(self) -> None:
        """Free the engine object now (idempotent)."""
        if not self._alive:
            return
        self._alive = False
        if self._finalizer is not None:
            self._finalizer()
        else:
            _release(self._core, self._destroy_fn, self.id)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[..., int], *args: Any, what: str) -> int:
        if not self._alive:
            raise InvalidState(f"{what}: {type(self).__name__} {self.id:#x} is closed")
        return self._core.call(fn, *args, what=what)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id:#x}{' closed' if self.closed else ''}>"


class Channel(_Handle):
    """Common part of RTP and PCM channels."""

    _destroy_fn = "pbx_channel_destroy_nowait"

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Send one digit: RFC 4733 when the channel has a telephone-event type, else in-band tones.

        Digits queue up (32 at most) and go out one after the other with a 40 ms gap.
        """
        if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in _DTMF_DIGITS:
            raise InvalidArgument(f"send_dtmf: {digit!r} is not a DTMF digit (0-9 * # A-D)")
        if not 40 <= int(duration_ms) <= 5000:
            raise InvalidArgument(f"send_dtmf: duration_ms={duration_ms} outside 40..5000")
        self._call(lib.pbx_channel_send_dtmf, self.id, digit.upper().encode(), int(duration_ms),
                   what="send_dtmf")

    def inband_dtmf(self, enabled: bool = True) -> None:
        """Run (or stop) the in-band DTMF detector on the audio received from this channel."""
        self._call(lib.pbx_channel_set_inband_dtmf, self.id, 1 if enabled else 0, what="inband_dtmf")

    def stats(self) -> ChannelStats:
        """A snapshot of the channel's counters, including its jitter buffer."""
        st = ffi.new("pbx_channel_stats_t *")
        self._call(lib.pbx_channel_get_stats, self.id, st, what="stats")
        jb = ffi.new("pbx_jb_stats_t *")
        self._call(lib.pbx_channel_get_jb_stats, self.id, jb, what="stats")
        values = {f.name: getattr(jb, f.name) for f in fields(JbStats)}
        values["playing"] = bool(values["playing"])
        jitter = JbStats(**values)
        remote = None
        if st.remote_port:
            remote = (ffi.string(st.remote_addr).decode(), st.remote_port)
        return ChannelStats(
            packets_in=st.packets_in, bytes_in=st.bytes_in, packets_out=st.packets_out,
            bytes_out=st.bytes_out, dropped_malformed=st.dropped_malformed,
            dropped_unknown_pt=st.dropped_unknown_pt, dropped_source=st.dropped_source,
            dropped_direction=st.dropped_direction, dropped_flood=st.dropped_flood,
            send_errors=st.send_errors, rtcp_in=st.rtcp_in, dtmf_in=st.dtmf_in, dtmf_out=st.dtmf_out,
            source_changes=st.source_changes, dle_events=st.dle_events, bridged=bool(st.bridged),
            relaying=bool(st.relaying), decoding=bool(st.decoding), kernel_relay=bool(st.kernel_relay),
            local_port=st.local_port,
            remote=remote, jitter=jitter)


class RtpChannel(Channel):
    """An RTP endpoint on an even UDP port of the engine's range (RTCP on port + 1)."""

    def __init__(self, engine: "Engine", obj_id: int, local_ip: str, local_port: int) -> None:
        super().__init__(engine, obj_id)
        self.local_ip = local_ip
        self.local_port = local_port

    def configure(self, remote: tuple[str, int] | None = None, payload_type: int = 0,
                  telephone_event_pt: int | None = 101, signalling_ip: str | None = None,
                  direction: str = "sendrecv", inactivity_timeout_s: float = 0,
                  inband_dtmf: bool | None = None) -> None:
        """Apply the negotiated media (from SDP); call again on every re-INVITE.

        remote: the (ip, port) of the SDP. The channel sends there until symmetric RTP
        latches onto another source, which must come from ``signalling_ip`` (default: the
        remote IP) with several packets in sequence.
        payload_type: 0 (PCMU) or 8 (PCMA), what we send; both are understood on input.
        telephone_event_pt: RFC 4733 payload type (96..127) or None.
        direction: "sendrecv", "sendonly", "recvonly" or "inactive", seen from the box.
        inactivity_timeout_s: raise RtpTimeout after this much silence (0 = never).
        inband_dtmf: run the in-band detector; None = only when there is no telephone-event.
        """
        if direction not in DIRECTIONS:
            raise InvalidArgument(f"configure: direction {direction!r} not in {sorted(DIRECTIONS)}")
        if payload_type not in (0, 8):
            raise InvalidArgument(f"configure: payload_type {payload_type} is not 0 (PCMU) or 8 (PCMA)")
        if telephone_event_pt is not None and not 96 <= telephone_event_pt <= 127:
            raise InvalidArgument(f"configure: telephone_event_pt {telephone_event_pt} outside 96..127")
        if not 0 <= inactivity_timeout_s <= 3600:
            raise InvalidArgument(f"configure: inactivity_timeout_s {inactivity_timeout_s} outside 0..3600")
        v6 = ":" in self.local_ip
        for ip in (remote[0] if remote is not None else None, signalling_ip):
            if ip is not None and (":" in str(ip)) != v6:
                raise InvalidArgument(f"configure: {ip} is not of the channel's address family ({self.local_ip})")
        c = ffi.new("pbx_rtp_config_t *")
        lib.pbx_rtp_config_default(c)
        keep = []
        if remote is not None:
            host, port = remote
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise InvalidArgument(f"configure: remote port {port!r} outside 1..65535")
            keep.append(ffi.new("char[]", str(host).encode()))
            c.remote_ip = keep[-1]
            c.remote_port = port
        if signalling_ip is not None:
            keep.append(ffi.new("char[]", str(signalling_ip).encode()))
            c.signalling_ip = keep[-1]
        c.payload_type = payload_type
        c.telephone_event_pt = -1 if telephone_event_pt is None else telephone_event_pt
        c.direction = DIRECTIONS[direction]
        c.inactivity_timeout_ms = int(round(inactivity_timeout_s * 1000))
        c.inband_dtmf = -1 if inband_dtmf is None else (1 if inband_dtmf else 0)
        self._call(lib.pbx_rtp_channel_configure_nowait, self.id, c, what="configure")


class PcmChannel(Channel):
    """Raw 8 kHz audio on a file descriptor (GSM dongle audio port, voice modem)."""

    def send_dle(self, code: str | bytes) -> None:
        """Send DLE + code to a DLE-framed channel (e.g. "\\x03" ETX to end voice transmit)."""
        b = code.encode("latin-1") if isinstance(code, str) else bytes(code)
        if len(b) != 1 or b == b"\x10":
            raise InvalidArgument(f"send_dle: {code!r} must be one byte other than DLE")
        self._call(lib.pbx_pcm_channel_send_dle, self.id, b[0], what="send_dle")


class Bridge(_Handle):
    """Connects 2..64 channels: relays two same-PT RTP legs, otherwise mixes."""

    _destroy_fn = "pbx_bridge_destroy_nowait"

    def add(self, channel: Channel, mode: str = "full", whisper_to: Channel | None = None) -> None:
        """Add a member. mode: "full"; "listen" (hears all, heard by none); "whisper"
        (hears all, heard only by ``whisper_to``, a member)."""
        if mode not in MEMBER_MODES:
            raise InvalidArgument(f"bridge.add: mode {mode!r} not in {sorted(MEMBER_MODES)}")
        if (mode == "whisper") != (whisper_to is not None):
            raise InvalidArgument("bridge.add: whisper_to is required for mode 'whisper' and only then")
        self._engine._own(channel)
        core = self._core
        with core.lock:
            if not channel._alive:
                raise NotFound(f"bridge.add: {channel!r} is closed")
            if channel.id in core.bridge_of:
                raise Busy(f"bridge.add: {channel!r} is already in a bridge")
            members = core.members.setdefault(self.id, set())
            if whisper_to is not None and whisper_to.id not in members:
                raise InvalidArgument("bridge.add: whisper_to must be a member of this bridge")
            if len(members) >= _MAX_MEMBERS:
                raise TableFull(f"bridge.add: a bridge has at most {_MAX_MEMBERS} members")
            target = whisper_to.id if whisper_to is not None else 0
            self._call(lib.pbx_bridge_add_nowait, self.id, channel.id, MEMBER_MODES[mode], target,
                       what="bridge.add")
            members.add(channel.id)
            core.bridge_of[channel.id] = self.id

    def remove(self, channel: Channel) -> None:
        """Take a member out (it keeps its port and configuration)."""
        core = self._core
        with core.lock:
            if core.bridge_of.get(channel.id) != self.id:
                raise (NotFound if not channel._alive else InvalidArgument)(
                    f"bridge.remove: {channel!r} is not a member of {self!r}")
            self._call(lib.pbx_bridge_remove_nowait, self.id, channel.id, what="bridge.remove")
            core.forget(channel.id)

    @property
    def relaying(self) -> bool:
        """True while packets are forwarded without decoding."""
        return bool(self._call(lib.pbx_bridge_is_relaying, self.id, what="bridge.relaying"))


class Sound(_Handle):
    """Audio loaded once into the engine and shared by any number of players."""

    _destroy_fn = "pbx_sound_release_nowait"

    def __init__(self, engine: "Engine", obj_id: int, seconds: float) -> None:
        super().__init__(engine, obj_id)
        self.seconds = seconds


class Player(_Handle):
    """Audio (or a tone) being played into a channel or bridge; PlayerDone at its end."""

    _destroy_fn = "pbx_player_stop_nowait"
    _release_on_gc = False

    def stop(self) -> None:
        """Stop now (PlayerDone with reason "stopped"); idempotent."""
        self.close()


class Recorder(_Handle):
    """A WAV recording of a bridge or channel; RecorderStopped once the file is final."""

    _destroy_fn = "pbx_recorder_stop_nowait"
    _release_on_gc = False

    def __init__(self, engine: "Engine", obj_id: int, path: str) -> None:
        super().__init__(engine, obj_id)
        self.path = path

    def stop(self) -> None:
        """Stop recording; the writer thread finalises the file, then RecorderStopped is posted."""
        self.close()


Target = Channel | Bridge


class Engine:
    """The media engine: owns its C thread and every channel, bridge, player and recorder.

    bind_ip: default local address of RTP channels. rtp_ports: (lowest, highest) port;
    even ports carry RTP, odd ones RTCP. ptime_ms: the clock and the packet time sent.
    kernel_relay: forward the audio of relaying bridges inside the kernel once their streams are
    established (eBPF at tc ingress; needs Linux 6.6+ and CAP_BPF/CAP_NET_ADMIN, else the
    engine relays as before and ``stats().kernel_relay_error`` says why).
    """

    def __init__(self, bind_ip: str = "0.0.0.0", rtp_ports: tuple[int, int] = (10000, 20000),
                 ptime_ms: int = 20, *, max_channels: int = 4096, jitter_ms: tuple[int, int, int] = (20, 300, 60),
                 latch_packets: int = 5, flood_packets_per_tick: int = 25, event_queue_len: int = 4096,
                 kernel_relay: bool = True) -> None:
        lo, hi = rtp_ports
        if not (1024 <= lo < hi <= 65534):
            raise InvalidArgument(f"Engine: rtp_ports {rtp_ports} must satisfy 1024 <= lo < hi <= 65534")
        if ptime_ms not in (10, 20, 30):
            raise InvalidArgument(f"Engine: ptime_ms {ptime_ms} is not 10, 20 or 30")
        p = ffi.new("pbx_engine_params_t *")
        lib.pbx_engine_params_default(p)
        ip = ffi.new("char[]", bind_ip.encode())
        p.bind_ip = ip
        p.rtp_port_min, p.rtp_port_max = lo, hi
        p.ptime_ms = ptime_ms
        p.max_channels = max_channels
        p.max_bridges = max(16, max_channels // 2)
        p.max_players = max_channels
        p.max_recorders = max(16, max_channels // 2)
        p.jb_min_delay_ms, p.jb_max_delay_ms, p.jb_initial_delay_ms = jitter_ms
        p.latch_packets = latch_packets
        p.flood_packets_per_tick = flood_packets_per_tick
        p.event_queue_len = event_queue_len
        p.kernel_relay = 1 if kernel_relay else 0
        self.bind_ip = bind_ip
        self.rtp_ports = (lo, hi)
        self.ptime_ms = ptime_ms
        self._core = _Core(p)
        self._evbuf = ffi.new("pbx_event_t[]", 256)
        self._loop: Any = None
        self._finalizer = weakref.finalize(self, _Core.destroy, self._core)

    # ---- lifecycle ----
    def close(self) -> None:
        """Stop the engine thread (recordings are finalised) and free everything. Idempotent."""
        self.detach()
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._core.closed

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _own(self, h: _Handle) -> None:
        if not isinstance(h, _Handle) or h._core is not self._core:
            raise InvalidArgument(f"{h!r} does not belong to this engine")

    # ---- events ----
    def fileno(self) -> int:
        """Readable while events are waiting (for ``loop.add_reader``)."""
        if self._core.closed:
            raise InvalidState("fileno: the engine is closed")
        return self._core.fd

    def poll_events(self) -> list[MediaEvent]:
        """Every waiting event, oldest first; never blocks."""
        out: list[MediaEvent] = []
        while True:
            n = self._core.call(lib.pbx_engine_poll_events, self._evbuf, 256, what="poll_events")
            for i in range(n):
                ev = self._convert(self._evbuf[i])
                if ev is not None:
                    out.append(ev)
            if n < 256:
                return out

    def _convert(self, ev: Any) -> MediaEvent | None:
        t = ev.type
        if t == lib.PBX_EV_DTMF:
            return DtmfReceived(ev.id, chr(ev.code), ev.value,
                                "inband" if ev.source == lib.PBX_DTMF_INBAND else "rfc4733")
        if t == lib.PBX_EV_RTP_TIMEOUT:
            return RtpTimeout(ev.id, ev.value / 1000.0)
        if t == lib.PBX_EV_RTP_RESUMED:
            return RtpResumed(ev.id)
        if t == lib.PBX_EV_RTP_LATCHED:
            return RtpSourceLatched(ev.id, (ffi.string(ev.addr).decode(), ev.port))
        if t == lib.PBX_EV_PLAYER_DONE:
            return PlayerDone(ev.id, _PLAYER_END.get(ev.code, "finished"))
        if t == lib.PBX_EV_RECORDER_STOPPED:
            path = self._core.recorder_paths.pop(ev.id, "")
            return RecorderStopped(ev.id, path, ev.samples / 8000.0)
        if t == lib.PBX_EV_RECORDER_ERROR:
            path = self._core.recorder_paths.pop(ev.id, "")
            return RecorderError(ev.id, os.strerror(ev.code), ev.code, path, ev.samples / 8000.0)
        if t == lib.PBX_EV_DLE:
            return DleEvent(ev.id, chr(ev.code))
        if t == lib.PBX_EV_CHANNEL_ERROR:
            return ChannelError(ev.id, ev.code, os.strerror(ev.code) if ev.code else "end of file")
        if t == lib.PBX_EV_COMMAND_FAILED:
            err = error_for(ev.code, _OPS.get(ev.value, "engine"))
            if ev.value == lib.PBX_OP_RECORDER_CREATE:
                path = self._core.recorder_paths.pop(ev.id, "")
                return RecorderError(ev.id, str(err), 0, path, 0.0)
            log.warning("media engine: %s (object %#x)", err, ev.id)
        return None

    def attach(self, loop: Any, callback: Callable[[MediaEvent], None]) -> None:
        """Deliver events to ``callback`` from an asyncio loop (``loop.add_reader``)."""
        self.detach()

        def readable() -> None:
            for ev in self.poll_events():
                callback(ev)

        loop.add_reader(self.fileno(), readable)
        self._loop = loop

    def detach(self) -> None:
        """Undo :meth:`attach`."""
        if self._loop is not None:
            try:
                self._loop.remove_reader(self._core.fd)
            except Exception:  # the loop may already be closed at shutdown
                pass
            self._loop = None

    def stats(self) -> EngineStats:
        st = ffi.new("pbx_engine_stats_t *")
        self._core.call(lib.pbx_engine_get_stats, st, what="stats")
        err = os.strerror(st.kernel_relay_error) if st.kernel_relay_error else ""
        return EngineStats(st.ticks, st.ticks_missed, st.events_dropped, st.commands, st.channels,
                           st.bridges, st.players, st.recorders, st.cpu_ns / 1e9,
                           kernel_relay=bool(st.kernel_relay), kernel_relay_error=err,
                           packets_kernel=st.packets_kernel, packets_sent=st.packets_sent,
                           send_calls=st.send_calls, kernel_relay_run_s=st.kernel_relay_run_ns / 1e9,
                           kernel_relay_runs=st.kernel_relay_runs)

    # ---- channels ----
    def rtp_channel(self, local_ip: str | None = None) -> RtpChannel:
        """A new RTP channel on ``local_ip`` (default: the engine's bind_ip)."""
        cid = ffi.new("uint32_t *")
        port = ffi.new("int *")
        ip = ffi.new("char[]", local_ip.encode()) if local_ip else ffi.NULL
        self._core.call(lib.pbx_rtp_channel_create_nowait, ip, cid, port, what="rtp_channel")
        return RtpChannel(self, cid[0], local_ip or self.bind_ip, port[0])

    def pcm_channel(self, fd: int, sample_format: str = "s16le", dle: bool = False,
                    inband_dtmf: bool = True) -> PcmChannel:
        """A channel on a descriptor carrying raw 8 kHz audio.

        The engine works on its own dup() of ``fd`` (which becomes non-blocking, shared
        with the caller's descriptor). sample_format: "s16le", "ulaw", "alaw" or "u8"
        (8-bit unsigned linear). dle: ITU-T V.253 DLE shielding (8-bit formats), codes
        arrive as DleEvent.
        """
        if sample_format not in SAMPLE_FORMATS:
            raise InvalidArgument(f"pcm_channel: sample_format {sample_format!r} not in {sorted(SAMPLE_FORMATS)}")
        if dle and sample_format == "s16le":
            raise InvalidArgument("pcm_channel: DLE framing needs an 8-bit sample format")
        if not isinstance(fd, int):
            fd = fd.fileno()
        cid = ffi.new("uint32_t *")
        self._core.call(lib.pbx_pcm_channel_create, fd, SAMPLE_FORMATS[sample_format], 1 if dle else 0,
                        1 if inband_dtmf else 0, cid, what="pcm_channel")
        return PcmChannel(self, cid[0])

    # ---- bridges ----
    def bridge(self, channels: Iterable[Channel] = (), modes: Sequence[str] | None = None) -> Bridge:
        """A bridge with these channels as full members (more can be added later)."""
        bid = ffi.new("uint32_t *")
        self._core.call(lib.pbx_bridge_create_nowait, bid, what="bridge")
        br = Bridge(self, bid[0])
        try:
            for i, ch in enumerate(channels):
                br.add(ch, modes[i] if modes else "full")
        except MediaError:
            br.close()
            raise
        return br

    # ---- players ----
    def load_sound(self, pcm: bytes | None = None, path: str | os.PathLike[str] | None = None) -> Sound:
        """Load 8 kHz mono s16 audio (raw little-endian bytes, or a WAV file) once for many players."""
        if (pcm is None) == (path is None):
            raise InvalidArgument("load_sound: give exactly one of pcm= or path=")
        data = read_wav_pcm(path) if path is not None else bytes(pcm)  # type: ignore[arg-type]
        if len(data) % 2:
            raise InvalidArgument("load_sound: PCM must be 16-bit samples (even length)")
        sid = ffi.new("uint32_t *")
        buf = ffi.from_buffer("int16_t[]", data) if data else ffi.NULL
        self._core.call(lib.pbx_sound_create, buf, len(data) // 2, sid, what="load_sound")
        return Sound(self, sid[0], len(data) / 16000.0)

    def play(self, target: Target, pcm: bytes | None = None, path: str | os.PathLike[str] | None = None,
             sound: Sound | None = None, loop: bool = False, gain_db: int = 0) -> Player:
        """Play audio into a channel (heard by its far end) or a bridge (heard by all members)."""
        self._own(target)
        given = sum(x is not None for x in (pcm, path, sound))
        if given != 1:
            raise InvalidArgument("play: give exactly one of pcm=, path= or sound=")
        own = sound is None
        snd = sound if sound is not None else self.load_sound(pcm=pcm, path=path)
        try:
            pid = ffi.new("uint32_t *")
            self._core.call(lib.pbx_player_create, target.id, snd.id, 1 if loop else 0, int(gain_db), pid,
                            what="play")
        finally:
            if own:
                snd.close()
        return Player(self, pid[0])

    def play_tone(self, target: Target, tone: str | ToneSpec = "ringback", country: str = "eu",
                  duration_s: float | None = None) -> Player:
        """Play a call-progress tone ("dial", "ringback", "busy", "congestion", "waiting") or a ToneSpec."""
        self._own(target)
        spec = tone if isinstance(tone, ToneSpec) else tone_spec(tone, country)
        t = ffi.new("pbx_tone_t *")
        t.f1_hz, t.f2_hz = spec.f1_hz, spec.f2_hz
        t.level_dbm0 = spec.level_dbm0
        if len(spec.cadence_ms) > 8:
            raise InvalidArgument("play_tone: at most 4 on/off pairs")
        for i, ms in enumerate(spec.cadence_ms):
            t.cadence_ms[i] = ms
        t.n_cadence = len(spec.cadence_ms)
        t.duration_ms = int(round((duration_s or 0) * 1000))
        pid = ffi.new("uint32_t *")
        self._core.call(lib.pbx_tone_player_create, target.id, t, pid, what="play_tone")
        return Player(self, pid[0])

    # ---- recorders ----
    def record(self, source: Target, path: str | os.PathLike[str], stereo: bool = True,
               left: Sequence[Channel] = (), sync_interval_s: float = 1.0, buffer_s: float = 4.0) -> Recorder:
        """Record a bridge (or one channel) into a 16-bit 8 kHz WAV file.

        stereo with a bridge: the members in ``left`` on the left, everyone else (and
        prompts played into the bridge) on the right. stereo with a channel: what it says
        on the left, what it is sent on the right. stereo=False: one mixed channel.
        The header is rewritten and the file synced every ``sync_interval_s`` (<= 1 s).
        The writer thread creates the file: NotFound here when its folder does not exist,
        any other failure to create it arrives as RecorderError.
        """
        self._own(source)
        if not source._alive:
            raise NotFound(f"record: {source!r} is closed")
        p = ffi.new("pbx_recorder_params_t *")
        lib.pbx_recorder_params_default(p)
        cpath = ffi.new("char[]", os.fsencode(os.fspath(path)))
        p.path = cpath
        p.stereo = 1 if stereo else 0
        if len(left) > 8:
            raise InvalidArgument("record: at most 8 channels on the left")
        for i, ch in enumerate(left):
            self._own(ch)
            p.left[i] = ch.id
        p.n_left = len(left)
        p.sync_interval_ms = int(round(sync_interval_s * 1000))
        p.buffer_ms = int(round(buffer_s * 1000))
        if not os.path.isdir(os.path.dirname(os.path.abspath(path)) or "."):
            raise NotFound(f"record: no folder for {os.fspath(path)!r}")
        rid = ffi.new("uint32_t *")
        with self._core.lock:
            self._core.call(lib.pbx_recorder_create_nowait, source.id, p, rid, what="record")
            self._core.recorder_paths[rid[0]] = os.fspath(path)
        return Recorder(self, rid[0], os.fspath(path))

