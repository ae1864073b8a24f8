"""Queue distribution (ACD) without I/O: strategies, no lost callers, wrap-up, auto-pause."""
import random

import pytest

from firmware.pbx.acd import (Acd, Announce, CallbackReady, Connect, Overflow, QueueSettings, RingAgents,
                              StopRinging)


def make(strategy="ringall", members=("201", "202", "203"), **kw):
    states = []
    acd = Acd(rng=random.Random(7), on_agent_state=states.append)
    for m in members:
        acd.add_agent(m, registered=True, now=0)
    acd.configure_queue(QueueSettings("600", strategy=strategy, members=tuple(members), **kw), now=0)
    return acd, states


def rings(actions):
    return [a for a in actions if isinstance(a, RingAgents)]


def test_ringall_first_pickup_wins_and_others_stop():
    acd, _ = make()
    acts = acd.enter("600", "c1", "+48600100200", now=1)
    assert isinstance(acts[0], Announce) and acts[0].kind == "entry" and acts[0].position == 1
    (r,) = rings(acts)
    assert set(r.agents) == {"201", "202", "203"}
    acts = acd.agent_answered("c1", "202", now=4)
    stop = [a for a in acts if isinstance(a, StopRinging)][0]
    assert set(stop.agents) == {"201", "203"} and stop.reason == "answered_elsewhere"
    conn = [a for a in acts if isinstance(a, Connect)][0]
    assert conn.agent == "202" and conn.wait_s == 3
    assert acd.agents["202"].state == "in_call"
    assert acd.agents["201"].state == "available"


def test_an_agent_rejecting_does_not_stop_the_others_ringing():
    acd, _ = make()
    acd.enter("600", "c1", "x", now=0)
    acts = acd.agent_failed("c1", "201", now=1, reason="rejected")
    assert not any(isinstance(a, StopRinging) for a in acts)
    assert acd.callers["c1"].ringing == {"202", "203"}
    acts = acd.agent_answered("c1", "203", now=2)
    assert any(isinstance(a, Connect) and a.agent == "203" for a in acts)


def test_linear_hunts_in_member_order_and_caller_keeps_head_position():
    acd, _ = make("linear", agent_timeout=10, retry=2, autopause_after=0)
    (r,) = rings(acd.enter("600", "c1", "a", now=0))
    assert r.agents == ("201",)
    acd.enter("600", "c2", "b", now=1)
    # c2 must not overtake c1: 202 and 203 are free but c1 is at the head and ringing
    acts = acd.handle_timer(10)  # 201 did not answer within agent_timeout
    assert any(isinstance(a, StopRinging) and a.agents == ("201",) and a.reason == "timeout" for a in acts)
    assert acd.position("c1") == 1 and acd.position("c2") == 2
    acts = acd.handle_timer(12)  # after the retry delay c1 is offered again first
    r = rings(acts)
    assert r[0].call_id == "c1"


def test_second_caller_gets_next_free_agent_while_first_is_ringing():
    acd, _ = make("linear", autopause_after=0)
    r1 = rings(acd.enter("600", "c1", "a", now=0))
    r2 = rings(acd.enter("600", "c2", "b", now=0.5))
    assert r1[0].agents == ("201",) and r2[0].agents == ("202",)


def test_leastrecent_picks_longest_idle_agent():
    acd, _ = make("leastrecent", wrapup=0)
    for ext, t in (("201", 100), ("202", 50), ("203", 80)):
        acd.enter("600", f"x{ext}", "n", now=t - 10)
        cid = f"x{ext}"
        acd.agents_of("600")
        # force this agent to take the call
        for other in acd.callers[cid].ringing - {ext}:
            acd.agent_failed(cid, other, now=t - 9, reason="busy")
        acd.agent_answered(cid, ext, now=t - 5)
        acd.call_ended(cid, ext, now=t)
    (r,) = rings(acd.enter("600", "c", "n", now=200))
    assert r.agents == ("202",)


def test_rrmemory_rotates():
    acd, _ = make("rrmemory", wrapup=0)
    got = []
    for i in range(4):
        (r,) = rings(acd.enter("600", f"c{i}", "n", now=i * 10))
        got.append(r.agents[0])
        acd.agent_answered(f"c{i}", r.agents[0], now=i * 10 + 1)
        acd.call_ended(f"c{i}", r.agents[0], now=i * 10 + 2)
    assert got == ["201", "202", "203", "201"]


def test_fewestcalls_and_wrandom():
    acd, _ = make("fewestcalls", wrapup=0)
    acd.agents["201"].calls_taken = 5
    acd.agents["202"].calls_taken = 1
    acd.agents["203"].calls_taken = 3
    (r,) = rings(acd.enter("600", "c", "n", now=0))
    assert r.agents == ("202",)
    acd, _ = make("wrandom", penalties=(("201", 0), ("202", 9), ("203", 9)))
    counts = {"201": 0, "202": 0, "203": 0}
    for i in range(300):
        (r,) = rings(acd.enter("600", f"c{i}", "n", now=i))
        counts[r.agents[0]] += 1
        acd.leave(f"c{i}", now=i + 0.5)
    assert counts["201"] > counts["202"] * 3 and counts["201"] > counts["203"] * 3


def test_wrapup_keeps_agent_from_being_offered():
    acd, _ = make("linear", members=("201",), wrapup=30)
    acd.enter("600", "c1", "n", now=0)
    acd.agent_answered("c1", "201", now=1)
    acd.call_ended("c1", "201", now=61, talk_s=60)
    assert acd.agents["201"].state == "wrapup"
    assert rings(acd.enter("600", "c2", "n", now=62)) == []
    assert acd.get_timer() <= 91
    acts = acd.handle_timer(91)
    assert rings(acts)[0].agents == ("201",)


