"""Any CSV or Parquet export → one contract table, as one landing batch.

Two kinds of bad input, treated differently on purpose:

- A file that does not fit the contract (empty, a required column missing, a value of the wrong
  type, an unparseable timestamp, a corrupt Parquet file) is a mapping or export problem that
  every row shares: the whole file is refused with a `ContractError` naming the file, the column
  (and the source column it was mapped from) and a sample row. Nothing lands.
- Single bad rows inside a good file are the noise of real logs: a repeated key (the first row
  wins) or, for events, an `event_type` outside the contract. They are counted in
  `report.rejected` and kept, with a `reject_reason` and their 0-based `source_row`, in
  `<reports_dir>/imports/<dataset>/<batch_id>_rejected_<kind>.parquet` — outside the batch, so the
  batch holds only contract rows and validation sees a clean table, yet nothing is lost.

The default batch id, `import-<stem>-<sha256[:12] of the bytes>`, makes re-importing the same file
a no-op and gives a changed file a new batch. The file is read into memory whole.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shoprec.atomic import atomic_path
from shoprec.config import Settings, get_settings
from shoprec.contract import EVENT_TYPES, KEYS, SCHEMAS, ContractError, conform
from shoprec.importers import ImportReport
from shoprec.lake import find_batch, write_batch, write_parquet
from shoprec.names import check_name

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """`["event_timestamp=ts", ...]` → `{"event_timestamp": "ts"}` (contract column → source)."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        target, sep, src = (p.strip() for p in pair.partition("="))
        if not sep or not target or not src:
            raise ValueError(f"bad column mapping {pair!r}: expected contract_column=source_column"
                             ", e.g. event_timestamp=ts")
        if target in mapping:
            raise ValueError(f"bad column mapping {pair!r}: '{target}' is mapped twice")
        mapping[target] = src
    return mapping


def default_batch_id(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    stem = _SAFE.sub("_", path.stem)[:64].replace("..", "_")
    return f"import-{stem}-{h.hexdigest()[:12]}"


def import_file(
    path: Path | str,
    kind: str = "events",
    mapping: dict[str, str] | None = None,
    event_type: str | None = None,
    dataset: str | None = None,
    batch_id: str | None = None,
    settings: Settings | None = None,
) -> ImportReport:
    """Import one CSV/Parquet file as the `kind` table of a new landing batch (see module doc)."""
    settings = settings or get_settings()
    path, mapping = Path(path), dict(mapping or {})
    if kind not in SCHEMAS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {list(SCHEMAS)}")
    schema = SCHEMAS[kind]
    if unknown := sorted(set(mapping) - set(schema.names)):
        raise ValueError(f"mapping names {unknown}, which are not {kind} contract columns "
                         f"{schema.names}")
    if event_type is not None and (kind != "events" or event_type not in EVENT_TYPES):
        raise ValueError(f"--event-type {event_type!r} needs kind 'events' and one of "
                         f"{list(EVENT_TYPES)}")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; "
                         "expected .csv or .parquet")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if batch_id is not None:
        check_name(batch_id, "batch")
    dataset = check_name(dataset, "dataset") if dataset else settings.dataset
    batch_id = batch_id or default_batch_id(path)
    if hit := find_batch(batch_id, dataset=dataset, settings=settings):
        return ImportReport(dataset, batch_id, hit[1], skipped=True)

    source = str(path)
    table = _rename(_read(path, fmt, kind), mapping, source)
    if event_type is not None:
        const = pa.array([event_type] * table.num_rows, pa.string())
        if "event_type" in table.column_names:
            table = table.drop_columns(["event_type"])
        table = table.append_column("event_type", const)
    try:
        table = conform(_prepare_text(table, kind), kind, source)
    except ContractError as e:  # point at the column as the file spells it, too
        src = mapping.get(e.column or "")
        if not src or src == e.column:
            raise
        raise ContractError(source, e.column, f"{e.rule} [source column '{src}']",
                            e.sample) from None

    keep, reason = _row_rules(table, kind)
    kept = table.filter(keep)
    rejected_path = None
    if kept.num_rows < table.num_rows:
        rejected_path = settings.import_rejects(dataset, batch_id, kind)
        bad = pc.invert(keep)
        rejects = table.filter(bad).append_column("reject_reason", reason.filter(bad))
        rows = pa.array(range(table.num_rows), pa.int64()).filter(bad)
        with atomic_path(rejected_path) as tmp:
            write_parquet(rejects.append_column("source_row", rows), tmp)
    if kept.num_rows == 0:
        # only unknown event types can reject every row (the first of repeated keys is kept)
        raise ContractError(source, "event_type", f"all {table.num_rows} rows were rejected: "
                            f"{reason[0].as_py()} (rows kept in {rejected_path})",
                            table.slice(0, 1).to_pylist()[0])
    out = write_batch(batch_id, {kind: kept}, dataset=dataset, settings=settings)
    return ImportReport(dataset, batch_id, out, imported={kind: kept.num_rows},
                        rejected={kind: table.num_rows - kept.num_rows},
                        rejected_path=rejected_path)


