"""Per-model behaviour of the supported modems, as data (one `ModemProfile` per model).

The session (`firmware.modem.session`) reads these tables; nothing else in the package knows
a vendor. Command names are those of the vendors' AT manuals:

* SIMCom SIM800 series AT Command Manual (2G): AT+CCID, AT+SPIC, AT+MORING, AT+DDET/+DTMF,
  AT+CFUN=1,1. Voice audio is analog (or on the PCM pins): a Raspberry Pi only hears it
  through a USB sound card, so the profile has no USB audio port (`audio.kind == "none"`).
* SIMCom SIM7500/SIM7600 series AT Command Manual (LTE): USB interface 4 carries 8 kHz
  16-bit PCM once AT+CPCMREG=1 is sent after the call connects (=0 after hang-up);
  "VOICE CALL: BEGIN" / "VOICE CALL: END: <hhmmss>", "MISSED_CALL:", "+RXDTMF:" with
  AT+DDET=1, AT+CICCID, AT+SPIC.
* Quectel EC2x/EG25 AT Commands Manual + "Voice over USB and UAC" application note:
  AT+QPCMV=1,0 sends voice PCM over the USB NMEA port (interface 1, ttyUSB1), AT+QPCMV=0
  stops it; AT+QCCID, AT+QPINC, AT^DSCI=1 call state reports, AT+QTONEDET=1 ("+QTONEDET:
  <ascii>"), AT+QINDCFG="csq",1 ("+QIND: "csq",<rssi>,<ber>").
* Huawei voice dongles (E1550/E173/E169 family, chan_datacard lineage): AT^CVOICE? tells
  whether voice is enabled, AT^DDSETEX=2 routes the call audio to the voice port (interface
  1) after ^CONN; ^ORIG/^CONF/^CONN/^CEND:<id>,<dur>,<end_status>,<cc_cause> (cc_cause is
  Q.850), ^RSSI:, ^ICCID, ^CPIN (tries), AT^RESET, and USSD strings as packed-hex GSM 7-bit.
* AT+V voice modems for an analog FXO line (ITU-T V.253; Conexant/Rockwell/USR command
  references): AT+FCLASS=8, AT+VCID=1 (DATE=/TIME=/NMBR=/NAME= between the first and second
  RING), AT+VLS=1 off hook, AT+VSM chosen from the AT+VSM=? list by name (u-law preferred,
  else 8-bit linear), AT+VTR full duplex with DLE-shielded data, DLE event codes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ProfileError

__all__ = ["AudioSpec", "FxoSpec", "ModemProfile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class AudioSpec:
    """Where and how a model carries call audio."""

    kind: str
    """"usb-serial" (a separate tty), "dle" (V.253 data on the AT port) or "none"."""
    interface: int | None = None
    """USB interface number of the audio tty (sibling of the AT port)."""
    sample_format: str = "s16le"
    """Engine PCM-fd channel format: "s16le", "ulaw" or "u8"."""
    frame_bytes: int = 320
    """Bytes per 20 ms; Huawei voice ports want exactly 320-byte writes."""
    enable: tuple[str, ...] = ()
    """Sent when the call connects."""
    disable: tuple[str, ...] = ()
    """Sent after the call ended."""
    check: str | None = None
    """Query after the call: its answer must contain `check_idle` for the path to be re-armed."""
    check_idle: str | None = None
    note: str = ""


@dataclass(frozen=True)
class FxoSpec:
    """V.253 voice-modem specifics."""

    preferred_codecs: tuple[str, ...] = ("ULAW", "G711U", "U-LAW", "MULAW", "8-BIT LINEAR",
                                         "UNSIGNED PCM", "LINEAR")
    """Names looked for in the AT+VSM=? list, best first."""
    end_sequences: tuple[bytes, ...] = (b"\x10^", b"\x10!", b"\x10\x03")
    """Tried in order to leave +VTR: <DLE>^ (V.253), <DLE>! (Rockwell receive abort),
    <DLE><ETX> (end transmit; some Conexant parts only honour this one)."""
    end_wait: float = 1.0
    """Seconds to wait for <DLE><ETX>/OK after each end sequence."""
    at_after_abort: bool = True
    """Some modems (Conexant HSF, USR 5637) swallow the first command after leaving voice
    data: send a bare AT after a pause before ATH."""
    pause_after_abort: float = 0.3
    hangup_codes: frozenset[str] = frozenset("bdl")
    """DLE codes meaning the far end is gone: busy/disconnect tone cadence, dial tone,
    loop-current interruption."""


@dataclass(frozen=True)
class ModemProfile:
    """Everything the session needs to know about one modem model."""

    key: str
    name: str
    kind: str
    """"gsm" or "fxo"."""
    at_interface: int | None
    """USB interface number of the AT port (for re-finding siblings after re-enumeration)."""
    audio: AudioSpec
    init: tuple[str, ...] = ()
    """Model-specific set-up after the common init."""
    imei_cmd: str = "AT+CGSN"
    iccid_cmd: str | None = "AT+CCID"
    iccid_prefix: str | None = None
    """Prefix of the ICCID line ("+ICCID", "+QCCID", "^ICCID"), None for a bare line."""
    identity_cmd: str = "AT+CGMM"
    pin_tries_cmd: str | None = None
    pin_tries_prefix: str | None = None
    pin_tries_parser: str = ""
    """"spic" (+SPIC: pin,puk,..), "qpinc" (+QPINC: "SC",pin,puk), "huawei" (^CPIN: code,,
    puk... see `session._parse_tries`)."""
    reset_cmd: str = "AT+CFUN=1,1"
    reset_reenumerates: bool = True
    """A reset drops the USB device: the ports vanish and come back (maybe renamed)."""
    boot_time: float = 8.0
    """Seconds a module needs after reset before its ports answer."""
    hangup_cmd: str = "ATH"
    answer_cmd: str = "ATA"
    dial_returns_at_once: bool = True
    """ATD<n>; answers OK at once and progress comes as URCs (False: ATD waits for VCON)."""
    progress: str = "generic"
    """Which call-progress URCs the model uses: "sim800", "simcom", "quectel", "huawei",
    "v253"."""
    dtmf_enable: str | None = None
    dtmf_urc: str | None = None
    dtmf_ascii: bool = False
    """+QTONEDET gives the ASCII code of the key ("+QTONEDET: 49" is '1')."""
    lte: bool = False
    """Also watch +CEREG (LTE registration)."""
    sms: bool = True
    sms_storage: str = "SM"
    ussd: bool = True
    ussd_packed: bool = False
    signal_urc: bool = False
    """The model reports signal changes itself (^RSSI, +QIND: "csq")."""
    vts_quoted: bool = False
    fxo: FxoSpec | None = None
    extra_urcs: frozenset[str] = field(default_factory=frozenset)


_SIM800 = ModemProfile(
    key="sim800", name="SIMCom SIM800", kind="gsm", at_interface=None,
    audio=AudioSpec(kind="none", note="2G module: audio is on its analog/PCM pins; on a Pi it "
                    "needs a USB sound card, so there is no USB audio port to open"),
    init=("AT+MORING=1", "AT+DDET=1,0,0,0", "AT+CLCC=0"),
    imei_cmd="AT+GSN", iccid_cmd="AT+CCID", iccid_prefix=None, identity_cmd="ATI",
    pin_tries_cmd="AT+SPIC", pin_tries_prefix="+SPIC", pin_tries_parser="spic",
    progress="sim800", dtmf_urc="+DTMF", reset_reenumerates=False, boot_time=5.0,
)
_SIM7600 = ModemProfile(
    key="sim7600", name="SIMCom SIM7600", kind="gsm", at_interface=2,
    audio=AudioSpec(kind="usb-serial", interface=4, enable=("AT+CPCMREG=1",),
                    disable=("AT+CPCMREG=0",), check="AT+CPCMREG?", check_idle="+CPCMREG: 0"),
    init=("AT+CPCMFRM=0", "AT+DDET=1"),
    imei_cmd="AT+CGSN", iccid_cmd="AT+CICCID", iccid_prefix="+ICCID", identity_cmd="AT+CGMM",
    pin_tries_cmd="AT+SPIC", pin_tries_prefix="+SPIC", pin_tries_parser="spic",
    progress="simcom", dtmf_urc="+RXDTMF", lte=True, hangup_cmd="AT+CHUP",
)
_EC25 = ModemProfile(
    key="ec25", name="Quectel EC2x/EG25", kind="gsm", at_interface=2,
    audio=AudioSpec(kind="usb-serial", interface=1, enable=("AT+QPCMV=1,0",),
                    disable=("AT+QPCMV=0",), check="AT+QPCMV?", check_idle="+QPCMV: 0"),
    init=("AT^DSCI=1", "AT+QTONEDET=1", 'AT+QINDCFG="csq",1', 'AT+QURCCFG="urcport","usbat"'),
    imei_cmd="AT+CGSN", iccid_cmd="AT+QCCID", iccid_prefix="+QCCID", identity_cmd="AT+CGMM",
    pin_tries_cmd='AT+QPINC="SC"', pin_tries_prefix="+QPINC", pin_tries_parser="qpinc",
    progress="quectel", dtmf_urc="+QTONEDET", dtmf_ascii=True, lte=True, hangup_cmd="AT+CHUP",
    sms_storage="ME", signal_urc=True,
)
_HUAWEI = ModemProfile(
    key="huawei", name="Huawei voice dongle", kind="gsm", at_interface=2,
    audio=AudioSpec(kind="usb-serial", interface=1, enable=("AT^DDSETEX=2",),
                    check="AT^CVOICE?", check_idle="^CVOICE: 0",
                    note="voice must be enabled in the dongle (^CVOICE: 0); 320-byte frames"),
    init=("AT^CURC=1", "AT^CVOICE=0"),
    imei_cmd="AT+CGSN", iccid_cmd="AT^ICCID?", iccid_prefix="^ICCID", identity_cmd="AT+CGMM",
    pin_tries_cmd="AT^CPIN?", pin_tries_prefix="^CPIN", pin_tries_parser="huawei",
    reset_cmd="AT^RESET", progress="huawei", hangup_cmd="AT+CHUP", ussd_packed=True,
    signal_urc=True,
)
_VOICEMODEM = ModemProfile(
    key="voicemodem", name="AT+V voice modem (analog FXO line)", kind="fxo", at_interface=None,
    audio=AudioSpec(kind="dle", sample_format="ulaw", frame_bytes=160,
                    check="AT+VLS?", check_idle="0",
                    note="voice data shares the AT port (ITU-T V.253 DLE shielding)"),
    init=("AT+FCLASS=8", "AT+VCID=1", "AT+VLS=0"),
    imei_cmd="AT+GSN", iccid_cmd=None, identity_cmd="ATI3",
    reset_cmd="ATZ", reset_reenumerates=False, boot_time=2.0, answer_cmd="AT+VLS=1",
    dial_returns_at_once=False, progress="v253", sms=False, ussd=False, lte=False,
    fxo=FxoSpec(),
)

PROFILES: dict[str, ModemProfile] = {p.key: p for p in (_SIM800, _SIM7600, _EC25, _HUAWEI, _VOICEMODEM)}
_ALIASES = {"sim7600g": "sim7600", "sim7600e": "sim7600", "ec21": "ec25", "ec20": "ec25",
            "eg25": "ec25", "eg25g": "ec25", "ec2x": "ec25", "e1550": "huawei", "e173": "huawei",
            "sim800l": "sim800", "sim800c": "sim800", "fxo": "voicemodem", "v253": "voicemodem"}


def get_profile(model: str) -> ModemProfile:
    """The profile for a model name as written in the provisioning file (case-insensitive)."""
    key = model.strip().lower().replace("-", "")
    key = _ALIASES.get(key, key)
    try:
        return PROFILES[key]
    except KeyError:
        raise ProfileError(f"unknown modem model {model!r}; supported: {', '.join(sorted(PROFILES))}") from None
