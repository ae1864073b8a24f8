"""A pjsua2 (PJSIP) phone as a subprocess, driven over JSON lines (see _agent.py).

The well-behaved phone of the tests: digest with qop, 407, UDP or TCP, hold/resume,
blind and attended transfer, RFC 4733 DTMF, audio from tones/WAVs, audio recorded to WAV.
Null audio device; pjsua2 polled from the command loop (threadCnt = 0).
"""
from __future__ import annotations

import os
import sys
import time

import pjsua2 as pj

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _agent import event, serve  # noqa: E402

STATE_NAMES = {pj.PJSIP_INV_STATE_NULL: "NULL", pj.PJSIP_INV_STATE_CALLING: "CALLING",
               pj.PJSIP_INV_STATE_INCOMING: "INCOMING", pj.PJSIP_INV_STATE_EARLY: "EARLY",
               pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING", pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
               pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED"}


class Agent:
    def __init__(self) -> None:
        self.ep: pj.Endpoint | None = None
        self.acc = None
        self.calls: dict[int, "Call"] = {}
        self.next_id = 1
        self.auto_answer = False
        self.reg_code = None
        self.workdir = "."

    def pump(self) -> None:
        if self.ep is not None:
            self.ep.libHandleEvents(10)

    def _wait(self, cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            self.pump()
        return cond()

    # -- commands --------------------------------------------------------------------
    def start(self, registrar: str, user: str, password: str, sip_port: int, rtp_port: int,
              transport: str = "udp", auto_answer: bool = False, register: bool = True,
              workdir: str = ".", codecs: list[str] | None = None, reg_timeout: float = 8.0) -> dict:
        self.auto_answer, self.workdir = auto_answer, workdir
        ep = self.ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.logConfig.level = 3
        cfg.logConfig.consoleLevel = 3
        cfg.medConfig.noVad = True
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        ep.libInit(cfg)
        tc = pj.TransportConfig()
        tc.port = sip_port
        tc.boundAddress = "127.0.0.1"
        tc.publicAddress = "127.0.0.1"
        ep.transportCreate(pj.PJSIP_TRANSPORT_TCP if transport == "tcp" else pj.PJSIP_TRANSPORT_UDP, tc)
        ep.libStart()
        ep.audDevManager().setNullDev()
        wanted = codecs or ["PCMU/", "PCMA/"]
        for c in ep.codecEnum2():
            prio = 0
            for i, w in enumerate(wanted):
                if c.codecId.startswith(w):
                    prio = 255 - i
            ep.codecSetPriority(c.codecId, prio)
        host = registrar.split(":", 1)[1] if registrar.startswith("sip:") else registrar
        ac = pj.AccountConfig()
        ac.idUri = f"sip:{user}@{host.split(';')[0].rsplit(':', 1)[0]}"
        if register:
            ac.regConfig.registrarUri = registrar + (";transport=tcp" if transport == "tcp" else "")
            ac.regConfig.timeoutSec = 300
        ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        if transport == "tcp":
            ac.sipConfig.proxies.append(registrar + ";transport=tcp;lr")
        ac.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        ac.mediaConfig.transportConfig.port = rtp_port
        ac.mediaConfig.transportConfig.portRange = 20
        self.acc = Acc(self)
        self.acc.create(ac)
        if register:
            self._wait(lambda: self.reg_code is not None, reg_timeout)
        return {"reg_code": self.reg_code}

    def register_state(self) -> dict:
        self.pump()
        return {"reg_code": self.reg_code}

    def dial(self, uri: str, wait_confirmed: float = 0.0) -> dict:
        call = Call(self, self.acc)
        cid = self._add(call)
        prm = pj.CallOpParam(True)
        call.makeCall(uri, prm)
        if wait_confirmed:
            self._wait(lambda: call.state in ("CONFIRMED", "DISCONNECTED"), wait_confirmed)
        return {"call": cid, "state": call.state, "code": call.last_code}

    def wait_state(self, call: int, states: list[str], timeout: float = 15.0) -> dict:
        c = self.calls[call]
        self._wait(lambda: c.state in states, timeout)
        return {"state": c.state, "code": c.last_code, "reason": c.last_reason}

    def answer(self, call: int, code: int = 200) -> dict:
        prm = pj.CallOpParam()
        prm.statusCode = code
        self.calls[call].answer(prm)
        return {}

    def hangup(self, call: int, code: int = 0) -> dict:
        prm = pj.CallOpParam(True)
        if code:
            prm.statusCode = code
        self.calls[call].hangup(prm)
        return {}

    def hold(self, call: int) -> dict:
        self.calls[call].setHold(pj.CallOpParam(True))
        return {}

    def unhold(self, call: int) -> dict:
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        self.calls[call].reinvite(prm)
        return {}

    def transfer(self, call: int, uri: str) -> dict:
        self.calls[call].xfer(uri, pj.CallOpParam(True))
        return {}

    def transfer_replaces(self, call: int, other: int) -> dict:
        self.calls[call].xferReplaces(self.calls[other], pj.CallOpParam(True))
        return {}

    def dtmf(self, call: int, digits: str, method: str = "rfc2833") -> dict:
        if method == "info":
            prm = pj.CallSendDtmfParam()
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
            prm.digits = digits
            self.calls[call].sendDtmf(prm)
        else:
            self.calls[call].dialDtmf(digits)
        return {}

    def play(self, call: int, wav: str, loop: bool = True) -> dict:
        self.calls[call].play(wav, loop)
        return {}

    def info(self, call: int) -> dict:
        c = self.calls[call]
        return {"state": c.state, "dtmf": c.dtmf, "code": c.last_code, "held": c.remote_hold,
                "record": c.record_path}

    def calls_list(self) -> dict:
        return {"calls": {str(k): v.state for k, v in self.calls.items()}}

    def sleep(self, seconds: float) -> dict:
        self._wait(lambda: False, seconds)
        return {}

    def stop(self, timeout: float = 0.0) -> dict:
        if self.ep is not None:
            try:
                self.ep.hangupAllCalls()
                self._wait(lambda: False, 0.3)
            except Exception:
                pass
            for c in self.calls.values():
                c.release_media()
            self.calls.clear()
            if self.acc is not None:
                self.acc.shutdown()
                self.acc = None
            self._wait(lambda: False, 0.2)
            self.ep.libDestroy()
            self.ep = None
        return {}

    def _add(self, call: "Call") -> int:
        cid = self.next_id
        self.next_id += 1
        call.cid = cid
        self.calls[cid] = call
        return cid


class Acc(pj.Account):
    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.agent = agent

    def onRegState(self, prm) -> None:
        self.agent.reg_code = prm.code
        event("reg_state", code=prm.code)

    def onIncomingCall(self, prm) -> None:
        call = Call(self.agent, self, prm.callId)
        cid = self.agent._add(call)
        ci = call.getInfo()
        event("incoming", call=cid, remote=ci.remoteUri)
        if self.agent.auto_answer:
            op = pj.CallOpParam()
            op.statusCode = 200
            call.answer(op)
        else:
            op = pj.CallOpParam()
            op.statusCode = 180
            call.answer(op)


class Call(pj.Call):
    def __init__(self, agent: Agent, acc, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.agent = agent
        self.cid = 0
        self.state = "NULL"
        self.last_code = 0
        self.last_reason = ""
        self.dtmf = ""
        self.player = None
        self.recorder = None
        self.record_path = None
        self.remote_hold = False

    def onCallState(self, prm) -> None:
        ci = self.getInfo()
        self.state = STATE_NAMES.get(ci.state, str(ci.state))
        self.last_code = ci.lastStatusCode
        self.last_reason = ci.lastReason
        event("call_state", call=self.cid, state=self.state, code=self.last_code)

    def onCallMediaState(self, prm) -> None:
        try:
            am = self.getAudioMedia(-1)
        except Exception as e:
            event("media_error", call=self.cid, error=repr(e))
            return
        if self.recorder is None:
            self.record_path = os.path.join(self.agent.workdir, f"pj_rx_{os.getpid()}_{self.cid}.wav")
            self.recorder = pj.AudioMediaRecorder()
            self.recorder.createRecorder(self.record_path)
        am.startTransmit(self.recorder)
        if self.player is not None:
            self.player.startTransmit(am)
        event("media", call=self.cid)

    def onDtmfDigit(self, prm) -> None:
        self.dtmf += prm.digit
        event("dtmf", call=self.cid, digit=prm.digit)

    def onCallTransferStatus(self, prm) -> None:
        event("xfer_status", call=self.cid, code=prm.statusCode, final=prm.finalNotify)

    def play(self, wav: str, loop: bool) -> None:
        self.player = pj.AudioMediaPlayer()
        self.player.createPlayer(wav, 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
        try:
            self.player.startTransmit(self.getAudioMedia(-1))
        except Exception:
            pass  # started on the next media state change

    def release_media(self) -> None:
        self.player = None
        self.recorder = None


if __name__ == "__main__":
    a = Agent()
    handlers = {name: getattr(a, name) for name in (
        "start", "register_state", "dial", "wait_state", "answer", "hangup", "hold", "unhold",
        "transfer", "transfer_replaces", "dtmf", "play", "info", "calls_list", "sleep", "stop")}
    try:
        serve(handlers, pump=a.pump)
    finally:
        a.stop()
