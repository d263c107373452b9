"""Feast against the real stores: point-in-time training sets, online = latest offline, lossless
concurrent live pushes. Every test runs on SQLite and on the Redis at 127.0.0.1:6379 (with its
own Feast project, torn down afterwards). Tests that flush or restart Redis start a private
redis-server on a free port instead: the shared one is never emptied or reconfigured."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import redis
from typer.testing import CliRunner

from feature_repo.data_sources import export_glob
from feature_repo.names import (
    ITEM_DAILY,
    USER_DAILY,
    USER_LIVE_SEQUENCE,
    USER_REPEAT,
    USER_SEQUENCE,
)
from shoprec.cli import app
from shoprec.config import FeastSettings, Settings, reset_settings_cache
from shoprec.features import OnlineStoreUnavailable
from shoprec.features.export import ExportStats, export_features
from shoprec.features.live import LiveSequences
from shoprec.features.materialize import FIRST, OVERLAP, materialize, plan, teardown
from shoprec.features.status import status
from shoprec.features.store import get_store
from shoprec.features.watermark import Watermark
from tests.conftest import copy_published_warehouse, free_port, private_redis

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
    teardown(s)  # Feast's teardown and the online watermarks it does not know about
    if request.param == "redis":
        import redis

        left = redis.Redis().keys(f"*{project}*".encode())
        assert left == [], f"Redis keys of {project} survived the teardown"


def _offline(s: Settings, name: str) -> pd.DataFrame:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        path = export_glob(s.feature_exports("shop"), name)
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
    for version, repeat in (("v1", set()), ("v2", {"repeat_item_ids", "total_sessions"})):
        svc = store.get_feature_service(f"recommender_{version}")
        online = store.get_online_features(features=svc,
                                           entity_rows=[{"user_id": "u1"}]).to_dict()
        assert {"recent_item_ids", "views_7d", "top_category_30d"} | repeat <= set(online)
        assert not ({"repeat_item_ids"} - repeat) & set(online)
        training = store.get_feature_service(f"recommender_training_{version}")
        df = store.get_historical_features(
            entity_df=pd.DataFrame({"user_id": ["u1"], "event_timestamp": [pd.Timestamp(
                "2026-01-20", tz="UTC")]}), features=training).to_df()
        assert {"recent_item_ids", "views_7d"} | repeat <= set(df.columns)


@pytest.mark.slow  # 800 pushes from 8 threads, per backend
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
    if s.feast.online_store == "redis":
        # Feast's Redis write skips a row no newer than the stored one: re-loading the whole
        # history (a backfill) keeps the newer push (Feast's SQLite upsert would not)
        materialize(settings=s, since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        again = store.get_online_features(features=["user_live_sequence:recent_item_ids"],
                                          entity_rows=[{"user_id": "u3"}]).to_dict()
        assert again == after




# ------------------------------------------- the online store's own watermark (issue 16, item 4)

VIEWS = sorted([ITEM_DAILY, USER_DAILY, USER_LIVE_SEQUENCE, USER_REPEAT, USER_SEQUENCE])
NO_MARK = "full: no watermark in the online store"
runner = CliRunner()


@pytest.fixture
def own_redis():
    """(port, client) of a private redis-server, stopped at teardown."""
    with private_redis() as (port, _):
        client = redis.Redis(port=port)
        yield port, client
        client.close()


def _home(built_shop: Settings, home, **feast) -> Settings:
    """A home with the published warehouse of `built_shop`; Feast's settings are the
    environment's (the scaled mode's Redis) but for `feast`."""
    s = Settings(home=home, feast=Settings(home=home).feast.model_copy(update=feast))
    copy_published_warehouse(built_shop, s)
    return s


def _switched(s: Settings, **feast) -> Settings:
    """The same home with other Feast settings (SHOPREC_FEAST__ONLINE_STORE=redis...)."""
    return Settings(home=s.home, feast=s.feast.model_copy(update=feast))


def _online_views_7d(s: Settings, users) -> dict:
    d = get_store(s).get_online_features(
        features=["user_daily:views_7d"], entity_rows=[{"user_id": u} for u in users]).to_dict()
    return dict(zip(d["user_id"], d["views_7d"], strict=True))


def _assert_online_is_complete(s: Settings) -> None:
    off = _offline(s, "user_daily").sort_values("event_timestamp").groupby("user_id").tail(1)
    want = dict(zip(off.user_id, off.views_7d.astype(int), strict=True))
    assert len(want) > 500
    assert _online_views_7d(s, want) == want


def test_a_view_left_materializing_is_still_served(fs):
    """A materialization marks its views MATERIALIZING in the registry while it runs (and for
    good when it is killed); serving reads the last materialized values meanwhile."""
    from feast.feature_view import FeatureViewState

    s, store, _ = fs
    fv = store.get_feature_view("user_daily")
    before = fv.state
    fv.state = FeatureViewState.MATERIALIZING
    store.registry.apply_feature_view(fv, store.project, commit=True)
    try:
        fresh = get_store(s)  # a serving process reading the registry now
        assert fresh.get_feature_view("user_daily").state == FeatureViewState.MATERIALIZING
        rows = [{"user_id": f"u{i}"} for i in range(30)]
        out = fresh.get_online_features(features=["user_daily:views_7d"],
                                        entity_rows=rows).to_dict()
        assert any(v is not None for v in out["views_7d"])
    finally:
        fv.state = before
        store.registry.apply_feature_view(fv, store.project, commit=True)


def test_plan_trusts_the_registry_only_while_the_online_watermark_agrees():
    def day(d: int) -> dt.datetime:
        return dt.datetime(2026, 1, d, tzinfo=dt.UTC)

    export = ExportStats(100, day(5), day(10))
    end = day(10) + dt.timedelta(microseconds=1)
    mark = Watermark("v", end, export, "reg", day(11))
    assert plan(export, end, mark, "reg") is None  # up to date
    full = {
        NO_MARK: plan(export, end, None, "reg"),
        FIRST: plan(export, None, mark, "reg"),
        "full: the online watermark belongs to another registry":
            plan(export, end, dataclasses.replace(mark, registry="other"), "reg"),
        "full: the online store is older than the registry":
            plan(export, end + dt.timedelta(days=1), mark, "reg"),
        "full: the offline history now starts earlier":
            plan(ExportStats(150, day(1), day(10)), end, mark, "reg"),
    }
    for reason, w in full.items():
        assert (w.reason, w.full, w.end) == (reason, True, end)
        assert w.start == (day(1) if "earlier" in reason else day(5))
    newer = plan(ExportStats(120, day(5), day(12)), end, mark, "reg")
    assert (newer.start, newer.reason, newer.full) == (end - OVERLAP, "new offline rows", False)
    rewritten = plan(ExportStats(101, day(5), day(10)), end, mark, "reg")
    assert (rewritten.start, rewritten.reason) == (end - OVERLAP, "offline export changed")
    assert plan(ExportStats(0, None, None), None, None, "reg") is None
    assert plan(None, None, None, "reg") is None


def test_a_flushed_redis_is_refilled_in_full(built_shop, tmp_path, own_redis):
    port, client = own_redis
    s = _home(built_shop, tmp_path, online_store="redis", redis_connection=f"127.0.0.1:{port}")
    first = materialize(settings=s)
    _assert_online_is_complete(s)
    client.flushall()  # what a restart without persistence leaves: the registry still says done
    assert set(_online_views_7d(s, ["u1", "u2", "u3"]).values()) == {None}
    assert status(settings=s).behind == VIEWS
    again = materialize(settings=s)
    assert again.windows == first.windows, again.summary()  # the whole history, not "up to date"
    assert set(again.reasons.values()) == {NO_MARK}
    assert "in full (no watermark in the online store)" in again.summary()
    _assert_online_is_complete(s)
    assert status(settings=s).behind == []
    assert all(w is None for w in materialize(settings=s).windows.values())


def test_an_existing_sqlite_home_switched_to_redis_fills_redis_first(built_shop, tmp_path,
                                                                     own_redis):
    port, _ = own_redis
    lite = _home(built_shop, tmp_path, online_store="sqlite")
    first = materialize(settings=lite)
    red = _switched(lite, online_store="redis", redis_connection=f"127.0.0.1:{port}")
    assert status(settings=red).behind == VIEWS
    on_redis = materialize(settings=red)
    assert on_redis.windows == first.windows
    assert set(on_redis.reasons.values()) == {NO_MARK}
    _assert_online_is_complete(red)
    # and back: SQLite still holds what the registry says, so nothing is reloaded there
    assert all(w is None for w in materialize(settings=lite).windows.values())
    _assert_online_is_complete(lite)


def _status_states(output: str) -> dict[str, str]:
    rows = output.strip().splitlines()[2:]  # after the store line and the header
    return {r.split()[0]: r.split("  ")[-1].strip() for r in rows}


def test_status_says_behind_before_materialize_and_up_to_date_after(built_shop, shoprec_home):
    s = _home(built_shop, shoprec_home)
    export_features(s, "shop")
    before = runner.invoke(app, ["features", "status"])
    assert before.exit_code == 0, before.output
    assert _status_states(before.output) == {v: f"behind ({FIRST})" for v in VIEWS}
    assert "offline rows" in before.output and "registry up to" in before.output
    done = runner.invoke(app, ["features", "materialize"])
    assert done.exit_code == 0, done.output
    after = runner.invoke(app, ["features", "status", "--dataset", "shop"])
    assert _status_states(after.output) == {v: "up to date" for v in VIEWS}
    report = status(settings=s)
    assert all(v.mark.end == v.registry_end for v in report.views)
    assert all(v.mark.export == v.export and v.export.rows > 0 for v in report.views)


def test_a_deleted_sqlite_online_store_is_refilled(built_shop, tmp_path):
    s = _home(built_shop, tmp_path, online_store="sqlite")
    first = materialize(settings=s)
    s.feast_online_db("shop").unlink()
    assert status(settings=s).behind == VIEWS
    again = materialize(settings=s)
    assert again.windows == first.windows
    assert set(again.reasons.values()) == {NO_MARK}
    _assert_online_is_complete(s)


@pytest.mark.slow  # each command waits out redis-py's connection retries
@pytest.mark.parametrize("command", [["materialize"], ["status"], ["get", "u1"],
                                     ["push", "u1", "i1"]])
def test_an_unreachable_redis_is_one_clear_line(command, shoprec_home, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("SHOPREC_FEAST__ONLINE_STORE", "redis")
    monkeypatch.setenv("SHOPREC_FEAST__REDIS_CONNECTION", f"127.0.0.1:{port}")
    reset_settings_cache()
    if command[0] == "get":  # the feature service must be registered for the lookup to start
        assert runner.invoke(app, ["features", "apply"]).exit_code == 0
    result = runner.invoke(app, ["features", *command])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: Redis at 127.0.0.1:{port} is unreachable "
                               "(SHOPREC_FEAST__REDIS_CONNECTION): ")
    if command[0] == "status":
        with pytest.raises(OnlineStoreUnavailable, match="is unreachable") as e:
            status(settings=Settings(home=shoprec_home))
        assert isinstance(e.value, RuntimeError)


def test_project_names_are_distinct_per_dataset_and_feast_safe():
    import random
    import re

    from shoprec.features.store import project_name
    from shoprec.names import is_name

    s = Settings(feast=FeastSettings(project=None))  # the default
    assert project_name(s, "shop") == "shoprec_shop"
    shared = Settings(feast=FeastSettings(project="s{home_id}_{dataset}"))  # one Redis, many homes
    assert project_name(shared, "ml-100k") == f"s{shared.home_id}_ml_2d100k"
    assert project_name(s, "ml-100k") == "shoprec_ml_2d100k"
    assert [project_name(s, d) for d in ("a-b", "a.b", "a_b")] == [
        "shoprec_a_2db", "shoprec_a_2eb", "shoprec_a_5fb"]
    rng = random.Random(0)
    alphabet = "ab_-.9Z"  # few letters: names that differ only in punctuation are common
    names = {"a-b", "a.b", "a_b", "a_2db", "a_5fb", "a__b", "a_-b", "a-_b"}
    while len(names) < 200:
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        if is_name(name):
            names.add(name)
    projects = {project_name(s, n) for n in names}
    assert len(projects) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", p) for p in projects)
    assert project_name(Settings(feast=FeastSettings(project="mine")), "a-b") == "mine"


# ------------------------------------- bring your own data (issue 17): only what the contract needs

@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_own_data_without_prices_or_users_materializes_and_reads_back_none(byod_shop, tmp_path,
                                                                           backend):
    s = Settings(home=tmp_path, feast=FeastSettings(
        online_store=backend, project=f"t_byod_{backend}_{uuid.uuid4().hex[:8]}"))
    copy_published_warehouse(byod_shop.settings, s)
    try:
        _check_own_data_online(s)
    finally:
        teardown(s)


def _check_own_data_online(s: Settings) -> None:
    report = materialize(settings=s)
    assert all(w is not None for w in report.windows.values()), report.summary()
    store = get_store(s)
    items = store.get_online_features(
        features=[f"{ITEM_DAILY}:{f}" for f in ("price", "category", "brand", "age_days",
                                                 "views_1d")],
        entity_rows=[{"item_id": i} for i in ("i1", "i2", "i3")]).to_dict()
    assert items["views_1d"] == [2, 1, 1]
    for f in ("price", "category", "brand", "age_days"):
        assert items[f] == [None, None, None], f
    users = store.get_online_features(
        features=[f"{USER_DAILY}:{f}" for f in ("purchases_30d", "spend_30d",
                                                 "mean_price_paid_30d", "top_category_30d")],
        entity_rows=[{"user_id": u} for u in ("u1", "u2", "u3")]).to_dict()
    assert users["purchases_30d"] == [2, 1, 0]
    assert users["spend_30d"] == [None, None, 0.0]  # unknown, unknown, none bought
    assert users["mean_price_paid_30d"] == [None, None, None]
    assert users["top_category_30d"] == ["unknown"] * 3
    seq = store.get_online_features(features=[f"{USER_SEQUENCE}:recent_item_ids"],
                                    entity_rows=[{"user_id": "u1"}]).to_dict()
    assert seq["recent_item_ids"] == [["i1", "i1", "i2", "i2"]]


# ------------------------------------------------ the materialization engine (issue 22)

def _online_rows(s: Settings) -> dict:
    """Everything the online store holds for the project, by view or entity key, the project's
    name taken out so that two projects compare."""
    from shoprec.features.store import project_name

    project = project_name(s, "shop")
    if s.feast.online_store == "sqlite":
        import sqlite3

        con = sqlite3.connect(s.feast_online_db("shop"))
        tables = [t for (t,) in con.execute("select name from sqlite_master where type='table'")
                  if t.startswith(f"{project}_")]
        rows = {t.removeprefix(project): sorted(con.execute(
            f'select entity_key, feature_name, value, value_text, event_ts, created_ts '
            f'from "{t}"').fetchall()) for t in tables}
        con.close()
        return rows
    client = redis.Redis()
    keys = [k for k in client.scan_iter(match=f"*{project}*".encode(), count=1000)
            if k.endswith(project.encode())]
    return {k.removesuffix(project.encode()): client.hgetall(k) for k in keys}


@pytest.mark.parametrize("values,value_type", [
    ([0.0, -0.0, None, float("nan"), 1.5, 0.0, -0.0], "DOUBLE"),
    ([3, None, 3, 0, -7], "INT64"), (["a", None, "", "a"], "STRING"),
    ([[1, 2], None, [], [1, 2]], "INT64_LIST"), ([["x"], None, ["x", "y"]], "STRING_LIST")])
def test_column_bytes_are_feasts_serialized_values(values, value_type):
    """The engine's bytes and value texts per column (made once per distinct scalar) equal what
    Feast stores for each value, -0.0 after 0.0 included."""
    import pyarrow as pa
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    from shoprec.features.engine import column_bytes

    vt = ValueType[value_type]
    protos = python_values_to_proto_values(values, vt)
    blobs, texts = column_bytes(pa.array(values, from_pandas=False), vt)
    assert blobs == [p.SerializeToString() for p in protos]
    assert texts == [extract_text_and_num(p, False)[0] for p in protos]


@pytest.mark.parametrize("shop,backend", [("built", "sqlite"), ("byod", "sqlite"),
                                          ("built", "redis")])
def test_the_engine_writes_what_feasts_own_engine_writes(built_shop, byod_shop, tmp_path, shop,
                                                         backend, monkeypatch):
    """Shoprec's engine converts and writes SQLite its own way: the online store must hold the
    same bytes as after Feast's own local engine (null features included: the byod shop)."""
    from shoprec.features import engine as fast

    source = built_shop if shop == "built" else byod_shop.settings
    ran = []
    execute = fast.FastOutputNode.execute
    monkeypatch.setattr(fast.FastOutputNode, "execute",
                        lambda node, ctx: ran.append(node.feature_view.name) or execute(node, ctx))
    online = {}
    for engine in ("local", "shoprec"):
        s = Settings(home=tmp_path / engine, feast=FeastSettings(
            online_store=backend, engine=engine,
            project=f"t_eng_{engine}_{uuid.uuid4().hex[:8]}"))
        copy_published_warehouse(source, s)
        try:
            report = materialize(settings=s)
            assert all(report.windows.values()), report.summary()
            online[engine] = _online_rows(s)
        finally:
            teardown(s)
    assert sorted(ran) == sorted(report.windows), ran  # only the second home used it
    assert len(online["local"]) >= (5 if backend == "sqlite" else 100)
    assert online["shoprec"] == online["local"]


