"""POST /events' intake: every contract rule refuses a call whole with a one-line error naming the
event, field and rule; an event id is accepted once across calls, intakes, processes and restarts;
accepted events survive a SIGKILL and land in the lake exactly once, as batches the validation
gate passes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from serving.events import EventError, EventIntake, batch_name, check_id
from shoprec.config import ServingSettings, Settings, ValidationSettings
from shoprec.contract import EVENTS, MAX_ID_LENGTH
from shoprec.lake import list_batches

ROOT = Path(__file__).resolve().parents[1]
DS = "shop"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def ev(i: int | str, **kw) -> dict:
    """A valid event; `kw` overrides (None removes the field)."""
    secs = i if isinstance(i, int) else 0  # distinct times: the gate's duplicate rule
    e = {"event_id": f"e{i}", "user_id": "u1", "item_id": f"i{i}", "event_type": "view",
         "event_timestamp": (NOW - dt.timedelta(minutes=5, seconds=secs)).isoformat()}
    e.update(kw)
    return {k: v for k, v in e.items() if v is not None}


def make(home: Path, background: bool = False, **serving) -> EventIntake:
    s = Settings(home=home, serving=ServingSettings(**{"flush_events": 1000,
                                                       "flush_seconds": 3600, **serving}))
    return EventIntake(s, DS, background=background)


@pytest.fixture
def intake(tmp_path):
    it = make(tmp_path)
    yield it
    it.close()


def landed_events(home: Path) -> pa.Table:
    s = Settings(home=home)
    files = [b / "events.parquet" for z in ("landing", "validated", "quarantine")
             for b in list_batches(z, dataset=DS, settings=s)]
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else EVENTS.empty_table()


def refused(it: EventIntake, payload) -> EventError:
    before = it.spooled
    with pytest.raises(EventError) as err:
        it.accept(payload)
    assert it.spooled == before  # all or nothing
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return err.value


# ------------------------------------------------------------------------------------ the rules

def test_a_good_event_is_normalized(intake):
    got = intake.accept(ev(1, event_timestamp="2026-11-29T10:00:00.1234567+02:00",
                           user_id=42, session_id="s-1", price=9, quantity=2.0))
    (e,) = got.events
    assert got.accepted == 1 and got.duplicates == 0
    assert e.user_id == "42" and e.price == 9.0 and e.quantity == 2 and e.session_id == "s-1"
    assert e.event_timestamp == dt.datetime(2026, 11, 29, 8, 0, 0, 123456, tzinfo=dt.UTC)
    assert e.timestamp is e.event_timestamp and e.event_timestamp.tzinfo == dt.UTC
    (batch,) = intake.flush(force=True)
    (row,) = pq.read_table(batch.path / "events.parquet").to_pylist()
    assert row == {"event_id": "e1", "user_id": "42", "item_id": "i1", "event_type": "view",
                   "event_timestamp": e.event_timestamp, "session_id": "s-1", "price": 9.0,
                   "quantity": 2, "event_seq": 1}


@pytest.mark.parametrize("value,unit", [(1_790_000_000, "s"), (1_790_000_000_000, "ms"),
                                        (1_790_000_000_000_000, "us"),
                                        (1_790_000_000_000_000_000, "ns"),
                                        (1_790_000_000.5, "s")])
def test_epoch_numbers_are_read_in_the_unit_their_magnitude_gives(intake, value, unit):
    (e,) = intake.accept(ev(1, event_timestamp=value)).events
    extra = dt.timedelta(seconds=0.5 if isinstance(value, float) else 0)
    assert e.event_timestamp == dt.datetime(2026, 9, 21, 14, 13, 20, tzinfo=dt.UTC) + extra
    assert e.timestamp_us == (1_790_000_000_000_000 + extra // dt.timedelta(microseconds=1))


@pytest.mark.parametrize("change,field,rule", [
    ({"event_type": "like"}, "event_type", "not an event type of the contract"),
    ({"event_type": "View"}, "event_type", "not an event type"),
    ({"item_id": None}, "item_id", "missing: required"),
    ({"event_timestamp": None}, "event_timestamp", "missing: required"),
    ({"user_id": "x" * (MAX_ID_LENGTH + 1)}, "user_id", "too long: 257 characters"),
    ({"event_id": ""}, "event_id", "empty"),
    ({"user_id": "a\nb"}, "user_id", "'\\n' (U+000A) at 1 is not allowed"),
    ({"item_id": "a\x00b"}, "item_id", "U+0000"),
    ({"item_id": "a\u200bb"}, "item_id", "U+200B"),  # zero-width space: invisible in any UI
    ({"user_id": "\ud800"}, "user_id", "U+D800"),  # a lone surrogate cannot be UTF-8
    ({"session_id": " s1"}, "session_id", "leading or trailing spaces"),
    ({"user_id": 4.0}, "user_id", "must be a string, got float"),
    ({"user_id": True}, "user_id", "must be a string, got bool"),
    ({"event_timestamp": "2026-11-29T10:00:00"}, "event_timestamp", "has no timezone"),
    ({"event_timestamp": "2026-11-29"}, "event_timestamp", "has no timezone"),
    ({"event_timestamp": "yesterday"}, "event_timestamp", "not an ISO-8601 timestamp"),
    ({"event_timestamp": 42}, "event_timestamp", "not an epoch s/ms/us/ns date in 1990..2100"),
    ({"event_timestamp": True}, "event_timestamp", "got bool"),
    ({"event_timestamp": "1980-01-01T00:00:00Z"}, "event_timestamp",
     "before 1990-01-01T00:00:00+00:00 (validation.min_timestamp)"),
    ({"event_timestamp": (NOW + dt.timedelta(hours=1)).isoformat()}, "event_timestamp",
     "in the future"),
    ({"price": -1}, "price", "outside 0..1e+06 (validation.price_ceiling)"),
    ({"price": "9.99"}, "price", "must be a number, got str"),
    ({"price": float("nan")}, "price", "not a finite number"),
    ({"quantity": 0}, "quantity", "outside 1..10000"),
    ({"quantity": 1.5}, "quantity", "whole number"),
    ({"quantity": 2**31}, "quantity", "int32"),
    ({"coupon": "X"}, "coupon", "unknown field"),
    ({"event_seq": 3}, "event_seq", "the API numbers events itself"),
])
def test_every_rule_refuses_the_whole_call_naming_event_field_and_rule(intake, change, field,
                                                                        rule):
    err = refused(intake, [ev(0), ev(1, **change), ev(2)])
    assert (err.position, err.field) == (1, field)
    assert str(err).startswith(f"events[1].{field}: ") and rule in str(err), str(err)
    # nothing of the call was kept: the good events are new to a corrected call
    assert intake.accept([ev(0), ev(2)]).accepted == 2


def test_a_missing_field_is_told_from_a_null_one(intake):
    e = ev(1)
    del e["user_id"]
    assert "missing: required" in str(refused(intake, e))
    assert "null: required" in str(refused(intake, {**ev(1), "user_id": None}))


def test_ids_at_the_limit_any_script_and_integers_are_accepted(intake):
    long_id = "é" * MAX_ID_LENGTH
    got = intake.accept([ev(1, user_id=long_id), ev(2, item_id="Köln 北京 #7", user_id=7)])
    assert [e.user_id for e in got.events] == [long_id, "7"]
    assert got.events[1].item_id == "Köln 北京 #7"
    assert check_id(12, "user_id") == "12"
    with pytest.raises(ValueError, match="^user_id: too long"):
        check_id("u" * 300, "user_id")


def test_the_call_itself_is_checked(tmp_path):
    it = make(tmp_path, max_batch=3)
    try:
        err = refused(it, [ev(i) for i in range(4)])
        assert err.position is None
        assert str(err) == ("events: 4 events in one call: at most 3 (serving.max_batch); "
                            "nothing was accepted")
        assert it.accept([ev(i) for i in range(3)]).accepted == 3
        assert "no events" in str(refused(it, []))
        assert "got str" in str(refused(it, "e1"))
        assert str(refused(it, [ev(9), 7])).startswith("events[1]: an event must be an object")
    finally:
        it.close()


def test_the_profile_decides_the_switchable_ranges(tmp_path):
    s = Settings(home=tmp_path, validation=ValidationSettings(skip_rules=["time_range"]))
    s.validation_profile(DS).parent.mkdir(parents=True)
    s.validation_profile(DS).write_text("price_ceiling = 50.0\n")
    it = EventIntake(s, DS, background=False)
    try:
        assert it.accept(ev(1, event_timestamp="1975-05-01T00:00:00Z")).accepted == 1
        assert "outside 0..50" in str(refused(it, ev(2, price=60)))
    finally:
        it.close()


# ------------------------------------------------------------------------------ idempotency

def test_duplicates_within_a_call_and_across_calls(intake):
    first = intake.accept([ev(1), ev(2), ev(1, item_id="other")])
    assert [e.event_id for e in first.events] == ["e1", "e2"]
    assert (first.duplicates, first.duplicate_ids) == (1, ("e1",))
    again = intake.accept([ev(2, event_type="purchase"), ev(3)])
    assert [e.event_id for e in again.events] == ["e3"] and again.duplicates == 1
    intake.flush(force=True)
    assert intake.accept(ev(1)).duplicates == 1  # after landing too
    t = landed_events(intake.settings.home)
    assert sorted(t["event_id"].to_pylist()) == ["e1", "e2", "e3"]
    assert t.filter(pc.equal(t["event_id"], "e1"))["item_id"].to_pylist() == ["i1"]


def test_restart_keeps_the_seen_set(tmp_path):
    it = make(tmp_path)
    it.accept([ev(1), ev(2)])
    it.close()
    it = make(tmp_path)
    try:
        got = it.accept([ev(1), ev(2), ev(3)])
        assert (got.accepted, got.duplicates) == (1, 2)
    finally:
        it.close()


def test_two_intakes_on_one_home_accept_an_id_once(tmp_path):
    a, b = make(tmp_path), make(tmp_path)  # what two uvicorn workers hold
    try:
        assert a.accept([ev(1), ev(2)]).accepted == 2
        got = b.accept([ev(2), ev(3)])
        assert [e.event_id for e in got.events] == ["e3"] and got.duplicates == 1
        a.flush(force=True)
        b.flush(force=True)
    finally:
        a.close()
        b.close()
    assert sorted(landed_events(tmp_path)["event_id"].to_pylist()) == ["e1", "e2", "e3"]


def _script(body: str) -> str:
    return textwrap.dedent(f"""
        import sys, json, time, datetime as dt
        from shoprec.config import ServingSettings, Settings
        from serving.events import EventIntake
        s = Settings(home=sys.argv[1], serving=ServingSettings(flush_events=10_000,
                                                               flush_seconds=3600))
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        def ev(i):
            return {{"event_id": f"e{{i}}", "user_id": f"u{{i % 5}}", "item_id": f"i{{i}}",
                     "event_type": "view", "event_timestamp": (now - dt.timedelta(
                         seconds=i)).isoformat()}}
        it = EventIntake(s, "{DS}", background=False)
    """) + textwrap.dedent(body)


def _spawn(home: Path, body: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", _script(body), str(home)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_accepting_the_same_ids_at_once_accept_each_once(tmp_path):
    make(tmp_path).close()  # the spool exists: the workers race on events, not on its creation
    body = """
        n = 0
        for start in range(0, 200, 20):
            n += it.accept([ev(i) for i in range(start, start + 20)]).accepted
        print(n)
        it.close()
    """
    procs = [_spawn(tmp_path, body) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert sum(int(o[0].split()[-1]) for o in outs) == 200
    ids = landed_events(tmp_path)["event_id"].to_pylist()
    assert len(ids) == 200 and len(set(ids)) == 200


# ------------------------------------------------------------------------------- durability

def test_a_spool_left_by_a_sigkill_lands_on_the_next_start(tmp_path):
    proc = _spawn(tmp_path, """
        got = it.accept([ev(i) for i in range(7)])
        print("accepted", got.accepted, flush=True)
        time.sleep(600)
    """)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "accepted 7", proc.stderr.read() if proc.poll() else line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert landed_events(tmp_path).num_rows == 0  # nothing flushed before the kill
    it = make(tmp_path)  # the start lands the spool
    try:
        t = landed_events(tmp_path)
        assert sorted(t["event_id"].to_pylist()) == sorted(f"e{i}" for i in range(7))
        assert it.spooled == 0
        assert it.accept([ev(i) for i in range(7)]).duplicates == 7
    finally:
        it.close()
    assert landed_events(tmp_path).num_rows == 7


def test_a_crash_between_claim_and_landing_loses_nothing(tmp_path, monkeypatch):
    import shoprec.lifecycle

    it = make(tmp_path)
    it.accept([ev(i) for i in range(5)])

    def crash(*a, **kw):
        raise OSError("disk gone")

    monkeypatch.setattr(shoprec.lifecycle, "land_tables", crash)
    with pytest.raises(OSError):
        it.flush(force=True)
    assert landed_events(tmp_path).num_rows == 0 and it.spooled == 5
    restarted = make(tmp_path)  # the lake still refuses: the service starts all the same
    assert restarted.spooled == 5 and landed_events(tmp_path).num_rows == 0
    monkeypatch.undo()
    (landed,) = restarted.flush()  # a claimed batch is due at once
    assert (landed.events, landed.outcome) == (5, "landed")
    restarted.close()
    assert landed_events(tmp_path).num_rows == 5


def test_a_crash_after_landing_before_marking_lands_nothing_twice(tmp_path, monkeypatch):
    import shoprec.lifecycle

    real = shoprec.lifecycle.land_tables
    it = make(tmp_path)
    it.accept([ev(i) for i in range(5)])

    def land_then_crash(*a, **kw):
        real(*a, **kw)
        raise KeyboardInterrupt  # the process dies before the spool records the landing

    monkeypatch.setattr(shoprec.lifecycle, "land_tables", land_then_crash)
    with pytest.raises(KeyboardInterrupt):
        it.flush(force=True)
    monkeypatch.undo()
    (again,) = it.flush()  # what the next process's start does, too
    assert (again.events, again.outcome) == (5, "already in the lake")
    it.close()
    assert len(list_batches("landing", dataset=DS, settings=it.settings)) == 1
    assert landed_events(tmp_path).num_rows == 5


def test_flush_by_size_by_age_and_on_close(tmp_path):
    it = make(tmp_path, flush_events=3, flush_seconds=0.3)
    it.accept([ev(1), ev(2)])
    assert it.flush() == []  # 2 < 3 and young
    it.accept(ev(3))
    (by_size,) = it.flush()
    assert by_size.events == 3
    it.accept([ev(i) for i in range(4, 11)])  # 7: two full batches now, one left
    assert [b.events for b in it.flush()] == [3, 3]
    assert it.flush() == [] and it.spooled == 1
    time.sleep(0.35)
    assert [b.events for b in it.flush()] == [1]  # by age
    it.accept(ev(11))
    it.close()
    t = landed_events(tmp_path)
    assert sorted(t["event_id"].to_pylist()) == sorted(f"e{i}" for i in range(1, 12))
    # event_seq: the order of acceptance
    seq = dict(zip(t["event_id"].to_pylist(), t["event_seq"].to_pylist(), strict=True))
    assert [seq[f"e{i}"] for i in range(1, 12)] == sorted(seq.values())


def test_the_background_thread_lands_by_size_and_by_age(tmp_path):
    it = make(tmp_path, background=True, flush_events=4, flush_seconds=0.4)
    try:
        it.accept([ev(i) for i in range(4)])
        it.accept(ev(9))
        deadline = time.monotonic() + 10
        while it.spooled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert it.spooled == 0
        sizes = sorted(len(pq.read_table(b / "events.parquet"))
                       for b in list_batches("landing", dataset=DS, settings=it.settings))
        assert sizes == [1, 4]
    finally:
        it.close()
    with pytest.raises(RuntimeError, match="closed"):
        it.accept(ev(20))


def test_batch_ids_are_names_derived_from_content():
    a = batch_name(["e1", "e2"], 1_790_000_000.0)
    assert a == batch_name(["e1", "e2"], 1_790_000_000.0)
    assert a.startswith("api-20260921T141320Z-") and a != batch_name(["e1", "e3"], 1.79e9)


# ------------------------------------------------------------------- the lake and the gate agree

def test_flushed_batches_pass_the_gate_and_are_not_landed_twice(tmp_path):
    from shoprec.validation import validate

    it = make(tmp_path, flush_events=6)
    views = [ev(i, user_id=f"u{i % 3}", session_id=f"s{i % 3}", price=1.5 + i)
             for i in range(1, 9)]
    # the gate's funnel rule looks inside one batch: these purchases land with their views
    buys = [ev(f"p{i}", user_id=f"u{i % 3}", item_id=f"i{i}", session_id=f"s{i % 3}",
               event_type="purchase", quantity=1, price=1.5 + i,
               event_timestamp=(NOW - dt.timedelta(minutes=1)).isoformat())
            for i in (7, 8)]
    it.accept(views)
    it.accept([*buys, ev(1)])
    landed = it.flush(force=True)
    assert [b.events for b in landed] == [6, 4]
    assert it.flush(force=True) == []  # flushing again lands nothing
    results = validate(dataset=DS, settings=it.settings, workers=1)
    assert {r.batch_id: r.status for r in results} == {b.batch_id: "validated" for b in landed}, \
        [r.reason() for r in results]
    # a crash after landing, before the spool recorded it, while the gate moved the batch on
    db = sqlite3.connect(it.path)
    db.execute("UPDATE batches SET landed_at = NULL")
    db.commit()
    db.close()
    again = it.flush()
    assert [b.outcome for b in again] == ["already in the lake"] * 2
    it.close()
    assert list_batches("landing", dataset=DS, settings=it.settings) == []
    t = landed_events(tmp_path)
    assert t.num_rows == 10 and len(set(t["event_id"].to_pylist())) == 10
    assert t.schema.equals(EVENTS)
