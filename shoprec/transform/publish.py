"""Publish the warehouse to its readers without ever letting them block or see a half-built run.

DuckDB allows one writing process per file, so nobody reads the warehouse dbt writes. Two
snapshots are published after each good build, each a symlink swapped atomically (rename of a
symlink) to a file of its folder:
- internal, `warehouse/<dataset>-internal.duckdb` → `warehouse/snapshots/<dataset>-<ts>.duckdb`:
  the warehouse as it is, real ids, for Feast's exports, training and serving;
- analysts', `warehouse/<dataset>-analytics.duckdb` → `warehouse/analysts/<dataset>-<ts>.duckdb`:
  the marts and feature tables with user and session ids replaced by keyed pseudonyms
  (shoprec/privacy/pseudonym.py); no views (dbt's staging views read the lake's raw files) and
  no intermediate tables (dbt's plumbing: at 10M events they were 23 s of a 55 s full write).
Open connections keep reading the snapshot they opened; new ones get the new one.

A publish does not copy the warehouse: it takes the oldest kept snapshot that no process holds
(an open reader keeps a lock; that file is left alone) and brings it up to the warehouse by
rewriting only the table parts that changed since it was published (`snapshot_sync`), in one
transaction, then renames it to the new stamp and points the link at it. Only the first publish,
a full rebuild, or one whose older snapshots are all held or unreadable, copies the whole file
(the analysts' one: writes it in full through the pseudonyms). After a publish that leaves no
other snapshot in its folder, a byte copy of the one just published is kept as a spare, so the
next publish syncs it instead of copying again (at 10M events the analysts' full write costs
~50 s, byte copies of both snapshots ~11 s); it is made once readers see the new one.
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
ANALYSTS_SCHEMAS = ("marts", "features")  # what analysts query; intermediate is dbt's plumbing
KEEP = 3  # at most: the one published, the one before (synced next), one a reader held
STAMP = re.compile(r"\d{8}T\d{12}Z")
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"  # what STAMP matches


@dataclass
class Published:
    link: Path  # the analysts' (pseudonymized) snapshot
    snapshot: Path
    how: str  # "internal: synced <file>: ...; analysts: copied (<why>) ..."
    seconds: float
    internal: Path | None = None  # the internal snapshot (real ids: Feast, training, serving)


def snapshots(settings: Settings, dataset: str, folder: Path | None = None) -> list[Path]:
    """The dataset's snapshot files in `folder` (default: the internal ones), oldest first
    (names of other datasets never match)."""
    folder = folder or settings.warehouse_snapshots()
    prefix = f"{dataset}-"
    return sorted(p for p in folder.glob(f"{dataset}-*.duckdb")
                  if STAMP.fullmatch(p.name[len(prefix):-len(".duckdb")]))


def published_links(settings: Settings, dataset: str) -> list[tuple[Path, Path]]:
    """(snapshot folder, link to the published one): the internal pair, then the analysts'."""
    return [(settings.warehouse_snapshots(), settings.internal_snapshot(dataset)),
            (settings.analysts_snapshots(), settings.analytics_snapshot(dataset))]


def publish_snapshot(settings: Settings, dataset: str) -> Path:
    return publish(settings, dataset).link


def publish(settings: Settings, dataset: str, rebuilt: bool = False) -> Published:
    """The internal snapshot (the warehouse as it is), then the analysts' one (user and session
    ids replaced by keyed pseudonyms). `rebuilt`: dbt rebuilt every table (a full refresh): a
    copy is then the cheaper way."""
    import duckdb

    t0 = time.perf_counter()
    src = settings.warehouse(dataset)
    with duckdb.connect(str(src)) as con:  # fold the WAL into the file
        con.execute("CHECKPOINT")
    keys = unique_keys(settings, dataset)
    stamp = dt.datetime.now(dt.UTC).strftime(STAMP_FORMAT)
    internal, how = _publish_internal(settings, dataset, src, stamp, keys, rebuilt)
    analysts, how_a = _publish_analysts(settings, dataset, src, stamp, keys, rebuilt)
    spares = [_spare(settings, dataset, folder, link)
              for folder, link in published_links(settings, dataset)]
    made = [s for s in spares if s is not None]
    return Published(settings.analytics_snapshot(dataset), analysts,
                     f"internal: {how}; analysts: {how_a}"
                     + (f"; spare for the next publish copied in {sum(made):.1f} s" if made
                        else ""), time.perf_counter() - t0, internal)


