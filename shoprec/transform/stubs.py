"""Empty Parquet files of the contract tables, so dbt's sources always have a file to read.

dbt's sources read `<validated>/*/<table>.parquet`; DuckDB fails with "No files found" when no
validated batch holds that table (a shop that never sends a customer list). One empty file per
contract table, with the exact contract schema, in `Settings.contract_stubs(dataset)` (a dot
folder inside the validated zone: DuckDB's `*` matches it, the lake's `list_batches` skips it)
gives every source at least one file and every contract column its type, even when each batch
leaves an optional column out or all null. The files hold no rows, so no model or test ever
sees a batch named `.contract`; there is no `_delivery.json` there.
"""

from __future__ import annotations

from pathlib import Path

from shoprec.config import Settings


def _up_to_date(path: Path, schema) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file() or path.is_symlink():
        return False
    try:
        return (pq.read_metadata(path).num_rows == 0
                and pq.read_schema(path).equals(schema, check_metadata=False))
    except (OSError, pa.ArrowException):
        return False


def write_contract_stubs(settings: Settings, dataset: str | None = None) -> Path:
    """Write (or leave as they are, when identical) the stub of every contract table; returns
    the stub folder. Atomic per file: a dbt run reading meanwhile sees the old or the new one."""
    from shoprec import atomic
    from shoprec.contract import SCHEMAS
    from shoprec.lake import write_parquet

    folder = settings.contract_stubs(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, schema in SCHEMAS.items():
        path = folder / f"{kind}.parquet"
        if _up_to_date(path, schema):
            continue
        with atomic.atomic_path(path) as tmp:
            write_parquet(schema.empty_table(), tmp)
    return folder
