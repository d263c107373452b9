"""`shoprec privacy forget USER`: remove a user from every place the platform copied them.

Order (each step idempotent, so a re-run after a kill finishes the job):
1. the forget log records the request (`started`, the user as an HMAC): from then on the gate
   drops the user's rows from every delivery, a re-delivered old batch included;
2. the lake: landing, validated and quarantine batches rewritten without the user's rows (file
   by file, temp + rename), the serving spool's copies of those events deleted first, and the
   ids redacted from the gate's reports;
3. what derives from the lake, through the lifecycle's rebuild machinery: dbt in full (warehouse,
   fresh internal and analysts' snapshots), Feast's exports and online store in full; then every
   older snapshot no reader holds is deleted (one held stays, and the request stays unfinished);
4. the log records `done` with what was removed where (counts only).
Models are not retrained here: `shoprec models list` marks versions trained on a forgotten user
(their trained-user sets, registry) and the next scheduled retraining replaces them."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from shoprec.config import Settings, get_settings
from shoprec.lake_sync import synced
from shoprec.privacy import log
from shoprec.privacy.identity import TOKEN_PREFIX, key, parse_request
from shoprec.privacy.lake_purge import purge_lake, redact_text
from shoprec.privacy.spool import purge_spool


@dataclass
class ForgetReport:
    dataset: str
    user: str  # the HMAC
    removed: dict[str, int] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    rebuilt: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # step → seconds
    seconds: float = 0.0

    @property
    def done(self) -> bool:
        return not self.pending

    def summary(self) -> str:
        what = ", ".join(f"{k} {v:,}" for k, v in sorted(self.removed.items())) or \
            "no rows left to remove"
        head = f"user hmac:{self.user[:16]}… of {self.dataset}: {what}"
        rebuilt = ("; rebuilt " + ", ".join(f"{k}: {v}" for k, v in self.rebuilt.items())
                   if self.rebuilt else "")
        tail = (f"; NOT finished: {'; '.join(self.pending)} (run the same command again)"
                if self.pending else "")
        return f"{head}{rebuilt} in {self.seconds:.1f} s{tail}"


@synced()
def forget(user: str, *, dataset: str | None = None, settings: Settings | None = None,
           step: Callable[[str], None] | None = None) -> ForgetReport:
    """`user`: a raw user id, or `hmac:<token>` (`shoprec privacy token`), which keeps the raw
    id out of wherever the request is recorded (an Airflow run's conf)."""
    s = settings or get_settings()
    ds = dataset or s.dataset
    say = step or (lambda _m: None)
    t0 = time.perf_counter()
    k = key(s)
    h = parse_request(k, user)
    raw = set() if user.startswith(TOKEN_PREFIX) else {user}
    wanted = {h}
    log.append(s, ds, {"user": h, "status": "started"})
    report = ForgetReport(ds, h)

    timed = _timer(report.timings, say)
    spooled = {"n": 0}

    def before_rewrite(event_ids: set[str]) -> None:  # the spool first: the lake names its ids
        spooled["n"] += purge_spool(s, ds, k, wanted, event_ids)

    with timed("lake", "lake: landing, validated and quarantine batches"):
        purged = purge_lake(s, ds, k, wanted, before_rewrite)
        report.removed.update({f"lake {w}": n for w, n in purged.rows.items()})
        spooled["n"] += purge_spool(s, ds, k, wanted, set())  # events not landed yet
        if spooled["n"]:
            report.removed["serving spool"] = spooled["n"]

    with _argv_without(raw, h):  # dbt records its process's command line in its logs
        report.rebuilt, report.pending = rebuild(s, ds, timed)
    with timed("text", "text files: reports, logs, run records"):
        redacted = redact_text(s.root, k, wanted, raw)
        if redacted:
            report.removed["text files redacted"] = redacted
    report.seconds = time.perf_counter() - t0
    log.append(s, ds, {"user": h, "status": "done" if report.done else "incomplete",
                       "removed": report.removed, "pending": report.pending,
                       "timings": {k: round(v, 2) for k, v in report.timings.items()},
                       "seconds": round(report.seconds, 2)})
    return report


def _timer(timings: dict[str, float], say: Callable[[str], None]):
    @contextlib.contextmanager
    def timed(name: str, what: str) -> Iterator[None]:
        say(what)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
    return timed


@contextlib.contextmanager
def _argv_without(raw: set[str], h: str) -> Iterator[None]:
    saved = sys.argv
    sys.argv = [f"{TOKEN_PREFIX}{h}" if a in raw else a for a in saved]
    try:
        yield
    finally:
        sys.argv = saved


def rebuild(s: Settings, ds: str, timed) -> tuple[dict[str, str], list[str]]:
    """Everything derived, rebuilt in full from the purged lake (the lifecycle's machinery):
    the stages this home has. Returns (what was rebuilt, what is still pending)."""
    from shoprec.lifecycle import mark_rebuild, rebuild_needed

    mark_rebuild(s, ds, "a user was forgotten")
    rebuilt: dict[str, str] = {}
    if s.warehouse(ds).exists():
        from shoprec.transform import transform

        with timed("dbt", "dbt: full rebuild of the warehouse and fresh snapshots"):
            t = transform(settings=s, dataset=ds, full_refresh=True)
        rebuilt["dbt"] = f"{sum(t.counts.values())} nodes in {t.seconds:.1f} s"
    if s.feast_registry(ds).exists() and s.internal_snapshot(ds).exists():
        from shoprec.features.materialize import materialize

        with timed("feast", "feast: exports and online store refilled in full"):
            m = materialize(settings=s, dataset=ds)
        rebuilt["feast"] = f"{sum(m.exported.values()):,} rows in {m.seconds:.1f} s"
    pending = [f"{stage} rebuild" for stage in ("dbt", "feast") if rebuild_needed(s, ds, stage)
               and (stage == "dbt" and s.warehouse(ds).exists()
                    or stage == "feast" and s.feast_registry(ds).exists())]
    with timed("snapshots", "older snapshots"):
        pending += drop_older_snapshots(s, ds)
    return rebuilt, pending


def drop_older_snapshots(s: Settings, ds: str) -> list[str]:
    """Delete every internal snapshot but the published one (the analysts' hold pseudonyms
    only, but their older rows would still count the user: those go too); one a reader holds
    open is left (and named): it still holds the user."""
    from shoprec.transform.publish import published_links, snapshots

    held = []
    for folder, link in published_links(s, ds):
        current = link.resolve() if link.is_symlink() else None
        held += _drop_all_but(snapshots(s, ds, folder), current)
    return held


def _drop_all_but(files: list, current) -> list[str]:
    import duckdb

    held = []
    for snap in files:
        if snap.resolve() == current:
            continue
        try:
            duckdb.connect(str(snap)).close()  # DuckDB's lock: fails while a reader holds it
        except duckdb.Error:
            held.append(f"snapshot {snap.name} is held open by a reader")
            continue
        snap.unlink()
        snap.with_name(snap.name + ".wal").unlink(missing_ok=True)
    return held


def forget_task(user: str, dataset: str, settings: Settings | None = None) -> dict:
    """The DAG's task: `forget`, failing when something is left (a retry or re-run finishes);
    what it returns (its XCom) names the user by HMAC only."""
    r = forget(user, dataset=dataset, settings=settings)
    if not r.done:
        raise RuntimeError(r.summary())
    return {"dataset": dataset, "user": f"hmac:{r.user}", "removed": r.removed,
            "summary": r.summary()}
