"""
### Shoprec pipeline

Landing batches → **validate** (Great Expectations on DuckDB) → **dbt** (task group `dbt`:
one task per model, staging → intermediate → marts / feature tables, each followed by its tests)
→ **publish_snapshot** (the analysts' copy, only once every model and test passed) → **Feast**
apply + materialize → (training and promotion join as they land).

- A bad batch is moved whole to `quarantine/<batch>/` with its GX result, Data Docs and reason;
  the clean batches of the same run go on through dbt and Feast, then `check_quarantine` fails
  the run naming each quarantined batch and its reason (and writes the alert).
- *When*: daily (`@daily`, 00:00 UTC), and at once whenever new data lands: the importers
  (`shoprec data import`, `data simulate`, serving's event flush) post an event of the asset
  `shoprec-landing-<dataset>` through Airflow's REST API when `SHOPREC_AIRFLOW__API_URL` is set
  (`AssetOrTimeSchedule`); the daily run catches anything an announcement missed.
- *Failures*: validation and dbt are never retried (a quarantined batch or a failed test does
  not heal by itself); publishing and Feast are retried with exponential backoff (a store that
  is briefly away). Every failure writes an alert (`SHOPREC_HOME/logs/alerts.jsonl`, the task
  log, `SHOPREC_AIRFLOW__ALERT_WEBHOOK`) naming DAG, task, dataset and reason.
- Trigger from the UI with *params*: `dataset` (lake namespace) and `batches` (empty = all).
- Each stage updates an asset alias (`shoprec-validated`, `shoprec-warehouse`,
  `shoprec-online-features`) with an event for the run's dataset: the concrete asset
  `shoprec-<stage>-<dataset>` (URI = the stage's real location) and the dataset in `extra`,
  for data-aware downstream DAGs (retraining).
- `full_refresh` rebuilds dbt's incremental models from scratch.
- dbt runs as ONE `dbt build` (cosmos `ExecutionMode.WATCHER`: the task
  `dbt.dbt_producer_watcher`), the only process that writes the warehouse; every model keeps a
  task of its own in the group (`dbt.<model>.run`, then `dbt.<model>.test` for its tests):
  deferrable sensors that take the status dbt reported for that node, so a failed model or
  test shows red on its own task, with dbt's log line. The sensors defer to the triggerer.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from shoprec.config import get_settings
from shoprec.names import PATTERN_TEXT
from shoprec.pipeline import assets, ops
from shoprec.pipeline.dbt_cosmos import dbt_task_group
from shoprec.pipeline.tasks import MACROS

SETTINGS = get_settings()


@dag(
    dag_id="shoprec_pipeline",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@daily", timezone="UTC"),
        assets=[assets.asset("landing", SETTINGS.dataset, SETTINGS)]),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    **ops.dag_args(SETTINGS),
    doc_md=__doc__,
    tags=["shoprec"],
    user_defined_macros=MACROS,
    params={
        "dataset": Param(SETTINGS.dataset, type="string", pattern=PATTERN_TEXT,
                         description="Dataset namespace in the lake."),
        "batches": Param([], type="array", items={"type": "string", "pattern": PATTERN_TEXT},
                         description="Landing batch ids; empty = all."),
        "full_refresh": Param(False, type="boolean",
                              description="Rebuild dbt's incremental models from scratch."),
    },
)
def shoprec_pipeline():
    @task(outlets=[assets.alias("validated")], **ops.FINAL)
    def validate_landing(params: dict | None = None, outlet_events=None) -> dict:
        """Validate landing batches: clean ones to validated/, bad ones to quarantine/."""
        from shoprec.pipeline.tasks import validate_task

        p = params or {}
        return validate_task(dataset=p.get("dataset"), batches=p.get("batches") or None,
                             outlet_events=outlet_events, fail_on_quarantine=False)

    @task(**ops.FINAL)
    def check_quarantine(summary: dict) -> dict:
        """Fail the run (and alert) when validation quarantined a batch of it."""
        from shoprec.pipeline.tasks import quarantine_task

        return quarantine_task(summary)

    @task(outlets=[assets.alias("warehouse")], **ops.TRANSIENT)
    def publish_snapshot(params: dict | None = None, outlet_events=None) -> str:
        """Swap the analysts' snapshot to the warehouse dbt just built and tested."""
        from shoprec.pipeline.tasks import publish_task

        return publish_task(dataset=(params or {}).get("dataset"), outlet_events=outlet_events)

    @task(outlets=[assets.alias("online-features")], **ops.TRANSIENT)
    def feast_materialize(params: dict | None = None, outlet_events=None) -> dict:
        """Feast apply + incremental materialize of the new feature rows."""
        from shoprec.pipeline.tasks import materialize_task

        return materialize_task(dataset=(params or {}).get("dataset"),
                                outlet_events=outlet_events)

    dbt_models = dbt_task_group("dbt", default_args={**ops.default_args(SETTINGS), **ops.FINAL})
    validated = validate_landing()
    validated >> dbt_models >> publish_snapshot() >> feast_materialize() >> \
        check_quarantine(validated)


shoprec_pipeline()
