"""CallStore: writes, missed-call lifecycle, agent states, integrity recovery, registrations, bans."""
import os
import sqlite3
import threading

import pytest

from firmware.store.calls import CallStore, CallStoreError, Registration, _connect, normalize_number

T0 = 1_780_000_000.0


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture(params=["thread", "process"])
def store(tmp_path, request):
    # the box writes from a process of its own; the thread is the fallback (and the tools')
    s = CallStore(tmp_path / "calls.sqlite", clock=Clock(), country_code="48", writer=request.param)
    assert s.writer == request.param
    yield s
    s.close()


def inbound(store, number, t, *, answered=None, status=None, queue="600", agent="201", end=None):
    cid = store.begin_call(direction="inbound", caller_number=number, started_at=t, queue=queue, trunk="gsm1")
    if answered is not None:
        store.update_call(cid, answered_at=t + answered, answered_by=agent)
    store.end_call(cid, ended_at=end if end is not None else t + 60, status=status,
                   hangup_side="caller")
    return cid


def outbound(store, number, t, *, answered=None, ext="202"):
    cid = store.begin_call(direction="outbound", callee_number=number, from_extension=ext, started_at=t)
    if answered is not None:
        store.update_call(cid, answered_at=t + answered)
    store.end_call(cid, ended_at=t + 90, status=None if answered is not None else "no_answer")
    return cid


def test_writes_are_queued_then_durable_after_flush(tmp_path):
    s = CallStore(tmp_path / "c.sqlite", commit_interval=30.0, max_batch=10_000)
    try:
        cid = s.begin_call(direction="internal", from_extension="201", to_extension="202", callee_number="202")
        assert s.get_call(cid) is None
        s.flush()
        c = s.get_call(cid)
        assert (c.direction, c.from_extension, c.status, c.external_number) == ("internal", "201", "in_progress", "")
        assert [x.id for x in s.calls_in_progress()] == [cid]
    finally:
        s.close()


def test_call_ids_are_unique_uuids_in_the_order_the_calls_began(store):
    # time-ordered (RFC 9562 version 7): new rows append to the id-keyed indexes instead of
    # landing anywhere in them, so writes do not slow down as the store grows
    import time
    import uuid
    ids = []
    for _ in range(3):
        ids += [store.begin_call(direction="internal") for _ in range(200)]
        time.sleep(0.002)
    parsed = [uuid.UUID(i) for i in ids]
    assert len(set(ids)) == len(ids) and {u.version for u in parsed} == {7}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}
    ms = [u.int >> 80 for u in parsed]
    assert ms == sorted(ms) and abs(ms[-1] / 1000 - time.time()) < 60
    store.flush()
    assert len(store.query("SELECT id FROM calls")) == len(ids)


def test_pragmas_wal_and_full_sync(store):
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    # both writers open their connection with _connect
    conn = store._backend.conn if store.writer == "thread" else _connect(store.path)
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_bad_writes_raise_at_once(store):
    with pytest.raises(CallStoreError, match="direction must be one of"):
        store.begin_call(direction="sideways")
    with pytest.raises(CallStoreError, match="unknown call field 'colour'"):
        store.update_call("x", colour="red")
    with pytest.raises(CallStoreError, match="status must be one of"):
        store.end_call("x", status="great")
    with pytest.raises(CallStoreError, match="wait_s must be a number"):
        store.update_call("x", wait_s="ten")
    with pytest.raises(CallStoreError, match="agent state must be one of"):
        store.agent_state("201", "sleeping")
    with pytest.raises(CallStoreError, match="leg role must be one of"):
        store.add_leg("x", kind="sip", role="boss")
    with pytest.raises(CallStoreError, match="not JSON-serialisable"):
        store.add_event("x", "route", data=object.__new__(type("X", (), {"__str__": None})))


def test_update_of_unknown_call_is_refused_without_losing_others(store):
    good = store.begin_call(direction="inbound", caller_number="600100200", started_at=T0)
    store.update_call("no-such-call", queue="600")
    store.end_call(good, ended_at=T0 + 10, status="abandoned")
    store.flush()
    assert store.get_call(good).status == "abandoned"


