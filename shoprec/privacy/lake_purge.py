"""Remove users' rows from the lake's batches (landing, validated, quarantine), each file
rewritten to a temporary sibling and renamed: a batch is never half-rewritten, and a re-run
finds nothing more to remove. And their ids from text files (the gate's reports name offending
ids; dbt logs its command line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from shoprec import atomic
from shoprec.config import Settings
from shoprec.privacy.identity import matching

USER_TABLES = ("events", "users")  # the batch files that hold a user_id column
ZONES = ("landing", "validated", "quarantine")
TOKEN = re.compile(r"[^\s\"'<>,;\[\]{}()=`|\\]+")  # a candidate id inside a report's text
TEXT_SUFFIXES = {".json", ".jsonl", ".html", ".txt", ".md", ".csv", ".log", ".yaml", ".yml"}


@dataclass
class Purged:
    rows: dict[str, int] = field(default_factory=dict)  # "<zone>/<table>" → rows removed
    event_ids: set[str] = field(default_factory=set)  # of the removed events (the spool's keys)
    files: int = 0  # files rewritten

    def add(self, where: str, n: int) -> None:
        if n:
            self.rows[where] = self.rows.get(where, 0) + n


def drop_users(table, k: bytes, wanted: set[str]):
    """(table without the rows of users whose HMAC is in `wanted`, those rows)."""
    import pyarrow.compute as pc

    if "user_id" not in table.column_names or table.num_rows == 0:
        return table, table.slice(0, 0)
    gone = matching(k, pc.unique(table["user_id"]).to_pylist(), wanted)
    if not gone:
        return table, table.slice(0, 0)
    import pyarrow as pa

    hit = pc.fill_null(pc.is_in(table["user_id"], value_set=pa.array(gone, pa.string())), False)
    return table.filter(pc.invert(hit)), table.filter(hit)


def purge_file(path: Path, k: bytes, wanted: set[str], before_rewrite=None):
    """Rewrite one Parquet file without those users; returns the removed rows (maybe empty)."""
    import pyarrow.parquet as pq

    from shoprec.lake import write_parquet

    table = pq.read_table(path)
    keep, gone = drop_users(table, k, wanted)
    if gone.num_rows:
        if before_rewrite is not None and "event_id" in gone.column_names:
            before_rewrite({x for x in gone["event_id"].to_pylist() if x})
        with atomic.atomic_path(path, durable=True) as tmp:
            write_parquet(keep, tmp)
    return gone


def purge_lake(settings: Settings, dataset: str, k: bytes, wanted: set[str],
               before_rewrite=None) -> Purged:
    """Every batch of every zone. `before_rewrite(ids)`
    runs with the event ids a file is about to lose, before it is rewritten (after the rewrite
    nothing would name them any more)."""
    from shoprec.lake import list_batches

    out = Purged()
    for zone in ZONES:
        for batch in list_batches(zone, dataset=dataset, settings=settings):
            _sweep_temporaries(batch)
            for t in USER_TABLES:
                f = batch / f"{t}.parquet"
                if not f.is_file():
                    continue
                gone = purge_file(f, k, wanted, before_rewrite)
                if gone.num_rows:
                    out.files += 1
                    out.add(f"{zone}/{t}", gone.num_rows)
                    if "event_id" in gone.column_names:
                        out.event_ids.update(x for x in gone["event_id"].to_pylist() if x)
    return out


def _sweep_temporaries(batch: Path) -> None:
    """A writer killed mid-rename leaves `.tmp-*` beside the file, holding the old rows."""
    for p in batch.glob(".tmp-*"):
        if p.is_file():
            p.unlink()


def redact_text(folder: Path, k: bytes, wanted: set[str], tokens: set[str]) -> int:
    """Replace the user's id in the text files under `folder` (the gate's reports, dbt's logs
    and run results, the platform's logs) by `[forgotten]`; returns how many files changed.
    `tokens`: the raw ids when the request named them; else every token is hashed."""
    changed = 0
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.is_symlink() or p.suffix.lower() not in TEXT_SUFFIXES \
                or p.name.startswith(".tmp-"):
            continue
        text = p.read_text(errors="surrogateescape")
        if tokens:
            hits = {t for t in tokens if t in text}
        else:
            hits = set(matching(k, TOKEN.findall(text), wanted))
        new = text
        for raw in sorted(hits, key=len, reverse=True):
            new = re.sub(rf"(?<![\w-]){re.escape(raw)}(?![\w-])", "[forgotten]", new)
        if new != text:
            with atomic.atomic_path(p) as tmp:
                tmp.write_text(new, errors="surrogateescape")
            changed += 1
    return changed
