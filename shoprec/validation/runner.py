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
from shoprec.lake import (
    content_hash,
    delivery,
    ensure_delivery,
    ensure_numbered,
    find_batch,
    list_batches,
    position,
    split_names,
)
from shoprec.lake_sync import synced
from shoprec.names import ALLOWED
from shoprec.privacy.gate import drop_forgotten
from shoprec.validation.failures import Failure
from shoprec.validation.judge import Verdict, build_known_ids, judge_batches, judge_in_workers
from shoprec.validation.ledger import append_ledger, read_ledger, reconcile
from shoprec.validation.profile import add_hints, effective_settings
from shoprec.validation.redelivered import redelivered_events
from shoprec.validation.screen import screen_batches


@dataclass
class BatchResult:
    batch_id: str
    status: str  # validated | quarantined | waiting | unchanged | skipped (unsafe folder)
    content_hash: str
    path: Path
    failures: list[Failure] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""
    profile: str = "default"  # the validation profile file that judged it

    @property
    def ok(self) -> bool:
        return self.status != "quarantined"

    def reason(self) -> str:
        return "; ".join(f.line() for f in self.failures[:3]) + (
            f" (+{len(self.failures) - 3} more)" if len(self.failures) > 3 else "")


FINAL = {"validated", "quarantined", "retracted", "superseded"}  # verdicts a re-run keeps


