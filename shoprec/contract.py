"""The data contract a shop provides (DESIGN.md), as pyarrow schemas, in one place.

Required (never null, and present in every input): events `event_id` (unique), `user_id`,
`item_id`, `event_type`, `event_timestamp`; items `item_id` (unique); users `user_id` (unique).
Optional (null allowed, and may be absent from an input, which `conform` fills with nulls):
events `session_id` (dbt derives sessions from inactivity gaps where it is null), `price`,
`quantity`, `event_seq` (the event's place in its delivery as the source gave it: see TIE_ORDER);
items `title`, `category`, `brand`, `price`, `created_at`; users `signup_at`,
`country`, `segment`. The schemas keep every column: `conform` (so every importer) writes them
all, and where a batch's file leaves an optional column out the gate and dbt read it as null.

Ids are strings so any shop's keys fit unchanged; timestamps are microsecond UTC because Feast's
DuckDB materialization cannot cast nanosecond tz-aware Parquet timestamps (STACK-NOTES.md).
"""

from __future__ import annotations

import datetime as dt
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TS = pa.timestamp("us", tz="UTC")

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
"""Funnel order: a later type implies the earlier ones for the same item in the session."""

EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_timestamp", TS, nullable=False),
        pa.field("session_id", pa.string(), nullable=True),
        pa.field("price", pa.float64(), nullable=True),
        pa.field("quantity", pa.int32(), nullable=True),
        pa.field("event_seq", pa.int64(), nullable=True),
    ]
)

TIE_ORDER: tuple[str, ...] = ("delivery_position", "event_seq", "md5(event_id)")
"""How events of one user at one timestamp are ordered (after `event_timestamp`), the same in
dbt's sessions and sequence feature and in training and evaluation; nulls sort last. Order
within one timestamp is not information, so the rule uses no item property (RecBole keeps the
source's row order): the delivery's place in the arrival order (lineage: `_delivery.json`), the
event's place in its delivery (`event_seq`: the source file's 0-based row number, or the
simulator's emission order; importers fill it, a shop may map its own log offset to it), and
only where both are missing or equal an md5 of the event id (stable across versions and
languages, unlike DuckDB's `hash`), never the id's text order: an id that spells the item
(`ml-<user>-<item>`) would make the held-out item guessable from its id."""

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=True),
        pa.field("category", pa.string(), nullable=True),
        pa.field("brand", pa.string(), nullable=True),
        pa.field("price", pa.float64(), nullable=True),
        pa.field("created_at", TS, nullable=True),
    ]
)

USERS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("signup_at", TS, nullable=True),
        pa.field("country", pa.string(), nullable=True),
        pa.field("segment", pa.string(), nullable=True),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"events": EVENTS, "items": ITEMS, "users": USERS}
KEYS: dict[str, str] = {"events": "event_id", "items": "item_id", "users": "user_id"}
OPTIONAL: dict[str, set[str]] = {
    kind: {f.name for f in schema if f.nullable} for kind, schema in SCHEMAS.items()}
"""Columns that may be null or absent from an input: every one but the required above."""

MAX_ID_LENGTH = 256
"""Characters in an id: any shop's keys fit, yet one runaway value cannot bloat every join."""
MAX_TEXT_LENGTH = 1024
"""Characters in a free string (title, category, ...): a 1 MB blob must not reach the marts."""
ID_COLUMNS: tuple[str, ...] = ("event_id", "user_id", "item_id", "session_id")
MAX_LENGTH: dict[str, int] = {
    f.name: MAX_ID_LENGTH if f.name in ID_COLUMNS else MAX_TEXT_LENGTH
    for schema in SCHEMAS.values() for f in schema if pa.types.is_string(f.type)
}
"""Every string column of the contract → its length limit in characters (Unicode code points)."""

EPOCH_UNITS: dict[str, int] = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": -1_000}
"""Numeric timestamp units → factor to microseconds (negative: divide)."""
PLAUSIBLE_YEARS: tuple[int, int] = (1990, 2100)
"""Epoch numbers are read in the one unit that puts every value in [first, last) year: the
windows of the units do not overlap, so the magnitude decides, and a mixed column is refused."""


