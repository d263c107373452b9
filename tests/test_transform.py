"""dbt on DuckDB against the real validated zone: builds, tests, increments, is idempotent, and
never lets an analyst block a run or see a half-built table."""

from __future__ import annotations

import datetime as dt
import threading
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoprec.config import Settings
from shoprec.contract import SCHEMAS
from shoprec.lake import list_batches, write_batch
from shoprec.simulate import simulate
from shoprec.transform import transform
from shoprec.transform.stubs import write_contract_stubs
from shoprec.validation import validate
from tests.conftest import BYOD_DAY, nullable

FEATURES = ("feat_user_daily", "feat_item_daily", "feat_user_recent_sequence",
            "feat_user_item_history")


def _land(s: Settings, days: int) -> None:
    simulate("tiny", seed=3, days=days, settings=s)
    assert all(r.ok for r in validate(settings=s, workers=1))


def _analytics(s: Settings) -> duckdb.DuckDBPyConnection:
    """Read the published internal snapshot (dbt keeps the warehouse open in-process)."""
    return duckdb.connect(str(s.internal_snapshot("shop")), read_only=True)


def _table(s: Settings, name: str, schema: str = "features", exclude: str | tuple = ()) -> list:
    exclude = (exclude,) if isinstance(exclude, str) else exclude
    with _analytics(s) as con:
        cols = [c for (c,) in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and "
            "table_name = ? order by ordinal_position", [schema, name]).fetchall()
            if c not in exclude]
        return con.execute(f"select {', '.join(cols)} from {schema}.{name} "
                           f"order by all").fetchall()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    s = Settings(home=tmp_path_factory.mktemp("dbt"))
    _land(s, days=8)
    first = transform(settings=s)
    return s, first


def test_dbt_build_passes_on_tiny_with_tests(built):
    s, report = built
    assert report.counts.get("error", 0) == 0 and report.counts.get("fail", 0) == 0
    assert report.counts["success"] == 16  # models
    assert report.counts["pass"] >= 35  # data tests + unit tests
    with _analytics(s) as con:
        n_events = con.execute("select count(*) from marts.fct_events").fetchone()[0]
        kpi = con.execute("select sum(purchases), sum(revenue) from marts.kpi_daily_category"
                          ).fetchone()
        orders = con.execute("select count(*), sum(revenue) from marts.fct_orders").fetchone()
        seq = con.execute("select max(sequence_length) from features.feat_user_recent_sequence"
                          ).fetchone()[0]
    assert n_events > 10_000
    assert kpi[0] == orders[0] and float(kpi[1]) == pytest.approx(orders[1])
    assert seq == 20


def test_feature_rows_are_stamped_after_their_day(built):
    s, _ = built
    with _analytics(s) as con:
        bad = con.execute("""select count(*) from features.feat_user_daily
            where event_timestamp <> cast(feature_date + 1 as timestamp) at time zone 'UTC'
               or last_event_at >= event_timestamp""").fetchone()[0]
    assert bad == 0


def test_second_build_on_same_input_changes_nothing(built):
    s, _ = built
    before = {t: _table(s, t) for t in FEATURES}
    transform(settings=s)
    assert {t: _table(s, t) for t in FEATURES} == before


def test_full_rebuild_gives_identical_tables(built):
    s, _ = built
    audit = ("dbt_invocation_id", "built_at")
    before = {t: _table(s, t, exclude=audit) for t in FEATURES}
    transform(settings=s, full_refresh=True)
    assert {t: _table(s, t, exclude=audit) for t in FEATURES} == before


@pytest.mark.slow
def test_a_new_day_rebuilds_only_its_partitions(tmp_path):
    s = Settings(home=tmp_path)
    _land(s, days=5)
    transform(settings=s)
    old = _table(s, "feat_user_daily", exclude="built_at")
    _land(s, days=6)  # one more day lands and is validated
    transform(settings=s)
    new = _table(s, "feat_user_daily", exclude="built_at")
    new_day = max(r[1] for r in new)
    # days before the new batch keep the rows the first run wrote (its invocation id included);
    # the new day (and the previous day's sessions that ran past midnight) are rewritten
    assert [r for r in new if r[1] < new_day] == [r for r in old if r[1] < new_day]
    rewritten = [r for r in new if r[1] >= new_day]
    assert len(rewritten) > 50
    assert {r[-1] for r in rewritten} != {old[0][-1]} and len({r[-1] for r in rewritten}) == 1
    assert len({r[-1] for r in new}) == 2


