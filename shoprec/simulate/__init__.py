"""Shop simulator: deterministic for a seed, streamed one day-batch at a time (bounded memory)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoprec import contract
from shoprec.config import Settings, get_settings
from shoprec.lake import find_batch, write_batch
from shoprec.lake_sync import synced
from shoprec.simulate.day import DayEvents, DayGenerator
from shoprec.simulate.scales import SCALES, Scale, get_scale
from shoprec.simulate.world import World, build_world

__all__ = ["SCALES", "Scale", "SimReport", "simulate", "iter_days", "DEFAULT_START"]

DEFAULT_START = dt.date(2026, 1, 5)  # a Monday; fixed so output never depends on today's date
_EPOCH_US = 1_000_000


@dataclass
class SimReport:
    dataset: str
    scale: str
    landing: Path
    days_written: int = 0
    days_skipped: int = 0
    rows: dict[str, int] = field(default_factory=lambda: {"events": 0, "items": 0, "users": 0})
    faulty: list[str] = field(default_factory=list)  # batches written with injected faults
    batches: list[str] = field(default_factory=list)  # batches written by this run

    def summary(self) -> str:
        r = self.rows
        return (f"{self.dataset} ({self.scale}): {r['events']:,} events, {r['items']:,} new items, "
                f"{r['users']:,} new users in {self.days_written} day batches"
                + (f" ({self.days_skipped} already landed, skipped)" if self.days_skipped else "")
                + (f" (faults injected into {self.faulty})" if self.faulty else "")
                + f" → {self.landing}")


def _ids(prefix: str, values: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(pa.array(values), pa.string()),
                                       "")


def _labels(codes: np.ndarray, names: np.ndarray) -> pa.Array:
    return pc.cast(pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)),
                                                  pa.array(names.tolist())), pa.string())


def _ts(start_us: int, seconds: np.ndarray) -> pa.Array:
    return pa.array(start_us + np.round(seconds * _EPOCH_US).astype(np.int64), type=contract.TS)


def events_table(ev: DayEvents, day: int, start_us: int) -> pa.Table:
    n = len(ev)
    event_no = day * 100_000_000 + np.arange(n, dtype=np.int64)
    session_no = day * 10_000_000 + ev.session
    qty = pa.array(ev.quantity, mask=ev.quantity == 0, type=pa.int32())
    return pa.Table.from_arrays([
        _ids("e", event_no), _ids("u", ev.user), _ids("i", ev.item),
        _labels(ev.etype, np.array(contract.EVENT_TYPES)), _ts(start_us, ev.seconds),
        _ids("s", session_no), pa.array(ev.price, type=pa.float64()), qty,
        pa.array(np.arange(n, dtype=np.int64)),  # event_seq: the emission order (lineage)
    ], schema=contract.EVENTS)


def items_table(w: World, idx: np.ndarray, start_us: int) -> pa.Table:
    # a stable time of day per item, so created_at does not depend on anything but the item
    secs = w.item_launch_day[idx] * 86_400.0 + (idx * 7919 % 86_400)
    return pa.Table.from_arrays([
        _ids("i", idx), pa.array(w.item_title[idx].tolist(), pa.string()),
        _labels(w.item_cat[idx], w.cat_names), _labels(w.item_brand[idx], w.brand_names),
        pa.array(w.item_price[idx], pa.float64()), _ts(start_us, secs),
    ], schema=contract.ITEMS)


def users_table(w: World, idx: np.ndarray, start_us: int) -> pa.Table:
    secs = w.user_signup_day[idx] * 86_400.0 + (idx * 104_729 % 86_400)
    return pa.Table.from_arrays([
        _ids("u", idx), _ts(start_us, secs),
        pa.array(w.user_country[idx].tolist(), pa.string()),
        pa.array(w.user_segment[idx].tolist(), pa.string()),
    ], schema=contract.USERS)


def iter_days(scale: Scale, seed: int, start: dt.date = DEFAULT_START, days: int | None = None):
    """Yield (batch_id, {events, items, users}) per simulated day, one day in memory at a time."""
    world = build_world(scale, seed)
    gen = DayGenerator(world, scale.sessions_per_day, start.weekday())
    start_us = int(dt.datetime(start.year, start.month, start.day,
                               tzinfo=dt.UTC).timestamp()) * _EPOCH_US
    n_days = scale.days if days is None else min(days, scale.days)
    for d in range(n_days):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, d]))
        ev = gen.generate(d, rng)
        item_idx = np.flatnonzero(world.item_launch_day <= 0 if d == 0
                                  else world.item_launch_day == d)
        user_idx = np.flatnonzero(world.user_signup_day <= 0 if d == 0
                                  else world.user_signup_day == d)
        tables = {"events": events_table(ev, d, start_us)}
        if len(item_idx):
            tables["items"] = items_table(world, item_idx, start_us)
        if len(user_idx):
            tables["users"] = users_table(world, user_idx, start_us)
        yield (start + dt.timedelta(days=d)).isoformat(), tables


@synced()
def simulate(scale: str = "small", *, seed: int = 42, dataset: str | None = None,
             days: int | None = None, start: dt.date = DEFAULT_START,
             settings: Settings | None = None, progress: bool = False,
             inject: list[str] | None = None, inject_day: int | None = None) -> SimReport:
    """Simulate `scale` and land one batch per day. Days that already landed (in any zone) are
    regenerated in memory to keep the user state right, but not written again.

    `inject` breaks the batch of `inject_day` (default: the last day) with the named faults.
    """
    from shoprec.simulate.faults import check_faults, inject_files, inject_tables

    inject = inject or []
    check_faults(inject)
    settings = settings or get_settings()
    sc = get_scale(scale)
    dataset = dataset or settings.dataset
    report = SimReport(dataset=dataset, scale=sc.name, landing=settings.zone("landing", dataset))
    n_days = sc.days if days is None else min(days, sc.days)
    fault_day = (n_days - 1 if inject_day is None else inject_day) if inject else -1
    stream = iter_days(sc, seed, start=start, days=n_days)
    with _progress(progress, n_days, f"simulating {sc.name}") as advance:
        for d, (batch_id, tables) in enumerate(stream):
            if find_batch(batch_id, dataset=dataset, settings=settings):
                report.days_skipped += 1
            else:
                if d == fault_day:
                    tables = inject_tables(tables, inject)
                path = write_batch(batch_id, tables, dataset=dataset, settings=settings)
                if d == fault_day:
                    inject_files(path, inject)
                    report.faulty.append(batch_id)
                report.days_written += 1
                report.batches.append(batch_id)
                for k, t in tables.items():
                    report.rows[k] += t.num_rows
            advance(report.rows["events"])
    return report


class _progress:
    """A rich progress bar over days when asked for, else nothing."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled, self.total, self.label = enabled, total, label

    def __enter__(self):
        if not self.enabled:
            return lambda _rows: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[rows]:,} events"), TimeElapsedColumn(),
                           transient=False)
        self._p.start()
        task = self._p.add_task(self.label, total=self.total, rows=0)
        return lambda rows: self._p.update(task, advance=1, rows=rows)

    def __exit__(self, *exc):
        if self.enabled:
            self._p.stop()
        return False
