"""How every Shoprec DAG is operated: retries by kind of failure, time limits, failure alerts.

- `TRANSIENT` tasks talk to something that can be briefly away (Feast's online store, Redis,
  S3, the registry): retried with exponential backoff. `FINAL` tasks fail for a reason a retry
  cannot change (a quarantined batch, a refused gate, a dbt test): never retried, so the run
  fails at once with the reason in the log.
- Every task has an `execution_timeout` and every DAG a `dagrun_timeout` (settings: `airflow.*`).
- `alert` is the `on_failure_callback` of every task and DAG: one JSON line in
  `Settings.alerts_log()` naming the DAG, task, run, dataset and reason, the same line in the
  task's log, and a POST to `airflow.alert_webhook` when one is configured. It never raises: a
  failing alert must not hide the failure it reports.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from shoprec.config import Settings, get_settings

log = logging.getLogger("shoprec.alerts")

TRANSIENT: dict[str, Any] = {
    "retries": 3,
    "retry_delay": dt.timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=5),
}
FINAL: dict[str, Any] = {"retries": 0}


def default_args(settings: Settings | None = None) -> dict[str, Any]:
    """A DAG's default_args: no retries unless a task says it is transient, the task time
    limit, and the alert on failure."""
    s = settings or get_settings()
    return {**FINAL, "execution_timeout": dt.timedelta(minutes=s.airflow.task_timeout_minutes),
            "on_failure_callback": alert}


def dag_args(settings: Settings | None = None) -> dict[str, Any]:
    """What every Shoprec DAG passes to @dag besides its own: defaults, run timeout, alert."""
    s = settings or get_settings()
    return {"default_args": default_args(s),
            "dagrun_timeout": dt.timedelta(minutes=s.airflow.dag_timeout_minutes),
            "on_failure_callback": alert}


def manual_dag_args(settings: Settings | None = None) -> dict[str, Any]:
    """A DAG run only from its trigger form: no schedule, one run at a time, tagged manual."""
    return {"schedule": None, "start_date": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            "catchup": False, "max_active_runs": 1, "tags": ["shoprec", "manual"],
            **dag_args(settings)}


def _reason(context: dict) -> str:
    exc = context.get("exception")
    if exc is not None:
        text = str(exc).strip()
        return f"{type(exc).__name__}: {text}"[:2000] if text else type(exc).__name__
    return str(context.get("reason") or "failed (no exception recorded)")[:2000]


def alert_record(context: dict) -> dict[str, Any]:
    """The alert of a failure context (task or DAG run)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    params = context.get("params") or {}
    dag_id = getattr(context.get("dag"), "dag_id", None) or getattr(dag_run, "dag_id", None)
    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dag_id": dag_id or getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": context.get("run_id") or getattr(dag_run, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "dataset": params.get("dataset") or get_settings().dataset,
        "reason": _reason(context),
        "log_url": getattr(ti, "log_url", None),
    }


def alert(context: dict, settings: Settings | None = None) -> dict[str, Any] | None:
    """on_failure_callback: write the alert (log file, task log, webhook); never raises."""
    try:
        s = settings or get_settings()
        record = alert_record(context)
        line = json.dumps(record, default=str, ensure_ascii=False)
        path = s.alerts_log()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:  # one write of one line: appends interleave
            fh.write(line + "\n")
        log.error("shoprec alert: %s", line)
        if s.airflow.alert_webhook:
            _post(s.airflow.alert_webhook, record, s.airflow.alert_timeout_s)
        return record
    except Exception:  # an alert must never turn into a second failure
        log.exception("shoprec alert could not be written")
        return None


def _post(url: str, record: dict, timeout_s: float) -> None:
    import httpx

    try:
        r = httpx.post(url, json=record, timeout=timeout_s)
        if r.status_code >= 400:
            log.error("alert webhook answered %s: %s", r.status_code, r.text[:300])
    except httpx.HTTPError as e:
        log.error("alert webhook unreachable: %s", e)
