"""Events delivered again in a later batch (the same event_id): not an error (shops re-send
exports), but counted per batch and resolved by arrival order, the first delivery counting,
exactly as dbt's staging keeps it."""

from __future__ import annotations

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
    with duckdb.connect() as con:
        con.execute("CREATE TEMP TABLE f (file VARCHAR, batch VARCHAR, pos BIGINT, mine BOOL)")
        con.executemany("INSERT INTO f VALUES (?, ?, ?, ?)", order)
        try:
            rows = con.execute("""
                WITH ev AS (
                    SELECT DISTINCT CAST(event_id AS VARCHAR) AS event_id, filename AS file
                    FROM read_parquet(?, filename = true, union_by_name = true)),
                ranked AS (
                    SELECT f.batch, f.mine, ev.event_id, f.pos,
                           min(f.pos) OVER (PARTITION BY ev.event_id) AS first_pos
                    FROM ev JOIN f USING (file))
                SELECT batch, count(DISTINCT event_id) FROM ranked
                WHERE mine AND pos > first_pos GROUP BY batch""",
                [[o[0] for o in order]]).fetchall()
        except duckdb.Error:
            return {}
    return {b: int(n) for b, n in rows}
