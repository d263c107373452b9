"""
### Shoprec retraining

**train** → **gate** → **register** → **promote**: retrains the recommender, judges it, and
promotes it only when it earned it.

- *When*: weekly (`@weekly`: Sundays 00:00 UTC), and earlier whenever the pipeline's last
  stage updates the asset `shoprec-online-features-<dataset>` (the Feast online store of the
  dataset, the `shoprec-online-features` alias's event), whichever comes first
  (`AssetOrTimeSchedule`).
  `train` skips the run (and with it everything downstream) when fewer than
  `SHOPREC_GATES__MIN_NEW_EVENTS` events (default 1,000) arrived after the data window of the
  last trained version (production or candidate).
- **train**: one run per seed (*params* `seeds`, `epochs`, `max_minutes`, and the
  hyperparameters `dim`, `layers`, `lr`, `dropout`, `batch_size`; empty = the settings'); the
  seed whose promoted recommender validates best goes on (the test split is never used to
  choose).
- **gate** (branch): beats every baseline on the test split, no regression against production
  (both re-scored on the same current data), single-user p99 latency under budget, sanity
  (finite metrics, scores that vary, coverage, the Feast feature service exists). It writes
  `gate.json` and `gate.html` into the run's export, so the version keeps them.
- passed → **register** (the gate report goes into the manifest) → **promote** (`candidate`
  and `production`); refused → **register_candidate** (registered, `candidate` alias only):
  production stays as it is, the refused version is there to inspect
  (`shoprec models show candidate`).
- *Failures*: train and gate are never retried; register and promote are retried with
  exponential backoff (the registry may live on S3). Every failure writes an alert
  (`SHOPREC_HOME/logs/alerts.jsonl`, the task log, `SHOPREC_AIRFLOW__ALERT_WEBHOOK`).
- Idempotent: the registry's run id is the Airflow run id, so re-running a run reuses its
  trained runs and its recorded verdict and registers nothing twice.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from shoprec.config import get_settings
from shoprec.names import PATTERN_TEXT
from shoprec.pipeline import assets, ops

SETTINGS = get_settings()
DATASET = SETTINGS.dataset  # the dataset whose online features trigger a retraining


@dag(
    dag_id="shoprec_training",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@weekly", timezone="UTC"),
        assets=[assets.asset("online-features", DATASET, SETTINGS)]),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    **ops.dag_args(SETTINGS),
    doc_md=__doc__,
    tags=["shoprec"],
    params={
        "dataset": Param(DATASET, type="string", pattern=PATTERN_TEXT,
                         description="Dataset to train on."),
        "epochs": Param(None, type=["null", "integer"], minimum=1,
                        description="Maximum epochs (empty: SHOPREC_TRAINING__MAX_EPOCHS)."),
        "seeds": Param([SETTINGS.seed], type="array", items={"type": "integer"}, minItems=1,
                       description="One run per seed; the best on validation goes on."),
        "max_minutes": Param(None, type=["null", "number"], exclusiveMinimum=0,
                             description="Wall-clock budget of each seed's training."),
        # hyperparameters (empty: SHOPREC_TRAINING__<NAME>)
        "dim": Param(None, type=["null", "integer"], minimum=8, maximum=1024,
                     description="Embedding / hidden size."),
        "layers": Param(None, type=["null", "integer"], minimum=1, maximum=12,
                        description="Transformer blocks."),
        "lr": Param(None, type=["null", "number"], exclusiveMinimum=0, maximum=1,
                    description="Adam learning rate."),
        "dropout": Param(None, type=["null", "number"], minimum=0, maximum=0.9),
        "batch_size": Param(None, type=["null", "integer"], minimum=8, maximum=8192),
    },
)
def shoprec_training():
    @task(**ops.FINAL, execution_timeout=dt.timedelta(
        minutes=SETTINGS.airflow.train_timeout_minutes))
    def train(params: dict | None = None, run_id: str | None = None, dag_run=None) -> dict:
        """Train (skipped when too few new events arrived since the last trained version)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from shoprec.pipeline.training import NotEnoughNewEvents, train_task

        p = params or {}
        try:
            return train_task(dataset=p.get("dataset"), epochs=p.get("epochs"),
                              seeds=p.get("seeds"), max_minutes=p.get("max_minutes"),
                              hyper={k: p.get(k) for k in ("dim", "layers", "lr", "dropout",
                                                           "batch_size")},
                              airflow_run_id=run_id,
                              started=getattr(dag_run, "run_after", None))
        except NotEnoughNewEvents as e:
            raise AirflowSkipException(str(e)) from e

    @task.branch(**ops.FINAL)
    def gate(run: dict) -> str:
        """Every gate; writes gate.json + gate.html into the export; picks the branch."""
        from shoprec.pipeline.training import gate_task

        verdict = gate_task(run["run_dir"], run["dataset"], run["run_id"])
        print(verdict["summary"])
        return "register" if verdict["passed"] else "register_candidate"

    @task(**ops.TRANSIENT)
    def register(run: dict) -> dict:
        """Register the export (gate report included) as an immutable version."""
        from shoprec.pipeline.training import register_task

        return register_task(run["run_dir"], run["dataset"], run["run_id"])

    @task(**ops.TRANSIENT)
    def promote(reg: dict, run_id: str | None = None) -> dict:
        """Point `candidate` and `production` at the version (one atomic write each)."""
        from shoprec.pipeline.training import promote_task

        return promote_task(reg["version"], reg["dataset"], production=True,
                            by=f"airflow:shoprec_training/{run_id}", why="gate passed")

    @task(**ops.TRANSIENT)
    def register_candidate(run: dict, run_id: str | None = None) -> dict:
        """Refused: register it all the same and point `candidate` at it; production stays."""
        from shoprec.pipeline.training import promote_task, register_task

        reg = register_task(run["run_dir"], run["dataset"], run["run_id"])
        why = "gate refused: " + "; ".join(reg["reasons"])
        return promote_task(reg["version"], reg["dataset"], production=False,
                            by=f"airflow:shoprec_training/{run_id}", why=why[:500])

    run = train()
    registered = register(run)
    gate(run) >> [registered, register_candidate(run)]
    promote(registered)


shoprec_training()