def _read(path: Path, fmt: str, kind: str) -> pa.Table:
    """CSV as text (ids keep leading zeros, nothing depends on type guessing); Parquet as typed."""
    expected = f"expected columns {SCHEMAS[kind].names}"
    if path.stat().st_size == 0:
        raise ContractError(str(path), None, f"empty file: no header and no {kind} rows; "
                            + expected)
    try:
        if fmt == "parquet":
            table = pq.read_table(path)
        else:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh), [])
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=True, null_values=[""]))
    except (pa.ArrowException, OSError, UnicodeDecodeError, csv.Error) as e:
        what = "Parquet" if fmt == "parquet" else "CSV"
        raise ContractError(str(path), None, f"not a readable {what} file ({e})") from None
    if table.num_rows == 0:
        raise ContractError(str(path), None, f"empty file: no {kind} rows; {expected}")
    return table


def _rename(table: pa.Table, mapping: dict[str, str], source: str) -> pa.Table:
    """Source names → contract names; a mapping wins over a same-named source column."""
    if missing := [(t, s) for t, s in mapping.items() if s not in table.column_names]:
        t, s = missing[0]
        raise ContractError(source, s, f"source column '{s}' (mapped to contract column '{t}') "
                            f"is not in the file; found {table.column_names}",
                            table.slice(0, 1).to_pylist()[0])
    back = {s: t for t, s in mapping.items()}
    cols = [c for c in table.column_names if c in back or c not in mapping]
    return table.select(cols).rename_columns([back.get(c, c) for c in cols])


def _prepare_text(table: pa.Table, kind: str) -> pa.Table:
    """CSV text that conform would misread: epoch-second digits → int64 (conform reads integers
    as epoch seconds), integers via float64 so pandas' '2.0' exports fit. Text that does not cast
    is left alone for conform to report with its row."""
    for field in SCHEMAS[kind]:
        if field.name not in table.column_names:
            continue
        col = table[field.name]
        if not pa.types.is_string(col.type):
            continue
        target = None
        if pa.types.is_timestamp(field.type) and \
                pc.all(pc.match_substring_regex(col, r"^-?\d+$")).as_py():
            target = pa.int64()
        elif pa.types.is_integer(field.type):
            target = pa.float64()
        if target is not None:
            try:
                casted = pc.cast(col, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            table = table.set_column(table.column_names.index(field.name), field.name, casted)
    return table


def _row_rules(table: pa.Table, kind: str) -> tuple[pa.Array, pa.Array]:
    """(keep mask, reason per row): unknown event types first, then repeated keys among the
    rest, so a valid row is never dropped for repeating a rejected one."""
    bad_type = np.zeros(table.num_rows, dtype=bool)
    if kind == "events":
        bad_type = ~pc.is_in(table["event_type"], value_set=pa.array(EVENT_TYPES)).to_numpy()
    key = KEYS[kind]
    dup = np.zeros(table.num_rows, dtype=bool)
    dup[~bad_type] = table[key].to_pandas()[~bad_type].duplicated().to_numpy()
    reason = np.where(bad_type, f"event_type not in {list(EVENT_TYPES)}",
                      np.where(dup, f"duplicate {key} (the first row with it was kept)", None))
    return pa.array(~(bad_type | dup)), pa.array(reason, pa.string())

