"""Export dbt's feature tables from the internal snapshot to Parquet for Feast's file sources.

Timestamps are written as microsecond UTC (Feast's DuckDB materialization cannot cast
nanosecond tz-aware Parquet timestamps). Each file is written to a temp name and renamed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from feature_repo.data_sources import export_path
from feature_repo.names import EXPORTS
from shoprec import atomic
from shoprec.config import Settings
from shoprec.names import sql_literal


def export_features(settings: Settings, dataset: str) -> dict[str, int]:
    import duckdb

    src = settings.internal_snapshot(dataset)
    if not src.exists():
        raise FileNotFoundError(f"no published warehouse at {src}: run `shoprec transform` first")
    out_dir = settings.feature_exports(dataset)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    con = duckdb.connect(str(src), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        for view, table in EXPORTS.items():
            with atomic.atomic_path(export_path(out_dir, view)) as tmp:
                con.execute(f"COPY (SELECT * EXCLUDE (dbt_invocation_id, built_at) FROM {table} "
                            f"ORDER BY event_timestamp) TO {sql_literal(tmp)} (FORMAT parquet, "
                            f"COMPRESSION zstd)")
            rows[view] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()
    return rows


@dataclass(frozen=True)
class ExportStats:
    """What an export holds: its identity in an online watermark, its range in `status`."""

    rows: int
    lo: dt.datetime | None  # min event_timestamp (None when empty)
    hi: dt.datetime | None  # max event_timestamp


def export_stats(path: Path) -> ExportStats | None:
    """Row count and event_timestamp range of an export (None when it was never written)."""
    import duckdb

    if not Path(path).exists():
        return None
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        rows, lo, hi = con.execute("SELECT count(*), min(event_timestamp), max(event_timestamp) "
                                   "FROM read_parquet(?)", [str(path)]).fetchone()
    return ExportStats(rows, lo, hi)

