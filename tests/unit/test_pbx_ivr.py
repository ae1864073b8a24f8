"""Voice menus and time conditions without I/O."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from firmware.pbx.ivr import Goto, Menu, MenuSession, Play, StopPlay
from firmware.pbx.timecond import TimeCondition, TimeSpecError, parse_hours

MENU = Menu("500", "Press 1 for sales, 2 for service.", options=(("1", "600"), ("2", "601"), ("9", "501")),
            timeout=5, retries=3, invalid="hangup", invalid_prompt="That is not a valid choice.",
            timeout_prompt="We did not hear your choice.")


def test_digit_during_greeting_barges_in_and_routes():
    s = MenuSession(MENU, frozenset({"201", "202"}))
    assert s.start(0) == [Play(MENU.prompt, "en", "menu")]
    assert s.digit("1", 1.0) == [StopPlay(), Goto("600", "1", "option")]
    assert s.choices == [(1.0, "1", "600")]


def test_option_that_prefixes_an_extension_waits_for_the_interdigit_timeout():
    s = MenuSession(MENU, frozenset({"201", "202"}))
    s.start(0)
    assert s.digit("2", 1.0) == [StopPlay()]
    assert s.get_timer() == 3.0
    assert s.handle_timer(3.0) == [Goto("601", "2", "option")]


def test_direct_dial_waits_for_all_digits():
    s = MenuSession(MENU, frozenset({"201", "202", "2010"}))
    s.start(0)
    s.prompt_done(3)
    assert s.digit("2", 4) == []
    assert s.digit("0", 4.5) == []
    assert s.digit("1", 5) == []               # 201 is a prefix of 2010: wait
    assert s.get_timer() == 7
    assert s.handle_timer(7) == [Goto("201", "201", "direct")]


def test_timeouts_replay_then_give_up():
    s = MenuSession(MENU)
    s.start(0)
    s.prompt_done(4)
    assert s.get_timer() == 9
    acts = s.handle_timer(9)
    assert acts == [Play("We did not hear your choice.", "en", "timeout"), Play(MENU.prompt, "en", "menu")]
    s.prompt_done(20)
    s.handle_timer(25)
    s.prompt_done(40)
    assert s.handle_timer(45) == [Goto("hangup", "", "timeout")]


def test_invalid_entry_replays_with_invalid_prompt():
    s = MenuSession(MENU, frozenset({"201"}))
    s.start(0)
    acts = s.digit("7", 1)
    assert acts[0] == StopPlay()
    assert Play("That is not a valid choice.", "en", "invalid") in acts
    assert s.digit("1", 2) == [StopPlay(), Goto("600", "1", "option")]


def test_hash_terminates_entry():
    s = MenuSession(MENU, frozenset({"201", "2010"}))
    s.start(0)
    s.digit("2", 1); s.digit("0", 1.1); s.digit("1", 1.2)
    assert s.digit("#", 1.3) == [Goto("201", "201", "direct")]


WARSAW = ZoneInfo("Europe/Warsaw")


def ts(y, mo, d, h, mi):
    return dt.datetime(y, mo, d, h, mi, tzinfo=WARSAW).timestamp()


def test_business_hours_holidays_and_override():
    tc = TimeCondition("700", ("mon-fri 09:00-18:00", "sat 10:00-14:00"), ("12-25", "2026-11-11"),
                       "500", "501", "Europe/Warsaw")
    assert tc.destination(ts(2026, 11, 23, 9, 0)) == "500"      # Monday 09:00
    assert tc.destination(ts(2026, 11, 23, 18, 0)) == "501"     # 18:00 is closed
    assert tc.destination(ts(2026, 11, 28, 11, 0)) == "500"     # Saturday
    assert tc.destination(ts(2026, 11, 29, 11, 0)) == "501"     # Sunday
    assert tc.destination(ts(2026, 11, 11, 11, 0)) == "501"     # Independence Day (dated)
    assert tc.destination(ts(2027, 12, 25, 11, 0)) == "501"     # every year
    assert tc.destination(ts(2026, 11, 23, 11, 0), override="closed") == "501"
    assert tc.destination(ts(2026, 11, 29, 11, 0), override="open") == "500"


@pytest.mark.parametrize("spec,msg", [
    ("mon-fri 9-18", "expected like"),
    ("mon-fry 09:00-18:00", "unknown day"),
    ("mon 18:00-09:00", "end must be after"),
    ("mon 25:00-26:00", "bad time"),
])
def test_bad_hours_specs(spec, msg):
    with pytest.raises(TimeSpecError, match=msg):
        parse_hours(spec)


def test_wrapping_day_range():
    assert {d for d, _, _ in parse_hours("fri-mon 10:00-12:00")} == {4, 5, 6, 0}