def test_call_with_legs_and_timeline(store):
    cid = store.begin_call(direction="inbound", caller_number="600 100-200", did="+48221234567", started_at=T0)
    leg = store.add_leg(cid, kind="gsm", endpoint="gsm1", role="caller", started_at=T0)
    store.add_event(cid, "ivr_choice", ts=T0 + 3, result="1", menu="500")
    store.add_event(cid, "queue_enter", ts=T0 + 4, queue="600", position=2)
    store.add_event(cid, "agent_ring", ts=T0 + 10, agent="201", queue="600", result="no_answer", seconds=15)
    store.add_event(cid, "agent_ring", ts=T0 + 30, agent="202", queue="600", result="answered", seconds=4)
    store.update_call(cid, answered_at=T0 + 34, answered_by="202", queue="600", ring_s=4.0, ivr_path="500:1")
    store.update_leg(cid, leg, answered_at=T0 + 34, ended_at=T0 + 94, cause="16", sip_code=None)
    with pytest.raises(CallStoreError, match="leg field ended_at must be a time"):
        store.update_leg(cid, leg, ended_at="later")
    store.end_call(cid, ended_at=T0 + 94, hangup_side="callee", hangup_cause=16, hold_s=10.0)
    store.flush()
    c = store.get_call(cid)
    assert c.external_number == "+48600100200"
    assert (c.status, c.wait_s, c.talk_s, c.hold_s, c.hangup_cause) == ("answered", 34.0, 60.0, 10.0, 16)
    assert [(e.type, e.agent, e.result, e.seconds) for e in c.events] == [
        ("ivr_choice", "", "1", None), ("queue_enter", "", "", None),
        ("agent_ring", "201", "no_answer", 15.0), ("agent_ring", "202", "answered", 4.0)]
    assert c.events[1].data == {"position": 2}
    assert [(x.kind, x.role, x.cause) for x in c.legs] == [("gsm", "caller", 16)]
    assert c.as_dict()["events"][0]["data"] == {"menu": "500"}


@pytest.mark.parametrize("raw,cc,prefix,want", [
    ("600 100 200", "48", "", "+48600100200"),
    ("0048 600-100-200", "48", "", "+48600100200"),
    ("+48600100200", "48", "", "+48600100200"),
    ("48600100200", "48", "", "+48600100200"),
    ("0888123456", "359", "0", "+359888123456"),
    ("89161234567", "7", "8", "+79161234567"),
    ("112", "48", "", "112"),
    ("anonymous", "48", "", "anonymous"),
    ("600100200", "", "", "600100200"),
])
def test_number_normalisation(raw, cc, prefix, want):
    assert normalize_number(raw, cc, prefix) == want


def test_missed_lifecycle_one_entry_per_caller_closed_by_inbound(store):
    a = inbound(store, "600100200", T0, status="abandoned")
    b = inbound(store, "+48 600 100 200", T0 + 600, status="no_answer")
    inbound(store, "600999999", T0 + 700, status="missed")
    store.flush()
    entries = store.missed_entries()
    assert [(e.number, e.count, e.first_missed_at, e.last_missed_at, e.call_ids) for e in entries] == [
        ("+48600100200", 2, T0, T0 + 600, (a, b)),
        ("+48600999999", 1, T0 + 700, T0 + 700, entries[1].call_ids)]
    c = inbound(store, "600100200", T0 + 1800, answered=12)
    store.flush()
    assert [e.number for e in store.missed_entries()] == ["+48600999999"]
    closed = store.missed_entries(open_only=False, number="600100200")[0]
    assert (closed.closed_at, closed.closed_by_call, closed.callback_s, closed.closed_direction) == (
        T0 + 1812, c, 1812.0, "inbound")


def test_missed_closed_by_outbound_callback_and_reopened_later(store):
    inbound(store, "600100200", T0, status="abandoned")
    outbound(store, "0048600100200", T0 + 300)
    store.flush()
    assert len(store.missed_entries()) == 1
    cb = outbound(store, "600100200", T0 + 900, answered=8)
    store.flush()
    assert store.missed_entries() == []
    e = store.missed_entries(open_only=False)[0]
    assert (e.closed_by_call, e.callback_s, e.closed_direction) == (cb, 908.0, "outbound")
    inbound(store, "600100200", T0 + 5000, status="busy")
    store.flush()
    again = store.missed_entries()
    assert [(x.count, x.first_missed_at) for x in again] == [(1, T0 + 5000)]


def test_answered_calls_rejected_and_internal_are_not_missed(store):
    inbound(store, "600100200", T0, answered=5)
    inbound(store, "600100201", T0, status="rejected")
    cid = store.begin_call(direction="internal", caller_number="201", callee_number="202", started_at=T0)
    store.end_call(cid, status="no_answer", ended_at=T0 + 20)
    store.flush()
    assert store.missed_entries() == []


def test_miss_that_ends_after_a_parallel_connected_call_is_closed_at_once(store):
    first = store.begin_call(direction="inbound", caller_number="600100200", started_at=T0)
    second = inbound(store, "600100200", T0 + 5, answered=10)
    store.end_call(first, ended_at=T0 + 40, status="abandoned")
    store.flush()
    assert store.missed_entries() == []
    e = store.missed_entries(open_only=False)[0]
    assert (e.closed_by_call, e.callback_s) == (second, 15.0)


