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
    # memory bounded by the validation limit (DuckDB spills beyond it)
    with tempfile.TemporaryDirectory(prefix="shoprec-redelivered-") as tmp, duckdb.connect(
            config={"memory_limit": f"{settings.validation.duckdb_memory_mb}MB",
                    "temp_directory": tmp, "preserve_insertion_order": False}) as con:
        con.execute("CREATE TEMP TABLE f (file VARCHAR, batch VARCHAR, pos BIGINT, mine BOOL)")
        con.executemany("INSERT INTO f VALUES (?, ?, ?, ?)", order)
        try:
            # a hash finds the few ids seen at two positions in one pass over 64-bit keys;
            # only those are then compared as strings (a collision costs a lookup, not a count)
            rows = con.execute("""
                WITH ev AS (
                    SELECT CAST(ev.event_id AS VARCHAR) AS event_id, f.batch, f.pos, f.mine
                    FROM read_parquet(?, filename = true, union_by_name = true) AS ev
                    JOIN f ON f.file = ev.filename),
                cand AS (
                    SELECT hash(event_id) AS h FROM ev WHERE event_id IS NOT NULL GROUP BY 1
                    HAVING min(pos) < max(pos) AND bool_or(mine)),
                seen AS (SELECT * FROM ev WHERE hash(event_id) IN (SELECT h FROM cand)),
                first AS (SELECT event_id, min(pos) AS first_pos FROM seen GROUP BY 1)
                SELECT s.batch, count(DISTINCT s.event_id) FROM seen AS s JOIN first
                USING (event_id) WHERE s.mine AND s.pos > first.first_pos GROUP BY s.batch""",
                [[o[0] for o in order]]).fetchall()
        except duckdb.Error:
            return {}
    return {b: int(n) for b, n in rows}
