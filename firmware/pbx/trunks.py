"""Trunks: how calls reach the outside world and come in from it (GSM/FXO modems, SIP trunks).

`Trunks` is the PBX's gateway to the carrier: `dial_external()` places a call to an outside
number through the outbound routes, `on_invite()` takes calls from SIP providers, and the
modem lines report incoming calls. This first version knows no trunk: outside numbers get
"no_route" until trunks are configured and started.
"""
from __future__ import annotations

from typing import Any


class Trunks:
    def __init__(self, pbx: Any) -> None:
        self.pbx = pbx

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def on_invite(self, ev: Any) -> bool:
        """Take an INVITE that comes from a SIP provider (by source address); False if not ours."""
        return False

    async def dial_external(self, call: Any, number: str) -> str:
        """Connect `call` to an outside number through the outbound routes. Returns the outcome."""
        self.pbx.events.add(call.id, "route", result=f"no trunk for {number}")
        return "no_route"

    def status(self) -> list[dict[str, Any]]:
        return []

    async def modem_test(self, trunk: str) -> dict[str, Any]:
        from firmware.api import ControlError
        raise ControlError(f"no modem line {trunk}")

    async def ussd(self, trunk: str, code: str) -> str:
        from firmware.api import ControlError
        raise ControlError(f"no modem line {trunk}")

    async def send_sms(self, trunk: str, number: str, text: str) -> None:
        from firmware.api import ControlError
        raise ControlError(f"no modem line {trunk}")
