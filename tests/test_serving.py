"""Serving, end to end: a real `shoprec serve` (uvicorn) process on a free loopback port, over the
tiny shop's features in a SQLite online store and in a Redis this module starts itself (never the
shared one on 6379), with a model trained, registered and promoted here; plus unit tests of the
pieces that need no server (the live sequence's collapse and gap buckets against training's, the
circuit breaker and the lookup budget, the catalogue filter, the CLI's refusal without a model)."""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
import time
import uuid
from functools import lru_cache
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from feature_repo.names import USER_KEY
from serving.model import EVENT_INDEX, LoadedModel, OnlineFeatures, collapse, gap_buckets
from shoprec.config import FeastSettings, ServingSettings, Settings, TrainingSettings
from tests.conftest import copy_published_warehouse, free_port, private_redis

TOKEN = "test-admin-token"
# The test machine is shared and loaded: a lookup over the production budget (50 ms) would turn
# an answer these tests compare into a fallback. The budget itself is tested without a server
# (test_a_slow_or_hanging_store_is_not_waited_for); the benchmarks measure the real latency.
LOADED_MACHINE = {"SHOPREC_SERVING__FEATURE_TIMEOUT_MS": "1000"}


# ------------------------------------------------------------------------------ helpers
class Server:
    """`python -m shoprec.cli serve` on a free port of 127.0.0.1 with `env` (SHOPREC_*)."""

    def __init__(self, home: Path, env: dict[str, str], log: Path):
        from shoprec.children import Child

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the machine's storage (the scaled mode's S3) stays; every other setting is `env`'s
        keep = ("SHOPREC_STORAGE_URI", "SHOPREC_S3_ENDPOINT_URL")
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith("SHOPREC_") or k in keep}
        self.child = Child([sys.executable, "-m", "shoprec.cli", "serve", "--port",
                            str(self.port)], {**clean, "SHOPREC_HOME": str(home), **env}, log)
        self.child.wait_http(f"{self.url}/healthz")
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def output(self) -> str:
        return self.child.output()

    def get(self, path: str, **params) -> httpx.Response:
        return self.client.get(path, params=params)

    def recommend(self, user: str, k: int = 20) -> dict:
        r = self.get(f"/recommendations/{user}", k=k)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def post_events(self, events) -> httpx.Response:
        return self.client.post("/events", json=events)

    def stop(self) -> None:
        self.client.close()
        self.child.stop()


def view(user: str, item: str, at: dt.datetime | None = None, etype: str = "view") -> dict:
    at = at or dt.datetime.now(dt.UTC)
    return {"event_id": f"t-{uuid.uuid4().hex}", "user_id": user, "item_id": item,
            "event_type": etype, "event_timestamp": at.isoformat(), "session_id": f"s-{user}"}


def registry(s: Settings):
    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings

    return Registry(store_from_settings(s), "shop")


@lru_cache(maxsize=8)
def _model(home: str, online_store: str, version: str) -> LoadedModel:
    from serving.runtime import load_model

    s = Settings(home=Path(home))
    folder = registry(s).load(version, s.model_cache("shop"))
    return load_model(s, "shop", folder, version)


