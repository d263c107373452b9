"""dbt on DuckDB against the real validated zone: builds, tests, increments, is idempotent, and
never lets an analyst block a run or see a half-built table."""

from __future__ import annotations

import threading
import time

import duckdb
import pytest

from shoprec.config import Settings
from shoprec.simulate import simulate
from shoprec.transform import transform
from shoprec.validation import validate

FEATURES = ("feat_user_daily", "feat_item_daily", "feat_user_recent_sequence")


def _land(s: Settings, days: int) -> None:
    simulate("tiny", seed=3, days=days, settings=s)
    assert all(r.ok for r in validate(settings=s, workers=1))


def _analytics(s: Settings) -> duckdb.DuckDBPyConnection:
    """Read what analysts read: the published snapshot (dbt keeps the warehouse open in-process)."""
    return duckdb.connect(str(s.analytics_snapshot("shop")), read_only=True)


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
    assert report.counts["success"] == 15  # models
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
