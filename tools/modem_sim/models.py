"""What each simulated model says and how (from the vendors' AT manuals).

Only the simulator reads this file; the firmware has its own tables in
firmware/modem/profiles.py, so a mistake in one is caught by the other in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SimModel:
    key: str
    kind: str                      # "gsm" | "fxo"
    ati: tuple[str, ...]
    cgmm: str
    cgmr: str
    imei_cmds: tuple[str, ...] = ("AT+CGSN", "AT+GSN")
    iccid_cmd: str | None = None
    iccid_fmt: str = "{iccid}"
    tries_cmd: str | None = None
    tries_fmt: str = ""
    clip_fmt: str = '+CLIP: "{num}",{toa},"",0,"",{val}'
    progress: str = "generic"
    urc_eol: str = "\r\n"
    reset_cmds: tuple[str, ...] = ("AT+CFUN=1,1",)
    reenumerate: bool = True
    at_if: int = 0
    audio_if: int | None = None
    audio_on_cmds: tuple[str, ...] = ()
    audio_off_cmds: tuple[str, ...] = ()
    audio_query: str | None = None
    boot_urcs: tuple[str, ...] = ()
    dtmf_cmd: str | None = None
    dtmf_urc: str | None = None
    accepted: frozenset[str] = field(default_factory=frozenset)
    """Set-up commands answered with a plain OK."""
    ussd_packed: bool = False
    lte: bool = False
    storage: str = "SM"


_COMMON_OK = frozenset({
    "AT+CMEE=0", "AT+CMEE=1", "AT+CMEE=2", "AT+CLIP=0", "AT+CLIP=1", "AT+CRC=0", "AT+CRC=1",
    "AT+COPS=3,0", "AT+COPS=0", "ATV1", "ATQ0", "AT+CSCS=\"GSM\"", "AT+CSCS=\"IRA\"",
    "AT+CSCS=\"UCS2\"", "AT+CLVL=5", "AT&F", "AT+CSMS=0",
})

MODELS: dict[str, SimModel] = {
    "sim800": SimModel(
        key="sim800", kind="gsm", ati=("SIM800 R14.18",), cgmm="SIMCOM_SIM800L", cgmr="Revision:1418B04SIM800L24",
        iccid_cmd="AT+CCID", iccid_fmt="{iccid}",
        tries_cmd="AT+SPIC", tries_fmt="+SPIC: {pin},{puk},3,10",
        clip_fmt='+CLIP: "{num}",{toa},"",0,"",{val}', progress="sim800",
        reenumerate=False, at_if=0, audio_if=None,
        boot_urcs=("RDY", "+CFUN: 1", "{cpin}", "Call Ready", "SMS Ready"),
        dtmf_cmd="AT+DDET=1,0,0,0", dtmf_urc="+DTMF: {d}",
        accepted=_COMMON_OK | {"AT+MORING=1", "AT+CLCC=0", "AT+DDET=1,0,0,0"},
    ),
    "sim7600": SimModel(
        key="sim7600", kind="gsm", ati=("Manufacturer: SIMCOM INCORPORATED", "Model: SIMCOM_SIM7600E-H",
                                        "Revision: SIM7600M22_V2.0.1", "IMEI: {imei}", "+GCAP: +CGSM"),
        cgmm="SIMCOM_SIM7600E-H", cgmr="+CGMR: LE20B04SIM7600M22",
        iccid_cmd="AT+CICCID", iccid_fmt="+ICCID: {iccid}",
        tries_cmd="AT+SPIC", tries_fmt="+SPIC: {pin},{puk},3,10",
        clip_fmt='+CLIP: "{num}",{toa},,,,{val}', progress="simcom", urc_eol="\r\r\n",
        at_if=2, audio_if=4, audio_on_cmds=("AT+CPCMREG=1",), audio_off_cmds=("AT+CPCMREG=0",),
        audio_query="AT+CPCMREG?",
        boot_urcs=("RDY", "{cpin}", "SMS DONE", "PB DONE"),
        dtmf_cmd="AT+DDET=1", dtmf_urc="+RXDTMF: {d}",
        accepted=_COMMON_OK | {"AT+CPCMFRM=0", "AT+DDET=1", "AT+CEREG=1", "AT+CEREG=0", "AT+CGREG=1"},
        lte=True, reset_cmds=("AT+CFUN=1,1", "AT+CRESET"),
    ),
    "ec25": SimModel(
        key="ec25", kind="gsm", ati=("Quectel", "EC25", "Revision: EC25EFAR06A06M4G"),
        cgmm="EC25", cgmr="EC25EFAR06A06M4G",
        iccid_cmd="AT+QCCID", iccid_fmt="+QCCID: {iccid}",
        tries_cmd='AT+QPINC="SC"', tries_fmt='+QPINC: "SC",{pin},{puk}',
        clip_fmt='+CLIP: "{num}",{toa},"",0,"",{val}', progress="quectel",
        at_if=2, audio_if=1, audio_on_cmds=("AT+QPCMV=1,0",), audio_off_cmds=("AT+QPCMV=0",),
        audio_query="AT+QPCMV?",
        boot_urcs=("RDY", "+CFUN: 1", "{cpin}", "+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"),
        dtmf_cmd="AT+QTONEDET=1", dtmf_urc="+QTONEDET: {ascii}",
        accepted=_COMMON_OK | {"AT^DSCI=1", "AT+QTONEDET=1", 'AT+QINDCFG="csq",1',
                               'AT+QURCCFG="urcport","usbat"', "AT+CEREG=1", "AT+CEREG=0"},
        lte=True, storage="ME",
    ),
    "huawei": SimModel(
        key="huawei", kind="gsm", ati=("Manufacturer: huawei", "Model: E1550", "Revision: 11.608.12.02.21",
                                       "IMEI: {imei}", "+GCAP: +CGSM,+DS,+ES"),
        cgmm="E1550", cgmr="11.608.12.02.21",
        iccid_cmd="AT^ICCID?", iccid_fmt="^ICCID: {iccid}",
        tries_cmd="AT^CPIN?", tries_fmt="^CPIN: {code},,{puk},{pin},10,3",
        clip_fmt='+CLIP: "{num}",{toa},,,,{val}', progress="huawei",
        reset_cmds=("AT^RESET", "AT+CFUN=1,1"),
        at_if=2, audio_if=1, audio_on_cmds=("AT^DDSETEX=2",), audio_off_cmds=(),
        audio_query="AT^CVOICE?",
        boot_urcs=("^SYSSTART",),
        accepted=_COMMON_OK | {"AT^CURC=1", "AT^CVOICE=0", "AT+CREG=1"},
        ussd_packed=True,
    ),
    "voicemodem": SimModel(
        key="voicemodem", kind="fxo", ati=("CX93001-EIS_V0.2002-V92",), cgmm="CX93001", cgmr="V0.2002",
        imei_cmds=(), progress="v253", reenumerate=False, reset_cmds=("ATZ",), at_if=0,
        accepted=frozenset({"ATV1", "ATQ0", "AT&F", "AT+CMEE=1", "AT+VCID=1", "AT+VCID=0",
                            "AT+FCLASS=0", "AT+FCLASS=8", "AT+VLS=0", "AT+VIT=0", "AT+VNH=1"}),
    ),
}

VSM_LIST = (
    '+VSM: 128,"8-BIT LINEAR",8,0,(7200,8000,11025),(0),(0)',
    '+VSM: 129,"16-BIT LINEAR",16,0,(7200,8000,11025),(0),(0)',
    '+VSM: 130,"8-BIT ALAW",8,0,(8000),(0),(0)',
    '+VSM: 131,"8-BIT ULAW",8,0,(8000),(0),(0)',
    '+VSM: 132,"IMA ADPCM",4,0,(7200,8000,11025),(0),(0)',
)
VSM_FORMATS = {128: "u8", 131: "ulaw"}
