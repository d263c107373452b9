"""Data sources: Parquet exports of dbt's feature tables, and the push source for live events.

Paths come from the features directory (`SHOPREC_HOME/features/<dataset>`), given when the
definitions are built, so one process can serve several stores (tests, datasets).
"""

from __future__ import annotations

from pathlib import Path

from feast import FileSource, PushSource
from feast.data_format import ParquetFormat


def batch_sources(features_dir: Path) -> dict[str, FileSource]:
    def src(name: str) -> FileSource:
        return FileSource(name=f"{name}_source", path=str(features_dir / f"{name}.parquet"),
                          file_format=ParquetFormat(), timestamp_field="event_timestamp")

    return {n: src(n) for n in ("user_daily", "item_daily", "user_sequence")}


def live_events_push_source(features_dir: Path) -> PushSource:
    """Live session events pushed by the serving layer; its batch source is the dbt sequence, so
    materialization seeds the online sequence that pushes then extend."""
    return PushSource(name="live_events", batch_source=batch_sources(features_dir)["user_sequence"])
