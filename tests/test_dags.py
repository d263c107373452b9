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


def test_dbt_renders_one_task_per_model_with_its_tests(dagbag):
    dag = dagbag.get_dag("shoprec_pipeline")
    runs = {t.removeprefix("dbt.").removesuffix(".run") for t in dag.task_ids
            if t.startswith("dbt.") and t.endswith(".run")}
    assert runs == DBT_MODELS
    for model in DBT_MODELS:  # every model of the project has data tests
        assert dag.get_task(f"dbt.{model}.test").upstream_task_ids == {f"dbt.{model}.run"}
    # a test over two models waits for both (fct_events → dim_users)
    rel = dag.get_task("dbt.fct_events_user_id_in_users_export_test")
    assert rel.upstream_task_ids == {"dbt.fct_events.test", "dbt.dim_users.test"}
    assert dag.get_task("dbt.stg_shop__deliveries.run").upstream_task_ids == {"validate_landing"}
    # events are deduplicated by arrival: the deliveries' lineage is built and tested first
    assert dag.get_task("dbt.stg_shop__events.run").upstream_task_ids == {
        "dbt.stg_shop__deliveries.test"}
    leaves = {t for t in dag.task_ids if t.startswith("dbt.") and not any(
        d.startswith("dbt.") for d in dag.get_task(t).downstream_task_ids)}
    assert leaves and all(t.endswith("test") for t in leaves)  # models end with their tests
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


def _run(dagbag, **params):
    dag = dagbag.get_dag("shoprec_pipeline")
    dr = dag.test(run_conf=params or None)
    return dr.state, {ti.task_id: ti.state for ti in dr.get_task_instances()}


@pytest.mark.slow
def test_bad_batch_fails_the_run_and_what_does_not_need_it_gets_through(dagbag, shoprec_home):
    s = Settings(home=shoprec_home)
    simulate("tiny", seed=5, days=3, settings=s, inject=["negative_prices"], inject_day=1)
    state, tasks = _run(dagbag)
    assert state == "failed"
    assert tasks["validate_landing"] == "failed"
    dbt_tasks = {t: st for t, st in tasks.items() if t.startswith("dbt.")}
    assert len(dbt_tasks) > len(DBT_MODELS)
    assert set(dbt_tasks.values()) <= {"upstream_failed", None}, dbt_tasks
    assert tasks["publish_snapshot"] in {"upstream_failed", None}
    assert tasks["feast_materialize"] in {"upstream_failed", None}
    assert not (shoprec_home / "warehouse").exists()
    assert [b.name for b in list_batches("validated", settings=s)] == ["2026-01-05"]
    assert [b.name for b in list_batches("quarantine", settings=s)] == ["2026-01-06"]
    # the day after uses items the bad day introduced: it waits in landing for the fix
    assert [b.name for b in list_batches("landing", settings=s)] == ["2026-01-07"]


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
