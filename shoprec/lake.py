"""The lake: landing → validated | quarantine zones of day/import batches.

A batch is a directory holding any non-empty subset of `events.parquet`, `items.parquet` and
`users.parquet` (a catalogue or a customer list may arrive on its own), plus `_delivery.json`:
its lineage (arrival number, when it landed, where from), outside the contract and outside its
content hash. It is the unit that is validated, moved and never deleted; arrival order, not the
batch's name, decides which delivery of an event counts and which version supersedes another.
Every write goes to a temporary sibling first and is renamed into place, so a reader never sees
a half-written batch and a crash leaves nothing behind but a `.tmp-*` directory.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shoprec.atomic import atomic_path, write_text
from shoprec.config import Settings, get_settings
from shoprec.lake_sync import synced
from shoprec.names import check_name, inside, is_name

ZONES = ("landing", "validated", "quarantine")
TABLES = ("events", "items", "users")
DELIVERY = "_delivery.json"  # lineage sidecar; names starting with "_" are not batch content


def write_parquet(table: pa.Table, path: Path) -> None:
    """Parquet as every stage writes it (zstd, ~1M-row groups)."""
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20)


@synced()
def write_batch(
    batch_id: str,
    tables: dict[str, pa.Table],
    *,
    dataset: str | None = None,
    zone: str = "landing",
    settings: Settings | None = None,
    source: str | None = None,
    position: int | None = None,
    replace: bool = False,
) -> Path:
    """Write one batch atomically into `zone`. Returns the batch directory. `replace` swaps out
    a batch of that name (whose tables the caller carried over): the old folder is renamed
    aside, then removed, so a reader never sees a half-written batch."""
    settings = settings or get_settings()
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown batch tables {sorted(unknown)}; expected {TABLES}")
    final = settings.zone(zone, dataset) / check_name(batch_id, "batch")
    staged = final.parent / f".tmp-new-{final.name}-{uuid.uuid4().hex[:8]}"
    # atomic on one filesystem; the rename fails if the target exists
    with atomic_path(staged if replace else final, directory=True, replace=False,
                     durable=True) as tmp:
        for name, table in tables.items():
            write_parquet(table, tmp / f"{name}.parquet")
        _write_delivery(tmp, batch_id, settings, dataset, source, position)
    if replace:
        old = final.parent / f".tmp-old-{final.name}-{uuid.uuid4().hex[:8]}"
        if final.exists():
            os.rename(final, old)
        os.rename(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    return final


def next_arrival(settings: Settings, dataset: str | None = None) -> int:
    """A number that grows with every delivery of the dataset, across processes. The first use
    in a lake from before arrival numbers stamps its validated batches first (in name order, the
    order they were built in), so nothing new can claim to be older than them."""
    return _bump(settings, dataset, 1)


def ensure_numbered(settings: Settings, dataset: str | None = None) -> None:
    """Number an old lake's validated batches now (before reading anyone's position)."""
    _bump(settings, dataset, 0)


def _bump(settings: Settings, dataset: str | None, by: int) -> int:
    path = settings.arrival_counter(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        text = fh.read().strip()
        n = (int(text) if text else _migrate(settings, dataset)) + by
        fh.seek(0)
        fh.truncate()
        fh.write(str(n))
        fh.flush()
    return n


def _migrate(settings: Settings, dataset: str | None) -> int:
    """Called under the counter's lock when it has no value yet: the highest arrival already
    recorded, after numbering validated batches that have none."""
    top = 0
    for zone in ZONES:
        for d in list_batches(zone, dataset=dataset, settings=settings):
            top = max(top, delivery(d).get("arrival") or 0)
    for d in list_batches("validated", dataset=dataset, settings=settings):
        if not delivery(d):
            top += 1
            _stamp(d, {"batch_id": d.name, "arrival": top, "position": top,
                       "source": "numbered when arrival order was introduced"})
    return top


def _stamp(batch_dir: Path, rec: dict) -> None:
    rec = {**rec, "landed_at": rec.get("landed_at") or dt.datetime.now(dt.UTC).isoformat()}
    write_text(batch_dir / DELIVERY, json.dumps(rec) + "\n")


def _write_delivery(batch_dir: Path, batch_id: str, settings: Settings, dataset: str | None,
                    source: str | None, position: int | None = None) -> None:
    """`position`: where in the delivery order the batch's rows count (a corrected version keeps
    its batch's position; `arrival` stays its own, and decides which version supersedes)."""
    arrival = next_arrival(settings, dataset)
    _stamp(batch_dir, {"batch_id": batch_id, "arrival": arrival,
                       "position": position or arrival, "source": source})


