"""Fault injection: break a simulated batch the way real feeds break, to prove the gate holds.

Each fault changes one day's tables (or, for `corrupt_parquet`, the written file) and names the
validation rule and column that must catch it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Tables = dict[str, pa.Table]


def _rows(t: pa.Table, share: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = max(1, int(t.num_rows * share))
    mask = np.zeros(t.num_rows, bool)
    mask[rng.choice(t.num_rows, size=min(n, t.num_rows), replace=False)] = True
    return mask


def _replace(t: pa.Table, column: str, values: pa.Array) -> pa.Table:
    i = t.schema.get_field_index(column)
    return t.set_column(i, pa.field(column, values.type, nullable=True), values)


def _null_keys(t: pa.Table) -> pa.Table:
    mask = pa.array(_rows(t, 0.01, 1))
    return _replace(t, "user_id", pc.if_else(mask, pa.scalar(None, pa.string()),
                                             t.column("user_id").combine_chunks()))


def _unknown_event_type(t: pa.Table) -> pa.Table:
    mask = pa.array(_rows(t, 0.02, 2))
    return _replace(t, "event_type", pc.if_else(mask, "wishlist",
                                                t.column("event_type").combine_chunks()))


def _future_timestamps(t: pa.Table) -> pa.Table:
    mask = pa.array(_rows(t, 0.01, 3))
    ts = t.column("event_timestamp").combine_chunks()
    future = pa.scalar(pa.scalar(4102444800_000_000, pa.int64()).as_py(),
                       pa.timestamp("us", tz="UTC"))  # 2100-01-01
    return _replace(t, "event_timestamp", pc.if_else(mask, future, ts))


def _negative_prices(t: pa.Table) -> pa.Table:
    mask = pa.array(_rows(t, 0.01, 4))
    price = t.column("price").combine_chunks()
    return _replace(t, "price", pc.if_else(mask, pc.negate(price), price))


def _duplicate_events(t: pa.Table) -> pa.Table:
    idx = np.flatnonzero(_rows(t, 0.03, 5))
    return pa.concat_tables([t, t.take(pa.array(idx))])


def _unknown_items(t: pa.Table) -> pa.Table:
    mask = _rows(t, 0.05, 6)
    ids = np.array(t.column("item_id").to_pylist(), dtype=object)
    ids[mask] = [f"i_unknown_{k}" for k in range(int(mask.sum()))]
    return _replace(t, "item_id", pa.array(ids.tolist(), pa.string()))


def _schema_renamed(t: pa.Table) -> pa.Table:
    return t.rename_columns(["cost" if n == "price" else n for n in t.column_names])


def _schema_missing(t: pa.Table) -> pa.Table:
    return t.drop_columns(["item_id"])  # a required column: an optional one may be absent


def _schema_extra(t: pa.Table) -> pa.Table:
    return t.append_column("coupon_code", pa.array(["NONE"] * t.num_rows, pa.string()))


def _wrong_dtype(t: pa.Table) -> pa.Table:
    return _replace(t, "price", pc.cast(t.column("price"), pa.string()).combine_chunks())


def _empty_batch(t: pa.Table) -> pa.Table:
    return t.slice(0, 0)


EVENT_FAULTS: dict[str, Callable[[pa.Table], pa.Table]] = {
    "null_keys": _null_keys, "unknown_event_type": _unknown_event_type,
    "future_timestamps": _future_timestamps, "negative_prices": _negative_prices,
    "duplicate_events": _duplicate_events, "unknown_items": _unknown_items,
    "schema_renamed": _schema_renamed, "schema_missing": _schema_missing,
    "schema_extra": _schema_extra, "wrong_dtype": _wrong_dtype, "empty_batch": _empty_batch,
}
FILE_FAULTS = {"corrupt_parquet"}
FAULTS: tuple[str, ...] = (*EVENT_FAULTS, *sorted(FILE_FAULTS))


def check_faults(faults: list[str]) -> None:
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; choose from {list(FAULTS)}")


def inject_tables(tables: Tables, faults: list[str]) -> Tables:
    out = dict(tables)
    for f in faults:
        if f in EVENT_FAULTS:
            out["events"] = EVENT_FAULTS[f](out["events"])
    return out


def inject_files(batch_dir: Path, faults: list[str]) -> None:
    """Faults that only exist on disk: a Parquet file cut off mid-write."""
    if "corrupt_parquet" in faults:
        f = batch_dir / "events.parquet"
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
