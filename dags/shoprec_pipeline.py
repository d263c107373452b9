"""
### Shoprec pipeline

Landing batches → **validate** (Great Expectations on DuckDB) → **dbt** (task group `dbt`:
one task per model, staging → intermediate → marts / feature tables, each followed by its tests)
→ **publish_snapshot** (the analysts' copy, only once every model and test passed) → **Feast**
apply + materialize → (training and promotion join as they land).

- A bad batch is moved whole to `quarantine/<batch>/` with its GX result, Data Docs and reason;
  the task then fails, so nothing downstream runs on this run. Clean batches of the same run
  still move to `validated/`.
- Trigger from the UI with *params*: `dataset` (lake namespace) and `batches` (empty = all).
- Each stage updates an asset (`shoprec-validated`, `shoprec-warehouse`, `shoprec-online-features`)
  for data-aware downstream DAGs (retraining).
- `full_refresh` rebuilds dbt's incremental models from scratch.
- One task at a time (`max_active_tasks=1`): every dbt task writes the same DuckDB file, and
  DuckDB allows one writing process per file.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, Param, dag, task

from shoprec.pipeline.dbt_cosmos import dbt_task_group

VALIDATED = Asset("shoprec-validated", uri="file:///shoprec/lake/validated")
WAREHOUSE = Asset("shoprec-warehouse", uri="file:///shoprec/warehouse")
ONLINE_FEATURES = Asset("shoprec-online-features", uri="file:///shoprec/feast/online")


@dag(
    dag_id="shoprec_pipeline",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    doc_md=__doc__,
    tags=["shoprec"],
    max_active_tasks=1,
    params={
        "dataset": Param("shop", type="string", description="Dataset namespace in the lake."),
        "batches": Param([], type="array", description="Landing batch ids; empty = all."),
        "full_refresh": Param(False, type="boolean",
                              description="Rebuild dbt's incremental models from scratch."),
    },
)
def shoprec_pipeline():
    @task(outlets=[VALIDATED], retries=0)
    def validate_landing(params: dict | None = None) -> dict:
        """Validate landing batches; fails when any batch is quarantined."""
        from shoprec.pipeline.tasks import validate_task

        p = params or {}
        return validate_task(dataset=p.get("dataset"), batches=p.get("batches") or None)

    @task(outlets=[WAREHOUSE], retries=0)
    def publish_snapshot(params: dict | None = None) -> str:
        """Swap the analysts' snapshot to the warehouse dbt just built and tested."""
        from shoprec.config import get_settings
        from shoprec.transform.publish import publish_snapshot as publish

        s = get_settings()
        return str(publish(s, (params or {}).get("dataset") or s.dataset))

    @task(outlets=[ONLINE_FEATURES], retries=1)
    def feast_materialize(params: dict | None = None) -> dict:
        """Feast apply + incremental materialize of the new feature rows."""
        from shoprec.pipeline.tasks import materialize_task

        return materialize_task(dataset=(params or {}).get("dataset"))

    dbt_models = dbt_task_group("dbt", default_args={"retries": 0})
    validate_landing() >> dbt_models >> publish_snapshot() >> feast_materialize()


shoprec_pipeline()