def delivery(batch_dir: Path) -> dict:
    """The batch's lineage record; {} when it has none or one that does not belong to it (a
    sidecar is only trusted with this batch's id and whole-number arrival and position)."""
    f = batch_dir / DELIVERY
    try:
        rec = json.loads(f.read_text()) if f.is_file() and not f.is_symlink() else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(rec, dict) or rec.get("batch_id") != batch_dir.name.split("~")[0]:
        return {}
    rec.setdefault("position", rec.get("arrival"))
    if not all(isinstance(rec.get(k), int) and not isinstance(rec.get(k), bool) and rec[k] > 0
               for k in ("arrival", "position")):
        return {}
    return rec


def position(batch_dir: Path) -> int:
    """Where a batch's rows stand in the delivery order (0 when unknown)."""
    return delivery(batch_dir).get("position") or 0


def ensure_delivery(batch_dir: Path, settings: Settings, dataset: str | None,
                    taken: set[int] | None = None) -> dict:
    """Give a batch dropped into the lake by hand (or carrying a sidecar that is not its own, or
    an arrival another batch holds) its arrival number, now."""
    rec = delivery(batch_dir)
    if not rec or (taken is not None and rec["arrival"] in taken):
        _write_delivery(batch_dir, batch_dir.name, settings, dataset, "found in the lake")
        rec = delivery(batch_dir)
    if taken is not None:
        taken.add(rec["arrival"])
    return rec


def find_batch(batch_id: str, *, dataset: str | None = None,
               settings: Settings | None = None) -> tuple[str, Path] | None:
    """Which zone holds `batch_id`, if any (a batch lives in exactly one zone)."""
    settings = settings or get_settings()
    check_name(batch_id, "batch")
    for zone in ZONES:
        p = settings.zone(zone, dataset) / batch_id
        if p.is_dir():
            inside(p, settings.zone(zone, dataset))  # a symlink out of the lake is refused
            return zone, p
    return None


def list_batches(zone: str, *, dataset: str | None = None,
                 settings: Settings | None = None) -> list[Path]:
    settings = settings or get_settings()
    d = settings.zone(zone, dataset)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def split_names(batch_dirs: list[Path], zone_dir: Path) -> tuple[list[Path], list[Path]]:
    """(batches with a safe name inside the zone, the others): a folder found on disk is
    checked like a name typed by a user before any path or SQL is built from it."""
    good, bad = [], []
    for p in batch_dirs:
        ok = (is_name(p.name) and p.resolve().is_relative_to(zone_dir.resolve())
              and not any(f.is_symlink() for f in p.iterdir()))  # no file read from elsewhere
        (good if ok else bad).append(p)
    return good, bad


def iter_files(batch_dir: Path) -> Iterator[Path]:
    """The batch's content: its files, without lineage or reports (names starting with '_')."""
    yield from sorted(p for p in batch_dir.iterdir() if p.is_file() and p.name[0] != "_")


def content_hash(batch_dir: Path) -> str:
    """sha256 over the batch's file names and bytes: the identity used for idempotent re-runs."""
    h = hashlib.sha256()
    for f in iter_files(batch_dir):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
