"""Reports on a small hand-made week of calls (exact numbers), in Europe/Warsaw time.

Every report is also computed from the raw rows only (``use_summaries=False``) and must give
the same answer, which checks the summary tables and the period-edge arithmetic.
"""
import csv
import dataclasses
import datetime as dt
import importlib.util
import io
import sqlite3
from zoneinfo import ZoneInfo

import pytest

from firmware.store.calls import CallStore, rebuild_summaries
from firmware.store.reports import FORMULAS, CallFilter, ReportError, Reports
from tests.conftest import ROOT

TZ = ZoneInfo("Europe/Warsaw")


def T(day, h, m, s=0):
    """Local time on Monday 2026-11-23 + day."""
    return dt.datetime(2026, 11, 23 + day, h, m, s, tzinfo=TZ).timestamp()


NOW = T(1, 9, 0)


def inbound(s, t, number, queue, *, wait, answered_by=None, talk=0.0, status=None, side="caller", wrapup=None,
            rings=()):
    cid = s.begin_call(direction="inbound", caller_number=number, started_at=t, queue=queue, trunk="gsm1")
    for agent, result, secs, at in rings:
        s.add_event(cid, "agent_ring", ts=t + at, agent=agent, queue=queue, result=result, seconds=secs)
    if answered_by:
        s.update_call(cid, answered_at=t + wait, answered_by=answered_by)
        s.end_call(cid, ended_at=t + wait + talk, hangup_side=side, wrapup_s=wrapup)
    else:
        s.end_call(cid, ended_at=t + wait, status=status, hangup_side=side)
    return cid


def outbound(s, t, ext, number, *, ring, talk=None):
    cid = s.begin_call(direction="outbound", callee_number=number, from_extension=ext, started_at=t)
    if talk is not None:
        s.update_call(cid, answered_at=t + ring)
        s.end_call(cid, ended_at=t + ring + talk, hangup_side="callee")
    else:
        s.end_call(cid, ended_at=t + ring, status="no_answer")
    return cid


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    s = CallStore(tmp_path_factory.mktemp("reports") / "calls.sqlite", country_code="48", clock=lambda: NOW)
    ids = {}
    ids["c1"] = inbound(s, T(0, 9, 10), "+48600000001", "600", wait=12, answered_by="201", talk=100, wrapup=10,
                        rings=[("202", "no_answer", 8, 1), ("201", "answered", 3, 9)])
    ids["c2"] = inbound(s, T(0, 9, 40), "+48600000002", "600", wait=3, status="abandoned",
                        rings=[("201", "caller_hangup", 3, 0)])
    ids["c3"] = inbound(s, T(0, 10, 5), "+48600000003", "600", wait=40, status="abandoned")
    ids["c4"] = inbound(s, T(0, 10, 20), "+48600000001", "600", wait=25, answered_by="202", talk=4, side="callee",
                        rings=[("202", "answered", 6, 19)])
    ids["c5"] = inbound(s, T(1, 14, 0), "+48600000003", "601", wait=5, answered_by="203", talk=300,
                        rings=[("203", "answered", 2, 3)])
    ids["c6"] = outbound(s, T(1, 15, 0), "201", "600000002", ring=10, talk=45)
    ids["c7"] = outbound(s, T(1, 15, 30), "201", "600000009", ring=30)
    ids["c8"] = outbound(s, T(1, 16, 0), "201", "+48600000001", ring=8, talk=20)
    c9 = s.begin_call(direction="internal", caller_number="201", callee_number="202", from_extension="201",
                      to_extension="202", started_at=T(2, 11, 0))
    s.update_call(c9, answered_at=T(2, 11, 0, 3), answered_by="202")
    s.end_call(c9, ended_at=T(2, 11, 1, 3))
    ids["c9"] = c9
    ids["c10"] = inbound(s, T(3, 0, 30), "+48600000004", "600", wait=60, status="no_answer")
    for state, reason, at in [("available", "", T(0, 8, 0)), ("in_call", "", T(0, 9, 10, 12)),
                              ("wrapup", "", T(0, 9, 11, 52)), ("available", "", T(0, 9, 12, 2)),
                              ("paused", "lunch", T(0, 12, 0)), ("available", "", T(0, 12, 45)),
                              ("offline", "", T(0, 18, 0)), ("available", "", T(1, 8, 0))]:
        s.agent_state("201", state, reason, at=at)
    s.update_call(ids["c1"], note="=HYPERLINK(\"x\")")
    s.flush()
    yield s, ids
    s.close()


