"""The analysts' snapshot is brought up to date, not copied: what changed is rewritten, what an
open reader holds is left alone, a failed sync leaves the file as it was, and the result always
holds exactly what the warehouse holds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from shoprec.config import Settings
from shoprec.simulate import simulate
from shoprec.transform import snapshot_sync, transform
from shoprec.transform.publish import KEEP, publish, snapshots
from shoprec.validation import validate

KEYS = {("main", "pairs"): ["user_id", "item_id"]}


def _content(path: Path | str, writable: bool = False) -> dict:
    """Every table's count and row-hash sum, every view's SQL and every comment. `writable`:
    the warehouse, which dbt keeps open in this process (a read-only handle would conflict)."""
    with duckdb.connect(str(path), read_only=not writable) as con:
        db = con.execute("select current_database()").fetchone()[0]
        out = {}
        for (schema, table), _ in snapshot_sync.tables(con, db).items():
            out[(schema, table)] = con.execute(
                f'select count(*), sum(hash(t)) from "{schema}"."{table}" t').fetchone()
        out["views"] = sorted(con.execute(
            "select schema_name, view_name, sql from duckdb_views() where not internal "
            "and database_name = ?", [db]).fetchall())
        out["comments"] = sorted(con.execute(
            "select schema_name, table_name, comment from duckdb_tables() where comment is not "
            "null and database_name = ?", [db]).fetchall())
        return out


def _analysts(s: Settings) -> dict:
    """`_content` of the warehouse as the analysts' snapshot must hold it: each table of the
    analysts' schemas through the pseudonyms, no views."""
    from shoprec.privacy.pseudonym import analysts_key, select
    from shoprec.transform.publish import ANALYSTS_SCHEMAS

    k = analysts_key(s)
    with duckdb.connect(str(s.warehouse())) as con:
        db = con.execute("select current_database()").fetchone()[0]
        out = {}
        copied = {t: c for t, c in snapshot_sync.tables(con, db).items()
                  if t[0] in ANALYSTS_SCHEMAS}
        for (schema, table), cols in copied.items():
            rows = select(k, f'"{schema}"."{table}"', [c for c, _ in cols], "TRUE")
            out[(schema, table)] = con.execute(
                f"select count(*), sum(hash(t)) from ({rows}) t").fetchone()
        out["views"] = []
        out["comments"] = sorted(c for c in con.execute(
            "select schema_name, table_name, comment from duckdb_tables() where comment is not "
            "null and database_name = ?", [db]).fetchall() if (c[0], c[1]) in copied)
        return out


