"""Data sources: Parquet exports of dbt's feature tables, and the push source for live events.

Paths come from the exports directory (`Settings.feature_exports(dataset)`), given when the
definitions are built, so one process can serve several stores (tests, datasets).
"""

from __future__ import annotations

from pathlib import Path

from feast import FileSource, PushSource
from feast.data_format import ParquetFormat

from feature_repo.names import EXPORTS, LIVE_EVENTS


def export_dir(exports_dir: Path, view: str) -> Path:
    """The folder of a view's offline rows: one Parquet file per day of event_timestamp, so an
    export rewrites only the days dbt changed (the one spelling of that folder's name)."""
    return exports_dir / view


def export_glob(exports_dir: Path, view: str) -> str:
    """What Feast's source and every other reader read: all of the view's day files."""
    return str(export_dir(exports_dir, view) / "*.parquet")


def batch_sources(exports_dir: Path) -> dict[str, FileSource]:
    def src(view: str) -> FileSource:
        return FileSource(name=f"{view}_source", path=export_glob(exports_dir, view),
                          file_format=ParquetFormat(), timestamp_field="event_timestamp")

    return {view: src(view) for view in EXPORTS}


def live_events_push_source(sequence_source: FileSource) -> PushSource:
    """Live session events pushed by the serving layer; its batch source is the dbt sequence
    (the same object, so the repo holds one source of that name), so materialization seeds the
    online sequence that pushes then extend."""
    return PushSource(name=LIVE_EVENTS, batch_source=sequence_source)
