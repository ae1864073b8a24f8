"""A faithful modem simulator: SIM800, SIM7600, Quectel EC2x, Huawei voice dongles and a
V.253 voice modem, played over pseudo-terminals (see README.md).

    from tools.modem_sim import Simulator, SimOptions
    sim = Simulator("/tmp/links")
    gsm = sim.add_modem("gsm1", model="ec25", imei="867698041234567")
    gsm.at_path, gsm.audio_path            # pty symlinks for pyserial
    gsm.incoming_call(number="+48600100200")
    sim.close()
"""
from .core import SimModem, SimOptions
from .runner import ModemHandle, Simulator

__all__ = ["SimModem", "SimOptions", "Simulator", "ModemHandle"]
