"""Sessions, login throttling and the HTML helper, with an injected clock."""
from __future__ import annotations

from web_ui.html import Markup, attrs, escape, fmt
from web_ui.sessions import LoginThrottle, SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_session_idle_and_absolute_expiry():
    clock = Clock()
    store = SessionStore(clock, idle_s=100, absolute_s=1000)
    token, s = store.create("anna", "agent")
    assert store.get(token) is s
    clock.now += 99
    assert store.get(token) is s
    clock.now += 101
    assert store.get(token) is None
    token, s = store.create("anna", "agent")
    for _ in range(12):
        clock.now += 90
        store.get(token)
    assert store.get(token) is None


def test_login_rotates_the_token_and_keeps_language():
    store = SessionStore(Clock())
    anon, s = store.create()
    s.lang = "bg"
    new, s2 = store.login(anon, "maria", "manager")
    assert new != anon and store.get(anon) is None
    assert s2.user == "maria" and s2.lang == "bg" and s2.csrf != s.csrf


def test_anonymous_sessions_are_capped_and_bad_tokens_ignored():
    store = SessionStore(Clock(), max_anonymous=10)
    user_token, _ = store.create("admin", "admin")
    tokens = [store.create()[0] for _ in range(50)]
    assert len(store) == 11
    assert store.get(tokens[0]) is None and store.get(tokens[-1]) is not None
    assert store.get(user_token) is not None
    assert store.get("x" * 5000) is None and store.get("") is None


def test_drop_user_ends_other_sessions():
    store = SessionStore(Clock())
    t1, s1 = store.create("anna", "agent")
    t2, _ = store.create("anna", "agent")
    assert store.drop_user("anna", keep=s1) == 1
    assert store.get(t1) is s1 and store.get(t2) is None


def test_throttle_locks_a_user_after_five_failures_then_unlocks():
    clock = Clock()
    th = LoginThrottle(clock, max_user_failures=5, lockout_s=900, window_s=900)
    for _ in range(4):
        th.failure("10.0.0.5", "admin")
    assert th.check("10.0.0.5", "admin") == 0
    th.failure("10.0.0.5", "ADMIN")
    assert th.check("10.0.0.6", "admin") == 900
    assert th.check("10.0.0.6", "maria") == 0
    clock.now += 901
    assert th.check("10.0.0.6", "admin") == 0


def test_throttle_counts_per_address_and_window():
    clock = Clock()
    th = LoginThrottle(clock, max_ip_failures=20, max_user_failures=1000, window_s=60)
    for i in range(19):
        th.failure("192.0.2.1", f"user{i}")
    clock.now += 61
    th.failure("192.0.2.1", "late")
    assert th.check("192.0.2.1") == 0
    for i in range(19):
        th.failure("192.0.2.1", f"again{i}")
    assert th.check("192.0.2.1", "anyone") > 0
    th.success("192.0.2.1", "anyone")
    assert th.check("192.0.2.1", "anyone") > 0


def test_html_helper_escapes_everything_but_markup():
    assert escape('<script>"x"&') == "&lt;script&gt;&quot;x&quot;&amp;"
    assert fmt("<b>{}</b>{}", "<i>", Markup("<br>")) == "<b>&lt;i&gt;</b><br>"
    assert attrs(class_="a\"b", disabled=True, hidden=False, aria_label="x") == ' class="a&quot;b" disabled aria-label="x"'