def expected(s: Settings, user: str, k: int) -> tuple[str, list[str], OnlineFeatures]:
    """What the promoted model recommends `user` from the online store, scored here: the
    service's answer must be this one."""
    from serving.runtime import read_catalogue
    from shoprec.features.store import get_store

    version = registry(s).resolve("production")
    m = _model(str(s.home), s.feast.online_store, version)
    store = get_store(s, "shop")
    d = store.get_online_features(features=store.get_feature_service(m.feature_service),
                                  entity_rows=[{USER_KEY: user}]).to_dict()
    f = OnlineFeatures.from_feast(d, s.feast.sequence_length)
    now = max(time.time_ns() // 1000, max(f.times_us, default=0))
    scores = m.mask(m.score(f, now), f)
    scores = scores.masked_fill(~read_catalogue(s, "shop", m).available, float("-inf"))
    top = torch.topk(scores, k)
    return version, [m.ids[i] for i, v in zip(top.indices.tolist(), top.values.tolist(),
                                              strict=True) if v != float("-inf")], f


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def serving_homes(built_shop, tmp_path_factory):
    """A SQLite home (its own Feast registry and online store over the built shop's warehouse)
    with one short run trained on it (user features and the blend), registered twice (two
    versions of one export: what a hot reload swaps between) and the first promoted."""
    import training.ranker
    from shoprec.features.materialize import materialize
    from training.train import train

    s = Settings(home=tmp_path_factory.mktemp("serving-sqlite"), training=TrainingSettings(
        max_epochs=1, dim=16, user_features=True), feast=FeastSettings(online_store="sqlite"))
    copy_published_warehouse(built_shop, s)
    materialize(settings=s)
    with pytest.MonkeyPatch.context() as mp:  # the ranker's grid: one short setting
        mp.setattr(training.ranker, "STEP_GRID", (20,))
        mp.setattr(training.ranker, "L2_GRID", (1e-2,))
        result = train(s, "shop", seed=5, progress=False, run_dir=s.runs_dir("shop") / "run")
    export = result.run_dir / "export"
    reg = registry(s)
    v1, v2 = reg.register(export, "serving-1"), reg.register(export, "serving-2")
    reg.promote(v1)
    return s, export, (v1, v2)


@pytest.fixture(scope="module")
def sqlite_server(serving_homes, tmp_path_factory):
    s, _, versions = serving_homes
    server = Server(s.home, {"SHOPREC_SERVING__ADMIN_TOKEN": TOKEN,
                             "SHOPREC_SERVING__RELOAD_SECONDS": "1", **LOADED_MACHINE},
                    tmp_path_factory.mktemp("serving-logs") / "sqlite.log")
    yield server, s, versions
    server.stop()


@pytest.fixture(scope="module")
def own_redis():
    """A private redis-server (killed by the last test of this module, which checks the
    fallback; stopped at teardown otherwise)."""
    with private_redis() as (port, proc):
        yield port, proc


@pytest.fixture(scope="module")
def redis_server(serving_homes, own_redis, built_shop, tmp_path_factory):
    """The same export registered and promoted in a Redis home (materialized into the module's
    own redis-server); no admin token configured."""
    from shoprec.features.materialize import materialize

    _, export, _ = serving_homes
    port, _ = own_redis
    s = Settings(home=tmp_path_factory.mktemp("serving-redis"), feast=FeastSettings(
        online_store="redis", redis_connection=f"127.0.0.1:{port}"))
    copy_published_warehouse(built_shop, s)
    materialize(settings=s)
    reg = registry(s)
    version = reg.register(export, "serving-redis")
    reg.promote(version)
    server = Server(s.home, {"SHOPREC_FEAST__ONLINE_STORE": "redis",
                             "SHOPREC_FEAST__REDIS_CONNECTION": f"127.0.0.1:{port}",
                             "SHOPREC_SERVING__BREAKER_RESET_SECONDS": "60", **LOADED_MACHINE},
                    tmp_path_factory.mktemp("serving-logs") / "redis.log")
    yield server, s, version
    server.stop()


def known_users(server: Server, n: int = 5) -> list[str]:
    users = server.get("/users/sample").json()["users"]
    assert len(users) >= n, users
    return users[:n]


# -------------------------------------------------------------------- unit: no server needed
def _training_collapse(items, types, times, gap_minutes):
    """training.data.collapse_runs over one user's raw events (sessions cut by the gap, as dbt
    derives them where the log has no session ids) and Interactions.gap_buckets after it."""
    from training.data import Catalogue, Interactions, collapse_runs, session_index

    vocab = sorted(set(items))
    idx = {v: i + 1 for i, v in enumerate(vocab)}
    n = len(vocab)
    cat = Catalogue(item_ids=np.array(["", *vocab], dtype=object), category=np.zeros(n + 1, int),
                    brand=np.zeros(n + 1, int), price_bucket=np.zeros(n + 1, int),
                    categories=[""], brands=[""], price_edges=[])
    user = np.zeros(len(items), dtype=np.int64)
    ts = np.array(times, dtype=np.int64)
    x = Interactions(user, np.array([idx[i] for i in items], dtype=np.int64),
                     np.array([EVENT_INDEX[t] for t in types], dtype=np.int64), ts,
                     np.array(["u"], dtype=object), cat,
                     session=session_index(user, ts, gap_minutes))
    c = collapse_runs(x)
    return [vocab[i - 1] for i in c.item], c.etype.tolist(), c.ts.tolist(), \
        c.gap_buckets().tolist()


def test_serving_collapses_and_buckets_a_live_sequence_as_training_does():
    rng = np.random.default_rng(0)
    gap_minutes = 30
    steps = [0, 1, 10, 29 * 60, 30 * 60, 30 * 60 + 1, 31 * 60, 3600, 86_400, 40 * 86_400]
    for _ in range(300):
        n = int(rng.integers(1, 25))
        items = [str(x) for x in rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])]
        types = [str(x) for x in rng.choice(list(EVENT_INDEX), size=n)]
        t = 1_767_225_600_000_000 + np.cumsum(rng.choice(steps, size=n)) * 1_000_000
        times = [int(v) for v in t]
        want_i, want_t, want_ts, want_g = _training_collapse(items, types, times, gap_minutes)
        got_i, got_t, got_ts = collapse(items, types, times, gap_minutes * 60_000_000)
        assert (got_i, got_t, got_ts) == (want_i, want_t, want_ts), (items, types, times)
        assert gap_buckets(got_ts, first_is_start=True) == want_g
        # a full window: the first row is context, its bucket is never "first interaction"
        assert gap_buckets(got_ts, first_is_start=False)[1:] == want_g[1:]