@pytest.fixture(params=[True, False], ids=["summaries", "raw"])
def rep(week, request):
    s, ids = week
    return Reports(s, timezone="Europe/Warsaw", clock=lambda: NOW, use_summaries=request.param), ids


def test_period_is_local_days(week):
    r = Reports(week[0], timezone="Europe/Warsaw")
    since, until = r.period("2026-11-23", "2026-11-29")
    assert since == T(0, 0, 0) and until == T(7, 0, 0)
    with pytest.raises(ReportError, match="ends before it starts"):
        r.period("2026-11-29", "2026-11-23")
    with pytest.raises(ReportError, match="bad date"):
        r.period("2026-13-01")


def test_missed_calls_and_returned(rep):
    r, ids = rep
    m = r.missed_calls(*r.period("2026-11-23", "2026-11-29"))
    assert (m.total, m.not_returned) == (3, 1)
    assert [(c.call_id, c.number, c.status, c.returned) for c in m.calls] == [
        (ids["c10"], "+48600000004", "no_answer", False),
        (ids["c3"], "+48600000003", "abandoned", True),
        (ids["c2"], "+48600000002", "abandoned", True)]
    assert m.calls[1].callback_s == T(1, 14, 0, 5) - T(0, 10, 5)
    assert m.calls[2].returned_at == T(1, 15, 0, 10)
    assert r.missed_calls(*r.period("2026-11-23"), limit=1, offset=1).calls[0].call_id == ids["c2"]
    open_ = r.missed_not_returned(now=T(4, 0, 30))
    assert [(o.number, o.count, o.waiting_s) for o in open_] == [("+48600000004", 1, 86400.0)]


def test_agent_performance(rep):
    r, _ = rep
    perf = {p.agent: p for p in r.agent_performance(*r.period("2026-11-23", "2026-11-29"))}
    assert sorted(perf) == ["201", "202", "203"]
    a = perf["201"]
    assert (a.answered, a.made, a.made_connected) == (1, 3, 2)
    assert (a.unique_answered_customers, a.unique_outgoing_customers, a.unique_customers) == (1, 3, 3)
    assert (a.avg_wait_s, a.long_outgoing, a.talk_s, a.avg_talk_s, a.wrapup_s) == (12.0, 1, 165.0, 55.0, 10.0)
    assert (a.rings_offered, a.rings_answered, a.rings_missed, a.rings_caller_hung_up, a.avg_ring_to_answer_s) == (
        2, 1, 0, 1, 3.0)
    assert (a.short_answered, a.short_hung_up_by_agent) == (0, 0)
    assert a.state_s == {"available": 4212 + 10078 + 18900 + 3600, "in_call": 100, "wrapup": 10, "paused": 2700,
                         "offline": 50400}
    assert a.pause_reasons_s == {"lunch": 2700}
    b = perf["202"]
    assert (b.answered, b.avg_wait_s, b.talk_s, b.short_answered, b.short_hung_up_by_agent) == (1, 25.0, 4.0, 1, 1)
    assert (b.rings_offered, b.rings_answered, b.rings_missed, b.avg_ring_to_answer_s) == (2, 1, 1, 6.0)
    c = perf["203"]
    assert (c.answered, c.unique_customers, c.avg_wait_s, c.talk_s, c.rings_offered) == (1, 1, 5.0, 300.0, 1)
    longer = {p.agent: p for p in r.agent_performance(*r.period("2026-11-23", "2026-11-29"), long_call_s=10)}
    assert longer["201"].long_outgoing == 2
    odd = {p.agent: p for p in r.agent_performance(*r.period("2026-11-23", "2026-11-29"), long_call_s=44,
                                                   short_call_s=4)}
    assert (odd["201"].long_outgoing, odd["202"].short_answered, odd["202"].short_hung_up_by_agent) == (1, 0, 0)
    odd = {p.agent: p for p in r.agent_performance(*r.period("2026-11-23", "2026-11-29"), long_call_s=46,
                                                   short_call_s=7)}
    assert (odd["201"].long_outgoing, odd["202"].short_answered, odd["202"].short_hung_up_by_agent) == (0, 1, 1)
    with pytest.raises(ReportError, match="long_call_s must be a number"):
        r.agent_performance(*r.period("2026-11-23"), long_call_s=0)


