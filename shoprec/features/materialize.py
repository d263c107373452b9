"""`shoprec features apply|materialize`: register the definitions, then load the newest values
into the online store, incrementally and idempotently."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from shoprec.config import Settings, get_settings
from shoprec.features.export import data_range, export_features
from shoprec.features.store import definitions, get_store

# Re-read this much before the last materialized end: a dbt increment may rewrite the last day
# (sessions past midnight); Feast writes the latest row per entity, so overlap is harmless.
OVERLAP = dt.timedelta(days=2)


@dataclass
class MaterializeReport:
    dataset: str
    exported: dict[str, int] = field(default_factory=dict)
    windows: dict[str, tuple | None] = field(default_factory=dict)  # view → (start, end) | None
    seconds: float = 0.0

    def summary(self) -> str:
        done = [f"{v} {w[0]:%Y-%m-%d %H:%M}..{w[1]:%Y-%m-%d %H:%M}"
                for v, w in self.windows.items() if w]
        skipped = [v for v, w in self.windows.items() if not w]
        return (f"{self.dataset}: exported {sum(self.exported.values()):,} feature rows; "
                f"materialized {', '.join(done) or 'nothing new'}"
                + (f"; up to date: {', '.join(skipped)}" if skipped else "")
                + f" in {self.seconds:.1f} s")


def apply(settings: Settings | None = None, dataset: str | None = None):
    """Register entities, sources, views and services (idempotent: Feast diffs the registry)."""
    s = settings or get_settings()
    dataset = dataset or s.dataset
    store = get_store(s, dataset)
    store.apply(definitions(s, dataset))
    return store


def materialize(settings: Settings | None = None, dataset: str | None = None, *,
                export: bool = True) -> MaterializeReport:
    """Export dbt's feature tables, then materialize each view from where it stopped last time
    (the whole history the first time: Feast's own incremental start, now minus the TTL, would
    skip a simulated or imported past without a word)."""
    s = settings or get_settings()
    dataset = dataset or s.dataset
    t0 = time.perf_counter()
    report = MaterializeReport(dataset)
    if export:
        report.exported = export_features(s, dataset)
    store = apply(s, dataset)
    views = [*store.list_feature_views(), *store.list_stream_feature_views()]
    for fv in sorted(views, key=lambda v: v.name):
        lo, hi = data_range(fv.batch_source.path)
        if lo is None:
            report.windows[fv.name] = None
            continue
        end = hi + dt.timedelta(microseconds=1)
        done = [iv[1] for iv in fv.materialization_intervals]
        start = max(lo, max(done) - OVERLAP) if done else lo
        if done and max(done) >= end:
            report.windows[fv.name] = None  # nothing newer than what is online
            continue
        store.materialize(start_date=start, end_date=end, feature_views=[fv.name])
        report.windows[fv.name] = (start, end)
    report.seconds = time.perf_counter() - t0
    return report
