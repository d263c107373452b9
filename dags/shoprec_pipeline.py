"""
### Shoprec pipeline

Landing batches → **validate** (Great Expectations on DuckDB) → … (dbt, Feast, training and
promotion join as they land).

- A bad batch is moved whole to `quarantine/<batch>/` with its GX result, Data Docs and reason;
  the task then fails, so nothing downstream runs on this run. Clean batches of the same run
  still move to `validated/`.
- Trigger from the UI with *params*: `dataset` (lake namespace) and `batches` (empty = all).
- On success the task updates the `shoprec-validated` asset, for data-aware downstream DAGs.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, Param, dag, task

VALIDATED = Asset("shoprec-validated", uri="file:///shoprec/lake/validated")


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
    },
)
def shoprec_pipeline():
    @task(outlets=[VALIDATED], retries=0)
    def validate_landing(params: dict | None = None) -> dict:
        """Validate landing batches; fails when any batch is quarantined."""
        from shoprec.pipeline.tasks import validate_task

        p = params or {}
        return validate_task(dataset=p.get("dataset"), batches=p.get("batches") or None)

    validate_landing()


shoprec_pipeline()
