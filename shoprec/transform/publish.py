"""Publish the warehouse for analysts without ever letting them block or see a half-built run.

DuckDB allows one writing process per file, so analysts never open the warehouse dbt writes.
They open the symlink `warehouse/<dataset>-analytics.duckdb`, swapped atomically (rename of a
symlink) to a snapshot file `warehouse/snapshots/<dataset>-<ts>.duckdb` after each good build.
Open connections keep reading the snapshot they opened; new ones get the new one.

A publish does not copy the warehouse: it takes the oldest kept snapshot that no process holds
(an open reader keeps a lock; that file is left alone) and brings it up to the warehouse by
rewriting only the table parts that changed since it was published (`snapshot_sync`), in one
transaction, then renames it to the new stamp and points the link at it. Only the first publish,
or one whose older snapshots are all held or unreadable, copies the whole file.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from shoprec import atomic
from shoprec.config import Settings
from shoprec.names import sql_literal
from shoprec.transform import snapshot_sync

log = logging.getLogger("shoprec.transform")

ALIAS = "shoprec_snapshot"  # an older snapshot's name while it is brought up to date
KEEP = 3  # at most: the one published, the one before (synced next), one a reader held
STAMP = re.compile(r"\d{8}T\d{12}Z")


@dataclass
class Published:
    link: Path
    snapshot: Path
    how: str  # "synced <file>: ..." or "copied (<why>)"
    seconds: float


def snapshots(settings: Settings, dataset: str) -> list[Path]:
    """The dataset's snapshot files, oldest first (names of other datasets never match)."""
    folder = settings.warehouse_snapshots()
    prefix = f"{dataset}-"
    return sorted(p for p in folder.glob(f"{dataset}-*.duckdb")
                  if STAMP.fullmatch(p.name[len(prefix):-len(".duckdb")]))


def publish_snapshot(settings: Settings, dataset: str) -> Path:
    return publish(settings, dataset).link


def publish(settings: Settings, dataset: str, rebuilt: bool = False) -> Published:
    """`rebuilt`: dbt rebuilt every table (a full refresh): a copy is then the cheaper way."""
    import duckdb

    t0 = time.perf_counter()
    src = settings.warehouse(dataset)
    snaps = settings.warehouse_snapshots()
    snaps.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(src)) as con:  # fold the WAL into the file
        con.execute("CHECKPOINT")
    link = settings.analytics_snapshot(dataset)
    current = link.resolve() if link.is_symlink() else None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    snap = snaps / f"{dataset}-{stamp}.duckdb"
    keys = unique_keys(settings, dataset)
    older = [p for p in snapshots(settings, dataset) if p.resolve() != current]
    how = None if rebuilt else _sync_one(older, src, snap, keys)
    if how is None:
        why = "first publish" if current is None else "full rebuild" if rebuilt else \
            "no older snapshot free to update"
        with atomic.atomic_path(snap) as tmp:
            shutil.copyfile(src, tmp)
            with duckdb.connect(str(tmp)) as con:
                snapshot_sync.record_all(con, _database(con), keys)
                con.execute("CHECKPOINT")
        how = f"copied ({why})"
    with atomic.atomic_path(link) as tmp_link:  # readers see the old or the new one, never half
        os.symlink(os.path.relpath(snap, link.parent), tmp_link)
    for old in snapshots(settings, dataset)[:-KEEP]:
        old.unlink()
    return Published(link, snap, how, time.perf_counter() - t0)


def unique_keys(settings: Settings, dataset: str) -> snapshot_sync.Keys:
    """(schema, table) → unique_key of dbt's models, from the manifest of the last build ({}
    without one: every table is then synced by part)."""
    import json

    try:
        nodes = json.loads(settings.dbt_manifest(dataset).read_bytes())["nodes"]
    except (OSError, ValueError, KeyError):
        return {}
    out = {}
    for node in nodes.values():
        key = node.get("config", {}).get("unique_key") if node.get("resource_type") == "model" \
            else None
        if key:
            out[(node["schema"], node.get("alias") or node["name"])] = \
                [key] if isinstance(key, str) else list(key)
    return out


def _sync_one(older: list[Path], src: Path, snap: Path, keys: snapshot_sync.Keys
              ) -> str | None:
    """The first of `older` that can be brought up to `src`, synced and renamed `snap`; None
    when none can: held by a reader (its lock), not published by this code, or failed. The
    snapshot is attached to the warehouse's connection: in the process that ran dbt, DuckDB
    keeps that file open and would refuse a second handle on it."""
    import duckdb

    with duckdb.connect(str(src)) as con:
        source = _database(con)
        for old in older:
            try:
                con.execute(f"ATTACH {sql_literal(old)} AS {ALIAS}")
            except duckdb.Error as e:
                log.info("snapshot %s not updated (%s)", old.name, _first(e))
                continue
            try:
                if not snapshot_sync.has_meta(con, ALIAS):
                    continue
                report = snapshot_sync.sync(con, ALIAS, source, keys)
            except duckdb.Error as e:
                log.warning("snapshot %s not updated: %s", old.name, _first(e))
                continue
            finally:
                con.execute(f"USE {snapshot_sync.ident(source)}")
                con.execute(f"DETACH {ALIAS}")
            os.replace(old, snap)
            return (f"synced {old.name}: {report.parts} parts, {report.rows:,} rows rewritten"
                    + (f", tables replaced: {', '.join(report.replaced)}" if report.replaced
                       else ""))
    return None


def _first(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _database(con) -> str:
    return con.execute("SELECT current_database()").fetchone()[0]