INCREMENTAL = (*FEATURES, "int_sessions_aggregated", "int_user_item_interactions_weighted")


def _schema(table: str) -> str:
    return "intermediate" if table.startswith("int_") else "features"


@pytest.mark.slow
def test_increments_build_what_a_full_rebuild_builds(tmp_path):
    """A batch 40 days after the first, built incrementally, then the same lake rebuilt from
    scratch: every incremental table holds the same rows. u1 comes back after 40 days, more than
    the 30 an increment reads: their days_since_prev_active is still 40."""
    s = Settings(home=tmp_path)
    start = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)

    def deliver(batch: str, rows: list[tuple[str, str, str, str, int]]) -> None:
        keys = ("event_id", "user_id", "item_id", "event_type", "event_timestamp")
        table = pa.Table.from_pylist(
            [dict(zip(keys, (*r[:4], start + dt.timedelta(days=r[4])), strict=True))
             for r in rows], schema=nullable("events"))
        write_batch(batch, {"events": table}, zone="validated", settings=s)

    deliver("2026-01-05", [("a1", "u1", "i1", "view", 0), ("a2", "u1", "i2", "purchase", 0),
                           ("a3", "u2", "i1", "view", 0), ("a4", "u2", "i1", "view", 30)])
    transform(settings=s)
    deliver("2026-02-14", [("b1", "u1", "i1", "view", 40), ("b2", "u2", "i2", "view", 39),
                           ("b3", "u2", "i1", "purchase", 40)])
    transform(settings=s)
    audit = ("dbt_invocation_id", "built_at")
    increment = {t: _table(s, t, _schema(t), exclude=audit) for t in INCREMENTAL}
    assert _rows(s.internal_snapshot(), "select user_id, days_since_prev_active from "
                 "features.feat_user_daily where feature_date = date '2026-02-14' "
                 "order by 1") == [("u1", 40), ("u2", 1)]
    transform(settings=s, full_refresh=True)
    assert {t: _table(s, t, _schema(t), exclude=audit) for t in INCREMENTAL} == increment


def test_analyst_connection_never_blocks_or_sees_half_a_build(built):
    s, _ = built
    link = s.analytics_snapshot("shop")
    reader = duckdb.connect(str(link), read_only=True)
    counts, errors = [], []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                counts.append(reader.execute(
                    "select (select count(*) from marts.fct_events), "
                    "(select sum(views) from marts.kpi_daily_category)").fetchone())
                time.sleep(0.01)
        except Exception as e:  # noqa: BLE001 - the test reports any reader failure
            errors.append(e)

    t = threading.Thread(target=read)
    t.start()
    try:
        report = transform(settings=s, full_refresh=True)  # the build runs while we read
    finally:
        done.set()
        t.join()
        reader.close()
    assert not errors
    assert len(counts) > 5 and len(set(counts)) == 1  # one consistent snapshot throughout
    assert report.snapshot == link
    with duckdb.connect(str(link), read_only=True) as fresh:
        assert fresh.execute("select count(*) from marts.fct_events").fetchone()[0] == \
            counts[0][0]


# ------------------------------------- bring your own data (issue 17): only what the contract needs

def _rows(path, sql: str) -> list:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def _epoch_us(hhmm: str) -> int:
    return int(dt.datetime.fromisoformat(f"{BYOD_DAY}T{hhmm}:00+00:00").timestamp() * 1_000_000)


def test_contract_stubs_are_written_once_and_are_no_batch(tmp_path):
    s = Settings(home=tmp_path)
    folder = write_contract_stubs(s, "shop")
    assert folder == s.contract_stubs("shop")
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{k}.parquet" for k in sorted(SCHEMAS)]
    for f in files:
        assert pq.read_metadata(f).num_rows == 0
        assert pq.read_schema(f).equals(SCHEMAS[f.stem], check_metadata=False)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    write_contract_stubs(s, "shop")  # identical: left alone
    assert {f: f.stat().st_mtime_ns for f in files} == stamps
    pq.write_table(nullable("users").empty_table(), folder / "users.parquet")  # a stale schema
    write_contract_stubs(s, "shop")
    assert pq.read_schema(folder / "users.parquet").equals(SCHEMAS["users"], check_metadata=False)
    assert list_batches("validated", dataset="shop", settings=s) == []