def test_agent_states_clipped_to_a_part_of_a_day(rep):
    r, _ = rep
    p = {x.agent: x for x in r.agent_performance(T(0, 9, 0), T(0, 12, 30))}
    assert p["201"].state_s == {"available": 4212 - 3600 + 10078, "in_call": 100, "wrapup": 10, "paused": 1800}


def test_weekday_hour_in_local_time(rep):
    r, _ = rep
    g = r.weekday_hour(*r.period("2026-11-23", "2026-11-29"))
    nonzero = {(d, h): (g.calls[d][h], g.inbound[d][h], g.missed[d][h], g.answered[d][h])
               for d in range(7) for h in range(24) if g.calls[d][h]}
    assert nonzero == {(0, 9): (2, 2, 1, 1), (0, 10): (2, 2, 1, 1), (1, 14): (1, 1, 0, 1),
                       (1, 15): (2, 0, 0, 1), (1, 16): (1, 0, 0, 1), (3, 0): (1, 1, 1, 0)}
    q = r.weekday_hour(*r.period("2026-11-23", "2026-11-29"), queue="601")
    assert sum(map(sum, q.calls)) == 1 and q.calls[1][14] == 1


def test_calls_per_day(rep):
    r, _ = rep
    days = r.calls_per_day(*r.period("2026-11-23", "2026-11-29"))
    assert [(d.day, d.total, d.answered, d.missed, d.inbound, d.outbound) for d in days] == [
        ("2026-11-23", 4, 2, 2, 4, 0), ("2026-11-24", 4, 3, 0, 1, 3), ("2026-11-25", 0, 0, 0, 0, 0),
        ("2026-11-26", 1, 0, 1, 1, 0), ("2026-11-27", 0, 0, 0, 0, 0), ("2026-11-28", 0, 0, 0, 0, 0),
        ("2026-11-29", 0, 0, 0, 0, 0)]


def test_queue_kpis_with_formulas(rep):
    r, _ = rep
    k = {x.queue: x for x in r.queue_kpis(*r.period("2026-11-23", "2026-11-29"), thresholds={"600": (20, 5)})}
    s = k["600"]
    assert (s.offered, s.answered, s.abandoned, s.short_abandoned, s.answered_within_sl) == (5, 2, 2, 1, 1)
    assert (s.answer_rate, s.asa_s, s.abandon_rate, s.service_level, s.aht_s) == (0.4, 18.5, 0.25, 0.25, 57.0)
    assert s.formulas["abandon_rate"] == FORMULAS["abandon_rate"] == \
        "(abandoned - short abandons) / (offered - short abandons)"
    t = k["601"]
    assert (t.offered, t.answer_rate, t.asa_s, t.abandon_rate, t.service_level, t.aht_s) == (1, 1.0, 5.0, 0.0, 1.0, 300.0)
    strict = {x.queue: x for x in r.queue_kpis(*r.period("2026-11-23", "2026-11-29"), service_level_s=10,
                                               short_abandon_s=0)}
    assert (strict["600"].service_level, strict["600"].abandon_rate) == (0.0, 0.4)
    odd = {x.queue: x for x in r.queue_kpis(*r.period("2026-11-23", "2026-11-29"), thresholds={"600": (25, 4)})}
    assert (odd["600"].answered_within_sl, odd["600"].short_abandoned, odd["600"].service_level) == (2, 1, 0.5)
    assert odd["601"].service_level == 1.0
    with pytest.raises(ReportError, match="service level must be a number"):
        r.queue_kpis(*r.period("2026-11-23"), service_level_s="fast")


def test_trend_and_wait_distribution(rep):
    r, _ = rep
    tr = r.trend(*r.period("2026-11-23", "2026-11-26"))
    assert [(d.day, d.offered, d.asa_s, d.abandon_rate) for d in tr] == [
        ("2026-11-23", 4, 18.5, pytest.approx(1 / 3)), ("2026-11-24", 1, 5.0, 0.0), ("2026-11-25", 0, None, None),
        ("2026-11-26", 1, None, 0.0)]
    odd = r.trend(*r.period("2026-11-23", "2026-11-26"), short_abandon_s=2)
    assert [d.abandon_rate for d in odd][:2] == [0.5, 0.0]
    w = r.wait_distribution(*r.period("2026-11-23", "2026-11-29"), bucket_s=10, max_s=60)
    assert [(b.lo_s, b.hi_s, b.answered, b.abandoned) for b in w] == [
        (0, 10, 1, 1), (10, 20, 1, 0), (20, 30, 1, 0), (30, 40, 0, 0), (40, 50, 0, 1), (50, 60, 0, 0), (60, None, 0, 0)]


