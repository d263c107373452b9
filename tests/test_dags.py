"""Airflow: the DAG folder parses cleanly, DAG files stay thin, and the pipeline DAG runs for
real through dag.test() against Airflow's own metadata database."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest

from shoprec.config import Settings
from shoprec.lake import list_batches
from shoprec.simulate import simulate
from tests.conftest import ROOT

DBT_MODELS = {p.stem for p in (ROOT / "dbt_project" / "models").rglob("*.sql")}


@pytest.fixture(scope="module")
def parse_home(tmp_path_factory: pytest.TempPathFactory):
    """SHOPREC_HOME while DAG files parse: the pipeline caches dbt's manifest under it."""
    return tmp_path_factory.mktemp("parse-home")


@pytest.fixture(scope="module")
def dagbag(parse_home):
    from shoprec.config import reset_settings_cache

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   capture_output=True)
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPREC_HOME", str(parse_home))
        reset_settings_cache()
        bag = DagBag(dag_folder=str(ROOT / "dags"))
    reset_settings_cache()
    return bag


@pytest.fixture
def restore_environ():
    """Cosmos' local operators copy a task's env into os.environ (for OpenLineage), and
    dag.test() runs every task in this process: put the environment back afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_dag_folder_has_no_import_errors_and_documents_every_dag(dagbag):
    assert dagbag.import_errors == {}
    assert "shoprec_pipeline" in dagbag.dag_ids
    for dag_id in dagbag.dag_ids:
        dag = dagbag.get_dag(dag_id)
        assert dag.doc_md and len(dag.doc_md) > 100, dag_id
        assert "shoprec" in dag.tags


def test_dag_files_import_no_heavy_modules(parse_home):
    """Parsing runs every few seconds in the scheduler: GX, dbt, torch belong inside tasks."""
    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); heavy = [m for m in "
            "('great_expectations', 'torch', 'dbt', 'feast', 'duckdb') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    env = {**os.environ, "SHOPREC_HOME": str(parse_home)}
    for f in (ROOT / "dags").glob("*.py"):
        r = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True,
                           env=env)
        assert r.returncode == 0, f"{f.name} imports {r.stdout} at top level: {r.stderr[-2000:]}"


def test_each_dag_parses_on_its_own_without_running_anything(dagbag, parse_home, monkeypatch):
    """The dag-processor re-parses every file every few seconds: with dbt's manifest cached (as
    after the first parse), parsing a file starts no process (no `dbt parse`, no tool). Its time
    is a figure of `bench.bench_dag_parse`, not an assertion here."""
    from airflow.dag_processing.dagbag import DagBag

    from shoprec.config import reset_settings_cache

    started: list = []

    class NoProcess:
        def __init__(self, args, *a, **kw):
            started.append(args)
            raise AssertionError(f"a DAG file started a process while parsing: {args}")

    monkeypatch.setenv("SHOPREC_HOME", str(parse_home))
    reset_settings_cache()
    monkeypatch.setattr(subprocess, "Popen", NoProcess)
    try:
        for f in sorted((ROOT / "dags").glob("*.py")):
            bag = DagBag(dag_folder=str(f))
            (stat,) = bag.dagbag_stats
            assert not bag.import_errors and stat.dag_num >= 1, (f.name, bag.import_errors)
            assert stat.task_num >= 1, f.name
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert started == []


def test_dags_are_scheduled_retried_timed_and_alerting_as_documented(dagbag):
    from airflow.sdk import AssetOrTimeSchedule

    from shoprec.pipeline import ops

    every = ("shoprec_pipeline", "shoprec_training", "shoprec_models", "shoprec_backfill",
             "shoprec_privacy")
    assert set(every) <= set(dagbag.dag_ids)
    for dag_id in every:
        dag = dagbag.get_dag(dag_id)
        assert dag.dagrun_timeout is not None, dag_id
        for task in dag.tasks:
            assert task.execution_timeout is not None, (dag_id, task.task_id)
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(c is ops.alert or getattr(c, "__wrapped__", None) is ops.alert
                       or "alert" in repr(c) for c in callbacks), (dag_id, task.task_id)
    pipeline = dagbag.get_dag("shoprec_pipeline")
    assert isinstance(pipeline.timetable, AssetOrTimeSchedule)
    inner = pipeline.timetable.timetable
    assert inner.expression in ("@daily", "0 0 * * *"), inner
    assert "shoprec-landing-shop" in repr(pipeline.timetable.asset_condition)
    assert pipeline.max_active_tasks > 1  # only dbt's producer task writes the warehouse
    # a quarantine or a failed dbt test is final; a store that is briefly away is retried
    assert pipeline.get_task("validate_landing").retries == 0
    feast = pipeline.get_task("feast_materialize")
    assert feast.retries >= 2 and feast.retry_exponential_backoff
    assert all(t.retries == 0 for t in pipeline.tasks if t.task_id.startswith("dbt."))
    training = dagbag.get_dag("shoprec_training")
    assert training.get_task("train").retries == 0
    assert training.get_task("promote").retry_exponential_backoff
    models = dagbag.get_dag("shoprec_models")
    assert type(models.timetable).__name__ == "NullTimetable"  # manual only
    assert set(models.params) == {"action", "version", "alias", "dataset", "why"}
    backfill = dagbag.get_dag("shoprec_backfill")
    assert type(backfill.timetable).__name__ == "NullTimetable"
    assert set(backfill.params) == {"dataset", "start", "end", "full_refresh"}
    # the same chain as the pipeline, behind the plan of the range
    assert backfill.get_task("validate_landing").upstream_task_ids == {"plan"}
    assert backfill.get_task("feast_materialize").upstream_task_ids == {
        "plan", "publish_snapshot"}
    assert {t for t in backfill.task_ids if t != "plan"} == set(pipeline.task_ids)


def test_a_failure_writes_one_alert_line_and_posts_it_to_the_webhook(tmp_path):
    import http.server
    import json
    import threading
    from types import SimpleNamespace

    from shoprec.pipeline.ops import alert
    from tests.conftest import free_port

    got = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    port = free_port()
    httpd = http.server.HTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        s = Settings(home=tmp_path, airflow={"alert_webhook": f"http://127.0.0.1:{port}/hook"})
        ti = SimpleNamespace(dag_id="shoprec_pipeline", task_id="validate_landing",
                             try_number=1, log_url="http://airflow/log")
        ctx = {"ti": ti, "run_id": "manual__1", "params": {"dataset": "acme"},
               "exception": RuntimeError("1 batch(es) quarantined\n  2026-01-06: prices")}
        rec = alert(ctx, settings=s)
        lines = s.alerts_log().read_text().splitlines()
        assert [json.loads(x) for x in lines] == [rec] == got
        assert (rec["dag_id"], rec["task_id"], rec["dataset"], rec["run_id"]) == (
            "shoprec_pipeline", "validate_landing", "acme", "manual__1")
        assert rec["reason"].startswith("RuntimeError: 1 batch(es) quarantined")
    finally:
        httpd.shutdown()
    # the webhook gone: the alert is still written, and the callback does not raise
    assert alert({"ti": ti, "exception": ValueError("x")}, settings=s)["reason"] == \
        "ValueError: x"
    assert len(s.alerts_log().read_text().splitlines()) == 2


def test_dbt_renders_one_task_per_model_with_its_tests(dagbag):
    dag = dagbag.get_dag("shoprec_pipeline")
    runs = {t.removeprefix("dbt.").removesuffix(".run") for t in dag.task_ids
            if t.startswith("dbt.") and t.endswith(".run")}
    assert runs == DBT_MODELS
    for model in DBT_MODELS:  # every model of the project has data tests
        assert dag.get_task(f"dbt.{model}.test").upstream_task_ids == {f"dbt.{model}.run"}
    # a test over two models (fct_events → dim_users) is reported by both models' test
    # sensors, not by a task of its own (whose sensor would find no status and defer)
    assert not [t for t in dag.task_ids if t.startswith("dbt.fct_events_user_id_in_")]
    per_model = dag.get_task("dbt.dbt_producer_watcher").tests_per_model
    rel = [m for m, tests in per_model.items()
           if any(".fct_events_user_id_in_users_export" in t for t in tests)]
    assert sorted(m.rsplit(".", 1)[-1] for m in rel) == ["dim_users", "fct_events"], per_model
    # the root model's sensor starts after the build, whatever it did (a failure is reported)
    root = dag.get_task("dbt.stg_shop__deliveries.run")
    assert root.upstream_task_ids == {"dbt.dbt_producer_watcher"}
    assert root.trigger_rule == "all_done"
    # events are deduplicated by arrival: the deliveries' lineage is built and tested first
    assert dag.get_task("dbt.stg_shop__events.run").upstream_task_ids == {
        "dbt.stg_shop__deliveries.test"}
    # one `dbt build` does the work (the only writer of the warehouse); the model and test
    # tasks are sensors of what it reports
    producer = dag.get_task("dbt.dbt_producer_watcher")
    assert producer.upstream_task_ids == {"validate_landing"}
    leaves = {t for t in dag.task_ids if t.startswith("dbt.") and not any(
        d.startswith("dbt.") for d in dag.get_task(t).downstream_task_ids)}
    done = {"dbt.dbt_producer_watcher_done"}
    assert leaves - done and all(t.endswith("test") for t in leaves - done)
    assert dag.get_task("publish_snapshot").upstream_task_ids == leaves
    # nothing of dbt's lands in the repository
    assert not {"target", "logs", ".user.yml"} & {p.name for p in (ROOT / "dbt_project").iterdir()}


def test_dbt_tasks_get_an_absolute_home_and_the_runs_dataset(dagbag, shoprec_home):
    from shoprec.pipeline.dbt_cosmos import prepare_dbt_task

    task = dagbag.get_dag("shoprec_pipeline").get_task("dbt.feat_user_daily.run")
    assert task._pre_execute_hook is prepare_dbt_task
    task = copy.copy(task)
    prepare_dbt_task({"task": task, "params": {"dataset": "acme"}})
    assert task.env["SHOPREC_HOME"] == str(shoprec_home.resolve())
    assert task.env["SHOPREC_DATASET"] == "acme"
    assert (shoprec_home / "warehouse").is_dir()  # DuckDB does not create it
    # a table no delivery brought yet reads as empty, as under `shoprec transform`
    stubs = Settings(home=shoprec_home).contract_stubs("acme")
    assert sorted(f.name for f in stubs.iterdir()) == [
        "events.parquet", "items.parquet", "users.parquet"]


def _run(dagbag, dag_id: str = "shoprec_pipeline", logical_date=None, **params):
    dag = dagbag.get_dag(dag_id)
    kw = {"logical_date": logical_date} if logical_date else {}
    dr = dag.test(run_conf=params or None, **kw)
    return dr.state, {ti.task_id: ti.state for ti in dr.get_task_instances()}


def _outputs(s: Settings, dataset: str = "shop") -> dict:
    """What a pipeline run leaves: the lake's zones, every table of the analysts' snapshot
    (rows and a checksum of each row), the online values of every user."""
    import duckdb

    from shoprec.features.store import get_store

    out: dict = {z: [b.name for b in list_batches(z, dataset=dataset, settings=s)]
                 for z in ("landing", "validated", "quarantine")}
    with duckdb.connect(str(s.internal_snapshot(dataset)), read_only=True) as con:
        tables = con.execute("select table_schema, table_name from information_schema.tables "
                             "where table_schema in ('marts', 'features')").fetchall()
        for schema, name in sorted(tables):
            cols = [f'"{c}"' for (c,) in con.execute(
                "select column_name from information_schema.columns where table_schema = ? "
                "and table_name = ? and column_name not in ('loaded_at', 'built_at')",
                [schema, name]).fetchall()]
            out[f"{schema}.{name}"] = con.execute(
                f'select count(*), sum(hash({", ".join(cols)}) % 1000003) '
                f'from "{schema}"."{name}"').fetchone()
        users = [u for (u,) in con.execute("select user_id from marts.dim_users").fetchall()]
    online = get_store(s, dataset).get_online_features(
        features=["user_daily:views_7d", "user_daily:purchases_30d"],
        entity_rows=[{"user_id": u} for u in users]).to_dict()
    out["online"] = sorted(zip(online["user_id"], online["views_7d"], online["purchases_30d"],
                               strict=True), key=lambda r: r[0])
    return out


@pytest.mark.slow
def test_a_bad_batch_is_quarantined_the_clean_ones_go_through_and_the_run_fails(
        dagbag, shoprec_home, restore_environ):
    import json

    from shoprec.features.store import get_store

    s = Settings(home=shoprec_home)
    simulate("tiny", seed=5, days=3, settings=s, inject=["negative_prices"], inject_day=1)
    state, tasks = _run(dagbag)
    assert state == "failed"
    assert tasks["validate_landing"] == "success"
    assert tasks["check_quarantine"] == "failed"  # the run fails at its end, naming the batch
    assert {tasks["publish_snapshot"], tasks["feast_materialize"]} == {"success"}
    dbt_tasks = {t: st for t, st in tasks.items() if t.startswith("dbt.")}
    assert len(dbt_tasks) > len(DBT_MODELS) and set(dbt_tasks.values()) == {"success"}
    assert [b.name for b in list_batches("validated", settings=s)] == ["2026-01-05"]
    assert [b.name for b in list_batches("quarantine", settings=s)] == ["2026-01-06"]
    # the day after uses items the bad day introduced: it waits in landing for the fix
    assert [b.name for b in list_batches("landing", settings=s)] == ["2026-01-07"]
    # the clean day reached the online store
    online = get_store(s, "shop").get_online_features(
        features=["user_daily:views_7d"], entity_rows=[{"user_id": f"u{i}"} for i in range(20)])
    assert any(v is not None for v in online.to_dict()["views_7d"])
    alerts = [json.loads(x) for x in s.alerts_log().read_text().splitlines()]
    assert any(a["task_id"] == "check_quarantine" and "2026-01-06" in a["reason"]
               and a["dataset"] == "shop" for a in alerts), alerts


@pytest.mark.slow
def test_clean_run_goes_through_dbt_and_feast(dagbag, shoprec_home, restore_environ):
    """A dataset other than the profile's default: its warehouse file proves that the run's
    `dataset` param reached dbt (SHOPREC_DATASET), not just the pipeline's own tasks."""
    import duckdb

    from shoprec.features.store import get_store

    s = Settings(home=shoprec_home)
    simulate("tiny", seed=5, days=2, dataset="acme", settings=s)
    state, tasks = _run(dagbag, dataset="acme")
    assert state == "success", tasks
    assert set(tasks.values()) == {"success"}
    assert {t.removeprefix("dbt.").removesuffix(".run") for t in tasks
            if t.startswith("dbt.") and t.endswith(".run")} == DBT_MODELS
    assert len(list_batches("validated", dataset="acme", settings=s)) == 2
    warehouse = shoprec_home / "warehouse"
    assert not (warehouse / "shop.duckdb").exists()
    # dbt ran in this process (dag.test) and its adapter still holds acme.duckdb open with its
    # own settings, so read the published snapshot: a copy of it, taken after every test passed
    assert (warehouse / "acme.duckdb").is_file()
    assert (warehouse / "acme-analytics.duckdb").is_symlink()
    with duckdb.connect(str(warehouse / "acme-analytics.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from features.feat_user_daily").fetchone()[0] > 50
        assert con.execute("select count(*) from marts.fct_events").fetchone()[0] > 0
    online = get_store(s, "acme").get_online_features(
        features=["user_daily:views_7d"], entity_rows=[{"user_id": "u0"}, {"user_id": "u5"}])
    assert any(v is not None for v in online.to_dict()["views_7d"])
    # each stage announced the concrete asset of the run's dataset, at its real location
    events = _asset_events()
    validated = s.uri(s.zone("validated", "acme"))
    assert (validated, "acme") in {(uri, extra.get("dataset")) for uri, extra in events}
    assert any(uri == s.uri(s.analytics_snapshot("acme")) for uri, _ in events)
    assert any(extra.get("dataset") == "acme" and extra.get("views") for _, extra in events)


def _asset_events() -> list[tuple[str, dict]]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        return [(e.asset.uri, dict(e.extra or {})) for e in session.query(AssetEvent).all()]


@pytest.mark.slow
def test_rerunning_an_interval_changes_nothing_and_a_backfill_adds_its_days(
        dagbag, shoprec_home, restore_environ):
    """Idempotent per data interval: the same interval run again leaves the same lake,
    warehouse (no duplicate row) and online store; then `shoprec_backfill` validates and loads
    a day that landed later, through the same chain."""
    import datetime as dt

    s = Settings(home=shoprec_home)
    simulate("tiny", seed=5, days=3, settings=s)
    interval = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    state, tasks = _run(dagbag, logical_date=interval, dataset="shop")  # as the form sends it
    assert state == "success", tasks
    first = _outputs(s)
    assert first["validated"] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert first["marts.fct_events"][0] > 1000
    assert sum(v is not None for _, v, _ in first["online"]) > 50
    state, tasks = _run(dagbag, logical_date=interval, dataset="shop")
    assert state == "success", tasks
    assert _outputs(s) == first

    simulate("tiny", seed=5, days=4, settings=s)  # the same three days and a fourth
    assert [b.name for b in list_batches("landing", settings=s)] == ["2026-01-08"]
    state, tasks = _run(dagbag, "shoprec_backfill", start="2026-01-08", end="2026-01-08",
                        dataset="shop")
    assert state == "success", tasks
    after = _outputs(s)
    assert after["validated"][-1] == "2026-01-08" and after["landing"] == []
    assert after["marts.fct_events"][0] > first["marts.fct_events"][0]
    assert after["online"] != first["online"]


def test_the_privacy_dag_forgets_a_user_named_by_a_token(dagbag, shoprec_home, restore_environ):
    """The manual DAG, triggered as the form sends it with `hmac:<token>`: the user is gone,
    and Airflow's record of the run (its conf, the task's XCom) names no one."""
    import json

    import duckdb

    from shoprec.features.materialize import materialize
    from shoprec.privacy.find import find_user
    from shoprec.privacy.identity import key, parse_request
    from shoprec.transform import transform
    from shoprec.validation import validate

    s = Settings(home=shoprec_home)
    simulate("tiny", seed=5, days=2, settings=s)
    assert all(r.ok for r in validate(settings=s, workers=1))
    transform(settings=s)
    materialize(settings=s)
    with duckdb.connect(str(s.internal_snapshot("shop")), read_only=True) as con:
        user = con.execute("select user_id from marts.fct_events order by event_id "
                           "limit 1").fetchone()[0]
    token = "hmac:" + parse_request(key(s), user)
    dag = dagbag.get_dag("shoprec_privacy")
    dr = dag.test(run_conf={"user": token, "dataset": "shop"})
    assert dr.state == "success", {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert find_user(s, "shop", user) == {}
    [ti] = dr.get_task_instances()
    out = ti.xcom_pull(task_ids="forget_user")
    assert out["user"] == token and out["removed"]["lake validated/events"] > 0
    assert user not in json.dumps(dr.conf) + json.dumps(out)
