"""Publish the warehouse for analysts without ever letting them block or see a half-built run.

DuckDB allows one writing process per file, so analysts never open the warehouse dbt writes.
After a successful build the warehouse file is copied to `warehouse/snapshots/<dataset>-<ts>.duckdb`
and the symlink `warehouse/<dataset>-analytics.duckdb` is swapped to it atomically (rename of a
symlink). Open connections keep reading the snapshot they opened; new ones get the new one.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from shoprec import atomic
from shoprec.config import Settings

KEEP = 3  # snapshots kept; an analyst still holding an older one keeps its open inode


def publish_snapshot(settings: Settings, dataset: str) -> Path:
    import duckdb

    src = settings.warehouse(dataset)
    snaps = settings.warehouse_snapshots()
    snaps.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(src)) as con:  # fold the WAL into the file before copying it
        con.execute("CHECKPOINT")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    snap = snaps / f"{dataset}-{stamp}.duckdb"
    with atomic.atomic_path(snap) as tmp:
        shutil.copyfile(src, tmp)
    link = settings.analytics_snapshot(dataset)
    with atomic.atomic_path(link) as tmp_link:  # readers see the old or the new one, never half
        os.symlink(os.path.relpath(snap, link.parent), tmp_link)
    for old in sorted(snaps.glob(f"{dataset}-*.duckdb"))[:-KEEP]:
        old.unlink()
    return link
