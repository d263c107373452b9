"""`shoprec features apply|materialize`: register the definitions, then load the newest values
into the online store, incrementally and idempotently; in full whenever the online store does
not hold what Feast's registry says was loaded (its watermark is missing or older: a flushed
Redis, a deleted online.db, a home switched to another backend; see `watermark`)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from shoprec.config import Settings, get_settings
from shoprec.features.export import ExportStats, export_features, export_stats
from shoprec.features.online import reachable
from shoprec.features.store import definitions, get_store
from shoprec.features.watermark import Watermark, registry_id, watermarks

# Re-read this much before the last materialized end: a dbt increment may rewrite the last day
# (sessions past midnight); Feast writes the latest row per entity, so overlap is harmless.
OVERLAP = dt.timedelta(days=2)
FIRST = "full: first materialization"


@dataclass(frozen=True)
class Window:
    """One view's next materialization: [start, end) and why it is due."""

    start: dt.datetime
    end: dt.datetime
    reason: str  # "full: <why>" or why an increment is due

    @property
    def full(self) -> bool:
        return self.reason.startswith("full: ")


def _full_reason(export: ExportStats, registry_end: dt.datetime | None,
                 mark: Watermark | None, registry: str) -> str | None:
    """Why nothing of a view may be assumed online (None: the registry can be trusted)."""
    if registry_end is None:
        return FIRST.removeprefix("full: ")
    if mark is None:
        return "no watermark in the online store"
    if mark.registry != registry:
        return "the online watermark belongs to another registry"
    if mark.end < registry_end:
        return "the online store is older than the registry"
    if export.lo < mark.export.lo:
        return "the offline history now starts earlier"
    return None


def plan(export: ExportStats | None, registry_end: dt.datetime | None, mark: Watermark | None,
         registry: str, since: dt.datetime | None = None) -> Window | None:
    """What to load for one view, or None when the online store holds all of its export. The
    registry alone cannot say: it outlives the online data. Shared by `materialize` and
    `status`, so "behind" in one is exactly what the other loads. `since` (a backfill) loads at
    least everything from then on: rows that late data changed before the increment's overlap."""
    window = _plan(export, registry_end, mark, registry)
    if since is None or export is None or export.lo is None or since > export.hi:
        return window
    if window is None or window.start > since:
        start = max(since, export.lo)
        return Window(start, export.hi + dt.timedelta(microseconds=1),
                      f"backfill from {since:%Y-%m-%d}")
    return window


def _plan(export: ExportStats | None, registry_end: dt.datetime | None, mark: Watermark | None,
          registry: str) -> Window | None:
    if export is None or export.lo is None:
        return None
    end = export.hi + dt.timedelta(microseconds=1)
    why = _full_reason(export, registry_end, mark, registry)
    if why:
        return Window(export.lo, end, f"full: {why}")
    done = min(registry_end, mark.end)
    if done >= end and mark.export == export:
        return None
    return Window(max(export.lo, done - OVERLAP), end,
                  "new offline rows" if done < end else "offline export changed")


@dataclass
class MaterializeReport:
    dataset: str
    exported: dict[str, int] = field(default_factory=dict)  # view → its offline rows
    days: dict[str, tuple[int, int]] = field(default_factory=dict)  # view → (written, of days)
    windows: dict[str, tuple | None] = field(default_factory=dict)  # view → (start, end) | None
    reasons: dict[str, str] = field(default_factory=dict)  # view → why its window was loaded
    seconds: float = 0.0

    def summary(self) -> str:
        done = [f"{v} {w[0]:%Y-%m-%d %H:%M}..{w[1]:%Y-%m-%d %H:%M}"
                for v, w in self.windows.items() if w]
        skipped = [v for v, w in self.windows.items() if not w]
        refilled: dict[str, list[str]] = {}
        for v, r in self.reasons.items():
            if r.startswith("full: ") and r != FIRST:
                refilled.setdefault(r.removeprefix("full: "), []).append(v)
        written, of = (sum(d[i] for d in self.days.values()) for i in (0, 1))
        return (f"{self.dataset}: exported {sum(self.exported.values()):,} feature rows"
                + (f" ({written} of {of} day files written)" if self.days else "") + "; "
                f"materialized {', '.join(done) or 'nothing new'}"
                + "".join(f"; in full ({why}): {', '.join(vs)}" for why, vs in refilled.items())
                + (f"; up to date: {', '.join(skipped)}" if skipped else "")
                + f" in {self.seconds:.1f} s")


