"""Brute-force bans, scanner filtering and per-source rate limits (no sockets, injected clock)."""
from firmware.pbx.security import SecurityPolicy


class MemoryBans:
    def __init__(self):
        self.rows = {}

    def load_bans(self):
        return [(ip, *v) for ip, v in self.rows.items()]

    def save_ban(self, ip, reason, banned_at, until):
        self.rows[ip] = (reason, banned_at, until)

    def delete_ban(self, ip):
        self.rows.pop(ip, None)


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_ip_banned_after_too_many_failures_and_persisted_across_restart():
    store, clock = MemoryBans(), Clock()
    p = SecurityPolicy(max_failures=3, window_s=60, ban_s=600, store=store, wall=clock)
    for i in range(3):
        assert p.auth_failed("127.0.0.9", now=i) is None
    ban = p.auth_failed("127.0.0.9", now=3)
    assert ban and "authentication failures" in ban.reason
    assert not p.accept_source("127.0.0.9", now=4)
    # loopback is not exempt by default: another loopback address is unaffected
    assert p.accept_source("127.0.0.10", now=4)
    # a restarted box still bans it
    p2 = SecurityPolicy(store=store, wall=clock)
    assert p2.is_banned("127.0.0.9")
    clock.t += 601
    assert not p2.is_banned("127.0.0.9")
    assert "127.0.0.9" not in store.rows


def test_failures_outside_the_window_do_not_add_up():
    p = SecurityPolicy(max_failures=2, window_s=10, wall=Clock())
    for t in (0, 11, 22, 33):
        assert p.auth_failed("10.0.0.1", now=t) is None


def test_success_resets_count_and_lift_removes_ban():
    store = MemoryBans()
    p = SecurityPolicy(max_failures=1, store=store, wall=Clock())
    p.auth_failed("10.0.0.2", now=0)
    p.auth_succeeded("10.0.0.2")
    assert p.auth_failed("10.0.0.2", now=1) is None
    assert p.auth_failed("10.0.0.2", now=2) is not None
    assert [b.ip for b in p.bans()] == ["10.0.0.2"]
    assert p.lift("10.0.0.2")
    assert p.bans() == [] and store.rows == {}


def test_exempt_networks_are_never_banned():
    p = SecurityPolicy(max_failures=0, exempt=("192.168.1.0/24",), wall=Clock())
    assert p.auth_failed("192.168.1.7", now=0) is None
    assert p.auth_failed("192.168.2.7", now=0) is not None


def test_scanner_user_agents_detected():
    p = SecurityPolicy()
    assert p.is_scanner("friendly-scanner")
    assert p.is_scanner("sipvicious 0.3.4")
    assert p.is_scanner("VaxSIPUserAgent/3.1")
    assert not p.is_scanner("Yealink SIP-T46S 66.86.0.15")
    assert not p.is_scanner(None)


def test_flood_from_one_source_is_limited_while_others_pass():
    p = SecurityPolicy(rate_per_s=10, burst=20)
    accepted = sum(p.accept_source("10.9.9.9", now=0.001 * i) for i in range(1000))
    assert 20 <= accepted <= 32  # burst plus one second of refill
    assert p.accept_source("10.1.1.1", now=1.0)
    # after a quiet second the flooder gets tokens again
    assert p.accept_source("10.9.9.9", now=3.0)


def test_trusted_sources_get_a_higher_rate():
    p = SecurityPolicy(rate_per_s=10, burst=20, trusted_rate_per_s=1000, trusted_burst=2000)
    p.trust("10.2.2.2")
    assert sum(p.accept_source("10.2.2.2", now=0.0001 * i) for i in range(1000)) == 1000
    p.untrust("10.2.2.2")
    assert sum(p.accept_source("10.3.3.3", now=0.0001 * i) for i in range(1000)) <= 21
