"""Feast against the real stores: point-in-time training sets, online = latest offline, lossless
concurrent live pushes. Every test runs on SQLite and on the Redis at 127.0.0.1:6379 (with its
own Feast project, torn down afterwards)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import duckdb
import numpy as np
import pandas as pd
import pytest

from feature_repo.data_sources import export_path
from shoprec.config import FeastSettings, Settings
from shoprec.features.live import LiveSequences
from shoprec.features.materialize import materialize
from shoprec.features.store import get_store
from tests.conftest import copy_published_warehouse

USER_FEATURES = ["views_7d", "purchases_30d", "spend_30d", "top_category_30d"]


@pytest.fixture(params=["sqlite", "redis"], scope="module")
def fs(request, built_shop, tmp_path_factory):
    """(settings, store) with everything materialized into a home and Feast project of its own
    per backend, from the session's built warehouse (teardown deletes the registry file)."""
    project = f"t_{request.param}_{uuid.uuid4().hex[:8]}"
    s = Settings(home=tmp_path_factory.mktemp(f"feast-{request.param}"),
                 feast=FeastSettings(online_store=request.param, project=project))
    copy_published_warehouse(built_shop, s)
    report = materialize(settings=s)
    store = get_store(s)
    yield s, store, report
    store.teardown()
    if request.param == "redis":
        import redis

        left = redis.Redis().keys(f"*{project}*".encode())
        assert left == [], f"Redis keys of {project} survived the teardown"


def _offline(s: Settings, name: str) -> pd.DataFrame:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        path = export_path(s.feature_exports("shop"), name)
        return con.execute(f"select * from read_parquet('{path}')").df()


def test_materialize_is_incremental_and_idempotent(fs):
    s, store, first = fs
    assert all(w is not None for w in first.windows.values()), first.windows
    again = materialize(settings=s)
    assert all(w is None for w in again.windows.values()), again.windows


def test_online_values_equal_the_latest_offline_values(fs):
    s, store, _ = fs
    off = _offline(s, "user_daily").sort_values("event_timestamp").groupby("user_id").tail(1)
    online = store.get_online_features(
        features=[f"user_daily:{f}" for f in USER_FEATURES],
        entity_rows=[{"user_id": u} for u in off.user_id]).to_df()
    merged = off.merge(online, on="user_id", suffixes=("_off", "_on"))
    assert len(merged) == len(off) > 500
    for f in USER_FEATURES:
        a, b = merged[f"{f}_off"], merged[f"{f}_on"]
        if a.dtype.kind == "f":
            assert np.allclose(a.astype(float), b.astype(float), equal_nan=True), f
        else:
            assert (a.astype(str) == b.astype(str)).all(), f
    items = _offline(s, "item_daily").sort_values("event_timestamp").groupby("item_id").tail(1)
    on_items = store.get_online_features(
        features=["item_daily:views_30d", "item_daily:conversion_30d"],
        entity_rows=[{"item_id": i} for i in items.item_id]).to_df()
    m = items.merge(on_items, on="item_id", suffixes=("_off", "_on"))
    assert (m.views_30d_off == m.views_30d_on).all()


def _reference(off: pd.DataFrame, entity_df: pd.DataFrame, ttl: dt.timedelta) -> pd.DataFrame:
    """Plain Python point-in-time join: the newest row at or before each timestamp, within TTL."""
    by_user = {u: g.sort_values("event_timestamp") for u, g in off.groupby("user_id")}
    out = []
    for row in entity_df.itertuples():
        g = by_user.get(row.user_id)
        hit = None
        if g is not None:
            ok = g[(g.event_timestamp <= row.event_timestamp)
                   & (g.event_timestamp >= row.event_timestamp - ttl)]
            hit = ok.iloc[-1] if len(ok) else None
        out.append({"user_id": row.user_id, "event_timestamp": row.event_timestamp,
                    **{f: (hit[f] if hit is not None else None) for f in USER_FEATURES}})
    return pd.DataFrame(out)


