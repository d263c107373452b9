"""Events delivered again in a later batch (the same event_id): not an error (shops re-send
exports), but counted per batch and resolved by arrival order, the first delivery counting,
exactly as dbt's staging keeps it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from shoprec.config import Settings
from shoprec.lake import list_batches, position


def redelivered_events(todo: list[Path], settings: Settings,
                       dataset: str | None) -> dict[str, int]:
    """Batch → how many of its event_ids a batch earlier in the delivery order (validated, or
    pending in this run) already delivered. Unreadable files count nothing: their verdict says
    why."""
    import duckdb

    mine = {d.name for d in todo}
    # a validated version that a batch of this run replaces does not count against it
    validated = [d for d in list_batches("validated", dataset=dataset, settings=settings)
                 if d.name not in mine]
    batches = [d for d in [*validated, *todo] if (d / "events.parquet").is_file()]
    if not todo or len(batches) < 2:
        return {}
    order = [(str(d / "events.parquet"), d.name, position(d), d in todo) for d in batches]
    # only the ids of this run's batches are looked up in the history (a semi-join that streams
    # the earlier files), so memory follows the new batches, not the lake; bounded all the same
    with tempfile.TemporaryDirectory(prefix="shoprec-redelivered-") as tmp, duckdb.connect(
            config={"memory_limit": f"{settings.validation.duckdb_memory_mb}MB",
                    "temp_directory": tmp, "preserve_insertion_order": False}) as con:
        con.execute("CREATE TEMP TABLE f (file VARCHAR, batch VARCHAR, pos BIGINT, mine BOOL)")
        con.executemany("INSERT INTO f VALUES (?, ?, ?, ?)", order)
        try:
            rows = con.execute("""
                WITH m AS (
                    SELECT DISTINCT f.batch, f.pos, CAST(ev.event_id AS VARCHAR) AS event_id
                    FROM read_parquet(?, filename = true, union_by_name = true) AS ev
                    JOIN f ON f.file = ev.filename),
                first AS (
                    SELECT CAST(ev.event_id AS VARCHAR) AS event_id, min(f.pos) AS first_pos
                    FROM read_parquet(?, filename = true, union_by_name = true) AS ev
                    JOIN f ON f.file = ev.filename
                    WHERE CAST(ev.event_id AS VARCHAR) IN (SELECT event_id FROM m)
                    GROUP BY 1)
                SELECT m.batch, count(DISTINCT m.event_id) FROM m JOIN first USING (event_id)
                WHERE m.pos > first.first_pos GROUP BY m.batch""",
                [[o[0] for o in order if o[3]], [o[0] for o in order]]).fetchall()
        except duckdb.Error:
            return {}
    return {b: int(n) for b, n in rows}
