"""The lake: landing → validated | quarantine zones of day/import batches.

A batch is a directory holding `events.parquet` and, when it brings new catalogue or user rows,
`items.parquet` / `users.parquet`. It is the unit that is validated, moved and never deleted.
Every write goes to a temporary sibling first and is renamed into place, so a reader never sees
a half-written batch and a crash leaves nothing behind but a `.tmp-*` directory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shoprec.atomic import atomic_path
from shoprec.config import Settings, get_settings
from shoprec.names import check_name, inside, is_name

ZONES = ("landing", "validated", "quarantine")
TABLES = ("events", "items", "users")


def write_parquet(table: pa.Table, path: Path) -> None:
    """Parquet as every stage writes it (zstd, ~1M-row groups)."""
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20)


def write_batch(
    batch_id: str,
    tables: dict[str, pa.Table],
    *,
    dataset: str | None = None,
    zone: str = "landing",
    settings: Settings | None = None,
) -> Path:
    """Write one batch atomically into `zone`. Returns the batch directory."""
    settings = settings or get_settings()
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown batch tables {sorted(unknown)}; expected {TABLES}")
    final = settings.zone(zone, dataset) / check_name(batch_id, "batch")
    # atomic on one filesystem; the rename fails if `final` exists
    with atomic_path(final, directory=True, replace=False, durable=True) as tmp:
        for name, table in tables.items():
            write_parquet(table, tmp / f"{name}.parquet")
    return final


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
        ok = is_name(p.name) and p.resolve().is_relative_to(zone_dir.resolve())
        (good if ok else bad).append(p)
    return good, bad


def iter_files(batch_dir: Path) -> Iterator[Path]:
    yield from sorted(p for p in batch_dir.iterdir() if p.is_file())


def content_hash(batch_dir: Path) -> str:
    """sha256 over the batch's file names and bytes: the identity used for idempotent re-runs."""
    h = hashlib.sha256()
    for f in iter_files(batch_dir):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