def test_a_window_reads_only_its_day_files_and_writes_what_feasts_engine_writes(built_shop,
                                                                                tmp_path):
    """The engine hands Feast the day files of a materialization's window only: a window in
    the middle of the history must still load exactly what Feast's own engine loads from every
    file, and the view's source must point at all of its files again afterwards."""
    from shoprec.features import engine as fast
    from shoprec.features.materialize import apply, view_sources

    seen = []
    window_files = fast.window_files

    @contextlib.contextmanager
    def spy(source, start, end):
        with window_files(source, start, end):
            seen.append(sorted(p.name for p in Path(source.path).parent.glob("*.parquet")))
            yield

    online, paths = {}, {}
    for engine in ("local", "shoprec"):
        s = Settings(home=tmp_path / engine, feast=FeastSettings(
            engine=engine, project=f"t_win_{engine}_{uuid.uuid4().hex[:8]}"))
        copy_published_warehouse(built_shop, s)
        export_features(s, "shop")
        store = apply(s, "shop")
        folder = Path(view_sources(s, "shop")[USER_DAILY]).parent
        days = sorted(p.stem for p in folder.glob("[0-9]*.parquet"))
        lo = dt.datetime.fromisoformat(days[len(days) // 2]).replace(tzinfo=dt.UTC)
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(fast, "window_files", spy)
                store.materialize(start_date=lo, end_date=lo + dt.timedelta(days=3),
                                  feature_views=[USER_DAILY])
            online[engine] = _online_rows(s)
            paths[engine] = {v.name: v.batch_source.path for v in store.list_feature_views()}
        finally:
            teardown(s)
    want = [f"{(lo + dt.timedelta(days=d)):%Y-%m-%d}.parquet" for d in range(4)]
    assert seen == [want], seen  # only the shoprec engine narrows the read, to 4 of 20 days
    assert online["shoprec"] == online["local"]
    assert any(online["shoprec"].values())
    assert paths["shoprec"] == {v: str(p) for v, p in view_sources(s, "shop").items()
                                if v in paths["shoprec"]}
    assert not list(s.feature_exports("shop").glob("*/.window-*"))
