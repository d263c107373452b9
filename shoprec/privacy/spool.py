"""The serving process's event spool (POST /events): the user's spooled events (their JSON row)
and the seen-set entries of their landed events (by event id) are deleted."""

from __future__ import annotations

import sqlite3

from shoprec.config import Settings
from shoprec.privacy.identity import user_hmac


def purge_spool(settings: Settings, dataset: str, k: bytes, wanted: set[str],
                event_ids: set[str]) -> int:
    path = settings.event_spool(dataset)
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        db.create_function("forgotten", 1, lambda u: u is not None and user_hmac(k, u) in wanted,
                           deterministic=True)
        db.execute("BEGIN IMMEDIATE")
        try:
            n = db.execute("DELETE FROM events WHERE row IS NOT NULL AND "
                           "forgotten(json_extract(row, '$[1]'))").rowcount
            ids = sorted(event_ids)
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                n += db.execute(f"DELETE FROM events WHERE event_id IN "
                                f"({','.join('?' * len(chunk))})", chunk).rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if n:
            db.execute("VACUUM")  # deleted rows otherwise stay readable in free pages
        return n
    finally:
        db.close()