def test_reasons_name_a_cycle_the_history_a_similar_item_or_the_category():
    from serving.model import DAY_US, Scored

    m = object.__new__(LoadedModel)  # only what reasons read: titles, categories, vectors
    m.ids = ["", "i1", "i2", "i3", "i4", "i5", "i6"]
    m.titles = ["", "Tea", "", "Soap", "Rice", "Mug", "Kettle"]
    m.category = ["", "drinks", "", "home", "food", "", "kitchen"]
    m.vectors = torch.nn.functional.normalize(torch.tensor(
        [[0, 0], [1, 0], [0, 1], [1, 1], [1, 0.1], [0.1, 1], [1, 0.2]], dtype=torch.float), dim=1)
    # item -> (sessions, purchase sessions, first, last): 3 bought in 2 of 4 sessions over 30 days
    sc = Scored(torch.zeros(7), [1, 2], {3: (4, 2, 0, 30 * DAY_US), 4: (2, 0, 0, DAY_US)})
    why = m.reasons([3, 4, 1, 6, 5], sc, 0)
    assert why[3] == "bought again every ~10 days"  # the mean interval of its 4 sessions
    assert why[4] == "you came back to it"
    assert why[1] == "you viewed it before"
    assert why[6] == "because you viewed Tea"  # nearest of the recent history (Tea, untitled)
    assert why[5] == "because you viewed i2"  # the nearest has no title: its id
    assert m.reasons([6, 5], None, 0) == {6: "popular in kitchen", 5: "popular right now"}


