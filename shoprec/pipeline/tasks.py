"""What each pipeline task does. DAG files only wire these together; each task reports the
stage's asset event for the run's dataset (`outlet_events`, None outside Airflow)."""

from __future__ import annotations

from shoprec.config import Settings, get_settings
from shoprec.pipeline import assets


class BatchesQuarantined(RuntimeError):
    """Some landing batches failed validation; the clean ones were still moved to validated/."""


def validate_task(dataset: str | None = None, batches: list[str] | None = None,
                  settings: Settings | None = None, outlet_events=None,
                  fail_on_quarantine: bool = True) -> dict:
    """Validate landing batches (`batches`; None: all of them): every clean one moves to
    validated/. A quarantined batch
    raises BatchesQuarantined (after the clean ones moved on), unless `fail_on_quarantine` is
    off: then the summary says so and `quarantine_task` fails the run at its end, once the
    clean batches went through dbt and Feast."""
    from shoprec.validation import validate

    s = settings or get_settings()
    dataset = dataset or s.dataset
    # None: every landing batch; []: none (a backfill whose range has nothing new)
    results = validate(batches, dataset=dataset, settings=s) if batches != [] else []
    summary = {
        "dataset": dataset,
        "validated": [r.batch_id for r in results if r.status == "validated"],
        "quarantined": {r.batch_id: r.reason() for r in results if r.status == "quarantined"},
        "unchanged": [r.batch_id for r in results if r.status == "unchanged"],
        "skipped": [r.batch_id for r in results if r.status == "skipped"],
        "waiting": {r.batch_id: r.note for r in results if r.status == "waiting"},
        "quarantine_dir": str(s.zone("quarantine", dataset)),
    }
    if summary["quarantined"] and fail_on_quarantine:
        quarantine_task(summary)
    assets.record(outlet_events, "validated", dataset, {"batches": summary["validated"]}, s)
    return summary


def quarantine_task(summary: dict) -> dict:
    """Fail (BatchesQuarantined, one line per batch and reason) when validation quarantined
    any batch of this run; else pass the summary on."""
    bad = summary.get("quarantined") or {}
    if bad:
        lines = "\n".join(f"  {b}: {why}" for b, why in bad.items())
        raise BatchesQuarantined(
            f"{len(bad)} batch(es) of {summary.get('dataset')} quarantined under "
            f"{summary.get('quarantine_dir')} ({len(summary.get('validated') or [])} clean ones "
            f"validated and built):\n{lines}")
    return summary


def transform_task(dataset: str | None = None, full_refresh: bool = False,
                   settings: Settings | None = None, outlet_events=None) -> dict:
    """dbt build on the validated zone, then publish the analysts' snapshot."""
    from shoprec.transform import transform

    s = settings or get_settings()
    dataset = dataset or s.dataset
    report = transform(settings=s, dataset=dataset, full_refresh=full_refresh)
    out = {"warehouse": str(report.warehouse), "snapshot": str(report.snapshot),
           "counts": report.counts, "seconds": round(report.seconds, 1)}
    assets.record(outlet_events, "warehouse", dataset, {"counts": report.counts}, s)
    return out


def dbt_rebuild_needed(dataset: str | None = None) -> bool:
    """Template macro of the dbt tasks: a full refresh after a retracted or superseded batch."""
    from shoprec.lifecycle import rebuild_needed

    s = get_settings()
    return rebuild_needed(s, dataset or s.dataset, "dbt")


MACROS = {"shoprec_rebuild_needed": dbt_rebuild_needed}


def publish_task(dataset: str | None = None, settings: Settings | None = None,
                 outlet_events=None) -> str:
    """Swap the analysts' snapshot to the warehouse dbt just built and tested (in full when a
    rebuild was asked for, so that request is done)."""
    from shoprec.lifecycle import rebuild_done
    from shoprec.transform.publish import publish_snapshot

    s = settings or get_settings()
    dataset = dataset or s.dataset
    rebuild_done(s, dataset, "dbt")
    link = publish_snapshot(s, dataset)
    assets.record(outlet_events, "warehouse", dataset, {"snapshot": link.name}, s)
    return str(link)


def materialize_task(dataset: str | None = None, settings: Settings | None = None,
                     outlet_events=None, since: str | None = None) -> dict:
    """Feast apply + incremental materialize of what dbt just built (from `since`, a backfill's
    first day, at least)."""
    from shoprec.features.materialize import materialize
    from shoprec.pipeline.backfill import since_datetime

    s = settings or get_settings()
    dataset = dataset or s.dataset
    r = materialize(settings=s, dataset=dataset, since=since_datetime(since))
    out = {"exported": r.exported, "seconds": round(r.seconds, 1),
           "windows": {k: v and [str(v[0]), str(v[1])] for k, v in r.windows.items()}}
    assets.record(outlet_events, "online-features", dataset,
                  {"views": sorted(k for k, v in r.windows.items() if v)}, s)
    return out
