"""The whole chain as Airflow's users run it: the api-server, scheduler, dag-processor and
triggerer (LocalExecutor) on a PostgreSQL metadata database of this test's own, the DAGs
triggered through the REST API with params as the UI's trigger form sends them, and every
process stopped by pid at the end, executor workers included."""

from __future__ import annotations

import json
import os

import psutil
import pytest

from shoprec.config import Settings
from shoprec.lake import list_batches
from tests import scaled
from tests.conftest import free_port


@pytest.fixture
def metadata_db():
    """A uniquely named PostgreSQL database, dropped afterwards (the shared server stays as it
    is otherwise)."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        with scaled.metadata_database() as url:
            yield url
    except psycopg2.OperationalError as e:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed (.ci/run starts it): {e}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.slow
def test_pipeline_then_training_in_a_real_scheduler_triggered_through_the_rest_api(
        tmp_path, metadata_db):
    from shoprec.airflow_stack import AirflowStack
    from shoprec.features.store import get_store
    from shoprec.registry import Registry
    from shoprec.simulate import simulate
    from shoprec.storage import store_from_settings

    s = Settings(home=tmp_path / "home")
    # day 2 breaks the contract; day 3 uses items day 2 introduced, so it waits in landing
    simulate("tiny", seed=5, days=3, settings=s, inject=["negative_prices"], inject_day=1)
    stack = AirflowStack(s, metadata_db, free_port(), extra_env={
        "SHOPREC_GATES__MIN_NEW_EVENTS": "0", "SHOPREC_TRAINING__MAX_EPOCHS": "2",
        "SHOPREC_TRAINING__DIM": "16",
        # one clean day reaches the warehouse: too short for the time split's 3+3 days
        "SHOPREC_TRAINING__PROTOCOL": "loo"})
    stack.start()
    groups = [c.pid for c in stack.children.values()]
    family: list = []
    try:
        with stack.client() as api:
            stack.wait_dag(api, "shoprec_pipeline")
            run = stack.trigger(api, "shoprec_pipeline",
                                {"dataset": "shop", "batches": [], "full_refresh": False})
            result = stack.wait_run(api, "shoprec_pipeline", run, timeout_s=900)
            # unpausing a daily DAG also starts its latest scheduled run: whichever of the two
            # validated the bad batch failed at the end, after the clean one went all the way
            runs = stack.wait_all_runs(api, "shoprec_pipeline", timeout_s=900)
            failed = [r for r in runs if r["state"] == "failed"]
            assert len(failed) == 1, [(r["dag_run_id"], r["state"]) for r in runs]
            tasks = stack.wait_run(api, "shoprec_pipeline", failed[0]["dag_run_id"])["tasks"]
            assert tasks["check_quarantine"] == "failed", tasks
            assert tasks["feast_materialize"] == "success", tasks
            assert tasks["dbt.dbt_producer_watcher"] == "success", tasks
            model_tasks = [t for t in tasks if t.startswith("dbt.") and t.endswith(".run")]
            assert model_tasks and all(tasks[t] == "success" for t in model_tasks), tasks
            assert result["state"] in ("success", "failed"), result["tasks"]
            assert [b.name for b in list_batches("quarantine", settings=s)] == ["2026-01-06"]
            online = get_store(s, "shop").get_online_features(
                features=["user_daily:views_7d"],
                entity_rows=[{"user_id": f"u{i}"} for i in range(20)]).to_dict()
            assert any(v is not None for v in online["views_7d"])
            alerts = [json.loads(x) for x in s.alerts_log().read_text().splitlines()]
            assert any(a["dag_id"] == "shoprec_pipeline" and a["task_id"] == "check_quarantine"
                       and "2026-01-06" in a["reason"] for a in alerts), alerts

            stack.wait_dag(api, "shoprec_training")
            run = stack.trigger(api, "shoprec_training", {
                "dataset": "shop", "epochs": 1, "seeds": [3], "max_minutes": 1})
            family = [p for g in groups for p in psutil.Process(g).children(recursive=True)]
            result = stack.wait_run(api, "shoprec_training", run, timeout_s=900)
            assert result["state"] == "success", (result["tasks"],
                                                  s.alerts_log().read_text()[-2000:])
            assert result["tasks"]["train"] == "success"
            versions = Registry(store_from_settings(s), "shop").versions()
            assert versions, "the training run registered no version"

            # an importer announces new landing data as the pipeline's asset event
            from pydantic import SecretStr

            from shoprec.airflow_stack import credentials
            from shoprec.pipeline.announce import announce_landing

            user, password = credentials(s)
            importer = s.model_copy(update={"airflow": s.airflow.model_copy(update={
                "api_url": stack.url, "api_username": user,
                "api_password": SecretStr(password)})})
            line = announce_landing("shop", ["2026-01-08"], "test", importer)
            assert line.startswith("airflow: announced 1 batch"), line
            events = api.get("/api/v2/assets/events", params={"limit": 100}).json()
            landing = [e for e in events["asset_events"] if e["name"] == "shoprec-landing-shop"]
            assert landing and landing[-1]["extra"]["batches"] == ["2026-01-08"], events
            wrong = s.model_copy(update={"airflow": importer.airflow.model_copy(update={
                "api_password": SecretStr("not-it")})})
            assert "not announced" in announce_landing("shop", ["x"], "test", wrong)
    finally:
        codes = stack.stop()
    assert set(codes) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    assert not [g for g in groups if _group_alive(g)], "a component or worker outlived stop()"
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [" ".join(p.cmdline()) for p in alive]