def test_the_breaker_opens_after_n_failures_and_half_opens_after_t():
    from serving.online import Breaker

    now = [0.0]
    b = Breaker(3, 10.0, clock=lambda: now[0])
    assert b.allow() and not b.failure() and not b.failure()
    b.success()  # consecutive failures only
    assert [b.failure() for _ in range(3)] == [False, False, True]
    assert b.state == "open" and not b.allow()
    now[0] = 9.9
    assert not b.allow()
    now[0] = 10.0
    assert b.state == "half_open" and b.allow() and not b.allow()  # one probe at a time
    assert b.failure() and b.state == "open" and not b.allow()  # a failed probe: wait again
    now[0] = 20.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()


def test_a_slow_or_hanging_store_is_not_waited_for(tmp_path):
    from serving.online import OnlineFeaturesReader, StoreUnavailable

    s = Settings(home=tmp_path, serving=ServingSettings(
        feature_timeout_ms=20, store_workers=1, breaker_failures=2, breaker_reset_seconds=0.3))
    causes = []
    reader = OnlineFeaturesReader(s, "shop", on_failure=causes.append)
    release = threading.Event()
    try:
        t0 = time.perf_counter()
        with pytest.raises(StoreUnavailable) as e:
            reader._call(lambda: release.wait(5), 0.02, "lookup")  # hangs: its thread stays busy
        assert e.value.cause == "store_timeout" and time.perf_counter() - t0 < 1
        with pytest.raises(StoreUnavailable) as e:  # the one thread is busy: no queueing
            reader._call(lambda: 1, 0.02, "lookup")
        assert e.value.cause == "store_busy"
        assert reader.breaker.state == "open"
        with pytest.raises(StoreUnavailable) as e:
            reader._call(lambda: 1, 0.02, "lookup")
        assert e.value.cause == "breaker_open"
        release.set()
        time.sleep(0.35)
        assert reader.breaker.state == "half_open"
        assert reader._call(lambda: 42, 1.0, "lookup") == 42  # the probe answers: closed
        assert reader.breaker.state == "closed"
        with pytest.raises(StoreUnavailable) as e:
            reader._call(lambda: 1 / 0, 1.0, "lookup")
        assert e.value.cause == "store_error" and "ZeroDivisionError" in str(e.value)
        assert causes == ["store_timeout", "store_busy", "store_error"]
    finally:
        release.set()
        reader.close()


def test_items_the_warehouse_no_longer_lists_are_never_recommended(serving_homes, tmp_path):
    """A catalogue row retracted (in dim_items, not in the catalogue, though the export knew it
    from the catalogue) or an item gone from the warehouse entirely: filtered out."""
    import duckdb

    from serving.runtime import read_catalogue

    s, export, _ = serving_homes
    m = LoadedModel(export, "v")
    t = Settings(home=tmp_path)
    t.internal_snapshot("shop").parent.mkdir(parents=True)
    gone, retracted, events_only = m.ids[1], m.ids[2], m.ids[3]
    m.titles[3] = m.category[3] = ""  # the export never had catalogue data for it
    with duckdb.connect(str(t.internal_snapshot("shop"))) as con:
        con.execute("create schema marts")
        con.execute("create table marts.dim_items (item_id varchar, in_catalogue boolean)")
        con.executemany("insert into marts.dim_items values (?, ?)",
                        [(i, i not in (retracted, events_only)) for i in m.ids[2:]])
        con.execute("create table marts.fct_events as select 'u1' as user_id")
    c = read_catalogue(t, "shop", m)
    assert not c.available[0] and not c.available[m.index[gone]]
    assert not c.available[m.index[retracted]]
    assert c.available[m.index[events_only]]  # never catalogued: an events-only item stays
    assert int(c.available.sum()) == len(m.ids) - 3 and c.sample_users == ("u1",)
    assert bool(read_catalogue(Settings(home=tmp_path / "none"), "shop", m).available[1:].all())


