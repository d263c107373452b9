"""A batch after it was accepted: retract it, or supersede it with a corrected re-delivery, and
rebuild what derives from it. The one "remove rows and rebuild" machinery of the lake: the
batch leaves `validated/` whole (kept in `quarantine/` with the reason, never deleted), the
ledger records the move, and a rebuild marker makes the next `transform` a full refresh (dbt's
increments are keyed by batch and would keep the old rows) and the next `materialize` re-fill
the online store in full."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from shoprec import atomic
from shoprec.config import Settings, get_settings
from shoprec.lake import (
    TABLES,
    content_hash,
    delivery,
    ensure_numbered,
    find_batch,
    iter_files,
)
from shoprec.lake_sync import synced
from shoprec.names import check_name, inside
from shoprec.validation.ledger import append_ledger

STAGES = ("dbt", "feast")  # what a rebuild marker asks to rebuild


class LifecycleError(ValueError):
    """A lifecycle command that cannot apply (no such batch, wrong zone, bad input)."""


@dataclass
class Move:
    batch_id: str
    status: str  # retracted | superseded | replaced
    path: Path
    reason: str
    rebuilt: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        done = ", ".join(f"{k}: {v}" for k, v in self.rebuilt.items())
        if self.status == "requeued":  # nothing derived from it yet
            return f"{self.batch_id} {self.status} → {self.path} ({self.reason})"
        return f"{self.batch_id} {self.status} → {self.path} ({self.reason})" + (
            f"; rebuilt {done}" if done else "; derived data is rebuilt on the next run")


def mark_rebuild(settings: Settings, dataset: str | None, why: str) -> None:
    """Ask every derived stage to rebuild in full (idempotent; reasons accumulate)."""
    path = settings.rebuild_marker(dataset)
    rec = json.loads(path.read_text()) if path.exists() else {"stages": [], "why": []}
    rec["stages"] = sorted(set(rec["stages"]) | set(STAGES))
    rec["why"].append(why)
    atomic.write_text(path, json.dumps(rec, indent=1) + "\n")


def rebuild_needed(settings: Settings, dataset: str | None, stage: str) -> bool:
    path = settings.rebuild_marker(dataset)
    return path.exists() and stage in json.loads(path.read_text())["stages"]


def rebuild_done(settings: Settings, dataset: str | None, stage: str) -> None:
    path = settings.rebuild_marker(dataset)
    if not path.exists():
        return
    rec = json.loads(path.read_text())
    rec["stages"] = [s for s in rec["stages"] if s != stage]
    if rec["stages"]:
        atomic.write_text(path, json.dumps(rec, indent=1) + "\n")
    else:
        path.unlink(missing_ok=True)


def _record(settings: Settings, dataset: str | None, batch_dir: Path, status: str, reason: str,
            **extra) -> None:
    append_ledger(settings, dataset, {
        "batch_id": batch_dir.name.split("~")[0], "content_hash": content_hash(batch_dir),
        "status": status, "path": str(batch_dir), "at": dt.datetime.now(dt.UTC).isoformat(),
        "reason": reason, "arrival": delivery(batch_dir).get("arrival"), **extra})


def _to_quarantine(settings: Settings, dataset: str | None, batch_dir: Path, status: str,
                   reason: str) -> Path:
    """Move a batch whole into quarantine, its report written first (inside the batch)."""
    report = batch_dir / "_validation"
    if report.exists():  # an earlier verdict's report stays beside the new reason
        shutil.rmtree(report)
    with atomic.atomic_path(report, directory=True, replace=False) as tmp:
        (tmp / "reason.txt").write_text(f"{status}: {reason}\n")
    zone = settings.zone("quarantine", dataset)
    zone.mkdir(parents=True, exist_ok=True)
    dst = zone / batch_dir.name
    if dst.exists():
        dst = zone / f"{batch_dir.name}~{status}-{uuid.uuid4().hex[:6]}"
    batch_dir.rename(dst)
    return dst


@synced()
def retract(batch_id: str, reason: str, *, dataset: str | None = None,
            settings: Settings | None = None) -> Move:
    """Take a validated batch back: it moves to quarantine with the reason; derived data is
    marked for a full rebuild (run `transform` and `features materialize`, or the DAG)."""
    s = settings or get_settings()
    if not reason.strip():
        raise LifecycleError("retract needs a --reason (it is kept with the batch)")
    where = find_batch(check_name(batch_id, "batch"), dataset=dataset, settings=s)
    src = s.zone("validated", dataset) / batch_id
    if not src.is_dir():
        zone = where[0] if where else "no zone"
        raise LifecycleError(f"batch {batch_id!r} is not validated (found in {zone}); "
                             "only a validated batch can be retracted")
    mark_rebuild(s, dataset, f"retracted {batch_id}: {reason}")  # first: a kill after the move
    dst = _to_quarantine(s, dataset, src, "retracted", reason)  # must not leave its rows behind
    _record(s, dataset, dst, "retracted", reason)
    return Move(batch_id, "retracted", dst, reason)


@synced()
def requeue(batch_id: str, *, dataset: str | None = None,
            settings: Settings | None = None) -> Move:
    """A batch the gate quarantined goes back to landing, to be judged again by the rules as
    they are now (after its dataset's profile changed, or a rule was fixed). Its old report is
    kept beside it as `_validation.previous`; the ledger records the move first, so a re-run
    of `validate` judges the same bytes again instead of calling them already quarantined."""
    s = settings or get_settings()
    check_name(batch_id, "batch")
    src = _latest_refused(s, dataset, batch_id)
    if src is None:
        where = find_batch(batch_id, dataset=dataset, settings=s)
        zone = where[0] if where else "no zone"
        raise LifecycleError(f"no version of batch {batch_id!r} refused by the gate is in "
                             f"quarantine (found in {zone}); only such a batch can be judged "
                             "again (a retracted or superseded one is corrected with "
                             "`shoprec lake replace`)")
    newer = s.zone("validated", dataset) / batch_id
    if newer.is_dir() and (delivery(newer).get("arrival") or 0) > (delivery(src).get("arrival")
                                                                   or 0):
        raise LifecycleError(f"batch {batch_id!r}: a newer version is validated; the refused "
                             f"one ({src.name}) is out of date")
    if (s.zone("landing", dataset) / batch_id).exists():
        raise LifecycleError(f"a version of batch {batch_id!r} is already waiting in landing: "
                             "run `shoprec validate`")
    _record(s, dataset, src, "requeued", "back to landing, to be judged again")
    report = src / "_validation"
    if report.is_dir():
        previous = src / "_validation.previous"
        shutil.rmtree(previous, ignore_errors=True)
        report.rename(previous)
    dst = s.zone("landing", dataset) / batch_id
    dst.parent.mkdir(parents=True, exist_ok=True)
    src.rename(dst)
    return Move(batch_id, "requeued", dst, f"from {src.name}; `shoprec validate` judges it again")


def _latest_refused(s: Settings, dataset: str | None, batch_id: str) -> Path | None:
    """The newest-arriving version of `batch_id` that the gate quarantined: it may sit there as
    `<id>~<suffix>` when an older version held the plain name."""
    zone = s.zone("quarantine", dataset)
    if not zone.is_dir():
        return None
    found = []
    for d in zone.iterdir():
        if not d.is_dir() or d.name.split("~")[0] != batch_id:
            continue
        reason = d / "_validation" / "reason.txt"
        why = reason.read_text() if reason.is_file() else ""
        if not why.startswith(("retracted:", "superseded:")):
            inside(d, zone)
            found.append((delivery(d).get("arrival") or 0, d.name, d))
    return max(found)[2] if found else None


def supersede(old: Path, new_arrival: int | None, settings: Settings,
              dataset: str | None) -> Path:
    """A validated batch replaced by a later-arriving version of the same id (the gate calls
    this just before moving the new version in)."""
    reason = f"superseded by a re-delivery (arrival {new_arrival})"
    mark_rebuild(settings, dataset, f"{old.name} {reason}")
    dst = _to_quarantine(settings, dataset, old, "superseded", reason)
    _record(settings, dataset, dst, "superseded", reason)
    return dst


def _same_bytes(path: Path, table) -> bool:
    import io

    from shoprec.lake import write_parquet

    buf = io.BytesIO()
    write_parquet(table, buf)
    return path.is_file() and path.read_bytes() == buf.getvalue()


@synced()
def land_tables(batch_id: str, tables: dict, *, dataset: str | None = None,
                settings: Settings | None = None, source: str | None = None,
                ) -> tuple[Path, str]:
    """Land `tables` as batch `batch_id`, whatever already exists under that id: the same bytes
    again → nothing to do; otherwise a new version (the tables it does not bring are carried
    over from the latest version) that the gate judges and, if it passes, lets supersede the
    validated one. A version still waiting in landing is superseded at once, unless the new
    tables are ones it does not hold yet: then they join it ("added"). Returns the path and
    what happened ("landed", "unchanged", "added", "new version")."""
    import pyarrow.parquet as pq

    from shoprec.lake import write_batch

    s = settings or get_settings()
    ensure_numbered(s, dataset)
    hit = find_batch(check_name(batch_id, "batch"), dataset=dataset, settings=s)
    if hit is None:
        return write_batch(batch_id, tables, dataset=dataset, settings=s, source=source), "landed"
    zone, latest = hit
    if all(_same_bytes(latest / f"{t}.parquet", tb) for t, tb in tables.items()):
        return latest, "unchanged"
    carried = {t: pq.read_table(latest / f"{t}.parquet") for t in TABLES
               if t not in tables and (latest / f"{t}.parquet").is_file()}
    if zone == "landing" and not any((latest / f"{t}.parquet").exists() for t in tables):
        # more tables of a delivery still waiting: the same batch, now holding them too
        rec = delivery(latest)
        was = rec.get("source")
        path = write_batch(batch_id, {**carried, **tables}, dataset=dataset, settings=s,
                           source="; ".join(x for x in (was, source) if x) or None,
                           position=rec.get("position"), replace=True)
        _record(s, dataset, path, "landed", f"added {sorted(tables)} to {batch_id} (in landing)"
                + (f" from {source}" if source else ""))
        return path, "added"
    if zone == "landing":
        old = _to_quarantine(s, dataset, latest, "superseded",
                             "superseded in landing by a newer version")
        _record(s, dataset, old, "superseded", "superseded in landing by a newer version")
    # the new version's rows count where the batch's did (a correction of day 1 must not beat
    # what day 5 changed since); its own arrival decides that it supersedes the old version
    path = write_batch(batch_id, {**carried, **tables}, dataset=dataset, settings=s,
                       source=source, position=delivery(latest).get("position"))
    _record(s, dataset, path, "landed", f"new version of {batch_id} (was {zone})"
            + (f" from {source}" if source else ""))
    return path, "new version"


@synced()
def land_version(batch_id: str, source_dir: Path, *, dataset: str | None = None,
                 settings: Settings | None = None) -> Move:
    """`shoprec lake replace`: land a corrected version of a batch (its parquet files in
    `source_dir`) in landing; the gate judges it and, if it passes, it supersedes the
    validated version. A version still waiting in landing is superseded at once."""
    import pyarrow.parquet as pq

    from shoprec.contract import conform

    s = settings or get_settings()
    if find_batch(check_name(batch_id, "batch"), dataset=dataset, settings=s) is None:
        raise LifecycleError(f"no batch {batch_id!r} to replace in {s.lake(dataset)}; import "
                             "a new delivery with `shoprec data import` instead")
    files = {t: source_dir / f"{t}.parquet" for t in TABLES if (source_dir / f"{t}.parquet")
             .is_file()}
    stray = [p.name for p in iter_files(source_dir) if p.name not in
             {f"{t}.parquet" for t in TABLES}] if source_dir.is_dir() else []
    if not files or stray:
        raise LifecycleError(f"{source_dir}: expected events.parquet, items.parquet and/or "
                             f"users.parquet" + (f"; unexpected files {stray}" if stray else ""))
    tables = {t: conform(pq.read_table(f), t, str(f)) for t, f in files.items()}
    path, what = land_tables(batch_id, tables, dataset=dataset, settings=s,
                             source=str(source_dir))
    if what == "unchanged":
        return Move(batch_id, "unchanged", path, "the same bytes as the latest version")
    return Move(batch_id, "replaced", path, f"{what} landed; `shoprec validate` judges it")


def rebuild_derived(settings: Settings, dataset: str) -> dict[str, str]:
    """Rebuild everything derived from the validated zone now: dbt in full (and the analysts'
    snapshot), then Feast's exports and online store in full."""
    from shoprec.features.materialize import materialize
    from shoprec.transform import transform

    t = transform(settings=settings, dataset=dataset, full_refresh=True)
    m = materialize(settings=settings, dataset=dataset)
    return {"dbt": f"{sum(t.counts.values())} nodes in {t.seconds:.1f} s",
            "feast": f"{sum(m.exported.values()):,} rows in {m.seconds:.1f} s"}
