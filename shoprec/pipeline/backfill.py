"""Backfill a date range: which batches hold events of those days, and from when Feast must
re-load. The `shoprec_backfill` DAG validates the range's landing batches (a late delivery of old
days, a batch put back with `shoprec lake requeue`), rebuilds dbt (its incremental features
re-derive every day from the earliest new one on) and re-loads the online store from the range's
first day on, so entities whose latest values sit in those days are online too: the daily
increment only re-reads the last days before its watermark."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from shoprec.config import Settings, get_settings
from shoprec.lake import list_batches, split_names
from shoprec.names import UsageError

MAX_DAYS = 3660  # a typo'd year, not a backfill


class BackfillError(UsageError):
    """A range that cannot be backfilled (one line, for the UI and the CLI)."""


def parse_day(value: str | dt.date, what: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise BackfillError(f"{what}: {value!r} is not a date (YYYY-MM-DD)") from None


def batch_days(batch_dir: Path) -> tuple[dt.date, dt.date] | None:
    """First and last UTC day of the batch's events (None: no events file, or one whose
    timestamps cannot be read; validation will say why)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    f = batch_dir / "events.parquet"
    if not f.is_file():
        return None
    try:
        col = pq.read_table(f, columns=["event_timestamp"]).column(0)
        if not pa.types.is_timestamp(col.type):
            col = pc.cast(col, "timestamp[us, tz=UTC]")
        lo, hi = pc.min_max(col).values()
    except Exception:  # noqa: BLE001 - any unreadable file is "undated", validation judges it
        return None
    if not lo.is_valid:
        return None
    return lo.as_py().date(), hi.as_py().date()


def plan(start: str | dt.date, end: str | dt.date, dataset: str | None = None,
         settings: Settings | None = None) -> dict:
    """The range's batches by zone: `landing` ones are validated by the backfill, `validated`
    ones are already in the warehouse; `undated` landing batches (unreadable events) are left to
    the daily run's validation, which quarantines them with the reason. `since` is the range's
    first day (ISO), from which Feast re-loads."""
    s = settings or get_settings()
    dataset = dataset or s.dataset
    lo, hi = parse_day(start, "start"), parse_day(end, "end")
    if hi < lo:
        raise BackfillError(f"end {hi} is before start {lo}")
    if (hi - lo).days >= MAX_DAYS:
        raise BackfillError(f"{lo}..{hi} spans {(hi - lo).days + 1} days; at most {MAX_DAYS}")
    out: dict = {"dataset": dataset, "start": lo.isoformat(), "end": hi.isoformat(),
                 "since": lo.isoformat(), "landing": [], "validated": [], "undated": []}
    for zone in ("landing", "validated"):
        good, _ = split_names(list_batches(zone, dataset=dataset, settings=s),
                              s.zone(zone, dataset))
        for b in good:
            days = batch_days(b)
            if days is None:
                if zone == "landing":
                    out["undated"].append(b.name)
            elif days[0] <= hi and days[1] >= lo:
                out[zone].append(b.name)
    return out


def since_datetime(since: str | dt.date | None) -> dt.datetime | None:
    """The range's first day as the UTC instant Feast re-loads from."""
    if not since:
        return None
    day = parse_day(since, "since")
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def describe(planned: dict) -> str:
    """The plan in one line."""
    return (f"{planned['dataset']} {planned['start']}..{planned['end']}: validate "
            f"{', '.join(planned['landing']) or 'nothing new'}; already validated "
            f"{', '.join(planned['validated']) or 'none'}"
            + (f"; unreadable, left to the daily run: {', '.join(planned['undated'])}"
               if planned["undated"] else ""))


def run(start: str | dt.date, end: str | dt.date, dataset: str | None = None,
        full_refresh: bool = False, settings: Settings | None = None,
        say=print) -> dict:
    """The DAG's chain in this process (`shoprec backfill`): validate the range's landing
    batches, dbt, the snapshot, Feast from the range's first day; the summary of each stage."""
    from shoprec.pipeline.tasks import materialize_task, transform_task, validate_task

    s = settings or get_settings()
    planned = plan(start, end, dataset, s)
    say(describe(planned))
    out = {"plan": planned,
           "validate": validate_task(planned["dataset"], planned["landing"], s,
                                     fail_on_quarantine=False)}
    say(f"validated {len(out['validate']['validated'])}, quarantined "
        f"{len(out['validate']['quarantined'])}")
    out["transform"] = transform_task(planned["dataset"], full_refresh, s)
    say(f"dbt: {sum(out['transform']['counts'].values())} nodes in "
        f"{out['transform']['seconds']} s")
    out["feast"] = materialize_task(planned["dataset"], s, since=planned["since"])
    say(f"feast: {sum(out['feast']['exported'].values()):,} rows exported in "
        f"{out['feast']['seconds']} s")
    return out
