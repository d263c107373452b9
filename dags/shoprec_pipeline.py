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
- Idempotent per data interval: a re-run (Clear, or a second trigger) finds every batch already
  judged (`unchanged`), appends nothing to dbt's incremental models and loads nothing new into
  Feast: the same outputs, no duplicates. Days that arrive late: `shoprec_backfill`.
- dbt runs as ONE `dbt build` (cosmos `ExecutionMode.WATCHER`: the task
  `dbt.dbt_producer_watcher`), the only process that writes the warehouse; every model keeps a
  task of its own in the group (`dbt.<model>.run`, then `dbt.<model>.test` for its tests):
  deferrable sensors that take the status dbt reported for that node, so a failed model or
  test shows red on its own task, with dbt's log line. The sensors defer to the triggerer.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag

from shoprec.config import get_settings
from shoprec.names import PATTERN_TEXT
from shoprec.pipeline import assets, ops
from shoprec.pipeline.chain import data_chain
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
    data_chain(SETTINGS)


shoprec_pipeline()
