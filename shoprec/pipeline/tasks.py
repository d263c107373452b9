"""What each pipeline task does. DAG files only wire these together."""

from __future__ import annotations

from shoprec.config import Settings, get_settings


class BatchesQuarantined(RuntimeError):
    """Some landing batches failed validation; the clean ones were still moved to validated/."""


def validate_task(dataset: str | None = None, batches: list[str] | None = None,
                  settings: Settings | None = None) -> dict:
    """Validate landing batches; raise (failing the task, stopping downstream) if any was
    quarantined, after every clean batch of the run has moved on."""
    from shoprec.validation import validate

    s = settings or get_settings()
    results = validate(batches or None, dataset=dataset, settings=s)
    summary = {
        "validated": [r.batch_id for r in results if r.status == "validated"],
        "quarantined": {r.batch_id: r.reason() for r in results if r.status == "quarantined"},
        "unchanged": [r.batch_id for r in results if r.status == "unchanged"],
    }
    if summary["quarantined"]:
        lines = "\n".join(f"  {b}: {why}" for b, why in summary["quarantined"].items())
        raise BatchesQuarantined(
            f"{len(summary['quarantined'])} batch(es) quarantined under "
            f"{s.zone('quarantine', dataset)} ({len(summary['validated'])} clean ones "
            f"validated):\n{lines}")
    return summary


def transform_task(dataset: str | None = None, full_refresh: bool = False,
                   settings: Settings | None = None) -> dict:
    """dbt build on the validated zone, then publish the analysts' snapshot."""
    from shoprec.transform import transform

    report = transform(settings=settings, dataset=dataset, full_refresh=full_refresh)
    return {"warehouse": str(report.warehouse), "snapshot": str(report.snapshot),
            "counts": report.counts, "seconds": round(report.seconds, 1)}


def materialize_task(dataset: str | None = None, settings: Settings | None = None) -> dict:
    """Feast apply + incremental materialize of what dbt just built."""
    from shoprec.features.materialize import materialize

    r = materialize(settings=settings, dataset=dataset)
    return {"exported": r.exported, "seconds": round(r.seconds, 1),
            "windows": {k: v and [str(v[0]), str(v[1])] for k, v in r.windows.items()}}
