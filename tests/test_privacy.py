"""Forgetting a user: every store searched through its engine (find.py) before and after, a
positive control, other users' rows unchanged, a kill -9 halfway, and a re-delivered old batch."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shoprec.config import FeastSettings, Settings
from shoprec.lake import list_batches
from shoprec.privacy import log
from shoprec.privacy.find import find_user
from shoprec.privacy.forget import forget
from tests.conftest import private_redis

DS = "shop"
ROOT = Path(__file__).resolve().parent.parent


def build(home: Path, feast: FeastSettings | None = None, train: bool = False) -> Settings:
    """The tiny shop through the whole chain (lake, warehouse and snapshot, Feast exports and
    online store), optionally with a trained, registered and promoted model."""
    from shoprec.features.materialize import materialize
    from shoprec.simulate import simulate
    from shoprec.transform import transform
    from shoprec.validation import validate

    s = Settings(home=home, feast=feast or FeastSettings())
    simulate("tiny", seed=11, days=8, settings=s)
    assert all(r.ok for r in validate(settings=s, workers=1))
    transform(settings=s)
    transform(settings=s)  # a second snapshot: an older one must be forgotten too
    materialize(settings=s)
    if train:
        from shoprec.registry import Registry
        from shoprec.storage import store_from_settings
        from training.train import train as train_run

        s.training.max_epochs = 1
        run = train_run(s, DS, progress=False)
        reg = Registry(store_from_settings(s), DS)
        reg.promote(reg.register(run.run_dir / "export", "r1"))
    return s


def busiest_users(s: Settings, n: int = 2) -> list[str]:
    import duckdb

    with duckdb.connect(str(s.internal_snapshot(DS)), read_only=True) as con:
        return [r[0] for r in con.execute(
            "SELECT user_id FROM marts.fct_events GROUP BY 1 ORDER BY count(*) DESC, 1 "
            "LIMIT ?", [n]).fetchall()]


def event_ids(s: Settings, user: str) -> list[str]:
    out = []
    for z in ("landing", "validated", "quarantine"):
        for b in list_batches(z, dataset=DS, settings=s):
            f = b / "events.parquet"
            if f.is_file():
                t = pq.read_table(f, columns=["event_id", "user_id"]).to_pylist()
                out += [r["event_id"] for r in t if r["user_id"] == user]
    return out


def others(s: Settings, user: str) -> dict[str, tuple[int, int]]:
    """(count, checksum) of every other user's rows: each lake file, and the warehouse's
    per-user tables without their build stamps."""
    import duckdb

    out = {}
    with duckdb.connect() as con:
        for z in ("validated",):
            for b in list_batches(z, dataset=DS, settings=s):
                for t in ("events", "users"):
                    f = b / f"{t}.parquet"
                    if f.is_file():
                        out[f"{b.name}/{t}"] = con.execute(
                            "SELECT count(*), sum(hash(t)) FROM read_parquet(?) t "
                            "WHERE user_id <> ?", [str(f), user]).fetchone()
        con.execute(f"ATTACH '{s.internal_snapshot(DS)}' AS w (READ_ONLY)")
        for table in ("marts.fct_events", "marts.dim_users", "features.feat_user_daily"):
            cols = [c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE w.{table})")
                    .fetchall() if c not in {"built_at", "dbt_invocation_id"}]
            out[table] = con.execute(
                f"SELECT count(*), sum(hash(t)) FROM (SELECT {', '.join(cols)} FROM w.{table} "
                "WHERE user_id <> ?) t", [user]).fetchone()
    return out


def raw_ids_in(path: Path, ids: list[str]) -> int:
    """Values of any text column of any table in `path` that are one of `ids`, or a session
    dbt derived from one (`<user_id>~s<time>`)."""
    import duckdb

    from shoprec.transform.snapshot_sync import ident, tables

    with duckdb.connect() as con:
        con.execute(f"ATTACH '{path}' AS f (READ_ONLY)")
        con.execute("CREATE TEMP TABLE ids AS SELECT unnest(?::VARCHAR[]) AS u", [ids])
        n = 0
        for (schema, table), cols in tables(con, "f").items():
            for col, typ in cols:
                if typ == "VARCHAR":
                    n += con.execute(
                        f"SELECT count(*) FROM f.{ident(schema)}.{ident(table)} t JOIN ids ON "
                        f"t.{ident(col)} = ids.u OR starts_with(t.{ident(col)}, ids.u || '~s')"
                    ).fetchone()[0]
        return n


def test_analysts_see_pseudonyms_that_join(tmp_path):
    """The analysts' snapshot holds no raw user id (nor a session named after one) in any
    column; its pseudonyms join as the ids do; the internal snapshot keeps the real ids."""
    import duckdb

    from shoprec.privacy.pseudonym import analysts_key, pseudonym

    s = build(tmp_path / "home")
    with duckdb.connect(str(s.internal_snapshot(DS)), read_only=True) as con:
        ids = [u for (u,) in con.execute("SELECT user_id FROM marts.fct_events UNION "
                                         "SELECT user_id FROM marts.dim_users").fetchall()]
        joined = con.execute("SELECT count(*), count(DISTINCT user_id) FROM marts.fct_events "
                             "JOIN marts.dim_users USING (user_id)").fetchone()
        first = con.execute("SELECT user_id FROM marts.fct_events ORDER BY event_id "
                            "LIMIT 1").fetchone()[0]
    assert raw_ids_in(s.internal_snapshot(DS), ids) > 0  # the search finds what is there
    assert raw_ids_in(s.analytics_snapshot(DS), ids) == 0
    with duckdb.connect(str(s.analytics_snapshot(DS)), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT user_id) FROM marts.fct_events "
                           "JOIN marts.dim_users USING (user_id)").fetchone() == joined
        assert con.execute("SELECT user_id FROM marts.fct_events ORDER BY event_id "
                           "LIMIT 1").fetchone()[0] == pseudonym(analysts_key(s), first)
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal"
                           ).fetchone()[0] == 0  # staging views would read the raw lake


def spool_events(s: Settings, users: list[str]) -> int:
    """POST /events' intake takes an event of each user (landed when it closes); returns how
    many it dropped as forgotten."""
    from serving.events import EventIntake

    now = dt.datetime.now(dt.UTC).isoformat()
    with EventIntake(s, DS, background=False) as intake:
        return intake.accept([{"event_id": f"live-{u}", "user_id": u, "item_id": "i1",
                               "event_type": "view", "event_timestamp": now}
                              for u in users]).forgotten


def recommend(s: Settings, user: str) -> str:
    from serving.runtime import Service

    svc = Service(s, DS)
    svc.start(poll=False)
    try:
        return svc.recommend(user, 10).strategy
    finally:
        svc.stop()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_forgotten_user_is_nowhere_and_nobody_else_changed(store, tmp_path):
    with private_redis() if store == "redis" else _nothing() as server:
        feast = FeastSettings(online_store="redis",
                                                 redis_connection=f"127.0.0.1:{server[0]}") \
            if store == "redis" else None
        s = build(tmp_path / "home", feast, train=store == "sqlite")
        gone, kept = busiest_users(s)
        spool_events(s, [gone, kept])
        evs = event_ids(s, gone)
        before = find_user(s, DS, gone, evs)
        places = {p.split(":")[0].split("/")[0] for p in before}
        assert {"lake", "warehouse", "features", "serving"} <= places, before
        assert ("redis" if store == "redis" else "feast") in places, before
        if store == "sqlite":
            assert recommend(s, gone) == "personalized"
        unchanged = others(s, gone)

        report = forget(gone, dataset=DS, settings=s)

        assert report.done, report.summary()
        assert f"live-{gone}" in evs  # the intake landed it when it closed
        assert sum(n for k, n in report.removed.items() if k.endswith("/events")) == len(evs)
        assert report.removed["serving spool"] == 1  # its id in the spool's seen-set
        assert find_user(s, DS, gone, evs) == {}
        control = find_user(s, DS, kept, [f"live-{kept}"])  # the search finds what is there
        places = {p.split(":")[0].split("/")[0] for p in control}
        assert {"lake", "warehouse", "features", "serving"} <= places, control
        assert ("redis" if store == "redis" else "feast") in places, control
        assert others(s, gone) == unchanged
        assert [r["status"] for r in log.records(s, DS)] == ["started", "done"]
        assert gone not in s.forget_log(DS).read_text()
        if store == "sqlite":
            assert recommend(s, gone) == "cold_start"
            listed = _cli(s, "models", "list")
            assert "FORGOTTEN: trained on 1 forgotten user(s)" in listed

        again = forget(gone, dataset=DS, settings=s)  # idempotent: nothing left to remove
        assert again.done and not [k for k in again.removed if k.startswith("lake")]
        assert spool_events(s, [gone]) == 1  # the intake drops what they send from now on
        assert find_user(s, DS, gone, [f"live-{gone}"]) == {}


def test_a_redelivered_batch_does_not_bring_the_user_back(tmp_path):
    from shoprec.simulate import simulate
    from shoprec.validation import validate

    s = Settings(home=tmp_path / "home")
    simulate("tiny", seed=11, days=3, settings=s)
    original = tmp_path / "copy"
    shutil.copytree(s.zone("landing", DS) / "2026-01-05", original)
    assert all(r.ok for r in validate(settings=s, workers=1))
    user = pq.read_table(original / "events.parquet")["user_id"][0].as_py()
    n = sum(1 for u in pq.read_table(original / "events.parquet")["user_id"].to_pylist()
            if u == user)
    forget(user, dataset=DS, settings=s)

    shutil.copytree(original, s.zone("landing", DS) / "redelivered")
    notes = []
    validate(settings=s, workers=1, on_batch=lambda r: notes.append(r.note))
    assert any(f"{n + 1:,} rows of forgotten users dropped" in x for x in notes), notes
    assert find_user(s, DS, user) == {}


def test_hmac_requests_and_bad_ids(tmp_path):
    s = Settings(home=tmp_path / "home")
    token = _cli(s, "privacy", "token", "u 1").strip()
    assert token.startswith("hmac:") and len(token) == 69
    assert token == _cli(s, "privacy", "token", "u 1").strip()  # the key is kept
    assert (s.privacy_key_file().stat().st_mode & 0o777) == 0o600
    other = Settings(home=tmp_path / "other")
    assert _cli(other, "privacy", "token", "u 1").strip() != token  # keyed: not guessable
    bad = _run(s, "privacy", "forget", "x" * 300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "user_id" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    bad = _run(s, "privacy", "forget", "hmac:zz")
    assert bad.returncode == 2 and "64 lowercase hex" in bad.stderr


def test_a_forget_killed_halfway_is_finished_by_a_rerun(tmp_path):
    """Killed during the rebuild (after the lake was rewritten), the same command finishes;
    the end state equals that of a forget that was never interrupted."""
    killed, clean = build(tmp_path / "killed"), build(tmp_path / "clean")
    user = busiest_users(killed)[0]
    proc = subprocess.Popen([sys.executable, "-m", "shoprec.cli", "privacy", "forget", user],
                            env=_env(killed), stderr=subprocess.PIPE, text=True, cwd=ROOT)
    seen = ""
    deadline = time.monotonic() + 120
    while "dbt: full rebuild" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    time.sleep(1.0)  # inside dbt's build
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "dbt: full rebuild" in seen, seen
    assert log.unfinished(killed, DS)

    forget(user, dataset=DS, settings=killed)
    forget(user, dataset=DS, settings=clean)
    assert not log.unfinished(killed, DS)
    assert find_user(killed, DS, user) == {}
    for z in ("landing", "validated", "quarantine"):
        a = sorted(str(p.relative_to(killed.zone(z, DS)))
                   for p in killed.zone(z, DS).rglob("*") if p.is_file())
        assert not [p for p in a if ".tmp-" in p], a  # nothing half-written is left
    for b in list_batches("validated", dataset=DS, settings=killed):
        for t in ("events", "users"):
            f = b / f"{t}.parquet"
            twin = clean.zone("validated", DS) / b.name / f"{t}.parquet"
            if f.is_file():
                assert f.read_bytes() == twin.read_bytes(), f
    assert others(killed, user) == others(clean, user)


class _nothing:
    def __enter__(self):
        return (None, None)

    def __exit__(self, *exc):
        return False


def _env(s: Settings) -> dict:
    env = {**os.environ, "SHOPREC_HOME": str(s.home)}
    if s.feast.online_store == "redis":
        env["SHOPREC_FEAST__ONLINE_STORE"] = "redis"
        env["SHOPREC_FEAST__REDIS_CONNECTION"] = s.feast.redis_connection
    return env


def _run(s: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shoprec.cli", *args], env=_env(s),
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def _cli(s: Settings, *args: str) -> str:
    r = _run(s, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


def test_trained_user_sets_and_the_retraining_policy(tmp_path):
    """A version keeps its users as keyed hashes; once one of them is forgotten the next
    candidate replaces production whatever production scored."""
    from shoprec.privacy.identity import key, user_hmac
    from shoprec.privacy.trained import TRAINED_USERS, count_in, hash_set
    from shoprec.registry import Registry
    from shoprec.registry.gates import Check, forgotten_policy
    from shoprec.storage import LocalStore
    from tests.test_registry import make_export

    s = Settings(home=tmp_path / "home")
    k = key(s)
    blob = hash_set(k, ["a", "b", "c", "b"])
    assert len(blob) == 3 * 16 and b"a" not in blob.split(b"\0")
    assert count_in(blob, {user_hmac(k, "b"), user_hmac(k, "z")}) == 1
    assert count_in(blob, set()) == 0 and count_in(b"", {user_hmac(k, "a")}) == 0

    export = make_export(tmp_path / "run" / "export", seed=1)
    (export / TRAINED_USERS).write_bytes(blob)
    store = LocalStore(tmp_path / "registry")
    reg = Registry(store, DS)
    version = reg.register(export, "r1")
    assert reg.trained_on(version, {user_hmac(k, "c")}) == 1
    old = reg.register(make_export(tmp_path / "old" / "export", seed=2), "r0")
    assert reg.trained_on(old, {user_hmac(k, "c")}) is None  # exported before the sets

    refused = [Check("no_regression", False, 0.1, 0.2, "candidate is below production")]
    assert forgotten_policy(refused, s, store, DS, version) == refused  # nobody forgotten yet
    log.append(s, DS, {"user": user_hmac(k, "z"), "status": "done"})
    assert forgotten_policy(refused, s, store, DS, version) == refused  # not one of its users
    log.append(s, DS, {"user": user_hmac(k, "c"), "status": "done"})
    [check] = forgotten_policy(refused, s, store, DS, version)
    assert check.passed and check.skipped and "forgotten" in check.reason