def test_a_batch_of_events_reaches_each_users_live_sequence_in_one_call_per_user(serving_homes):
    from serving.online import Event, OnlineFeaturesReader

    s, _, _ = serving_homes
    reader = OnlineFeaturesReader(s, "shop")
    try:
        n = s.feast.sequence_length
        a, b = f"batch-a-{uuid.uuid4().hex[:6]}", f"batch-b-{uuid.uuid4().hex[:6]}"
        t0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        events = [Event(a, f"i{j + 1}", "view", t0 + dt.timedelta(seconds=j))
                  for j in range(n + 5)]
        events += [Event(b, "i2", "purchase", t0 + dt.timedelta(seconds=2)),
                    Event(b, "i1", "view", t0)]  # out of order in the call
        calls = []
        real = reader._call
        reader._call = lambda fn, timeout_s, what: calls.append(what) or real(fn, timeout_s, what)
        assert reader.push(reversed(events)) == n + 7
        assert calls == ["live push", "live push"]
        assert [i for _, i, _ in reader.live.get(a)] == [f"i{j + 1}" for j in range(5, n + 5)]
        assert [(i, t) for _, i, t in reader.live.get(b)] == [("i1", "view"), ("i2", "purchase")]
    finally:
        reader.close()


def test_serve_without_a_production_model_is_one_line(shoprec_home):
    from typer.testing import CliRunner

    from shoprec.cli import app

    r = CliRunner().invoke(app, ["serve", "--port", str(free_port())])
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no production model of dataset "
                                                   "'shop'") and "make demo" in lines[0]


# ------------------------------------------------------------------------ against a server
def test_recommendations_come_from_the_promoted_model_sqlite(sqlite_server):
    server, s, (v1, _) = sqlite_server
    assert server.get("/readyz").json() == {"ready": True, "model": v1,
                                            "online_store": "reachable", "breaker": "closed"}
    from serving.app import Recommendations

    for user in known_users(server):
        body = server.recommend(user, k=10)
        assert Recommendations.model_validate(body).model_dump() == body  # the documented schema
        version, items, _ = expected(s, user, 10)
        assert (body["strategy"], body["model_version"], version) == ("personalized", v1, v1)
        assert [i["item_id"] for i in body["items"]] == items
        assert all(i["reason"] and i["title"] for i in body["items"])
    metrics = server.get("/metrics").text
    assert f'shoprec_model_info{{dataset="shop",feature_service="recommender_v2",version="{v1}"}}' \
        in metrics
    assert 'shoprec_recommendations_total{strategy="personalized"}' in metrics
    assert 'endpoint="/recommendations/{user_id}"' in metrics


def test_recommendations_come_from_the_promoted_model_redis(redis_server):
    server, s, version = redis_server
    assert server.get("/readyz").status_code == 200
    for user in known_users(server, 3):
        body = server.recommend(user, k=10)
        assert (body["strategy"], body["model_version"]) == ("personalized", version)
        assert [i["item_id"] for i in body["items"]] == expected(s, user, 10)[1]


