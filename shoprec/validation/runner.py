"""Validate landing batches with Great Expectations on DuckDB; move each whole to validated/ or
quarantine/. Nothing is deleted; a batch whose content hash was judged before is not judged again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shoprec.atomic import atomic_path
from shoprec.config import Settings, get_settings
from shoprec.lake import content_hash, find_batch, list_batches, split_names
from shoprec.names import ALLOWED
from shoprec.validation.failures import Failure
from shoprec.validation.judge import Verdict, build_known_ids, judge_batches, judge_in_workers
from shoprec.validation.ledger import append_ledger, read_ledger


@dataclass
class BatchResult:
    batch_id: str
    status: str  # validated | quarantined | unchanged | skipped (unsafe folder name)
    content_hash: str
    path: Path
    failures: list[Failure] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "quarantined"

    def reason(self) -> str:
        return "; ".join(f.line() for f in self.failures[:3]) + (
            f" (+{len(self.failures) - 3} more)" if len(self.failures) > 3 else "")


def validate(batches: Iterable[str] | None = None, *, dataset: str | None = None,
             settings: Settings | None = None, workers: int | None = None,
             force: bool = False, on_batch: Callable[[BatchResult], None] | None = None,
             ) -> list[BatchResult]:
    """Validate the named landing batches (default: all) and move each to its zone.

    Judging runs in `workers` processes (settings.validation.workers; GX's per-batch overhead
    is Python, so two cores halve it); moving and the ledger stay in this process, in batch order.
    `force` judges again batches whose bytes were judged before (after the rules changed).
    """
    settings = settings or get_settings()
    note = on_batch or (lambda _r: None)
    out: list[BatchResult] = []
    if batches is None:
        landing = settings.zone("landing", dataset)
        dirs, unsafe = split_names(list_batches("landing", dataset=dataset, settings=settings),
                                   landing)
        for d in unsafe:  # never read, moved or put into SQL; the rest of the run goes on
            r = BatchResult(d.name, "skipped", "", d, note="unsafe folder (a name that is not "
                            f"{ALLOWED}, or a link out of the zone): rename or remove it")
            out.append(r)
            note(r)
    else:
        dirs = []
        for b in batches:
            where = find_batch(b, dataset=dataset, settings=settings)
            if where is None:
                raise FileNotFoundError(f"batch {b!r} not found in {settings.lake(dataset)}")
            if where[0] == "landing":
                dirs.append(where[1])
            else:
                note(BatchResult(b, "unchanged", "", where[1], note=f"already {where[0]}"))
    dirs = sorted(dirs, key=lambda p: p.name)
    ledger = read_ledger(settings, dataset)
    todo = []
    for d in dirs:
        h = content_hash(d)
        seen = ledger.get(h)
        if seen is not None and seen["batch_id"] == d.name and not force:
            # the same bytes under the same name were judged before: a redelivery, no-op
            r = BatchResult(d.name, "unchanged", h, d,
                            note=f"already {seen['status']} at {seen['at']}")
            out.append(r)
            note(r)
        else:
            todo.append(d)
    if not todo:
        return out
    n = max(1, min(workers or settings.validation.workers, len(todo)))
    tmp = Path(tempfile.mkdtemp(prefix="shoprec-known-"))
    try:
        known = build_known_ids(todo, settings, dataset, tmp / "known.parquet")
        if n == 1:
            verdicts = judge_batches(todo, settings, known)
        else:
            verdicts = judge_in_workers([todo[i::n] for i in range(n)], settings, known, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for v in sorted(verdicts, key=lambda v: v.batch_dir.name):
        r = _apply(v, settings, dataset, ledger)
        out.append(r)
        note(r)
    return out


def _apply(v: Verdict, settings: Settings, dataset: str | None,
           ledger: dict[str, dict]) -> BatchResult:
    """Move the batch whole to its zone, write the quarantine report, record the verdict."""
    batch_id = v.batch_dir.name
    failures = list(v.failures)
    clash = find_batch(batch_id, dataset=dataset, settings=settings)
    if clash and clash[0] != "landing" and not failures:
        failures.append(Failure("batch", "batch_id_unique", None,
                                f"batch id already {clash[0]} with other content"))
    status = "quarantined" if failures else "validated"
    result = BatchResult(batch_id, status, v.content_hash, v.batch_dir, failures, v.rows,
                         v.seconds)
    zone = "quarantine" if failures else "validated"
    result.path = _move(v.batch_dir, settings.zone(zone, dataset), batch_id)
    if failures:
        _write_report(result.path, result, v.gx_results, v.docs)
    rec = {"batch_id": batch_id, "content_hash": v.content_hash, "status": status,
           "path": str(result.path), "at": dt.datetime.now(dt.UTC).isoformat(),
           "reason": result.reason()}
    append_ledger(settings, dataset, rec)
    ledger[v.content_hash] = rec
    return result


def _move(src: Path, zone_dir: Path, name: str) -> Path:
    zone_dir.mkdir(parents=True, exist_ok=True)
    dst = zone_dir / name
    if dst.exists():
        dst = zone_dir / f"{name}~{uuid.uuid4().hex[:8]}"
    os.rename(src, dst)  # atomic: the whole batch appears at once, files untouched
    return dst


def _write_report(dst: Path, result: BatchResult, gx_results: dict, docs: Path | None) -> None:
    # the report appears whole or not at all, and never replaces one already there
    with atomic_path(dst / "_validation", directory=True, replace=False) as tmp:
        (tmp / "reason.txt").write_text(result.reason() + "\n")
        (tmp / "result.json").write_text(json.dumps(
            {"batch": result.batch_id, "content_hash": result.content_hash,
             "failures": [asdict(f) for f in result.failures], "gx": gx_results}, indent=1,
            default=str))
        if docs is not None:
            (tmp / "data_docs.txt").write_text(f"{docs.as_uri()}\n")
