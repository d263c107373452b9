"""The gate's side of forgetting: a delivery's rows of a forgotten user are dropped before it is
judged, so a re-delivered old batch cannot bring them back."""

from __future__ import annotations

from pathlib import Path

from shoprec.config import Settings
from shoprec.privacy import log
from shoprec.privacy.identity import key
from shoprec.privacy.lake_purge import USER_TABLES, purge_file


def drop_forgotten(batch_dirs: list[Path], settings: Settings, dataset: str | None
                   ) -> dict[str, int]:
    """Rows removed per landing batch (none read when nobody was ever forgotten)."""
    wanted = log.forgotten(settings, dataset or settings.dataset)
    if not wanted:
        return {}
    k = key(settings)
    out = {}
    for d in batch_dirs:
        n = sum(purge_file(d / f"{t}.parquet", k, wanted).num_rows for t in USER_TABLES
                if (d / f"{t}.parquet").is_file())
        if n:
            out[d.name] = n
    return out


def note(n: int) -> str:
    return f"{n:,} rows of forgotten users dropped (privacy forget log)"