def test_agent_states_periods(store):
    store.agent_state("201", "offline", at=T0)
    store.agent_state("201", "available", at=T0 + 10)
    store.agent_state("201", "available", at=T0 + 15)
    store.agent_state("201", "paused", "lunch", at=T0 + 100)
    store.agent_state("202", "dnd", at=T0 + 50)
    store.flush()
    hist = store.agent_history("201", T0, T0 + 1000)
    assert [(h.state, h.reason, h.started_at, h.ended_at) for h in hist] == [
        ("offline", "", T0, T0 + 10), ("available", "", T0 + 10, T0 + 100), ("paused", "lunch", T0 + 100, None)]
    cur = store.agent_current_states()
    assert {k: v.state for k, v in cur.items()} == {"201": "paused", "202": "dnd"}


def test_listeners_hear_commits(store):
    seen = []
    done = threading.Event()

    def cb(kind, key):
        seen.append((kind, key))
        done.set()
    unsubscribe = store.subscribe(cb)
    cid = store.begin_call(direction="inbound", caller_number="1", started_at=T0)
    store.agent_state("201", "available")
    store.flush()
    assert done.wait(5)
    assert ("call", cid) in seen and ("agent", "201") in seen
    unsubscribe()


def test_registrations_and_bans(store):
    store.save_registration(Registration("201", "sip:201@10.0.0.5:5060", source_ip="10.0.0.5", source_port=5060,
                                         expires_at=T0 + 60, user_agent="Yealink"))
    store.save_registration(Registration("202", "sip:202@10.0.0.6", expires_at=T0 - 1))
    store.save_ban("203.0.113.9", "auth failures", T0, T0 + 3600)
    store.save_ban("198.51.100.1", "scanner", T0 + 1, T0 + 7200)
    store.flush()
    assert [r.extension for r in store.registrations(now=T0)] == ["201"]
    assert store.registrations("201", now=T0)[0].user_agent == "Yealink"
    assert store.registrations("201", now=T0)[0].key == "sip:201@10.0.0.5:5060"
    store.expire_registrations(now=T0)
    store.delete_registration("201")
    store.delete_ban("203.0.113.9")
    store.flush()
    assert store.query("SELECT count(*) FROM registrations")[0][0] == 0
    assert store.load_bans() == [("198.51.100.1", "scanner", T0 + 1, T0 + 7200)]
    with pytest.raises(CallStoreError, match="needs an extension"):
        store.save_registration({"aor": "201"})


def test_registrar_bindings_survive_a_restart(tmp_path):
    """The SIP registrar persists its bindings through the call store (BindingStore protocol)."""
    from firmware.pbx.registrar import ContactRequest, Registrar
    path = tmp_path / "calls.sqlite"
    s = CallStore(path)
    reg = Registrar(store=s)
    r = reg.register("201", [ContactRequest("sip:201@192.0.2.7:5062;ob", instance="<urn:uuid:1>")], wildcard=False,
                     header_expires=600, call_id="abc", cseq=1, transport="udp", source_ip="198.51.100.4",
                     source_port=40000, user_agent="Yealink T46", now=T0)
    assert r.status == 200
    reg.register("201", [ContactRequest("sip:201@192.0.2.8")], wildcard=False, header_expires=300, call_id="x",
                 cseq=1, transport="tcp", source_ip="192.0.2.8", source_port=5060, user_agent="baresip", now=T0)
    s.close()
    s = CallStore(path)
    try:
        again = Registrar(store=s)
        assert again.load(T0 + 1) == 2
        got = {b.contact: b for b in again.lookup("201", T0 + 1)}
        b = got["sip:201@192.0.2.7:5062;ob"]
        assert (b.source_ip, b.source_port, b.nat, b.instance, b.user_agent, b.expires_at) == (
            "198.51.100.4", 40000, True, "<urn:uuid:1>", "Yealink T46", T0 + 600)
        assert again.load(T0 + 400) == 1
        s.flush()
        assert [x.contact for x in s.registrations(now=T0 + 400)] == ["sip:201@192.0.2.7:5062;ob"]
    finally:
        s.close()


def test_recordings_linked_and_marked_deleted(store):
    cid = inbound(store, "600100200", T0, answered=3)
    store.set_recording(cid, path="recordings/2026/06/01/a.wav", state="complete")
    store.set_note(cid, disposition="order", note="wants blue", tags=["vip", "callback"])
    store.flush()
    assert store.recordings() == [(cid, "recordings/2026/06/01/a.wav", T0)]
    store.recording_deleted("recordings/2026/06/01/a.wav", "disk full: oldest recordings deleted")
    store.flush()
    c = store.get_call(cid)
    assert (c.recording_state, c.recording_note, c.disposition, c.tags) == (
        "deleted", "disk full: oldest recordings deleted", "order", "vip,callback")
    assert store.recordings() == []


