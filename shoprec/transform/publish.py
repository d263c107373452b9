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

from shoprec.config import Settings

KEEP = 3  # snapshots kept; an analyst still holding an older one keeps its open inode


def analytics_path(settings: Settings, dataset: str) -> Path:
    return settings.root / "warehouse" / f"{dataset}-analytics.duckdb"


def publish_snapshot(settings: Settings, dataset: str) -> Path:
    import duckdb

    from shoprec.transform.runner import warehouse_path

    src = warehouse_path(settings, dataset)
    snaps = src.parent / "snapshots"
    snaps.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(src)) as con:  # fold the WAL into the file before copying it
        con.execute("CHECKPOINT")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    snap = snaps / f"{dataset}-{stamp}.duckdb"
    tmp = snap.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, snap)
    link = analytics_path(settings, dataset)
    tmp_link = link.with_name(f".{link.name}.{stamp}")
    os.symlink(os.path.relpath(snap, link.parent), tmp_link)
    os.replace(tmp_link, link)  # atomic: readers see the old or the new snapshot, never half
    for old in sorted(snaps.glob(f"{dataset}-*.duckdb"))[:-KEEP]:
        old.unlink()
    return link
