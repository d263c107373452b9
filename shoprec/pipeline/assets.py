"""Airflow assets of the pipeline's stages, with real URIs from the Settings map.

A run works on one dataset (its `dataset` param), so each stage's task declares an AssetAlias
as its outlet and, when it succeeds, adds an event for the concrete asset of that dataset (its
location as a URI, `file://` today, `s3://` once the stage lives on object storage) with the
dataset and the stage's summary in the event's `extra`. A consumer DAG schedules on the alias
(any dataset) or on one dataset's asset, and reads `extra` to see what changed.
"""

from __future__ import annotations

from shoprec.config import Settings, get_settings

STAGES = ("landing", "validated", "warehouse", "online-features")


def location_uri(stage: str, dataset: str, settings: Settings) -> str:
    """Where a stage's output of a dataset lives, as a URI."""
    if stage in ("landing", "validated"):
        return settings.uri(settings.zone(stage, dataset))
    if stage == "warehouse":
        return settings.uri(settings.analytics_snapshot(dataset))
    if stage == "online-features":
        return settings.online_store_uri(dataset)
    raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")


def alias(stage: str):
    """The outlet a stage's task declares (resolved per run to one dataset's asset)."""
    from airflow.sdk import AssetAlias

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
    return AssetAlias(f"shoprec-{stage}")


def asset_name(stage: str, dataset: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
    return f"shoprec-{stage}-{dataset}"


def asset(stage: str, dataset: str, settings: Settings | None = None):
    """One dataset's asset of a stage (what a consumer of that dataset alone schedules on).
    `landing` has no producing task: the importers announce it through Airflow's REST API
    (shoprec.pipeline.announce)."""
    from airflow.sdk import Asset

    s = settings or get_settings()
    return Asset(name=asset_name(stage, dataset), uri=location_uri(stage, dataset, s),
                 group="shoprec", extra={"dataset": dataset, "stage": stage})


def record(outlet_events, stage: str, dataset: str, extra: dict | None = None,
           settings: Settings | None = None) -> None:
    """Add this run's event for `stage` of `dataset` (no-op outside Airflow)."""
    if outlet_events is None:
        return
    outlet_events[alias(stage)].add(asset(stage, dataset, settings),
                                    extra={"dataset": dataset, **(extra or {})})
