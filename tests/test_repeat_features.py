"""The repeat statistics are servable: dbt's `features.feat_user_item_history`, exported and
materialized by Feast, serve through the recommender's feature service exactly what training
computes from its own interactions (training/repeat.py), item order included."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

import training.data
from feature_repo.names import (
    REPEAT,
    SEQUENCE,
    SERVING_SERVICE,
    SERVING_SERVICE_V1,
    TRAINING_SERVICE,
    TRAINING_SERVICE_V1,
    USER_ACTIVITY,
    USER_KEY,
    USER_REPEAT,
)
from shoprec.config import Settings
from shoprec.features.store import get_store
from training.data import Interactions, load_interactions
from training.repeat import repeat_stats
from training.splits import DAY_US, EvalSet

EPOCH = dt.date(1970, 1, 1)


def _reference(x: Interactions, users: np.ndarray, hist_end: np.ndarray) -> list[tuple]:
    """training.repeat's statistics of each (user, history end), in REPEAT's layout."""
    n = len(users)
    z = np.zeros(n + 1, dtype=np.int64)
    es = EvalSet("parity", users, hist_end, z, z[:0], z, z[:0],
                 np.full(n, int(x.ts.max()) + 1, dtype=np.int64))  # cutoff: the end of data
    st = repeat_stats(x, x.user_bounds(), es, np.arange(n))
    start = np.searchsorted(st.row, np.arange(n + 1))
    out = []
    for r in range(n):
        k = slice(start[r], start[r + 1])
        out.append((list(x.catalogue.item_ids[st.item[k]]), st.sessions[k].tolist(),
                    st.purchase_sessions[k].tolist(), st.first_us[k].tolist(),
                    st.last_us[k].tolist(), int(st.total_sessions[r])))
    return out


def _assert_equal(got: list[tuple], ref: list[tuple], keys: list) -> None:
    bad = [(key, g, r) for key, g, r in zip(keys, got, ref, strict=True) if tuple(g) != r]
    assert not bad, f"{len(bad)} of {len(keys)} differ, first: {bad[0]}"


def test_dbt_table_equals_the_reference_at_the_end_of_every_active_day(built_shop, monkeypatch):
    """Every row of the table against the reference over the user's rows up to the end of that
    day. Interactions uncollapsed here: the collapse stamps a run's deepest stage at its first
    event, so a purchase past midnight in a run begun the day before would count a day early
    in the reference (the final state, what serving reads, is unaffected: next test)."""
    s: Settings = built_shop
    monkeypatch.setattr(training.data, "collapse_runs", lambda x: x)
    x = load_interactions(s, "shop")
    with duckdb.connect(str(s.internal_snapshot("shop")), read_only=True) as con:
        rows = con.execute(
            f"select user_id, feature_date, {', '.join(REPEAT)} from features."
            "feat_user_item_history order by user_id, feature_date").fetchall()
    assert len(rows) > 1000
    index = {u: i for i, u in enumerate(x.user_ids)}
    users = np.array([index[r[0]] for r in rows], dtype=np.int64)
    day_end = np.array([((r[1] - EPOCH).days + 1) * DAY_US for r in rows], dtype=np.int64)
    b = x.user_bounds()
    hist_end = np.array([b[u] + np.searchsorted(x.ts[b[u]:b[u + 1]], e, side="left")
                         for u, e in zip(users, day_end, strict=True)], dtype=np.int64)
    _assert_equal([r[2:] for r in rows], _reference(x, users, hist_end),
                  [r[:2] for r in rows])
    # the data exercise what the definitions distinguish
    assert any(max(r[3]) > 1 for r in rows)  # items seen in several sessions
    assert any(sum(r[4]) > 0 for r in rows)  # and bought


def test_online_values_through_the_serving_service_equal_training_reference(built_shop):
    """After `materialize`, the serving feature service answers each user's statistics over
    their whole history exactly as training computes them from its (collapsed) interactions."""
    s: Settings = built_shop
    x = load_interactions(s, "shop")
    b = x.user_bounds()
    rng = np.random.default_rng(0)
    busiest = np.argsort(-np.diff(b))[:20]
    users = np.unique(np.r_[rng.choice(x.n_users, 300, replace=False), busiest])
    store = get_store(s, "shop")
    service = store.get_feature_service(SERVING_SERVICE)
    online = store.get_online_features(
        features=service, entity_rows=[{USER_KEY: u} for u in x.user_ids[users]]).to_dict()
    assert set(SEQUENCE) | set(USER_ACTIVITY) | set(REPEAT) <= set(online)
    got = list(zip(*(online[f] for f in REPEAT), strict=True))
    _assert_equal(got, _reference(x, users, b[users + 1]), list(x.user_ids[users]))
    assert max(len(g[0]) for g in got) > 30


def test_v1_services_stay_as_they_were_and_v2_adds_the_repeat_view(built_shop):
    store = get_store(built_shop, "shop")

    def views(name: str) -> dict[str, list[str]]:
        svc = store.get_feature_service(name)
        return {p.name: [f.name for f in p.features] for p in svc.feature_view_projections}

    v1, v2 = views(SERVING_SERVICE_V1), views(SERVING_SERVICE)
    assert USER_REPEAT not in v1 and USER_REPEAT not in views(TRAINING_SERVICE_V1)
    assert v2 == {**v1, USER_REPEAT: REPEAT}
    assert views(TRAINING_SERVICE) == {**views(TRAINING_SERVICE_V1), USER_REPEAT: REPEAT}


def test_training_service_reads_the_statistics_point_in_time(built_shop):
    """A day's row is visible from the next midnight on: at the start of a day the training
    service reads the previous active day's statistics; a user without history reads NULLs."""
    s: Settings = built_shop
    with duckdb.connect(str(s.internal_snapshot("shop")), read_only=True) as con:
        user, d1, d2 = con.execute(
            "select user_id, feature_date, lead(feature_date) over (partition by user_id "
            "order by feature_date) as next from features.feat_user_item_history "
            "qualify next > feature_date + 1 order by user_id, feature_date limit 1").fetchone()
        want = {d: con.execute(f"select {', '.join(REPEAT)} from features.feat_user_item_history "
                               "where user_id = ? and feature_date = ?", [user, d]).fetchone()
                for d in (d1, d2)}
    at = [pd.Timestamp(d2, tz="UTC"), pd.Timestamp(d2, tz="UTC") + pd.Timedelta(days=1),
          pd.Timestamp(d2, tz="UTC")]
    entity_df = pd.DataFrame({USER_KEY: [user, user, "nobody"], "event_timestamp": at})
    store = get_store(s, "shop")
    df = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(TRAINING_SERVICE)).to_df()
    df = df.sort_values(["event_timestamp", USER_KEY]).reset_index(drop=True)
    rows = {(r[USER_KEY], r["event_timestamp"]): r for _, r in df.iterrows()}
    for ts, day in ((at[0], d1), (at[1], d2)):
        r = rows[(user, ts)]
        assert [list(r[f]) for f in REPEAT[:-1]] == [list(v) for v in want[day][:-1]]
        assert r["total_sessions"] == want[day][-1]
    assert pd.isna(rows[("nobody", at[2])]["total_sessions"])
