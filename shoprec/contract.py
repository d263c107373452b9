"""The data contract a shop provides (DESIGN.md), as pyarrow schemas, in one place.

Ids are strings so any shop's keys fit unchanged; timestamps are microsecond UTC because Feast's
DuckDB materialization cannot cast nanosecond tz-aware Parquet timestamps (STACK-NOTES.md).
"""

from __future__ import annotations

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
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=True),
        pa.field("quantity", pa.int32(), nullable=True),
    ]
)

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("brand", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("created_at", TS, nullable=False),
    ]
)

USERS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("signup_at", TS, nullable=False),
        pa.field("country", pa.string(), nullable=True),
        pa.field("segment", pa.string(), nullable=True),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"events": EVENTS, "items": ITEMS, "users": USERS}
KEYS: dict[str, str] = {"events": "event_id", "items": "item_id", "users": "user_id"}
OPTIONAL: dict[str, set[str]] = {
    "events": {"price", "quantity"},
    "items": set(),
    "users": {"country", "segment"},
}


class ContractError(ValueError):
    """Input that does not fit the contract; the message names the file, column and a sample row."""

    def __init__(self, source: str, column: str | None, rule: str, sample: object = None):
        self.source, self.column, self.rule, self.sample = source, column, rule, sample
        where = f"{source}" + (f", column '{column}'" if column else "")
        msg = f"{where}: {rule}"
        if sample is not None:
            msg += f"; sample row: {sample}"
        super().__init__(msg)


def _sample_row(table: pa.Table, index: int) -> dict:
    return table.slice(index, 1).to_pylist()[0]


def _first_index(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def conform(table: pa.Table, kind: str, source: str) -> pa.Table:
    """Cast `table` to the contract schema of `kind`, or raise a ContractError that points at the
    first offending row. Extra columns are dropped; optional columns missing are filled with nulls.
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
            _sample_row(table, 0),
        )
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        columns.append(_cast_column(table, col, field, source))
    return pa.Table.from_arrays(columns, schema=schema)


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
        sample = _sample_row(table, bad) if bad is not None else None
        raise ContractError(
            source, field.name, f"cannot convert {col.type} to {target}"
            + (f" (row {bad})" if bad is not None else ""), sample) from None
    # a value that parsed to null where the source had a value is an unparseable value
    lost = pc.and_(pc.is_null(casted), pc.is_valid(col))
    if pc.any(lost).as_py():
        i = _first_index(lost)
        raise ContractError(source, field.name,
                            f"unparseable value {col[i].as_py()!r} for {target} (row {i})",
                            _sample_row(table, i))
    if not field.nullable and casted.null_count:
        i = _first_index(pc.is_null(casted))
        raise ContractError(source, field.name, f"null in required column (row {i})",
                            _sample_row(table, i))
    return casted


def _to_timestamp(col: pa.ChunkedArray) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            col = pc.assume_timezone(col, "UTC")
        return pc.cast(col, TS)
    if pa.types.is_integer(t):  # epoch seconds (the common export format)
        return pc.cast(pc.multiply(pc.cast(col, pa.int64()), 1_000_000), pa.int64()).cast(TS)
    if pa.types.is_date(t):
        return pc.assume_timezone(pc.cast(col, pa.timestamp("us")), "UTC")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _parse_timestamp_strings(col)
    raise pa.ArrowInvalid(f"unsupported timestamp source type {t}")


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
