"""The feature export writes one Parquet file per day and, run again, only the days dbt changed:
their union is always the table, whatever happened to it since the last export."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest

from shoprec.features.export import EMPTY, RECORD, _export, export_stats

TABLE = "features.feat_x"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    c.execute("CREATE SCHEMA features")
    c.execute(f"CREATE TABLE {TABLE} (user_id VARCHAR, feature_date DATE, seq VARCHAR[], "
              "n BIGINT, event_timestamp TIMESTAMPTZ, dbt_invocation_id VARCHAR, "
              "built_at TIMESTAMPTZ)")
    yield c
    c.close()


def _build(con, days: range, users: int, built: int, *, replace: bool = True) -> None:
    """dbt's delete+insert of (user, day) rows, stamped with build number `built`."""
    for d in days:
        day = T0 + dt.timedelta(days=d)
        if replace:
            con.execute(f"DELETE FROM {TABLE} WHERE feature_date = ?", [day.date()])
        con.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, 'inv', ?)",
                        [[f"u{u}", day.date(), [f"i{u}", f"i{d}"], u * d + built, day,
                          T0 + dt.timedelta(seconds=built)] for u in range(users)])


def _files(folder) -> dict[str, int]:
    """Day file → inode: a file written again gets a new one."""
    return {f.name: f.stat().st_ino for f in folder.glob("*.parquet")}


def _same_rows(con, folder) -> None:
    want = con.execute(f"SELECT * EXCLUDE (dbt_invocation_id, built_at) FROM {TABLE} "
                       "ORDER BY ALL").fetchall()
    got = con.execute(f"SELECT * FROM read_parquet('{folder}/*.parquet') ORDER BY ALL").fetchall()
    assert got == want


def test_only_changed_days_are_written_again(con, tmp_path):
    folder = tmp_path / "x"
    _build(con, range(5), users=4, built=1)
    first = _export(con, TABLE, folder)
    assert (first.rows, first.days, first.written) == (20, 5, 5)
    assert sorted(_files(folder)) == [f"2026-01-0{d}.parquet" for d in range(1, 6)]
    _same_rows(con, folder)
    before = _files(folder)

    again = _export(con, TABLE, folder)  # nothing changed: nothing written
    assert again.written == 0 and _files(folder) == before

    _build(con, range(4, 6), users=4, built=2)  # dbt rewrites the last day, adds one more
    inc = _export(con, TABLE, folder)
    assert (inc.rows, inc.days, inc.written) == (24, 6, 2)
    after = _files(folder)
    assert {n for n in after if after[n] != before.get(n)} == {"2026-01-05.parquet",
                                                               "2026-01-06.parquet"}
    _same_rows(con, folder)

    con.execute(f"DELETE FROM {TABLE} WHERE feature_date = DATE '2026-01-02' AND user_id = 'u0'")
    con.execute(f"DELETE FROM {TABLE} WHERE feature_date = DATE '2026-01-03'")  # a retraction
    gone = _export(con, TABLE, folder)
    assert (gone.rows, gone.days, gone.written) == (19, 5, 1)  # day 2 lost a row: fewer rows
    assert "2026-01-03.parquet" not in _files(folder)
    _same_rows(con, folder)


def test_a_killed_export_or_a_changed_table_is_written_again(con, tmp_path):
    folder = tmp_path / "x"
    _build(con, range(3), users=2, built=1)
    _export(con, TABLE, folder)
    (folder / "2026-01-02.parquet").unlink()  # killed before this day was renamed into place
    assert _export(con, TABLE, folder).written == 1
    (folder / RECORD).write_text("{not json")  # killed while the record was written
    assert _export(con, TABLE, folder).written == 3
    _same_rows(con, folder)

    con.execute(f"ALTER TABLE {TABLE} ADD COLUMN extra DOUBLE DEFAULT 1.5")  # a new feature
    assert _export(con, TABLE, folder).written == 3
    assert json.loads((folder / RECORD).read_text())["columns"][-1] == ["extra", "DOUBLE"]
    _same_rows(con, folder)


def test_an_empty_table_still_has_its_columns(con, tmp_path):
    folder = tmp_path / "x"
    _build(con, range(2), users=2, built=1)
    _export(con, TABLE, folder)
    con.execute(f"DELETE FROM {TABLE}")
    empty = _export(con, TABLE, folder)
    assert (empty.rows, empty.days) == (0, 0)
    assert list(_files(folder)) == [f"{EMPTY}.parquet"]
    stats = export_stats(folder / "*.parquet")
    assert (stats.rows, stats.lo, stats.hi) == (0, None, None)
    cols = [c for (c, *_) in con.execute(f"DESCRIBE SELECT * FROM '{folder}/*.parquet'").fetchall()]
    assert cols == ["user_id", "feature_date", "seq", "n", "event_timestamp"]

    _build(con, range(1), users=1, built=2)
    assert _export(con, TABLE, folder).written == 1
    assert list(_files(folder)) == ["2026-01-01.parquet"]  # the empty file is gone
    _same_rows(con, folder)
    assert export_stats(tmp_path / "never" / "*.parquet") is None
