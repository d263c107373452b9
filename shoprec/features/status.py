"""`shoprec features status`: per view, what Feast's registry, the online store's watermark and
the offline export each say, and whether the online store is behind. Read-only; it judges with
the rule `materialize` acts on, so "behind" means the next materialize will load that view."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shoprec.config import Settings, get_settings
from shoprec.features.export import ExportStats, export_stats
from shoprec.features.materialize import Window, plan, registry_ends, view_sources
from shoprec.features.online import reachable
from shoprec.features.store import get_store
from shoprec.features.watermark import Watermark, registry_id, watermarks

COLUMNS = ("view", "registry up to", "online watermark", "offline rows", "offline range", "state")


def _when(t: dt.datetime | None) -> str:
    return "-" if t is None else f"{t:%Y-%m-%d %H:%M}"


@dataclass(frozen=True)
class ViewStatus:
    view: str
    registry_end: dt.datetime | None
    mark: Watermark | None
    export: ExportStats | None
    due: Window | None  # what materialize would load now

    @property
    def behind(self) -> bool:
        return self.due is not None

    @property
    def state(self) -> str:
        if self.export is None:
            return "no offline export yet (run materialize)"
        if self.due:
            return f"behind ({self.due.reason})"
        return "up to date" if self.export.lo is not None else "no offline rows"

    def cells(self) -> tuple[str, ...]:
        e = self.export
        return (self.view, _when(self.registry_end), _when(self.mark and self.mark.end),
                "-" if e is None else f"{e.rows:,}",
                "-" if e is None or e.lo is None else f"{_when(e.lo)}..{_when(e.hi)}",
                self.state)


@dataclass
class StatusReport:
    dataset: str
    online: str  # the online store's URI
    views: list[ViewStatus]

    @property
    def behind(self) -> list[str]:
        return [v.view for v in self.views if v.behind]

    def table(self) -> str:
        """Plain aligned lines: readable in a terminal, greppable in a log."""
        rows = [COLUMNS, *(v.cells() for v in self.views)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        return "\n".join([f"{self.dataset} → {self.online}", *lines])


def status(settings: Settings | None = None, dataset: str | None = None) -> StatusReport:
    """Compare registry, online watermarks and offline exports without writing anything online.
    Raises OnlineStoreUnavailable when Redis cannot be reached."""
    s = settings or get_settings()
    dataset = dataset or s.dataset
    with reachable(s):
        sources = view_sources(s, dataset)
        marks = watermarks(s, dataset).read(sources)
        ends = registry_ends(get_store(s, dataset))
    registry = registry_id(s, dataset)
    views = []
    for view, path in sources.items():
        stats = export_stats(path)
        due = plan(stats, ends.get(view), marks.get(view), registry)
        views.append(ViewStatus(view, ends.get(view), marks.get(view), stats, due))
    return StatusReport(dataset, s.online_store_uri(dataset), views)
