"""
### Shoprec pipeline

Landing batches → **validate** (Great Expectations on DuckDB) → **dbt build** (staging → marts →
feature tables, with tests; then the analysts' snapshot) → **Feast** apply + materialize →
(training and promotion join as they land).

- A bad batch is moved whole to `quarantine/<batch>/` with its GX result, Data Docs and reason;
  the task then fails, so nothing downstream runs on this run. Clean batches of the same run
  still move to `validated/`.
- Trigger from the UI with *params*: `dataset` (lake namespace) and `batches` (empty = all).
- Each stage updates an asset (`shoprec-validated`, `shoprec-warehouse`, `shoprec-online-features`)
  for data-aware downstream DAGs (retraining).
- `full_refresh` rebuilds dbt's incremental models from scratch.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, Param, dag, task

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
    def dbt_build(params: dict | None = None) -> dict:
        """dbt build on the validated zone; publishes the analysts' snapshot when all passed."""
        from shoprec.pipeline.tasks import transform_task

        p = params or {}
        return transform_task(dataset=p.get("dataset"), full_refresh=bool(p.get("full_refresh")))

    @task(outlets=[ONLINE_FEATURES], retries=1)
    def feast_materialize(params: dict | None = None) -> dict:
        """Feast apply + incremental materialize of the new feature rows."""
        from shoprec.pipeline.tasks import materialize_task

        return materialize_task(dataset=(params or {}).get("dataset"))

    validate_landing() >> dbt_build() >> feast_materialize()


shoprec_pipeline()