def test_a_new_user_is_a_cold_start_until_their_first_event(sqlite_server):
    server, s, _ = sqlite_server
    user = f"new-{uuid.uuid4().hex[:8]}"
    body = server.recommend(user, k=5)
    assert body["strategy"] == "cold_start" and len(body["items"]) == 5
    assert all(i["reason"].startswith("popular in ") for i in body["items"])
    item = body["items"][-1]["item_id"]
    r = server.post_events(view(user, item))
    assert r.status_code == 202 and r.json()["live_features"] == "fresh", r.text
    after = server.recommend(user, k=5)
    assert after["strategy"] == "personalized"
    assert [i["item_id"] for i in after["items"]] == expected(s, user, 5)[1]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_posted_events_change_the_next_recommendations(backend, request):
    server, s, _ = request.getfixturevalue(f"{backend}_server")
    user = known_users(server)[-1]
    before = server.recommend(user)
    ids = [i["item_id"] for i in before["items"]]
    m = _model(str(s.home), s.feast.online_store, before["model_version"])
    # items far from what they are shown: the least recommended of a few popular ones
    posted = [m.ids[i] for i in m.trending[:200] if m.ids[i] not in ids][-3:]
    batch = [view(user, item) for item in posted]
    r = server.post_events(batch)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 3, "duplicates": 0, "pushed": 3, "live_features": "fresh",
                        "detail": None, "forgotten": 0}
    after = server.recommend(user)
    assert [i["item_id"] for i in after["items"]] != ids
    _, want, f = expected(s, user, 20)
    assert f.items[-3:] == posted  # the live sequence holds them, newest last
    assert [i["item_id"] for i in after["items"]] == want
    recent = {m.titles[m.index[i]] for i in f.items[-5:]}  # what reasons may name
    why = [(i["item_id"], i["reason"]) for i in after["items"]]
    named = [r.removeprefix("because you viewed ") for _, r in why
             if r.startswith("because you viewed ")]
    assert set(named) <= recent, why
    again = server.post_events(batch)  # event_id is the idempotency key
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 3
    assert [i["item_id"] for i in server.recommend(user)["items"]] == want


def test_similar_items_and_the_demo_page(sqlite_server):
    server, s, _ = sqlite_server
    m = _model(str(s.home), "sqlite", registry(s).resolve("production"))
    item = m.ids[m.trending[0]]
    body = server.get(f"/items/{item}/similar", k=5).json()
    assert [i["item_id"] for i in body["items"]] == [m.ids[i] for i, _ in m.similar(item, 5)]
    assert all(i["reason"].startswith("similar to ") for i in body["items"])
    page = server.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/recommendations/" in page.text and "/events" in page.text
    assert "/users/sample" in page.text
    assert server.get("/openapi.json").json()["paths"].keys() >= {
        "/recommendations/{user_id}", "/events", "/items/{item_id}/similar", "/healthz",
        "/readyz", "/metrics", "/admin/reload"}


