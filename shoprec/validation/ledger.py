"""The gate's memory: content hash → last verdict, so bytes judged once are not judged again.

Append-only JSON lines, each fsynced: a crash loses at most the record being written.
"""

from __future__ import annotations

import json
import os

from shoprec.config import Settings


def read_ledger(settings: Settings, dataset: str | None) -> dict[str, dict]:
    """Content hash → its last record (a later line overrides an earlier one)."""
    p = settings.validation_ledger(dataset)
    if not p.exists():
        return {}
    out = {}
    for line in p.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out[rec["content_hash"]] = rec
    return out


def append_ledger(settings: Settings, dataset: str | None, rec: dict) -> None:
    p = settings.validation_ledger(dataset)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a") as fh:
        fh.write(json.dumps(rec, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