@synced()
def validate(batches: Iterable[str] | None = None, *, dataset: str | None = None,
             settings: Settings | None = None, workers: int | None = None,
             force: bool = False, on_batch: Callable[[BatchResult], None] | None = None,
             ) -> list[BatchResult]:
    """Validate the named landing batches (default: all) and move each to its zone.

    One screen (screen.py) passes the batches every rule passes on in one GX run per table;
    those it flags are judged one by one in `workers` processes (settings.validation.workers;
    GX's per-batch overhead is Python, so two cores halve it). Moving and the ledger stay in this
    process, in batch order.
    `force` judges again batches whose bytes were judged before (after the rules changed).
    The dataset's validation profile (profile.py) applies to every batch, in every worker.
    """
    settings, profile = effective_settings(settings or get_settings(), dataset)
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
    ensure_numbered(settings, dataset)
    taken = {delivery(d).get("arrival") for z in ("validated", "quarantine")
             for d in list_batches(z, dataset=dataset, settings=settings)}
    for d in sorted(dirs, key=lambda p: p.name):  # one dropped in by hand gets its number now
        ensure_delivery(d, settings, dataset, taken)
    dirs = sorted(dirs, key=_arrival_order)
    dropped = drop_forgotten(dirs, settings, dataset)  # before hashing: what is judged is kept
    if dropped:
        note = _noting(note, dropped)
    ledger = read_ledger(settings, dataset)
    reconcile(settings, dataset, ledger)
    todo = []
    for d in dirs:
        h = content_hash(d)
        seen = ledger.get(h)
        if (seen is not None and seen["batch_id"] == d.name and seen["status"] in FINAL
                and not force):
            # the same bytes under the same name were judged before: a redelivery, no-op
            r = BatchResult(d.name, "unchanged", h, d,
                            note=f"already {seen['status']} at {seen['at']}")
            out.append(r)
            note(r)
        else:
            todo.append(d)
    if not todo:
        return out
    tmp = Path(tempfile.mkdtemp(prefix="shoprec-known-"))
    try:
        known = build_known_ids(todo, settings, dataset, tmp / "known.parquet")
        verdicts, rest = [], todo
        if settings.validation.screen:
            screened = screen_batches(todo, settings, known)
            verdicts, rest = screened.passed, screened.flagged
        n = max(1, min(workers or settings.validation.workers, len(rest)))
        if n == 1 and rest:
            verdicts += judge_batches(rest, settings, known)
        elif rest:
            verdicts += judge_in_workers([rest[i::n] for i in range(n)], settings, known, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    again = redelivered_events(todo, settings, dataset)
    stopped: set[str] = set()  # quarantined or waiting in this run, in batch order
    top = max((position(d) for d in list_batches("validated", dataset=dataset,
                                                 settings=settings)), default=0)
    for v in sorted(verdicts, key=lambda v: _arrival_order(v.batch_dir)):
        add_hints(v.failures, profile)
        held = {**v.held, **{b: n for b, n in v.needs.items() if b in stopped}}
        r = _apply(v, settings, dataset, ledger, held, again.get(v.batch_dir.name, 0), top,
                   profile.label)
        if r.status in {"quarantined", "waiting"}:
            stopped.add(r.batch_id)
        elif r.status == "validated":
            top = max(top, position(r.path))
        out.append(r)
        note(r)
    return out


def _noting(note: Callable[[BatchResult], None], dropped: dict[str, int]
            ) -> Callable[[BatchResult], None]:
    """`note`, each result first told how many rows of forgotten users its batch lost."""
    from shoprec.privacy.gate import note as forgotten

    def noted(r: BatchResult) -> None:
        if r.batch_id in dropped and forgotten(dropped[r.batch_id]) not in r.note:
            r.note = "; ".join(filter(None, [r.note, forgotten(dropped[r.batch_id])]))
        note(r)
    return noted


def _arrival_order(batch_dir: Path) -> tuple[int, int, str]:
    """Batches are judged and applied in delivery order (a corrected version in its batch's
    place), not by name."""
    rec = delivery(batch_dir)
    return rec.get("position") or 0, rec.get("arrival") or 0, batch_dir.name


def _held_line(held: dict[str, int]) -> str:
    return "; ".join(f"{n:,} events use ids held with quarantined/waiting batch {b}"
                     for b, n in sorted(held.items()))


def _apply(v: Verdict, settings: Settings, dataset: str | None,
           ledger: dict[str, dict], held: dict[str, int], redelivered: int = 0,
           top: int = 0, profile: str = "default") -> BatchResult:
    """Move the batch whole to its zone (or leave it waiting), write the quarantine report,
    record the verdict. `held`: batches this one needs that did not pass; `profile`: the
    validation profile that judged it (recorded with the verdict)."""
    batch_id = v.batch_dir.name
    failures = list(v.failures)
    old = settings.zone("validated", dataset) / batch_id
    superseding = False
    if old.is_dir() and not failures:
        arrived, before = delivery(v.batch_dir).get("arrival"), delivery(old).get("arrival")
        superseding = arrived is not None and before is not None and arrived > before
        if not superseding:
            failures.append(Failure("batch", "batch_id_unique", None,
                                    "batch id already validated with other content, "
                                    "delivered later than this one"))
    policy = settings.validation.held_reference_policy
    note = ""
    if held and not failures:
        if policy == "fail":
            failures.append(Failure("events", "references_held_ids", "item_id",
                                    _held_line(held)))
        elif policy == "warn":
            note = f"warning: {_held_line(held)}"
        else:
            return _wait(v, settings, dataset, held, profile)
    if redelivered:
        note = "; ".join(filter(None, [note, f"{redelivered:,} event_ids already delivered by "
                                             f"earlier batches (the first arrival counts)"]))
    status = "quarantined" if failures else "validated"
    result = BatchResult(batch_id, status, v.content_hash, v.batch_dir, failures, v.rows,
                         v.seconds, note=note, profile=profile)
    zone = "quarantine" if failures else "validated"
    if failures:  # the report first, the move last: a killed run leaves old or whole new state
        _write_report(v.batch_dir, result, v.gx_results, v.docs)
    elif superseding:
        from shoprec.lifecycle import supersede

        gone = supersede(old, delivery(v.batch_dir).get("arrival"), settings, dataset)
        result.note = "; ".join(filter(None, [result.note, f"supersedes the old version, now "
                                                           f"in {gone}"]))
    if not failures and position(v.batch_dir) < top:
        # it counts before a batch already validated (it waited, or was validated by name
        # later): that changes which delivery of an event counts, which dbt's batch-keyed
        # increments cannot redo
        from shoprec.lifecycle import mark_rebuild

        mark_rebuild(settings, dataset, f"{batch_id} validated after a batch that arrived "
                     "after it")
    result.path = _move(v.batch_dir, settings.zone(zone, dataset), batch_id)
    rec = {"batch_id": batch_id, "content_hash": v.content_hash, "status": status,
           "path": str(result.path), "at": dt.datetime.now(dt.UTC).isoformat(),
           "reason": result.reason() or result.note, "redelivered": redelivered,
           "arrival": delivery(result.path).get("arrival"), "profile": profile}
    append_ledger(settings, dataset, rec)
    ledger[v.content_hash] = rec
    return result


def _wait(v: Verdict, settings: Settings, dataset: str | None,
          held: dict[str, int], profile: str = "default") -> BatchResult:
    """Leave the batch in landing: judged again on every run, it goes through once the batch it
    needs is re-delivered fixed. Recorded in the ledger, which does not treat it as final."""
    result = BatchResult(v.batch_dir.name, "waiting", v.content_hash, v.batch_dir, [], v.rows,
                         v.seconds, note=f"waits: {_held_line(held)}", profile=profile)
    append_ledger(settings, dataset, {
        "batch_id": result.batch_id, "content_hash": v.content_hash, "status": "waiting",
        "path": str(v.batch_dir), "at": dt.datetime.now(dt.UTC).isoformat(),
        "reason": result.note, "waits_for": sorted(held), "profile": profile})
    return result


def _move(src: Path, zone_dir: Path, name: str) -> Path:
    zone_dir.mkdir(parents=True, exist_ok=True)
    dst = zone_dir / name
    if dst.exists():
        dst = zone_dir / f"{name}~{uuid.uuid4().hex[:8]}"
    os.rename(src, dst)  # atomic: the whole batch appears at once, files untouched
    return dst


def _write_report(dst: Path, result: BatchResult, gx_results: dict, docs: Path | None) -> None:
    # the report appears whole or not at all; one left by a run killed before its move is redone
    shutil.rmtree(dst / "_validation", ignore_errors=True)
    with atomic_path(dst / "_validation", directory=True, replace=False) as tmp:
        (tmp / "reason.txt").write_text(result.reason() + "\n")
        (tmp / "result.json").write_text(json.dumps(
            {"batch": result.batch_id, "content_hash": result.content_hash,
             "profile": result.profile, "failures": [asdict(f) for f in result.failures],
             "gx": gx_results}, indent=1,
            default=str))
        if docs is not None:
            (tmp / "data_docs.txt").write_text(f"{docs.as_uri()}\n")