def _make_warehouse(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create table pairs (user_id varchar, item_id varchar, weight int, "
                    "last_interaction_at timestamptz, built_at timestamptz)")
        con.execute("insert into pairs select 'u' || (i % 50), 'i' || (i // 50), i, "
                    "timestamptz '2026-01-01' + to_days(CAST(i % 9 AS INTEGER)), "
                    "timestamptz '2026-02-01 10:00' from range(1000) r(i)")
        con.execute("create table events (event_id varchar, event_date date, n int)")
        con.execute("insert into events select 'e' || i, date '2026-01-01' + "
                    "CAST(i % 7 AS INTEGER), CAST(i AS INTEGER) from range(700) r(i)")
        con.execute("create view busy as select user_id, sum(weight) w from pairs group by 1")
        con.execute("comment on table events is 'one row per event'")


def _sync(snap: Path, warehouse: Path) -> snapshot_sync.SyncReport:
    with duckdb.connect(str(warehouse)) as con:
        source = con.execute("select current_database()").fetchone()[0]
        con.execute(f"attach '{snap}' as s")
        try:
            return snapshot_sync.sync(con, "s", source, KEYS)
        finally:
            con.execute(f'use "{source}"')
            con.execute("detach s")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A warehouse and a snapshot published from it (copied once, fingerprinted)."""
    warehouse, snap = tmp_path / "w.duckdb", tmp_path / "s.duckdb"
    _make_warehouse(warehouse)
    snap.write_bytes(warehouse.read_bytes())
    with duckdb.connect(str(snap)) as con:
        snapshot_sync.record_all(con, "s", KEYS)
    return warehouse, snap


def test_changed_rows_and_parts_are_rewritten_and_nothing_else(pair):
    warehouse, snap = pair
    with duckdb.connect(str(warehouse)) as con:
        # a delete+insert increment: 3 pairs recomputed (new stamp), one new pair
        con.execute("delete from pairs where user_id = 'u1' and item_id in ('i0', 'i1', 'i2')")
        con.execute("insert into pairs values ('u1', 'i0', 7, '2026-01-09', '2026-02-02'), "
                    "('u1', 'i1', 8, '2026-01-09', '2026-02-02'), "
                    "('u1', 'i2', 9, '2026-01-09', '2026-02-02'), "
                    "('u9', 'new', 1, '2026-01-09', '2026-02-02')")
        con.execute("insert into events values ('x1', date '2026-01-08', 1)")  # a new day
        con.execute("update events set n = -1 where event_id = 'e3'")  # a changed row
        con.execute("create or replace view busy as select user_id from pairs")
    report = _sync(snap, warehouse)
    assert _content(snap) == _content(warehouse)
    assert report.replaced == []
    # pairs: the 4 rows stamped later; events: the new day and the day of e3 (100 rows)
    assert report.rows == 4 + 1 + 100
    assert _sync(snap, warehouse).rows == 0  # nothing changed since: nothing rewritten


def test_a_row_removed_without_replacement_rewrites_its_table(pair):
    warehouse, snap = pair
    with duckdb.connect(str(warehouse)) as con:
        con.execute("delete from pairs where user_id = 'u2' and item_id = 'i0'")
        con.execute("insert into pairs values ('u3', 'other', 1, '2026-01-02', '2026-02-02')")
        con.execute("delete from events where event_id = 'e5'")  # only a lower count tells
    report = _sync(snap, warehouse)
    assert report.replaced == ["main.pairs"]
    assert _content(snap) == _content(warehouse)


def test_new_dropped_and_reshaped_tables(pair):
    warehouse, snap = pair
    with duckdb.connect(str(warehouse)) as con:
        con.execute("alter table events add column extra int")
        con.execute("create schema marts")
        con.execute("create table marts.dim as select 1 as id")
        con.execute("drop view busy")
        con.execute("drop table pairs")
    report = _sync(snap, warehouse)
    assert sorted(report.replaced) == ["main.events", "marts.dim"]
    assert _content(snap) == _content(warehouse)


def test_a_failed_sync_leaves_the_snapshot_as_it_was(pair, monkeypatch):
    warehouse, snap = pair
    before = _content(snap)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into events values ('x1', date '2026-01-08', 1)")
        con.execute("insert into pairs values ('u9', 'new', 1, '2026-01-09', '2026-02-02')")
    real = snapshot_sync._views

    def fail(*args):  # after every table was rewritten
        raise duckdb.IOException("disk full")

    monkeypatch.setattr(snapshot_sync, "_views", fail)
    with pytest.raises(duckdb.IOException):
        _sync(snap, warehouse)
    assert _content(snap) == before
    monkeypatch.setattr(snapshot_sync, "_views", real)
    _sync(snap, warehouse)
    assert _content(snap) == _content(warehouse)


KILLED = """
import sys, time
import duckdb
from shoprec.transform import snapshot_sync
from tests.test_snapshot_sync import KEYS

def stall(*args):  # every table rewritten, the transaction still open
    print("rewritten", flush=True)
    time.sleep(60)

snapshot_sync._views = stall
con = duckdb.connect(sys.argv[1])
con.execute(f"attach '{sys.argv[2]}' as s")
snapshot_sync.sync(con, "s", "w", KEYS)
"""


def test_a_sync_killed_halfway_leaves_the_snapshot_as_it_was(pair):
    warehouse, snap = pair
    before = _content(snap)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into events select 'n' || i, date '2026-01-09', 1 from range(50000) "
                    "r(i)")
        con.execute("delete from pairs where user_id = 'u4'")
        con.execute("insert into pairs values ('u9', 'new', 1, '2026-01-09', '2026-02-02')")
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(warehouse), str(snap)],
                             stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    try:
        assert child.stdout.readline().strip() == "rewritten"
    finally:
        child.kill()  # SIGKILL: no rollback, no cleanup
        child.wait()
    assert _content(snap) == before
    assert _sync(snap, warehouse).replaced == ["main.pairs"]  # a re-run finishes the job
    assert _content(snap) == _content(warehouse)


def _land(s: Settings, days: int) -> None:
    simulate("tiny", seed=5, days=days, settings=s)
    assert all(r.ok for r in validate(settings=s, workers=1))


def test_each_publish_brings_the_oldest_free_snapshot_up_to_date(tmp_path):
    """Real dbt builds day by day: after the first publishes the snapshot is synced, never
    copied, and equals the warehouse; a snapshot an analyst's process holds open is left alone
    and still reads what it read."""
    s = Settings(home=tmp_path)
    hows = []
    for days in (4, 5, 6):
        _land(s, days)
        hows.append(transform(settings=s).published)
        assert _content(s.internal_snapshot()) == _content(s.warehouse(), writable=True)
        assert _content(s.analytics_snapshot()) == _analysts(s)
        if days == 4:  # the spare: the published snapshot's twin, stamped just before it
            for folder, link in ((None, s.internal_snapshot()),
                                 (s.analysts_snapshots(), s.analytics_snapshot())):
                spare, current = snapshots(s, "shop", folder)
                assert current == link.resolve() and _content(spare) == _content(current)
    assert hows[0].startswith("internal: copied (first publish); analysts: written in full")
    assert "; spare for the next publish copied in " in hows[0]
    for how in hows[1:]:  # the second syncs the spare, the third the first
        assert how.startswith("internal: synced ") and "analysts: synced " in how
        assert "spare" not in how
    assert len(snapshots(s, "shop")) == 2  # the one published and the one before it
    assert len(snapshots(s, "shop", s.analysts_snapshots())) == 2

    held = snapshots(s, "shop")[0]  # the next one to sync, held by another process
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1], "
         "read_only=True); n = c.execute('select count(*) from marts.fct_events').fetchone(); "
         "print(n[0], flush=True); sys.stdin.read(); "
         "print(c.execute('select count(*) from marts.fct_events').fetchone()[0], flush=True)",
         str(held)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        seen = holder.stdout.readline().strip()
        _land(s, 7)
        transform(settings=s, publish=False)
        pub = publish(s, "shop")
        assert pub.how.startswith("internal: copied (no older snapshot free to update)")
        assert held.exists()
        assert _content(s.internal_snapshot()) == _content(s.warehouse(), writable=True)
        holder.stdin.close()
        assert holder.stdout.readline().strip() == seen  # the analyst's snapshot never moved
    finally:
        holder.kill()
        holder.wait()
    assert os.readlink(s.internal_snapshot()).endswith(pub.internal.name)
    _land(s, 8)
    assert transform(settings=s).published.startswith(f"internal: synced {held.name}")
    assert len(snapshots(s, "shop")) == KEEP
    assert _content(s.internal_snapshot()) == _content(s.warehouse(), writable=True)
    assert _content(s.analytics_snapshot()) == _analysts(s)
    rebuilt = transform(settings=s, full_refresh=True).published
    assert rebuilt.startswith("internal: copied (full rebuild)")  # all rows new: a copy is cheaper
    assert _content(s.internal_snapshot()) == _content(s.warehouse(), writable=True)
    assert _content(s.analytics_snapshot()) == _analysts(s)