def _corrupt(path, offset, length):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(os.urandom(length))


def test_damaged_database_is_kept_aside_salvaged_and_replaced(tmp_path):
    db = tmp_path / "calls.sqlite"
    with CallStore(db) as s:
        for i in range(400):
            s.begin_call(direction="inbound", caller_number=f"6001{i:05d}", started_at=T0 + i, call_id=f"c{i:04d}",
                         note="x" * 200)
        s.flush()
    size = os.path.getsize(db)
    _corrupt(db, size // 2, 4096 * 3)
    s = CallStore(db)
    try:
        assert s.recovery is not None
        assert os.path.exists(s.recovery.damaged_path)
        assert 0 < s.recovery.salvaged.get("calls", 0) < 400
        n = s.query("SELECT count(*) FROM calls")[0][0]
        assert n == s.recovery.salvaged["calls"]
        cid = s.begin_call(direction="outbound", callee_number="1234567")
        s.flush()
        assert s.get_call(cid) is not None
        assert s.query("PRAGMA quick_check")[0][0] == "ok"
    finally:
        s.close()


def test_garbage_file_is_replaced_with_a_new_store(tmp_path):
    db = tmp_path / "calls.sqlite"
    db.write_bytes(b"this is not a database at all" * 100)
    with CallStore(db) as s:
        assert s.recovery is not None and "not a database" in s.recovery.reason
        assert s.recovery.salvaged == {}
        assert s.query("SELECT count(*) FROM calls")[0][0] == 0
    assert (tmp_path / os.path.basename(s.recovery.damaged_path)).read_bytes().startswith(b"this is not")


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "calls.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(CallStoreError, match="schema 99 is newer"):
        CallStore(db)


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_writes_never_wait_for_the_disk(tmp_path, writer):
    """While another connection holds the database's write lock, writes still return at once;
    they are committed when the lock goes, and flush() waits for that."""
    import time
    path = tmp_path / "c.sqlite"
    s = CallStore(path, commit_interval=0.01, writer=writer)
    try:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        t = time.perf_counter()
        ids = [s.begin_call(direction="inbound", caller_number=f"60010{i:04d}", started_at=T0 + i) for i in range(300)]
        assert time.perf_counter() - t < 1.0
        time.sleep(0.1)
        assert s.query("SELECT count(*) FROM calls")[0][0] == 0
        blocker.execute("ROLLBACK")
        blocker.close()
        s.flush()
        assert s.query("SELECT count(*) FROM calls")[0][0] == 300
        assert s.get_call(ids[-1]).caller_number == "600100299"
    finally:
        s.close()


def test_a_failing_write_is_dropped_without_blocking_the_others(store):
    before = store.begin_call(direction="inbound", caller_number="600100200", started_at=T0)
    store._submit("_w_sql", "UPDATE calls SET no_such_column = 1", ())
    after = store.begin_call(direction="inbound", caller_number="600100201", started_at=T0 + 1)
    store.flush()
    assert store.get_call(before) is not None and store.get_call(after) is not None
    assert store.last_error == ""


def test_a_killed_writer_process_is_started_again_and_loses_nothing(tmp_path):
    import signal
    import time
    s = CallStore(tmp_path / "c.sqlite", commit_interval=0.01, writer="process")
    try:
        first = s.begin_call(direction="inbound", caller_number="600100200", started_at=T0)
        s.flush()
        old = s._backend.proc
        old.send_signal(signal.SIGINT)  # a Ctrl-C reaches the whole process group: ignored
        second = s.begin_call(direction="inbound", caller_number="600100201", started_at=T0 + 1)
        s.flush()
        assert old.poll() is None
        old.kill()
        old.wait()
        third = s.begin_call(direction="inbound", caller_number="600100202", started_at=T0 + 2)
        with pytest.raises(CallStoreError, match="writer process stopped"):
            s.flush()
        deadline = time.monotonic() + 15
        while s.get_call(third) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        s.flush()
        assert [s.get_call(c).caller_number for c in (first, second, third)] == ["600100200", "600100201", "600100202"]
        assert s.last_error == "" and s._backend.proc.pid != old.pid
    finally:
        s.close()


def test_an_unknown_writer_is_refused_at_once(tmp_path):
    with pytest.raises(CallStoreError, match="writer must be 'thread' or 'process'"):
        CallStore(tmp_path / "c.sqlite", writer="fork")


def test_closing_the_store_ends_its_writer_process(tmp_path):
    s = CallStore(tmp_path / "c.sqlite", writer="process")
    proc = s._backend.proc
    cid = s.begin_call(direction="internal", from_extension="201", to_extension="202")
    s.close()
    assert proc.returncode == 0
    with CallStore(tmp_path / "c.sqlite") as again:
        assert again.get_call(cid).from_extension == "201"