def _publish_internal(settings: Settings, dataset: str, src: Path, stamp: str,
                      keys: snapshot_sync.Keys, rebuilt: bool) -> tuple[Path, str]:
    import duckdb

    folder = settings.warehouse_snapshots()
    folder.mkdir(parents=True, exist_ok=True)
    link = settings.internal_snapshot(dataset)
    snap = folder / f"{dataset}-{stamp}.duckdb"
    how = None if rebuilt else _sync_one(_older(settings, dataset, folder, link), src, snap,
                                         keys)
    if how is None:
        with atomic.atomic_path(snap) as tmp:
            shutil.copyfile(src, tmp)
            with duckdb.connect(str(tmp)) as con:
                snapshot_sync.record_all(con, _database(con), keys)
                con.execute("CHECKPOINT")
        how = f"copied ({_why(link, rebuilt)})"
    _swap(link, snap, settings, dataset, folder)
    return snap, how


def _publish_analysts(settings: Settings, dataset: str, src: Path, stamp: str,
                      keys: snapshot_sync.Keys, rebuilt: bool) -> tuple[Path, str]:
    """Synced like the internal one, but every row written passes through the pseudonyms; a
    fresh file is an empty one synced in full (a byte copy would carry the real ids)."""
    from shoprec.privacy import pseudonym

    folder = settings.analysts_snapshots()
    folder.mkdir(parents=True, exist_ok=True)
    link = settings.analytics_snapshot(dataset)
    snap = folder / f"{dataset}-{stamp}.duckdb"
    k = pseudonym.analysts_key(settings)

    def rows(qualified: str, columns: list[str], where: str) -> str:
        return pseudonym.select(k, qualified, columns, where)

    how = None if rebuilt else _sync_one(_older(settings, dataset, folder, link), src, snap,
                                         keys, rows, schemas=ANALYSTS_SCHEMAS)
    if how is None:
        with atomic.atomic_path(snap) as tmp:
            done = _sync_one([tmp], src, tmp, keys, rows, fresh=True, schemas=ANALYSTS_SCHEMAS)
            if done is None:
                raise RuntimeError(f"the analysts' snapshot {snap} could not be written")
        how = f"written in full ({_why(link, rebuilt)})"
    _swap(link, snap, settings, dataset, folder)
    return snap, how


def _older(settings: Settings, dataset: str, folder: Path, link: Path) -> list[Path]:
    current = link.resolve() if link.is_symlink() else None
    return [p for p in snapshots(settings, dataset, folder) if p.resolve() != current]


def _why(link: Path, rebuilt: bool) -> str:
    return "first publish" if not link.is_symlink() else "full rebuild" if rebuilt else \
        "no older snapshot free to update"


def _swap(link: Path, snap: Path, settings: Settings, dataset: str, folder: Path) -> None:
    with atomic.atomic_path(link) as tmp_link:  # readers see the old or the new one, never half
        os.symlink(os.path.relpath(snap, link.parent), tmp_link)
    for old in snapshots(settings, dataset, folder)[:-KEEP]:
        old.unlink()


def _spare(settings: Settings, dataset: str, folder: Path, link: Path) -> float | None:
    """A byte copy of the published snapshot, stamped a microsecond before it, when no older
    one is left to sync next time; its seconds, or None when one is left."""
    if _older(settings, dataset, folder, link):
        return None
    t0 = time.perf_counter()
    current = link.resolve()
    stamp = dt.datetime.strptime(current.name[len(dataset) + 1:-len(".duckdb")],
                                 STAMP_FORMAT) - dt.timedelta(microseconds=1)
    with atomic.atomic_path(folder / f"{dataset}-{stamp.strftime(STAMP_FORMAT)}.duckdb") as tmp:
        shutil.copyfile(current, tmp)
    return time.perf_counter() - t0


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


def _sync_one(older: list[Path], src: Path, snap: Path, keys: snapshot_sync.Keys,
              rows: snapshot_sync.Rows | None = None, fresh: bool = False,
              schemas: tuple[str, ...] | None = None) -> str | None:
    """The first of `older` that can be brought up to `src`, synced and renamed `snap`; None
    when none can: held by a reader (its lock), not published by this code, or failed. The
    snapshot is attached to the warehouse's connection: in the process that ran dbt, DuckDB
    keeps that file open and would refuse a second handle on it. `fresh`: `older` is one new,
    empty file, synced in full (errors raise)."""
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
                if not fresh and not snapshot_sync.has_meta(con, ALIAS):
                    continue
                report = snapshot_sync.sync(con, ALIAS, source, keys, rows,
                                            views=rows is None, schemas=schemas)
            except duckdb.Error as e:
                if fresh:
                    raise
                log.warning("snapshot %s not updated: %s", old.name, _first(e))
                continue
            finally:
                con.execute(f"USE {snapshot_sync.ident(source)}")
                con.execute(f"DETACH {ALIAS}")
            if old != snap:
                os.replace(old, snap)
            return (f"synced {old.name}: {report.parts} parts, {report.rows:,} rows rewritten"
                    + (f", tables replaced: {', '.join(report.replaced)}" if report.replaced
                       else ""))
    return None


def _first(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _database(con) -> str:
    return con.execute("SELECT current_database()").fetchone()[0]