def view_sources(settings: Settings, dataset: str) -> dict[str, Path]:
    """Each feature view's offline export by view name, sorted (the push-fed stream view is
    seeded from its batch twin's export)."""
    from feast import FeatureView

    views = [o for o in definitions(settings, dataset) if isinstance(o, FeatureView)]
    return {v.name: Path(v.batch_source.path) for v in sorted(views, key=lambda v: v.name)}


def registry_ends(store) -> dict[str, dt.datetime]:
    """Per view, the end of the newest window Feast's registry says it materialized."""
    views = [*store.list_feature_views(), *store.list_stream_feature_views()]
    return {v.name: max(iv[1] for iv in v.materialization_intervals)
            for v in views if v.materialization_intervals}


def apply(settings: Settings | None = None, dataset: str | None = None):
    """Register entities, sources, views and services (idempotent: Feast diffs the registry)."""
    s = settings or get_settings()
    dataset = dataset or s.dataset
    store = get_store(s, dataset)
    store.apply(definitions(s, dataset))
    return store


def materialize(settings: Settings | None = None, dataset: str | None = None, *,
                export: bool = True, since: dt.datetime | None = None) -> MaterializeReport:
    """Export dbt's feature tables, then materialize each view from where it stopped last time,
    or its whole history when the online store lacks it (Feast's own incremental start, now minus
    the TTL, would skip a simulated or imported past without a word). `since`: a backfill's
    first day, re-loaded from then on whatever the watermarks say. Raises
    OnlineStoreUnavailable, before exporting, when Redis cannot be reached."""
    from shoprec.lifecycle import rebuild_done, rebuild_needed

    s = settings or get_settings()
    dataset = dataset or s.dataset
    t0 = time.perf_counter()
    report = MaterializeReport(dataset)
    # a retracted or superseded batch: its entities must leave the online store too, once dbt
    # has rebuilt what the export reads
    rebuild = rebuild_needed(s, dataset, "feast") and not rebuild_needed(s, dataset, "dbt")
    with reachable(s):
        online = watermarks(s, dataset)
        sources = view_sources(s, dataset)
        marks = online.read(sources)
        if export:
            exported = export_features(s, dataset)
            report.exported = {v: e.rows for v, e in exported.items()}
            report.days = {v: (e.written, e.days) for v, e in exported.items()}
        store = apply(s, dataset)
        if rebuild:  # emptied only now, right before the full re-fill
            reset_online(s, dataset)
            marks = {}
            store = apply(s, dataset)  # a fresh store: the old one holds the dropped tables
        ends, registry = registry_ends(store), registry_id(s, dataset)
        for view, path in sources.items():
            stats = export_stats(path)
            window = plan(stats, ends.get(view), marks.get(view), registry, since)
            report.windows[view] = window and (window.start, window.end)
            if window:
                report.reasons[view] = window.reason
                with _feast_chatter():
                    store.materialize(start_date=window.start, end_date=window.end,
                                      feature_views=[view])
                online.write(Watermark(view, window.end, stats, registry,
                                       dt.datetime.now(dt.UTC)))
    if rebuild:
        rebuild_done(s, dataset, "feast")
    report.seconds = time.perf_counter() - t0
    return report


def _feast_chatter():
    """Feast prints a paragraph per view to stdout; the report says it in one line (-v shows
    Feast's own)."""
    import contextlib
    import io

    from shoprec import quiet

    return (contextlib.nullcontext() if quiet.verbose()
            else contextlib.redirect_stdout(io.StringIO()))


def reset_online(settings: Settings, dataset: str) -> None:
    """Empty the dataset's online store (its tables or keys, and the watermarks) but keep the
    registry: the next materialize re-fills every view in full from the offline data, so
    nothing a retracted batch brought stays online."""
    store = get_store(settings, dataset)
    views = [*store.list_feature_views(), *store.list_stream_feature_views()]
    if views:
        store._get_provider().teardown_infra(store.project, views, store.list_entities())
    watermarks(settings, dataset).clear()


def teardown(settings: Settings | None = None, dataset: str | None = None) -> None:
    """Delete a dataset's Feast project (online values, registry) and its online watermarks,
    which Feast's own teardown does not know about and would leave in Redis."""
    s = settings or get_settings()
    dataset = dataset or s.dataset
    with reachable(s):
        watermarks(s, dataset).clear()
        get_store(s, dataset).teardown()
