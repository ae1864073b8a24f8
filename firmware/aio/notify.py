"""Notifications: tell people about missed calls, messages, line faults, a full disk and bans,
by SMS through the box's own GSM modem, by e-mail, or by a signed webhook to a CRM.

Webhooks are JSON POSTs signed with HMAC-SHA256 of the body under the notification's secret:
`X-Officebox-Signature: sha256=<hex>`, plus `X-Officebox-Event` and `X-Officebox-Delivery`
(a unique id: receivers de-duplicate retries with it). Failed deliveries are retried three
times (after 10 s, 60 s and 5 min) and then logged; nothing here ever blocks a call.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
import uuid
from email.message import EmailMessage
from typing import Any, Callable

log = logging.getLogger("firmware.notify")

RETRIES = (10.0, 60.0, 300.0)

TEXTS = {
    "missed_call": {
        "en": "Missed call from {number} at {time}{queue}. Call back: the missed calls list shows it until the customer is reached.",
        "pl": "Nieodebrane połączenie od {number} o {time}{queue}. Oddzwoń: lista nieodebranych pokazuje je, dopóki klient nie zostanie obsłużony.",
        "ru": "Пропущенный звонок от {number} в {time}{queue}. Перезвоните: он остаётся в списке пропущенных, пока клиент не будет обслужен.",
        "bg": "Пропуснато обаждане от {number} в {time}{queue}. Обадете се: остава в списъка с пропуснати, докато клиентът не бъде обслужен.",
    },
    "voicemail": {
        "en": "New message for {extension} from {number} at {time} ({seconds} s).",
        "pl": "Nowa wiadomość dla {extension} od {number} o {time} ({seconds} s).",
        "ru": "Новое сообщение для {extension} от {number} в {time} ({seconds} с).",
        "bg": "Ново съобщение за {extension} от {number} в {time} ({seconds} с).",
    },
    "trunk_down": {
        "en": "Line {trunk} is out of service: {detail}.",
        "pl": "Linia {trunk} nie działa: {detail}.",
        "ru": "Линия {trunk} не работает: {detail}.",
        "bg": "Линия {trunk} не работи: {detail}.",
    },
    "disk_full": {
        "en": "The box's disk is full: {detail}. Calls continue without recording.",
        "pl": "Dysk urządzenia jest pełny: {detail}. Rozmowy trwają bez nagrywania.",
        "ru": "Диск устройства заполнен: {detail}. Звонки продолжаются без записи.",
        "bg": "Дискът на устройството е пълен: {detail}. Разговорите продължават без запис.",
    },
    "ban": {
        "en": "Address {ip} was banned: {reason}.",
        "pl": "Adres {ip} został zablokowany: {reason}.",
        "ru": "Адрес {ip} заблокирован: {reason}.",
        "bg": "Адресът {ip} е блокиран: {reason}.",
    },
}


def render(event: str, language: str, data: dict[str, Any]) -> str:
    table = TEXTS[event]
    text = table.get(language, table["en"])
    values = {k: "" if v is None else v for k, v in data.items()}
    if event == "missed_call":
        values.setdefault("queue", "")
        if values.get("queue") and not str(values["queue"]).startswith(" ("):
            values["queue"] = f" (queue {values['queue']})"
    try:
        return text.format(**values)
    except (KeyError, IndexError):
        return f"{event}: " + ", ".join(f"{k}={v}" for k, v in data.items())


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    """Delivers notices for the events the configuration asks for.

    `config` returns the current Provisioning; `send_sms(trunk, number, text)` is the PBX's
    SMS path (a coroutine); `reached(number, since)` says whether a customer was connected
    since a time (a missed call's notice is dropped then, after `delay_s`).
    """

    def __init__(self, config: Callable[[], Any], send_sms: Callable[..., Any],
                 reached: Callable[[str, float], bool]) -> None:
        self.config = config
        self.send_sms = send_sms
        self.reached = reached
        self._tasks: set[asyncio.Task] = set()
        self.delivered: list[tuple[str, str, str]] = []
        """(kind, target, event) of the last deliveries (for the system page and tests)."""
        self.failures: list[tuple[float, str, str]] = []

    def emit(self, event: str, **data: Any) -> None:
        prov = self.config()
        for n in prov.notifications:
            if event in n.events:
                task = asyncio.get_running_loop().create_task(self._deliver(n, event, data, prov))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _deliver(self, n: Any, event: str, data: dict[str, Any], prov: Any) -> None:
        started = time.time()
        if n.delay_s:
            await asyncio.sleep(n.delay_s)
            if event == "missed_call" and data.get("number") and self.reached(data["number"], started):
                log.info("missed-call notice to %s dropped: %s was reached meanwhile", n.target, data["number"])
                return
        delivery = str(uuid.uuid4())
        for attempt, pause in enumerate((0.0, *RETRIES)):
            if pause:
                await asyncio.sleep(pause)
            try:
                await self._send(n, event, data, prov, delivery)
                self.delivered.append((n.kind, n.target, event))
                del self.delivered[:-50]
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("%s notice to %s failed (try %d): %s", n.kind, n.target, attempt + 1, e)
                self.failures.append((time.time(), f"{n.kind}:{n.target}", str(e)))
                del self.failures[:-50]

    async def _send(self, n: Any, event: str, data: dict[str, Any], prov: Any, delivery: str) -> None:
        language = prov.system.language
        if n.kind == "sms":
            trunk = n.trunk or next((t.name for t in prov.trunks if t.type == "gsm" and t.sms), "")
            if not trunk:
                raise RuntimeError("no GSM line can send SMS")
            await self.send_sms(trunk, n.target, render(event, language, data))
        elif n.kind == "email":
            smtp = prov.system.smtp
            if not smtp.host:
                raise RuntimeError("no SMTP server configured ([system.smtp] host)")
            msg = EmailMessage()
            msg["From"] = smtp.sender
            msg["To"] = n.target
            msg["Subject"] = f"[office box] {event.replace('_', ' ')}"
            msg.set_content(render(event, language, data))
            await asyncio.get_running_loop().run_in_executor(None, _smtp_send, smtp, msg)
        elif n.kind == "webhook":
            from aiohttp import ClientSession, ClientTimeout

            body = json.dumps({"event": event, "at": time.time(), "delivery": delivery, **data},
                              default=str).encode()
            headers = {"Content-Type": "application/json", "X-Officebox-Event": event,
                       "X-Officebox-Delivery": delivery, "User-Agent": "officebox"}
            if n.secret:
                headers["X-Officebox-Signature"] = sign(n.secret, body)
            async with ClientSession(timeout=ClientTimeout(total=10)) as s:
                async with s.post(n.target, data=body, headers=headers) as r:
                    if r.status >= 300:
                        raise RuntimeError(f"webhook answered {r.status}")
        else:
            raise RuntimeError(f"unknown notification kind {n.kind!r}")


def _smtp_send(smtp: Any, msg: EmailMessage) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=20) as s:
        if smtp.starttls:
            s.starttls(context=ssl.create_default_context())
        if smtp.username:
            s.login(smtp.username, smtp.password)
        s.send_message(msg)