def test_own_data_without_optional_columns_builds_green(byod_shop):
    s = byod_shop.settings
    for report in byod_shop.reports:
        bad = {k: v for k, v in report.counts.items() if k not in {"success", "pass"}}
        assert bad == {}, report.summary()  # no error, no failure, not even a warning
    assert s.contract_stubs().is_dir()
    assert [d.name for d in list_batches("validated", settings=s)] == [BYOD_DAY, "catalogue"]
    # the events alone: no catalogue, no users
    only = byod_shop.events_only
    assert _rows(only, "select item_id, in_catalogue, category, price from marts.dim_items "
                       "order by 1") == [("i1", False, None, None), ("i2", False, None, None),
                                         ("i3", False, None, None)]
    assert _rows(only, "select user_id, in_users_export, signup_at from marts.dim_users "
                       "order by 1") == [("u1", False, None), ("u2", False, None),
                                         ("u3", False, None)]
    assert _rows(only, "select category, purchases, revenue, unpriced_purchases "
                       "from marts.kpi_daily_category") == [("unknown", 3, None, 3)]


def test_own_data_gets_sessions_from_the_gap(byod_shop):
    snap = byod_shop.settings.internal_snapshot()
    ten, eleven, noon = (f"~s{_epoch_us(t)}" for t in ("10:00", "11:00", "12:00"))
    assert _rows(snap, "select event_id, session_id, session_id_source from marts.fct_events "
                       "order by 1") == [
        ("e1", f"u1{ten}", "derived"), ("e2", f"u1{ten}", "derived"),  # 29 min apart
        ("e3", f"u1{eleven}", "derived"), ("e4", f"u1{eleven}", "derived"),  # after 31 min
        ("e5", f"u2{ten}", "derived"), ("e6", f"u2{ten}", "derived"),
        ("e7", f"u3{noon}", "derived")]
    assert _rows(snap, "select user_id, n_events, n_purchases, revenue, n_unpriced_purchases "
                       "from intermediate.int_sessions_aggregated order by started_at, 1") == [
        ("u1", 2, 1, None, 1), ("u2", 2, 1, None, 1), ("u1", 2, 1, None, 1),
        ("u3", 1, 0, 0, 0)]
    assert _rows(snap, "select user_id, lifetime_sessions, lifetime_purchases, lifetime_revenue, "
                       "lifetime_unpriced_purchases from marts.dim_users order by 1") == [
        ("u1", 2, 2, None, 2), ("u2", 1, 1, None, 1), ("u3", 1, 0, 0, 0)]


def test_own_data_keeps_unknown_revenue_and_attributes_unknown(byod_shop):
    snap = byod_shop.settings.internal_snapshot()
    assert _rows(snap, "select order_line_id, quantity, unit_price, revenue from marts.fct_orders "
                       "order by 1") == [("e2", 1, None, None), ("e4", 1, None, None),
                                         ("e6", 1, None, None)]
    assert _rows(snap, "select category, purchases, revenue, unpriced_purchases "
                       "from marts.kpi_daily_category") == [("unknown", 3, None, 3)]
    assert _rows(snap, "select item_id, in_catalogue, title, brand, price, created_at "
                       "from marts.dim_items order by 1") == [
        (i, True, None, None, None, None) for i in ("i1", "i2", "i3")]
    assert _rows(snap, "select item_id, price, category, brand, age_days, views_1d "
                       "from features.feat_item_daily order by 1") == [
        ("i1", None, None, None, None, 2), ("i2", None, None, None, None, 1),
        ("i3", None, None, None, None, 1)]
    assert _rows(snap, "select user_id, purchases_30d, spend_30d, mean_price_paid_30d, "
                       "top_category_30d from features.feat_user_daily order by 1") == [
        ("u1", 2, None, None, "unknown"), ("u2", 1, None, None, "unknown"),
        ("u3", 0, 0.0, None, "unknown")]


def test_a_lake_of_many_batches_reads_its_lineage_in_bounded_memory(tmp_path):
    """Every batch's `_delivery.json` is one small file: reading 300 of them once needed a
    32 MiB buffer each (schema detection per file) and ran out of memory near 200 batches."""
    s = Settings(home=tmp_path)
    for n in range(300):
        write_batch(f"b{n:03d}", {}, zone="validated", settings=s)
    report = transform(settings=s, select="stg_shop__deliveries")
    assert report.counts == {"success": 1, "pass": 6}  # the view and its unique/not_null tests
    assert _rows(s.internal_snapshot(), "select count(*), count(distinct arrival), "
                 "max(position) from staging.stg_shop__deliveries") == [(300, 300, 300)]