def test_training_set_never_holds_a_value_from_the_future(fs):
    s, store, _ = fs
    off = _offline(s, "user_daily")
    rng = np.random.default_rng(0)
    users = rng.choice(off.user_id.unique(), 300)
    lo, hi = off.event_timestamp.min(), off.event_timestamp.max()
    span = (hi - lo).total_seconds() + 3 * 86400
    times = [lo - pd.Timedelta(days=1) + pd.Timedelta(seconds=float(x))
             for x in rng.uniform(0, span, 300)]
    # half the rows sit exactly on a feature timestamp, the edge a leaky join gets wrong
    exact = off.sample(150, random_state=1)
    entity_df = pd.concat([
        pd.DataFrame({"user_id": users[:150], "event_timestamp": times[:150]}),
        exact[["user_id", "event_timestamp"]]], ignore_index=True)
    entity_df["event_timestamp"] = pd.to_datetime(entity_df.event_timestamp,
                                                 utc=True).dt.floor("us")
    got = store.get_historical_features(
        entity_df=entity_df, features=[f"user_daily:{f}" for f in USER_FEATURES]).to_df()
    ref = _reference(off, entity_df, store.get_feature_view("user_daily").ttl)
    key = ["user_id", "event_timestamp"]
    m = ref.merge(got, on=key, suffixes=("_ref", "_feast"))
    assert len(m) == len(entity_df)
    for f in USER_FEATURES:
        a = m[f"{f}_ref"].astype(str).replace({"None": "nan", "<NA>": "nan"})
        b = m[f"{f}_feast"].astype(str).replace({"None": "nan", "<NA>": "nan"})
        if f == "spend_30d":
            a = pd.to_numeric(m[f"{f}_ref"], errors="coerce").round(6).astype(str)
            b = pd.to_numeric(m[f"{f}_feast"], errors="coerce").round(6).astype(str)
        bad = m[a != b]
        assert bad.empty, bad[[*key, f"{f}_ref", f"{f}_feast"]].head()
    assert m.views_7d_feast.notna().sum() > 100  # the join found values, not only nulls


def test_feature_service_serves_online_and_historical(fs):
    s, store, _ = fs
    svc = store.get_feature_service("recommender_v1")
    online = store.get_online_features(features=svc, entity_rows=[{"user_id": "u1"}]).to_dict()
    assert {"recent_item_ids", "views_7d", "top_category_30d"} <= set(online)
    training = store.get_feature_service("recommender_training_v1")
    df = store.get_historical_features(
        entity_df=pd.DataFrame({"user_id": ["u1"], "event_timestamp": [pd.Timestamp(
            "2026-01-20", tz="UTC")]}), features=training).to_df()
    assert {"recent_item_ids", "views_7d"} <= set(df.columns)


def test_concurrent_pushes_for_one_user_lose_no_event(fs):
    s, store, _ = fs
    live = LiveSequences(store, s)
    user = f"u_live_{uuid.uuid4().hex[:6]}"
    base = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    events = [(t, f"i{t}", "view" if t % 3 else "click") for t in range(800)]
    rng = np.random.default_rng(3)
    order = rng.permutation(800)  # pushes arrive out of time order, from 8 threads at once
    chunks = [order[k::8] for k in range(8)]
    errors = []

    def worker(idx):
        try:
            for j in idx:
                t, item, etype = events[j]
                live.push(user, item, etype, base + dt.timedelta(seconds=int(t)))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    seq = live.get(user)
    n = s.feast.sequence_length
    assert [e[1] for e in seq] == [f"i{t}" for t in range(800 - n, 800)]
    assert [e[0] for e in seq] == sorted(e[0] for e in seq)


def test_a_push_changes_what_serving_reads_at_once(fs):
    s, store, _ = fs
    live = LiveSequences(store, s)
    before = live.get("u3")
    live.push("u3", "i_new", "click", dt.datetime(2026, 7, 1, tzinfo=dt.UTC))
    after = store.get_online_features(features=["user_live_sequence:recent_item_ids"],
                                      entity_rows=[{"user_id": "u3"}]).to_dict()
    assert after["recent_item_ids"][0][-1] == "i_new"
    assert after["recent_item_ids"][0][:-1] == [e[1] for e in before][-(len(after[
        "recent_item_ids"][0]) - 1):]


