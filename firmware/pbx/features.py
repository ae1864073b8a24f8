"""Feature codes dialled from desk phones (the codes are settings: [system.features]).

    *8            pick up a call ringing in my pickup group (or any extension when groups are unset)
    **<ext>       pick up the call ringing <ext> (directed pickup; also what BLF keys dial)
    *45[<queue>]  log in to / out of a queue (all queues I belong to without a number)
    *46           pause / resume (reason "paused from the phone")
    *78 / *79     do-not-disturb on / off
    *1            (during a call) record this call on demand
    *222<ext>     listen to <ext>'s call; *223<ext> whisper to <ext>; *224<ext> barge in
    *60[<tc>]     business-hours override: closed -> open -> automatic (all time conditions without a number)
"""
from __future__ import annotations

import logging
from typing import Any

from firmware.pbx.phrases import phrase

log = logging.getLogger("firmware.pbx.features")


class Features:
    def __init__(self, pbx: Any) -> None:
        self.pbx = pbx

    def _codes(self) -> dict[str, str]:
        f = self.pbx.prov.system.features
        return {"pickup": f.pickup, "directed_pickup": f.directed_pickup, "queue_login": f.queue_login,
                "queue_pause": f.queue_pause, "dnd_on": f.dnd_on, "dnd_off": f.dnd_off,
                "record": f.record, "listen": f.listen, "whisper": f.whisper, "barge": f.barge,
                "override": f.business_hours_override}

    def parse(self, dialed: str) -> tuple[str, str] | None:
        """(feature, argument) for a dialled string, or None when it is no feature code.
        The longest code wins (``**`` vs ``*8``, ``*222`` vs ``*2``)."""
        best: tuple[str, str] | None = None
        best_len = 0
        for name, code in self._codes().items():
            if not code or name == "record":
                continue
            if name in ("pickup", "queue_pause", "dnd_on", "dnd_off"):
                if dialed == code and len(code) > best_len:
                    best, best_len = (name, ""), len(code)
            elif dialed.startswith(code) and len(code) > best_len:
                arg = dialed[len(code):]
                if arg == "" and name in ("directed_pickup", "listen", "whisper", "barge"):
                    continue
                if arg and not arg.isdigit():
                    continue
                best, best_len = (name, arg), len(code)
        return best

    def matches(self, dialed: str) -> bool:
        return dialed.startswith("*") and self.parse(dialed) is not None

    async def run(self, call: Any, dialed: str) -> None:
        parsed = self.parse(dialed)
        assert parsed is not None
        name, arg = parsed
        ext = call.caller.extension
        self.pbx.calls.update_call(call.id, callee_number=dialed)
        self.pbx.events.add(call.id, "feature", result=name, code=dialed)
        call.status = "answered"
        if name in ("pickup", "directed_pickup"):
            ok = await self.pbx.pickup(call, arg or None)
            if not ok:
                await self.confirm(call, False)
            return
        if name in ("listen", "whisper", "barge"):
            ok = await self.pbx.centre.join_call(call, arg, name)
            if not ok:
                await self.confirm(call, False)
            return
        ok, key = True, "feature_ok"
        try:
            if name == "queue_login":
                logged_in = self.pbx.centre.toggle_login(ext, arg or None)
                key = "logged_in" if logged_in else "logged_out"
            elif name == "queue_pause":
                self.pbx.centre.toggle_pause(ext, "paused from the phone")
            elif name in ("dnd_on", "dnd_off"):
                self.pbx.set_dnd(ext, name == "dnd_on")
            elif name == "override":
                self.pbx.cycle_override(arg or None)
        except (KeyError, ValueError) as e:
            log.info("feature %s by %s refused: %s", dialed, ext, e)
            ok = False
        await self.confirm(call, ok, key)

    async def confirm(self, call: Any, ok: bool, key: str = "feature_ok") -> None:
        """Answer, say whether it worked, hang up."""
        leg = call.caller
        if not leg.answer():
            return
        language = self.pbx.language_of(leg.extension)
        await self.pbx.say(leg, phrase(key if ok else "feature_failed", language), language)
        leg.hangup(16)
