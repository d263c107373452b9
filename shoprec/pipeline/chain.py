"""The data chain's tasks, wired once for every DAG that runs it (`shoprec_pipeline`, and
`shoprec_backfill` behind its planning task): validate → dbt → publish the analysts' snapshot →
Feast → check_quarantine. Each task is a thin call into `shoprec.pipeline.tasks`."""

from __future__ import annotations

from airflow.sdk import task

from shoprec.config import Settings
from shoprec.pipeline import assets, ops
from shoprec.pipeline.dbt_cosmos import dbt_task_group


def data_chain(settings: Settings, batches=None, since=None):
    """Add the chain to the DAG being defined; returns (first task, last task).

    `batches` / `since`: XComArgs of a planning task (a backfill), or None to read the run's
    params (`batches`: empty = every landing batch). The DAG needs the params `dataset` and
    `full_refresh` and `shoprec.pipeline.tasks.MACROS` (the dbt group's templates)."""

    @task(outlets=[assets.alias("validated")], **ops.FINAL)
    def validate_landing(planned: list | None = None, params: dict | None = None,
                         outlet_events=None) -> dict:
        """Validate landing batches: clean ones to validated/, bad ones to quarantine/."""
        from shoprec.pipeline.tasks import validate_task

        p = params or {}
        chosen = planned if planned is not None else (p.get("batches") or None)
        return validate_task(dataset=p.get("dataset"), batches=chosen,
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
    def feast_materialize(since: str | None = None, params: dict | None = None,
                          outlet_events=None) -> dict:
        """Feast apply + incremental materialize of the new feature rows (a backfill re-loads
        from its first day on)."""
        from shoprec.pipeline.tasks import materialize_task

        return materialize_task(dataset=(params or {}).get("dataset"),
                                outlet_events=outlet_events, since=since)

    dbt_models = dbt_task_group("dbt", default_args={**ops.default_args(settings), **ops.FINAL})
    validated = validate_landing(batches)
    last = check_quarantine(validated)
    validated >> dbt_models >> publish_snapshot() >> feast_materialize(since) >> last
    return validated, last