@pytest.mark.parametrize(("path", "params", "status", "message"), [
    ("/recommendations/u1", {"k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ("/recommendations/u1", {"k": 101}, 422, "k: Input should be less than or equal to 100"),
    ("/recommendations/u1", {"k": "x"}, 422, "k: Input should be a valid integer"),
    ("/recommendations/" + "u" * 257, {}, 422, "user_id: too long: 257 characters"),
    ("/recommendations/u%01", {}, 422, "user_id: character '\\x01' (U+0001) at 1"),
    ("/recommendations/%20u", {}, 422, "user_id: ' u' has leading or trailing spaces"),
    ("/items/i%7F/similar", {}, 422, "item_id: character '\\x7f'"),
    ("/items/no-such-item/similar", {}, 404, "item_id 'no-such-item' is not in the catalogue"),
    ("/items/i1/similar", {"k": 1000}, 422, "k: Input should be less than or equal to 100"),
])
def test_bad_inputs_are_4xx_with_a_clear_message(sqlite_server, path, params, status, message):
    server, _, _ = sqlite_server
    r = server.get(path, **params)
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(message), r.json()


@pytest.mark.parametrize(("payload", "message"), [
    ({"event_id": "e", "user_id": "u"}, "events[0].item_id: missing"),
    ([], "events: no events"),
    ("text", "events: expected an event object or a list of them, got str"),
    ({**view("u1", "i1"), "event_type": "like"}, "events[0].event_type: 'like' is not an event "
                                                 "type"),
    ([view("u1", "i1"), {**view("u1", "i1"), "event_timestamp": "2026-01-01T00:00:00"}],
     "events[1].event_timestamp: '2026-01-01T00:00:00' has no timezone"),
])
def test_bad_events_are_422_and_accept_nothing(sqlite_server, payload, message):
    server, _, _ = sqlite_server
    r = server.post_events(payload)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(message), r.json()
    bad_json = server.client.post("/events", content=b"{not json",
                                  headers={"content-type": "application/json"})
    assert bad_json.status_code == 422


def test_admin_without_a_token_is_refused(sqlite_server, redis_server):
    server, _, _ = sqlite_server
    assert server.client.post("/admin/reload").status_code == 401
    assert server.client.post("/admin/reload", headers={
        "Authorization": "Bearer wrong"}).status_code == 401
    assert server.client.post("/admin/reload", headers={
        "Authorization": TOKEN}).status_code == 401  # no scheme
    no_token_configured, _, _ = redis_server
    r = no_token_configured.client.post("/admin/reload", headers={
        "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403 and "SHOPREC_SERVING__ADMIN_TOKEN" in r.json()["detail"]


def test_hot_reload_under_load_fails_no_request(sqlite_server):
    """A thread hammers /recommendations while another version is promoted and reloaded by
    the admin endpoint, then rolled back and picked up by the registry poll alone."""
    server, s, (v1, v2) = sqlite_server
    users = known_users(server)
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def hammer():
        with httpx.Client(base_url=server.url, timeout=30) as c:
            n = 0
            while not stop.is_set():
                try:
                    r = c.get(f"/recommendations/{users[n % len(users)]}", params={"k": 20})
                    ok = r.status_code == 200 and r.json()["strategy"] == "personalized"
                    seen.append((r.status_code if ok else -r.status_code,
                                 r.json().get("model_version") if ok else r.text))
                except httpx.HTTPError as e:  # a refused or dropped connection fails too
                    seen.append((0, repr(e)))
                n += 1

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        reg = registry(s)
        reg.promote(v2, why="test: hot reload")
        r = server.client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == v2 and r.json()["previous"] in (v1, v2)
        mark = len(seen)
        time.sleep(1.0)
        reg.rollback(why="test: the poll follows the alias")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not seen or seen[-1][1] != v1):
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = [x for x in seen if x[0] != 200]
    assert not failed, (failed[:5], [line for line in server.output().splitlines()
                                     if "fallback" in line][:5])
    versions = [v for _, v in seen]
    assert len(seen) > 50 and {v1, v2} <= set(versions)
    assert versions[-1] == v1
    assert v2 in versions[mark:]
    metrics = server.get("/metrics").text
    assert 'shoprec_model_reloads_total{outcome="swapped"} 3.0' in metrics


def test_an_unreachable_online_store_falls_back_and_answers_200(redis_server, own_redis):
    """Runs last in this module: it kills the module's redis-server."""
    server, s, version = redis_server
    _, proc = own_redis
    user = known_users(server, 1)[0]
    assert server.recommend(user)["strategy"] == "personalized"
    proc.kill()
    proc.wait(timeout=10)
    answers = [server.recommend(user, k=5) for _ in range(6)]
    assert {a["strategy"] for a in answers} == {"fallback"}
    assert all(a["model_version"] == version and len(a["items"]) == 5 for a in answers)
    assert all(i["reason"].startswith("popular in ") for a in answers for i in a["items"])
    causes = [a["fallback_cause"] for a in answers]
    assert set(causes[:3]) <= {"store_error", "store_timeout"}, causes
    assert causes[-1] == "breaker_open", causes  # the dead store is not waited on any more
    t0 = time.perf_counter()
    server.recommend(user)
    assert time.perf_counter() - t0 < 0.5
    r = server.post_events(view(user, answers[0]["items"][0]["item_id"]))
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1 and r.json()["live_features"] == "stale"
    ready = server.get("/readyz")
    assert ready.status_code == 503 and ready.json()["online_store"] == "unreachable"
    assert server.get("/healthz").status_code == 200
    metrics = server.get("/metrics").text
    assert 'shoprec_fallbacks_total{cause="breaker_open"}' in metrics
    assert 'shoprec_recommendations_total{strategy="fallback"} ' in metrics
    assert "fallback user=" in server.output()  # every fallback logged