class ContractError(ValueError):
    """Input that does not fit the contract; the message names the file, column and a sample row."""

    def __init__(self, source: str, column: str | None, rule: str, sample: object = None):
        self.source, self.column, self.rule, self.sample = source, column, rule, sample
        where = f"{source}" + (f", column '{column}'" if column else "")
        msg = f"{where}: {rule}"
        if sample is not None:
            msg += f"; sample row: {sample}"
        super().__init__(msg)


SAMPLE_CHARS = 60


def sample_row(table: pa.Table, index: int) -> dict:
    """Row `index` for an error message; long strings are cut so the message stays one line."""
    row = table.slice(index, 1).to_pylist()[0]
    return {k: _clip(v) for k, v in row.items()}


def _clip(value: object) -> object:
    if isinstance(value, str) and len(value) > SAMPLE_CHARS:
        return f"{value[:SAMPLE_CHARS]}…({len(value):,} chars)"
    return value


def _first_index(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def conform(table: pa.Table, kind: str, source: str, time_unit: str | None = None) -> pa.Table:
    """Cast `table` to the contract schema of `kind`, or raise a ContractError that points at the
    first offending row. Extra columns are dropped; optional columns missing are filled with nulls.
    Numeric timestamps are epoch numbers in `time_unit`, or in the unit `epoch_unit` detects.
    """
    schema = SCHEMAS[kind]
    if table.num_rows == 0:
        raise ContractError(source, None, f"empty {kind} input: no rows")
    missing = [f.name for f in schema if f.name not in table.column_names and
               f.name not in OPTIONAL[kind]]
    if missing:
        raise ContractError(
            source, missing[0],
            f"missing required column(s) {missing}; found {table.column_names}",
            sample_row(table, 0),
        )
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        if pa.types.is_timestamp(field.type) and _is_number(col.type):
            col = _epoch_to_timestamp(table, field.name, source, time_unit)
        columns.append(_cast_column(table, col, field, source))
    out = pa.Table.from_arrays(columns, schema=schema)
    _check_lengths(out, table, source)
    return out


def _cast_column(table: pa.Table, col: pa.ChunkedArray, field: pa.Field, source: str):
    target = field.type
    try:
        if pa.types.is_timestamp(target):
            casted = _to_timestamp(col)
        elif pa.types.is_string(target) and not pa.types.is_string(col.type):
            casted = pc.cast(col, pa.string())
        else:
            casted = pc.cast(col, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        bad = _first_uncastable(col, target)
        sample = sample_row(table, bad) if bad is not None else None
        raise ContractError(
            source, field.name, f"cannot convert {col.type} to {target}"
            + (f" (row {bad})" if bad is not None else ""), sample) from None
    # a value that parsed to null where the source had a value is an unparseable value
    lost = pc.and_(pc.is_null(casted), pc.is_valid(col))
    if pc.any(lost).as_py():
        i = _first_index(lost)
        raise ContractError(source, field.name,
                            f"unparseable value {_clip(col[i].as_py())!r} for {target} (row {i})",
                            sample_row(table, i))
    if not field.nullable and casted.null_count:
        i = _first_index(pc.is_null(casted))
        raise ContractError(source, field.name, f"null in required column (row {i})",
                            sample_row(table, i))
    return casted


def _to_timestamp(col: pa.ChunkedArray) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            col = pc.assume_timezone(col, "UTC")
        if t.unit == "ns":  # pandas' default: sub-microsecond digits are dropped (floor), as
            # for ISO strings; nothing in the contract resolves finer than a microsecond
            return pc.cast(pc.floor_temporal(col, unit="microsecond"), TS)
        return pc.cast(col, TS)
    if pa.types.is_date(t):
        return pc.assume_timezone(pc.cast(col, pa.timestamp("us")), "UTC")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _parse_timestamp_strings(col)
    raise pa.ArrowInvalid(f"unsupported timestamp source type {t}")


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _epoch_seconds(year: int) -> int:
    return int(dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp())


def _as_us(values: np.ndarray, unit: str) -> np.ndarray:
    factor = EPOCH_UNITS[unit]
    return values * factor if factor > 0 else values / -factor


def _plausible(values: np.ndarray, unit: str) -> np.ndarray:
    """Which epoch numbers fall in PLAUSIBLE_YEARS when read in `unit`."""
    first, last = (_epoch_seconds(y) * 1_000_000 for y in PLAUSIBLE_YEARS)
    us = _as_us(values, unit)
    return (us >= first) & (us < last)


def _numbers(col: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False)


def epoch_unit(col: pa.ChunkedArray | pa.Array) -> str | None:
    """The unit (s, ms, us, ns) that puts every value of a numeric column in PLAUSIBLE_YEARS,
    None when no unit does (mixed units, or not epoch numbers at all); "s" when all are null."""
    values = _numbers(col)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return "s"
    ends = np.array([values.min(), values.max()])
    return next((u for u in EPOCH_UNITS if _plausible(ends, u).all()), None)


def _epoch_to_timestamp(table: pa.Table, name: str, source: str,
                        unit: str | None) -> pa.ChunkedArray:
    """Epoch numbers → contract timestamps, in the given unit, else the detected one."""
    col = table.column(name)
    unit = unit or epoch_unit(col) or _refuse_epoch(table, name, source)
    us = _as_us(_numbers(col), unit)
    ok = np.isnan(us) | ((us >= _MIN_US) & (us <= _MAX_US))
    if not ok.all():
        i = int(np.argmin(ok))
        raise ContractError(source, name, f"epoch value {col[i].as_py()!r} read in unit '{unit}' "
                            f"is outside the years 1..9999 (row {i})", sample_row(table, i))
    factor = EPOCH_UNITS[unit]
    if pa.types.is_integer(col.type):  # exact: no float rounding of large integers
        ints = pc.cast(col, pa.int64())
        ints = pc.multiply(ints, factor) if factor > 0 else pc.divide(ints, -factor)
    else:
        ints = pc.cast(pc.round(pa.array(us, from_pandas=True)), pa.int64())
    return pa.chunked_array([pc.cast(ints, pa.int64())]).cast(TS)


# the datetimes Python (and so every error message and reader) can hold: years 1..9999
_MIN_US = int((dt.datetime(1, 1, 1) - dt.datetime(1970, 1, 1)).total_seconds()) * 1_000_000
_MAX_US = int((dt.datetime(9999, 12, 31, 23, 59, 59) - dt.datetime(1970, 1, 1)).total_seconds()
              ) * 1_000_000


def _refuse_epoch(table: pa.Table, name: str, source: str) -> NoReturn:
    """No unit fits: name the first row that breaks the unit of the first value."""
    values = _numbers(table.column(name))
    valid = np.flatnonzero(~np.isnan(values))
    first = valid[0]
    unit = next((u for u in EPOCH_UNITS if _plausible(values[first:first + 1], u).all()), None)
    bad = first if unit is None else valid[~_plausible(values[valid], unit)][0]
    found = f"{values[bad]:.15g}" + (f", while row {first} reads as '{unit}'" if unit else "")
    years = f"{PLAUSIBLE_YEARS[0]}..{PLAUSIBLE_YEARS[1]}"
    raise ContractError(source, name, f"numeric timestamps are not epoch s/ms/us/ns dates in "
                        f"{years}: no single unit fits (row {bad}: {found}); if the dates are "
                        f"right, give the unit (--time-unit s|ms|us|ns)",
                        sample_row(table, int(bad)))


def _check_lengths(out: pa.Table, source_table: pa.Table, source: str) -> None:
    """Refuse a string longer than its MAX_LENGTH limit, naming the first such row."""
    for name in out.column_names:
        limit = MAX_LENGTH.get(name)
        if limit is None:
            continue
        lengths = pc.utf8_length(out[name])
        too_long = pc.greater(lengths, limit)
        if pc.any(too_long).as_py():
            i = _first_index(too_long)
            n = lengths[i].as_py()
            raise ContractError(source, name, f"max length: {n:,} characters, the contract allows "
                                f"at most {limit:,} (row {i})", sample_row(source_table, i))


def _parse_timestamp_strings(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO-8601 with or without offset; values that do not parse become null (reported later)."""
    import pandas as pd

    parsed = pd.to_datetime(col.to_pandas(), utc=True, errors="coerce", format="ISO8601")
    return pa.chunked_array([pa.array(parsed.dt.as_unit("us"), type=TS)])


def _first_uncastable(col: pa.ChunkedArray, target: pa.DataType) -> int | None:
    offset = 0
    for chunk in col.chunks:
        for i in range(len(chunk)):
            try:
                pc.cast(chunk.slice(i, 1), target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                return offset + i
        offset += len(chunk)
    return None
