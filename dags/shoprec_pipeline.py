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
- Each stage updates an asset alias (`shoprec-validated`, `shoprec-warehouse`,
  `shoprec-online-features`) with an event for the run's dataset: the concrete asset
  `shoprec-<stage>-<dataset>` (URI = the stage's real location) and the dataset in `extra`,
  for data-aware downstream DAGs (retraining).
- `full_refresh` rebuilds dbt's incremental models from scratch.
- One task at a time (`max_active_tasks=1`): every dbt task writes the same DuckDB file, and
  DuckDB allows one writing process per file.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task

from shoprec.names import PATTERN_TEXT
from shoprec.pipeline import assets
from shoprec.pipeline.dbt_cosmos import dbt_task_group
from shoprec.pipeline.tasks import MACROS


@dag(
    dag_id="shoprec_pipeline",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    doc_md=__doc__,
    tags=["shoprec"],
    max_active_tasks=1,
    user_defined_macros=MACROS,
    params={
        "dataset": Param("shop", type="string", pattern=PATTERN_TEXT,
                         description="Dataset namespace in the lake."),
        "batches": Param([], type="array", items={"type": "string", "pattern": PATTERN_TEXT},
                         description="Landing batch ids; empty = all."),
        "full_refresh": Param(False, type="boolean",
                              description="Rebuild dbt's incremental models from scratch."),
    },
)
def shoprec_pipeline():
    @task(outlets=[assets.alias("validated")], retries=0)
    def validate_landing(params: dict | None = None, outlet_events=None) -> dict:
        """Validate landing batches; fails when any batch is quarantined."""
        from shoprec.pipeline.tasks import validate_task

        p = params or {}
        return validate_task(dataset=p.get("dataset"), batches=p.get("batches") or None,
                             outlet_events=outlet_events)

    @task(outlets=[assets.alias("warehouse")], retries=0)
    def publish_snapshot(params: dict | None = None, outlet_events=None) -> str:
        """Swap the analysts' snapshot to the warehouse dbt just built and tested."""
        from shoprec.pipeline.tasks import publish_task

        return publish_task(dataset=(params or {}).get("dataset"), outlet_events=outlet_events)

    @task(outlets=[assets.alias("online-features")], retries=1)
    def feast_materialize(params: dict | None = None, outlet_events=None) -> dict:
        """Feast apply + incremental materialize of the new feature rows."""
        from shoprec.pipeline.tasks import materialize_task

        return materialize_task(dataset=(params or {}).get("dataset"),
                                outlet_events=outlet_events)

    dbt_models = dbt_task_group("dbt", default_args={"retries": 0})
    validate_landing() >> dbt_models >> publish_snapshot() >> feast_materialize()


shoprec_pipeline()