def test_call_log_filters_and_pages(rep):
    r, ids = rep
    since, until = r.period("2026-11-23", "2026-11-29")
    f = lambda **kw: r.call_log(CallFilter(since=since, until=until, **kw), limit=100)  # noqa: E731
    assert f().total == 10
    assert [c.id for c in f(agent="201").calls] == [ids["c1"]]
    assert {c.id for c in f(extension="201").calls} == {ids[k] for k in ("c1", "c6", "c7", "c8", "c9")}
    assert {c.id for c in f(number="600 000 001").calls} == {ids[k] for k in ("c1", "c4", "c8")}
    assert {c.id for c in f(number="0001").calls} == {ids[k] for k in ("c1", "c4", "c8")}
    assert f(direction="outbound").total == 3
    assert {c.id for c in f(status=("missed",), missed_like=True).calls} == {ids[k] for k in ("c2", "c3", "c10")}
    assert f(queue="600").total == 5
    page = r.call_log(CallFilter(since=since, until=until), limit=3, offset=3)
    assert (page.total, [c.id for c in page.calls]) == (10, [ids["c7"], ids["c6"], ids["c5"]])
    assert {c.id for c in r.target_calls(since, until, min_talk_s=60).calls} == {ids["c1"], ids["c5"], ids["c9"]}
    out = r.outgoing_calls(since, until)
    assert (out.calls, out.connected, out.long_calls, out.unique_customers, out.talk_s) == (3, 2, 1, 3, 65.0)
    for bad, msg in [(dict(direction="up"), "direction must be one of"), (dict(status=("great",)), "unknown status"),
                     (dict(number="abc"), "has no digits")]:
        with pytest.raises(ReportError, match=msg):
            f(**bad)
    with pytest.raises(ReportError, match="limit must be at least 1"):
        r.call_log(limit=0)


def test_csv_export_local_times_and_formula_safety(rep):
    r, ids = rep
    since, until = r.period("2026-11-23", "2026-11-29")
    text = "".join(r.call_log_csv(CallFilter(since=since, until=until), chunk=4))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 10
    first = next(x for x in rows if x["id"] == ids["c1"])
    assert first["started"] == "2026-11-23 09:10:00"
    assert (first["caller"], first["answered_by"], first["wait_s"], first["talk_s"]) == ("+48600000001", "201", "12.0", "100.0")
    assert first["note"] == "'=HYPERLINK(\"x\")"
    assert [x["id"] for x in rows][:2] == [ids["c10"], ids["c9"]]


def test_bad_periods_refused(rep):
    r, _ = rep
    for fn in (r.weekday_hour, r.calls_per_day, r.agent_performance, r.queue_kpis, r.missed_calls):
        with pytest.raises(ReportError):
            fn(T(1, 0, 0), T(0, 0, 0))
    with pytest.raises(ReportError, match="longer than five years"):
        r.calls_per_day(0, T(0, 0, 0))
    with pytest.raises(ReportError, match="unknown time zone"):
        Reports(r.calls, timezone="Mars/Olympus")


def test_summaries_follow_changes_after_a_call_ended(tmp_path):
    s = CallStore(tmp_path / "c.sqlite", clock=lambda: NOW)
    try:
        r = Reports(s, timezone="Europe/Warsaw", clock=lambda: NOW)
        cid = inbound(s, T(0, 9, 10), "+48600000001", "600", wait=12, answered_by="201", talk=100)
        s.flush()
        assert r.queue_kpis(T(0, 0, 0), T(1, 0, 0))[0].aht_s == 100.0
        s.update_call(cid, wrapup_s=20.0)
        s.flush()
        assert r.queue_kpis(T(0, 0, 0), T(1, 0, 0))[0].aht_s == 120.0
        s.end_call(cid, ended_at=T(0, 9, 12, 12), status="answered", talk_s=120.0)
        s.flush()
        k = r.queue_kpis(T(0, 0, 0), T(1, 0, 0))[0]
        assert (k.offered, k.aht_s) == (1, 140.0)
        _assert_summaries_match_rebuild(s.path)
    finally:
        s.close()


