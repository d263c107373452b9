"""The gate's memory: content hash → last verdict, so bytes judged once are not judged again.

Append-only JSON lines, each fsynced: a crash loses at most the record being written.
"""

from __future__ import annotations

import json
import os

from shoprec.config import Settings


def read_ledger(settings: Settings, dataset: str | None) -> dict[str, dict]:
    """Content hash → its last record (a later line overrides an earlier one)."""
    return {rec["content_hash"]: rec for rec in history(settings, dataset)}


def append_ledger(settings: Settings, dataset: str | None, rec: dict) -> None:
    p = settings.validation_ledger(dataset)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a") as fh:
        fh.write(json.dumps(rec, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def reconcile(settings: Settings, dataset: str | None, ledger: dict[str, dict]) -> list[str]:
    """Record batches a killed run moved but could not record (the move is the last step of a
    verdict, the ledger line right after it): each is judged by the zone it sits in."""
    import datetime as dt

    from shoprec.lake import content_hash, ensure_delivery, list_batches

    # every record ever written, not only the last one per content hash: the same bytes may
    # live under two names (a re-sent day), and each has its own record
    recorded = {(r["batch_id"], r["status"]) for r in history(settings, dataset)}
    fixed = []
    for zone, status in (("validated", "validated"), ("quarantine", "quarantined")):
        for d in list_batches(zone, dataset=dataset, settings=settings):
            if zone == "validated":  # dbt orders deliveries by arrival
                ensure_delivery(d, settings, dataset)
            done = {status} if zone == "validated" else {status, "retracted", "superseded"}
            if any((d.name, st) in recorded for st in done) or "~" in d.name:
                continue
            rec = {"batch_id": d.name, "content_hash": content_hash(d), "status": status,
                   "path": str(d), "at": dt.datetime.now(dt.UTC).isoformat(),
                   "reason": "recorded after an interrupted run"}
            append_ledger(settings, dataset, rec)
            ledger[rec["content_hash"]] = rec
            fixed.append(d.name)
    return fixed


def history(settings: Settings, dataset: str | None, batch_id: str | None = None) -> list[dict]:
    """Every record in the order written: what happened to each delivery (one batch or all)."""
    p = settings.validation_ledger(dataset)
    if not p.exists():
        return []
    recs = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return [r for r in recs if batch_id is None or r["batch_id"] == batch_id]