def test_ring_in_use_off_and_dnd_and_pause():
    acd, _ = make("ringall")
    acd.extension_busy("201", True, now=0)
    acd.set_dnd("202", True, now=0)
    acd.pause("203", now=0, reason="lunch")
    assert rings(acd.enter("600", "c1", "n", now=1)) == []
    assert acd.agents["203"].state == "paused" and acd.agents["203"].state_reason == "lunch"
    acts = acd.unpause("203", now=2)
    assert rings(acts)[0].agents == ("203",)


def test_autopause_after_ignored_rings():
    acd, states = make("linear", members=("201", "202"), autopause_after=2, agent_timeout=5, retry=0)
    acd.enter("600", "c1", "n", now=0)
    acd.handle_timer(5)     # 201 missed once; 202 rung
    acd.handle_timer(10)    # 202 missed once; 201 rung again
    acd.handle_timer(15)    # 201 missed twice -> paused
    assert acd.agents["201"].state == "paused"
    assert "auto-pause" in acd.agents["201"].state_reason
    assert any(s.agent == "201" and s.state == "paused" for s in states)


def test_max_wait_overflow_and_full_and_empty():
    acd, _ = make("ringall", members=("201",), max_wait=60, overflow="0600100200", max_callers=2)
    acd.extension_busy("201", True, now=0)
    acd.enter("600", "c1", "n", now=0)
    acd.enter("600", "c2", "n", now=1)
    acts = acd.enter("600", "c3", "n", now=2)
    assert acts == [Overflow("c3", "0600100200", "full", "600")]
    acts = acd.handle_timer(60)
    assert Overflow("c1", "0600100200", "max_wait", "600") in acts
    acd2, _ = make("ringall", members=(), joinempty=False)
    assert acd2.enter("600", "c", "n", now=0)[0].reason == "empty"


def test_leavewhenempty_when_last_dynamic_agent_logs_out():
    acd, _ = make("ringall", members=(), leavewhenempty=True, overflow="500")
    acd.add_agent("205", now=0)
    acd.login("205", "600", now=0)
    acd.extension_busy("205", True, now=0)
    acd.enter("600", "c1", "n", now=1)
    acts = acd.logout("205", "600", now=2)
    assert Overflow("c1", "500", "empty", "600") in acts


def test_caller_abandons_while_ringing_stops_agents():
    acd, _ = make()
    acd.enter("600", "c1", "n", now=0)
    acts = acd.leave("c1", now=3)
    assert acts[0] == StopRinging("c1", ("201", "202", "203"), "caller_left")
    assert all(a.state == "available" for a in acd.agents.values())


def test_late_answer_after_caller_left_is_hung_up():
    acd, _ = make()
    acd.enter("600", "c1", "n", now=0)
    acd.leave("c1", now=1)
    assert acd.agent_answered("c1", "201", now=2) == [StopRinging("c1", ("201",), "answered_elsewhere")]


def test_position_announcements_and_periodic_message():
    acd, _ = make(members=("201",), announce_position_every=30, periodic_message_every=45)
    acd.extension_busy("201", True, now=0)
    acd.enter("600", "c1", "n", now=0)
    acd.enter("600", "c2", "n", now=1)
    acts = acd.handle_timer(31)
    pos = [a for a in acts if isinstance(a, Announce) and a.kind == "position"]
    assert [(a.call_id, a.position) for a in pos] == [("c1", 1), ("c2", 2)]
    assert pos[1].expected_wait_s > pos[0].expected_wait_s > 0
    acts = acd.handle_timer(46)
    assert [a.call_id for a in acts if isinstance(a, Announce) and a.kind == "periodic"] == ["c1", "c2"]


def test_callback_keeps_place_and_rings_agent_first():
    acd, _ = make("linear", members=("201",))
    acd.extension_busy("201", True, now=0)
    acd.enter("600", "c1", "+48600100200", now=0)
    acd.enter("600", "c2", "+48600100300", now=1)
    acd.request_callback("c1", "+48600100200", now=5)
    assert acd.position("c1") == 1
    acts = acd.extension_busy("201", False, now=20)
    assert acts == [CallbackReady("c1", "201", "+48600100200", "600")]
    acts = acd.agent_answered("c1", "201", now=22)
    assert any(isinstance(a, Connect) for a in acts)
    assert acd.position("c2") == 1


def test_reconcile_releases_stuck_agents():
    acd, _ = make("linear", members=("201",), agent_timeout=1000)
    acd.enter("600", "c1", "n", now=0)
    assert acd.agents["201"].state == "ringing"
    acd.reconcile({"201": "idle"}, now=100)
    # released and immediately offered again: the caller is not lost
    assert acd.callers["c1"].ringing == {"201"}
    acd.agent_answered("c1", "201", now=101)
    acd.reconcile({"201": "idle"}, now=300)   # the PBX says the call is gone
    assert acd.agents["201"].state == "available"


def test_static_member_cannot_log_out_and_unknown_strategy_refused():
    acd, _ = make()
    with pytest.raises(ValueError, match="static member"):
        acd.logout("201", "600", now=0)
    with pytest.raises(ValueError, match="unknown queue strategy"):
        acd.configure_queue(QueueSettings("601", strategy="bogus"), now=0)


def test_callback_entry_for_a_customer_not_on_the_line():
    acd, _ = make("linear", members=("201",))
    acts = acd.enter("600", "cb1", "+48600100200", now=0, callback=True)
    assert acts == [CallbackReady("cb1", "201", "+48600100200", "600")]
