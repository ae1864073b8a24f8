"""What the box says to callers, in the office's languages (spoken by espeak-ng).

Numbers are written as digits: espeak-ng reads them in the prompt's language.
"""
from __future__ import annotations

PHRASES: dict[str, dict[str, str]] = {
    "queue_entry": {
        "en": "Thank you for calling. All our operators are busy. Please hold, you will be connected to the first free operator.",
        "pl": "Dziękujemy za telefon. Wszyscy konsultanci są zajęci. Prosimy czekać, połączymy z pierwszym wolnym konsultantem.",
        "ru": "Спасибо за звонок. Все операторы заняты. Пожалуйста, оставайтесь на линии, вас соединят с первым свободным оператором.",
        "bg": "Благодарим ви за обаждането. Всички оператори са заети. Моля, изчакайте, ще ви свържем с първия свободен оператор.",
    },
    "position": {
        "en": "You are caller number {position}.",
        "pl": "Twoje miejsce w kolejce: {position}.",
        "ru": "Ваш номер в очереди: {position}.",
        "bg": "Вашето място в опашката е {position}.",
    },
    "expected_wait": {
        "en": "The expected waiting time is about {minutes} minutes.",
        "pl": "Przewidywany czas oczekiwania to około {minutes} minut.",
        "ru": "Ожидаемое время ожидания около {minutes} минут.",
        "bg": "Очакваното време за изчакване е около {minutes} минути.",
    },
    "callback_offer": {
        "en": "To be called back without losing your place, press {digit}.",
        "pl": "Aby otrzymać połączenie zwrotne bez utraty miejsca w kolejce, naciśnij {digit}.",
        "ru": "Чтобы мы перезвонили вам, не теряя места в очереди, нажмите {digit}.",
        "bg": "За да ви се обадим, без да губите мястото си, натиснете {digit}.",
    },
    "callback_confirmed": {
        "en": "Thank you. We will call you back as soon as an operator is free. Goodbye.",
        "pl": "Dziękujemy. Oddzwonimy, gdy tylko zwolni się konsultant. Do widzenia.",
        "ru": "Спасибо. Мы перезвоним, как только освободится оператор. До свидания.",
        "bg": "Благодарим ви. Ще ви се обадим веднага щом се освободи оператор. Довиждане.",
    },
    "callback_connecting": {
        "en": "Hello, this is the call back you asked for. Connecting you to an operator.",
        "pl": "Dzień dobry, oddzwaniamy zgodnie z prośbą. Łączymy z konsultantem.",
        "ru": "Здравствуйте, это обратный звонок по вашей просьбе. Соединяем с оператором.",
        "bg": "Здравейте, обаждаме ви се по ваша молба. Свързваме ви с оператор.",
    },
    "invalid": {
        "en": "That is not a valid choice.",
        "pl": "Nieprawidłowy wybór.",
        "ru": "Неверный выбор.",
        "bg": "Невалиден избор.",
    },
    "timeout": {
        "en": "We did not hear your choice.",
        "pl": "Nie usłyszeliśmy wyboru.",
        "ru": "Мы не услышали ваш выбор.",
        "bg": "Не чухме вашия избор.",
    },
    "unavailable": {
        "en": "The person you are calling is not available. Please try again later.",
        "pl": "Wybrany numer jest niedostępny. Prosimy spróbować później.",
        "ru": "Абонент недоступен. Пожалуйста, перезвоните позже.",
        "bg": "Търсеният от вас номер не е достъпен. Моля, опитайте по-късно.",
    },
    "closed": {
        "en": "We are closed now. Please call again during business hours.",
        "pl": "Obecnie jesteśmy nieczynni. Prosimy zadzwonić w godzinach pracy.",
        "ru": "Сейчас мы не работаем. Пожалуйста, позвоните в рабочее время.",
        "bg": "В момента не работим. Моля, обадете се в работно време.",
    },
    "message_box": {
        "en": "Please leave a message after the tone. Hang up when you are done.",
        "pl": "Prosimy zostawić wiadomość po sygnale. Po nagraniu proszę się rozłączyć.",
        "ru": "Пожалуйста, оставьте сообщение после сигнала. Затем положите трубку.",
        "bg": "Моля, оставете съобщение след сигнала. След това затворете.",
    },
    "feature_ok": {
        "en": "Done.",
        "pl": "Gotowe.",
        "ru": "Готово.",
        "bg": "Готово.",
    },
    "feature_failed": {
        "en": "That did not work.",
        "pl": "Nie udało się.",
        "ru": "Не получилось.",
        "bg": "Не се получи.",
    },
    "logged_in": {
        "en": "You are logged in to the queue.",
        "pl": "Zalogowano do kolejki.",
        "ru": "Вы вошли в очередь.",
        "bg": "Влязохте в опашката.",
    },
    "logged_out": {
        "en": "You are logged out of the queue.",
        "pl": "Wylogowano z kolejki.",
        "ru": "Вы вышли из очереди.",
        "bg": "Излязохте от опашката.",
    },
    "recording_notice": {
        "en": "This call is recorded.",
        "pl": "Rozmowa jest nagrywana.",
        "ru": "Разговор записывается.",
        "bg": "Разговорът се записва.",
    },
}


def phrase(key: str, language: str, **values: object) -> str:
    table = PHRASES[key]
    return table.get(language, table["en"]).format(**values)
