"""Events delivered again in a later batch (the same event_id): not an error (shops re-send
exports), but counted per batch and resolved by arrival order, the first delivery counting,
exactly as dbt's staging keeps it."""

from __future__ import annotations

from pathlib import Path

from shoprec.config import Settings
from shoprec.lake import delivery, list_batches


def redelivered_events(todo: list[Path], settings: Settings,
                       dataset: str | None) -> dict[str, int]:
    """Batch → how many of its event_ids an earlier-arriving batch (validated, or pending in
    this run) already delivered. Unreadable files count nothing: their verdict says why."""
    import duckdb

    batches = [*list_batches("validated", dataset=dataset, settings=settings), *todo]
    batches = [d for d in batches if (d / "events.parquet").is_file()]
    if not todo or len(batches) < 2:
        return {}
    arrival = [(d.name, delivery(d).get("arrival") or 0) for d in batches]
    files = [str(d / "events.parquet") for d in batches]
    mine = [d.name for d in todo]
    with duckdb.connect() as con:
        con.execute("CREATE TEMP TABLE arrival (batch VARCHAR, arrival BIGINT)")
        con.executemany("INSERT INTO arrival VALUES (?, ?)", arrival)
        try:
            rows = con.execute(r"""
                WITH ev AS (
                    SELECT CAST(event_id AS VARCHAR) AS event_id,
                           regexp_extract(filename, '([^/]+)/events\.parquet$', 1) AS batch
                    FROM read_parquet(?, filename = true, union_by_name = true)),
                ranked AS (
                    SELECT ev.batch, a.arrival,
                           min(a.arrival) OVER (PARTITION BY ev.event_id) AS first_arrival
                    FROM ev JOIN arrival AS a USING (batch))
                SELECT batch, count(*) FROM ranked
                WHERE arrival > first_arrival AND list_contains(?, batch)
                GROUP BY batch""", [files, mine]).fetchall()
        except duckdb.Error:
            return {}
    return {b: int(n) for b, n in rows}