def _assert_summaries_match_rebuild(path):
    conn = sqlite3.connect(path)
    tables = ("call_hours", "agent_days", "agent_ring_days", "agent_state_days")

    def dump():
        out = {}
        for t in tables:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
            nums = [c for c in cols if c not in ("hour", "day", "direction", "queue", "agent", "kind", "state", "reason")]
            keys = [c for c in cols if c not in nums]
            rows = conn.execute(f"SELECT * FROM {t}").fetchall()
            out[t] = {tuple(r[:len(keys)]): tuple(round(x, 6) for x in r[len(keys):]) for r in rows
                      if any(abs(x) > 1e-9 for x in r[len(keys):])}
        return out
    incremental = dump()
    conn.execute("BEGIN")
    rebuild_summaries(conn)
    rebuilt = dump()
    conn.execute("ROLLBACK")
    conn.close()
    assert incremental == rebuilt


def test_incremental_summaries_equal_a_rebuild(week):
    week[0].flush()
    _assert_summaries_match_rebuild(week[0].path)


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_reports", ROOT / "tools" / "bench" / "reports.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_summaries_equal_raw_on_generated_data_with_dst(tmp_path):
    """A generated store spanning the March DST change: every report is the same from the
    summaries and from raw rows, for whole and for odd periods."""
    bench = _load_bench()
    path = tmp_path / "gen.sqlite"
    bench.generate(path, 4000, seed=5, start=dt.date(2026, 3, 26))
    s = CallStore(path)
    try:
        lo, hi = s.query("SELECT min(started_at), max(started_at) FROM calls")[0]
        offsets = {dt.datetime.fromtimestamp(t, ZoneInfo(bench.TZ)).utcoffset() for t in (lo, hi)}
        assert len(offsets) == 2, "the data must cross the DST change"
        fast = Reports(s, timezone=bench.TZ, clock=lambda: hi + 10)
        slow = Reports(s, timezone=bench.TZ, clock=lambda: hi + 10, use_summaries=False)
        periods = [(lo, hi + 1), (lo + 12345.6, hi - 98765.4), (lo + 86400 * 3 + 1800, lo + 86400 * 9 + 7)]
        for since, until in periods:
            for name, kw in [("agent_performance", {}), ("weekday_hour", {}), ("calls_per_day", {}),
                             ("trend", {}), ("queue_kpis", {"thresholds": {"600": (30, 10)}}),
                             ("missed_calls", {}), ("wait_distribution", {})]:
                a = getattr(fast, name)(since, until, **kw)
                b = getattr(slow, name)(since, until, **kw)
                assert _rounded(a) == _rounded(b), (name, since, until)
        tz = ZoneInfo(bench.TZ)
        grid = [[0] * 24 for _ in range(7)]
        per_day: dict[str, int] = {}
        for (t,) in s.query("SELECT started_at FROM calls WHERE direction != 'internal' AND ended_at IS NOT NULL"):
            local = dt.datetime.fromtimestamp(t, tz)
            grid[local.weekday()][local.hour] += 1
            per_day[local.date().isoformat()] = per_day.get(local.date().isoformat(), 0) + 1
        assert fast.weekday_hour(lo, hi + 1).calls == grid
        assert {d.day: d.total for d in fast.calls_per_day(lo, hi + 1) if d.total} == per_day
    finally:
        s.close()


def _rounded(x):
    if dataclasses.is_dataclass(x):
        return _rounded(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    if isinstance(x, float):
        return round(x, 4)
    return x


def test_reports_survive_an_index_from_another_version(tmp_path):
    s = CallStore(tmp_path / "c.sqlite", clock=lambda: NOW)
    try:
        inbound(s, T(0, 9, 10), "+48600000001", "600", wait=12, answered_by="201", talk=100)
        s.flush()
        conn = sqlite3.connect(s.path)
        conn.execute("DROP INDEX calls_agent_in")
        conn.execute("CREATE INDEX calls_agent_in ON calls(answered_by) WHERE note != ''")
        conn.commit()
        conn.close()
        r = Reports(s, timezone="Europe/Warsaw", clock=lambda: NOW)
        p = r.agent_performance(T(0, 0, 0), T(1, 0, 0))
        assert [(x.agent, x.answered, x.unique_customers) for x in p] == [("201", 1, 1)]
    finally:
        s.close()
