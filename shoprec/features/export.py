"""Export dbt's feature tables from the analysts' snapshot to Parquet for Feast's file sources.

Timestamps are written as microsecond UTC (Feast's DuckDB materialization cannot cast
nanosecond tz-aware Parquet timestamps). Each file is written to a temp name and renamed.
"""

from __future__ import annotations

import os
from pathlib import Path

from shoprec.config import Settings
from shoprec.features.store import features_dir

EXPORTS = {
    "user_daily": "features.feat_user_daily",
    "item_daily": "features.feat_item_daily",
    "user_sequence": "features.feat_user_recent_sequence",
}


def export_features(settings: Settings, dataset: str) -> dict[str, int]:
    import duckdb

    from shoprec.transform.publish import analytics_path

    src = analytics_path(settings, dataset)
    if not src.exists():
        raise FileNotFoundError(f"no published warehouse at {src}: run `shoprec transform` first")
    out_dir = features_dir(settings, dataset)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    con = duckdb.connect(str(src), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, table in EXPORTS.items():
            final = out_dir / f"{name}.parquet"
            tmp = out_dir / f".{name}.parquet.tmp"
            con.execute(f"COPY (SELECT * EXCLUDE (dbt_invocation_id, built_at) FROM {table} "
                        f"ORDER BY event_timestamp) TO '{tmp}' (FORMAT parquet, "
                        f"COMPRESSION zstd)")
            os.replace(tmp, final)
            rows[name] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()
    return rows


def data_range(path: Path) -> tuple:
    """(min, max) event_timestamp of an export, as tz-aware datetimes (None, None if empty)."""
    import duckdb

    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(f"SELECT min(event_timestamp), max(event_timestamp) "
                           f"FROM read_parquet('{path}')").fetchone()
