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

Events keep the file's row order as lineage: `event_seq` is each row's 0-based row number (the
same numbering as `source_row`), which breaks ties in time downstream (contract.TIE_ORDER);
Parquet and DuckDB do not keep row order by themselves.

The default batch id, `import-<stem>-<sha256[:12] of the bytes>`, makes re-importing the same file
a no-op and gives a changed file a new batch. The file is read into memory whole.

What is guessed is said: a CSV's delimiter (tried , ; tab | on the header), its encoding (utf-8,
else cp1252/latin-1) and the unit of epoch-number timestamps (by magnitude) each have an option
that overrides the guess, and the report names what was detected and which source columns were
left out of the contract.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shoprec.atomic import atomic_path
from shoprec.config import Settings, get_settings
from shoprec.contract import (
    EPOCH_UNITS,
    EVENT_TYPES,
    KEYS,
    SCHEMAS,
    ContractError,
    conform,
    epoch_unit,
    sample_row,
)
from shoprec.importers import ImportReport
from shoprec.lake import iter_files, write_parquet
from shoprec.lake_sync import synced
from shoprec.lifecycle import land_tables
from shoprec.names import check_name

FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
DELIMITERS = (",", ";", "\t", "|")  # tried in this order; a tie goes to the first
FALLBACK_ENCODINGS = ("cp1252", "latin-1")  # for a file that is not utf-8; latin-1 never fails
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_INT = r"^-?\d+$"
_NUMBER = r"^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """`["event_timestamp=ts", ...]` → `{"event_timestamp": "ts"}` (contract column → source)."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        target, sep, src = (p.strip() for p in pair.partition("="))
        if not sep or not target or not src:
            raise ContractError("--map", None, f"bad column mapping {pair!r}: expected "
                                "contract_column=source_column, e.g. event_timestamp=ts")
        if target in mapping:
            raise ContractError("--map", None,
                                f"bad column mapping {pair!r}: '{target}' is mapped twice")
        mapping[target] = src
    return mapping


def parse_mappings(pairs: list[str]) -> dict[str, dict[str, str]]:
    """`["items.price=cost", ...]` → `{"items": {"price": "cost"}}` for a multi-table import."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        kind, dot, rest = pair.partition(".")
        if not dot or kind not in SCHEMAS or "=" in kind:
            raise ContractError("--map", None, f"bad column mapping {pair!r}: a folder holds "
                                "several tables, so name the table: kind.contract_column="
                                "source_column, e.g. items.price=unit_cost")
        out.setdefault(kind, {}).update(parse_mapping([rest]))
    return out


def parse_event_map(pairs: list[str]) -> dict[str, str]:
    """`["pageview=view", ...]` → `{"pageview": "view"}` (targets checked at import)."""
    out = {}
    for pair in pairs:
        src, sep, target = (p.strip() for p in pair.rpartition("="))
        if not sep or not src or not target:
            raise ContractError("--event-map", "event_type", f"bad --event-map {pair!r}: "
                                "expected SOURCE=TYPE, e.g. pageview=view")
        out[src] = target
    return out


def parse_kinds(pairs: list[str]) -> dict[str, str]:
    """`["orders.csv=events"]` → `{"orders.csv": "events"}`."""
    out = {}
    for pair in pairs:
        name, sep, kind = (p.strip() for p in pair.rpartition("="))
        if not sep or not name or kind not in SCHEMAS:
            raise ContractError("--kind", None, f"bad --kind {pair!r}: expected FILE=kind with "
                                f"kind one of {list(SCHEMAS)}, e.g. orders.csv=events")
        out[name] = kind
    return out


def default_batch_id(*paths: Path) -> str:
    """`import-<stem of the first file>-<sha256 of every file's name and bytes>`."""
    h = hashlib.sha256()
    for path in paths:
        if len(paths) > 1:
            h.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    stem = _SAFE.sub("_", paths[0].stem if len(paths) == 1 else paths[0].parent.name)
    return f"import-{stem[:64].replace('..', '_')}-{h.hexdigest()[:12]}"


@dataclass
class _Prepared:
    """One file read, mapped and conformed: the rows to land and what the import said."""

    kind: str
    kept: pa.Table
    rejected: int
    rejects: pa.Table | None  # rejected rows with reject_reason and source_row
    dropped: list[str]
    units: dict[str, str]
    notes: list[str]


@synced()
def import_file(
    path: Path | str,
    kind: str = "events",
    mapping: dict[str, str] | None = None,
    event_type: str | None = None,
    dataset: str | None = None,
    batch_id: str | None = None,
    settings: Settings | None = None,
    time_unit: str | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    event_map: dict[str, str] | None = None,
) -> ImportReport:
    """Import one CSV/Parquet file as the `kind` table of a landing batch (see module doc).
    Under the `batch_id` of a delivery still in landing that lacks this table, the table joins
    that batch. `time_unit`, `delimiter` and `encoding` override what would be detected."""
    settings = settings or get_settings()
    path = Path(path)
    dataset = _checked_names(settings, dataset, batch_id)
    prepared = _prepare(path, kind, dict(mapping or {}), event_type, time_unit, delimiter,
                        encoding, event_map)
    return _land(dataset, batch_id or default_batch_id(path), [prepared], str(path), settings)


@synced()
def import_dir(
    directory: Path | str,
    mappings: dict[str, dict[str, str]] | None = None,
    kinds: dict[str, str] | None = None,
    event_type: str | None = None,
    dataset: str | None = None,
    batch_id: str | None = None,
    settings: Settings | None = None,
    time_unit: str | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    event_map: dict[str, str] | None = None,
) -> ImportReport:
    """Import a delivery folder as ONE landing batch: every file is a table named by its stem
    (events.csv, items.parquet, users.csv ...) or by `kinds` (file name → kind). Every file is
    read and checked before anything lands, so a bad file leaves the lake as it was."""
    settings = settings or get_settings()
    directory = Path(directory)
    dataset = _checked_names(settings, dataset, batch_id)
    files = _delivery_files(directory, dict(kinds or {}))
    mappings = mappings or {}
    if unknown := sorted(set(mappings) - set(files.values())):
        raise ContractError(str(directory), None, f"--map names kind(s) {unknown} but the "
                            f"folder holds {sorted(files.values())}")
    prepared = [_prepare(f, k, mappings.get(k, {}), event_type if k == "events" else None,
                         time_unit, delimiter, encoding, event_map if k == "events" else None)
                for f, k in files.items()]
    return _land(dataset, batch_id or default_batch_id(*files), prepared, str(directory),
                 settings)


def _checked_names(settings: Settings, dataset: str | None, batch_id: str | None) -> str:
    """The dataset to land in, once it and the batch id (names that become paths) are valid."""
    if batch_id is not None:
        check_name(batch_id, "batch")
    return settings.dataset if dataset is None else check_name(dataset, "dataset")


def _delivery_files(directory: Path, kinds: dict[str, str]) -> dict[Path, str]:
    """File → kind for a delivery folder; anything unnamed or unknown is refused, not skipped."""
    source = str(directory)
    if not directory.is_dir():
        raise ContractError(source, None, "not a folder: `import dir` takes a folder of "
                            "events/items/users files (use `import file` for one file)")
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    names = {p.name for p in files}
    if missing := sorted(set(kinds) - names):
        raise ContractError(source, None, f"--kind names {missing}, which are not files in "
                            f"the folder; found {sorted(names)}")
    out: dict[Path, str] = {}
    for p in files:
        kind = kinds.get(p.name) or p.stem.lower()
        if kind not in SCHEMAS:
            raise ContractError(str(p), None, f"which table is this file? name it events, "
                                f"items or users (.csv/.parquet), or pass --kind "
                                f"{p.name}=events|items|users")
        if kind in out.values():
            other = next(f.name for f, k in out.items() if k == kind)
            raise ContractError(str(p), None, f"two {kind} files in one delivery ({other} and "
                                f"{p.name}): import them as separate batches")
        out[p] = kind
    if not out:
        raise ContractError(source, None, "no files: expected events, items and/or users "
                            "files (.csv or .parquet)")
    return out


def _prepare(path: Path, kind: str, mapping: dict[str, str], event_type: str | None,
             time_unit: str | None, delimiter: str | None, encoding: str | None,
             event_map: dict[str, str] | None = None) -> _Prepared:
    """Read, map and conform one file; split off the rows a row rule rejects."""
    _check_options(path, kind, mapping, event_type, time_unit, delimiter, encoding)
    _check_event_map(str(path), kind, event_map or {})
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    source = str(path)
    raw, notes = _read(path, FORMATS[path.suffix.lower()], kind, _delimiter_char(delimiter),
                       encoding, set(mapping.values()))
    dropped = _dropped(raw.column_names, mapping, kind, event_type)
    table = _rename(raw, mapping, source)
    if event_type is not None:
        const = pa.array([event_type] * table.num_rows, pa.string())
        if "event_type" in table.column_names:
            table = table.drop_columns(["event_type"])
        table = table.append_column("event_type", const)
    if event_map and "event_type" in table.column_names:
        table = _map_event_types(table, event_map)
    if kind == "events":
        table = _source_order(table)
    prepared = _prepare_text(table, kind)
    try:
        table = conform(prepared, kind, source, time_unit=time_unit)
    except ContractError as e:  # point at the column as the file spells it, too
        src = mapping.get(e.column or "")
        if not src or src == e.column:
            raise
        raise ContractError(source, e.column, f"{e.rule} [source column '{src}']",
                            e.sample) from None
    units = _epoch_units(prepared, kind, time_unit)
    if time_unit and not units:
        notes.append(f"time unit '{time_unit}' unused: no numeric timestamp column")
    keep, reason = _row_rules(table, kind)
    kept = table.filter(keep)
    rejects = None
    if kept.num_rows < table.num_rows:
        bad = pc.invert(keep)
        rows = pa.array(range(table.num_rows), pa.int64()).filter(bad)
        rejects = (table.filter(bad).append_column("reject_reason", reason.filter(bad))
                   .append_column("source_row", rows))
    why = _rejections(table, reason)
    if kept.num_rows == 0:
        # only unknown event types can reject every row (the first of repeated keys is kept)
        raise ContractError(source, "event_type", f"all {table.num_rows} rows were rejected: "
                            f"{why}", sample_row(table, 0))
    if why:
        notes.append(f"{kind} rows rejected: {why}")
    return _Prepared(kind, kept, table.num_rows - kept.num_rows, rejects, dropped, units, notes)


def _source_order(table: pa.Table) -> pa.Table:
    """`event_seq` = the 0-based row number in the file (lineage: ties in time keep the order
    the source gave them, contract.TIE_ORDER), unless the file holds an event_seq of its own
    (named so or mapped, e.g. a log offset): the shop knows its order better than its export."""
    if "event_seq" in table.column_names:
        if table["event_seq"].null_count < table.num_rows:
            return table
        table = table.drop_columns(["event_seq"])
    return table.append_column("event_seq", pa.array(np.arange(table.num_rows), pa.int64()))


def _rejections(table: pa.Table, reason: pa.Array) -> str:
    """Why rows were rejected, with counts, and the most common unknown event types: a file
    whose events are named otherwise must not pass as 'imported' with most rows set aside."""
    import pandas as pd

    r = pd.Series(reason.to_pandas())
    if r.notna().sum() == 0:
        return ""
    parts = [f"{n:,} {why}" for why, n in r.value_counts().items()]
    if "event_type" in table.column_names:
        bad = r.str.startswith("event_type", na=False).to_numpy()
        if bad.any():
            top = pd.Series(table["event_type"].to_pandas()[bad]).value_counts().head(5)
            values = ", ".join(f"{v!r} {n:,}" for v, n in top.items())
            parts.append(f"unknown event types: {values}; name them with --event-map "
                         f"{top.index[0]}=view|click|add_to_cart|purchase")
    return "; ".join(parts)


def _check_event_map(source: str, kind: str, event_map: dict[str, str]) -> None:
    if not event_map:
        return
    if kind != "events":
        raise ContractError(source, "event_type", "--event-map applies to events only")
    if bad := sorted(t for t in event_map.values() if t not in EVENT_TYPES):
        raise ContractError(source, "event_type", f"--event-map maps to {bad}, not event types "
                            f"of the contract {list(EVENT_TYPES)}")


def _map_event_types(table: pa.Table, event_map: dict[str, str]) -> pa.Table:
    """The shop's event names → the contract's (unmapped values stay, for the row rule)."""
    i = table.column_names.index("event_type")
    values = pc.cast(table["event_type"], pa.string())
    keys = pa.array(list(event_map), pa.string())
    mapped = pc.take(pa.array(list(event_map.values()), pa.string()),
                     pc.index_in(values, value_set=keys))
    return table.set_column(i, "event_type", pc.coalesce(mapped, values))


def _land(dataset: str, batch_id: str, parts: list[_Prepared], source: str,
          settings: Settings) -> ImportReport:
    """Land the prepared tables as one batch; rejected rows are kept beside it first."""
    rejected_paths = {}
    for p in parts:
        if p.rejects is not None:
            rejected_paths[p.kind] = settings.import_rejects(dataset, batch_id, p.kind)
            with atomic_path(rejected_paths[p.kind]) as tmp:
                write_parquet(p.rejects, tmp)
    out, what = land_tables(batch_id, {p.kind: p.kept for p in parts}, dataset=dataset,
                            settings=settings, source=source)
    kinds = sorted(p.kind for p in parts)
    if what == "unchanged":  # the same bytes under the same id: a re-run, nothing to do
        return ImportReport(dataset, batch_id, out, skipped=True,
                            notes=[f"the same {', '.join(kinds)} rows are already in {out}"])
    notes = [n for p in parts for n in p.notes]
    if what == "added":
        held = sorted(f.stem for f in iter_files(out))
        notes.append(f"added to batch {batch_id}, which now holds {', '.join(held)}")
    if what == "new version":
        notes.append(f"a new version of batch {batch_id}: `shoprec validate` judges it and it "
                     "supersedes the earlier one")
    return ImportReport(dataset, batch_id, out,
                        imported={p.kind: p.kept.num_rows for p in parts},
                        rejected={p.kind: p.rejected for p in parts},
                        rejected_paths=rejected_paths,
                        dropped_columns=[c for p in parts for c in p.dropped],
                        time_units={c: u for p in parts for c, u in p.units.items()},
                        notes=notes)


def _check_options(path: Path, kind: str, mapping: dict[str, str], event_type: str | None,
                   time_unit: str | None, delimiter: str | None, encoding: str | None) -> str:
    """The file's format, once every option is known to make sense: ContractErrors, so the CLI
    prints one line, not a traceback."""
    source = str(path)
    if kind not in SCHEMAS:
        raise ContractError(source, None, f"unknown kind {kind!r}; expected one of "
                            f"{list(SCHEMAS)}")
    schema = SCHEMAS[kind]
    if unknown := sorted(set(mapping) - set(schema.names)):
        raise ContractError(source, unknown[0], f"mapping names {unknown}, which are not {kind} "
                            f"contract columns {schema.names}")
    if event_type is not None and (kind != "events" or event_type not in EVENT_TYPES):
        raise ContractError(source, "event_type", f"--event-type {event_type!r} needs kind "
                            f"'events' and one of {list(EVENT_TYPES)}")
    if time_unit is not None and time_unit not in EPOCH_UNITS:
        raise ContractError(source, None, f"--time-unit {time_unit!r}: expected one of "
                            f"{list(EPOCH_UNITS)}")
    fmt = FORMATS.get(path.suffix.lower())
    if path.is_dir():
        raise ContractError(source, None, "a folder: import a delivery folder with "
                            "`shoprec data import dir`")
    if fmt is None:
        raise ContractError(source, None, f"unsupported file type {path.suffix!r}; "
                            "expected .csv, .tsv or .parquet")
    if fmt == "parquet" and (delimiter or encoding):
        raise ContractError(source, None, "--delimiter and --encoding apply to CSV files only")
    if delimiter is not None:
        _delimiter_char(delimiter, source)
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ContractError(source, None, f"--encoding {encoding!r}: unknown encoding; "
                                "e.g. utf-8, cp1252, latin-1, utf-16") from None
    return fmt


def _delimiter_char(delimiter: str | None, source: str = "--delimiter") -> str | None:
    """'\\t' and 'tab' mean a tab: a real tab is hard to type in a shell."""
    if delimiter is None:
        return None
    d = {"\\t": "\t", "tab": "\t"}.get(delimiter.lower(), delimiter)
    if len(d) != 1 or d in "\r\n\"":
        raise ContractError(source, None, f"--delimiter {delimiter!r}: expected one character "
                            "other than a quote or newline, e.g. ';' or 'tab'")
    return d


def _dropped(columns: list[str], mapping: dict[str, str], kind: str,
             event_type: str | None) -> list[str]:
    """Source columns whose values do not reach the contract table."""
    names = [n for n in SCHEMAS[kind].names if not (n == "event_type" and event_type)]
    used = {mapping.get(n, n) for n in names}
    return [c for c in columns if c not in used]


def _epoch_units(table: pa.Table, kind: str, time_unit: str | None) -> dict[str, str]:
    """Timestamp column holding epoch numbers → the unit conform read it in, given or detected."""
    out = {}
    for f in SCHEMAS[kind]:
        if not pa.types.is_timestamp(f.type) or f.name not in table.column_names:
            continue
        t = table[f.name].type
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            out[f.name] = f"{time_unit} (given)" if time_unit else \
                f"{epoch_unit(table[f.name])} (detected)"
    return out


def _all_match(col: pa.ChunkedArray, pattern: str) -> bool:
    return bool(pc.all(pc.match_substring_regex(col, pattern)).as_py())


def _read(path: Path, fmt: str, kind: str, delimiter: str | None,
          encoding: str | None, sources: set[str] = frozenset()) -> tuple[pa.Table, list[str]]:
    """(table, notes on what was guessed). CSV as text (ids keep leading zeros, nothing depends
    on type guessing); Parquet as typed."""
    expected = f"expected columns {SCHEMAS[kind].names}"
    source = str(path)
    if path.stat().st_size == 0:
        raise ContractError(source, None, f"empty file: no header and no {kind} rows; "
                            + expected)
    notes: list[str] = []
    if fmt == "parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            raise ContractError(source, None, f"not a readable Parquet file ({_one_line(e)})"
                                ) from None
    else:
        # a catalogue or customer list may be its key alone: one column, named as the key or
        # mapped to it; any other one-column header is a separator we did not find
        key = KEYS[kind]
        single = {key, *(s for s in sources if s)} if sum(
            not f.nullable for f in SCHEMAS[kind]) == 1 else set()
        table = _read_csv(path.read_bytes(), source, delimiter, encoding, notes, single)
    if table.num_rows == 0:
        raise ContractError(source, None, f"empty file: no {kind} rows; {expected}")
    return table, notes


def _read_csv(data: bytes, source: str, delimiter: str | None, encoding: str | None,
              notes: list[str], single: set[str] = frozenset()) -> pa.Table:
    """Decode, find the delimiter, parse every column as text; notes say what was guessed."""
    utf8, enc_note = _to_utf8(data, source, encoding)
    if enc_note:
        notes.append(enc_note)
    header_line = utf8.split(b"\n", 1)[0].decode("utf-8").lstrip("\ufeff").rstrip("\r")
    sep = delimiter or _sniff_delimiter(header_line)
    if delimiter is None and sep != ",":
        notes.append(f"delimiter {sep!r} (detected)")
    header = next(csv.reader([header_line], delimiter=sep), [])
    if len(header) == 1 and header[0] not in single:  # `single`: names a one-column file may have
        raise ContractError(source, None, _one_column(header_line, sep, delimiter is not None))
    try:
        table = pacsv.read_csv(
            io.BytesIO(utf8),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=True, null_values=[""]))
    except (pa.ArrowException, csv.Error) as e:
        raise ContractError(source, None, f"not a readable CSV file with delimiter {sep!r} "
                            f"({_one_line(e)})") from None
    return table


def _to_utf8(data: bytes, source: str, encoding: str | None) -> tuple[bytes, str | None]:
    """(utf-8 bytes, note): decoded from the given encoding, else the byte-order mark's, else
    utf-8 (kept as is), else cp1252 or latin-1 with a note. A file with NUL bytes is not text in
    a one-byte encoding: refused rather than read as garbage."""
    if encoding is None:
        for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                         (codecs.BOM_UTF16_BE, "utf-16")):
            if data.startswith(bom):
                encoding = enc
                break
    try:
        text = data.decode(encoding or "utf-8")
    except UnicodeDecodeError as e:
        error = e
    else:
        if codecs.lookup(encoding or "utf-8").name == "utf-8":
            return data, None  # valid already: no second copy of a large file
        return text.lstrip("\ufeff").encode("utf-8"), None
    where = _decode_error(error, data)
    if encoding is not None:
        raise ContractError(source, None, f"{where}; pass the file's encoding, e.g. "
                            "--encoding latin-1") from None
    if b"\x00" in data:
        raise ContractError(source, None, f"{where}; the file holds NUL bytes: binary, or UTF-16 "
                            "without a byte-order mark? pass --encoding (e.g. utf-16-le)")
    for enc in FALLBACK_ENCODINGS:
        try:
            return data.decode(enc).encode("utf-8"), f"read as {enc}: {where}"
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")


def _decode_error(e: UnicodeDecodeError, data: bytes) -> str:
    line = data[: e.start].count(b"\n") + 1
    return (f"could not decode as {e.encoding} at byte {e.start} (line {line}, "
            f"{data[e.start:e.start + 1]!r}: {e.reason})")


def _sniff_delimiter(header_line: str) -> str:
    """The candidate that splits the header into the most fields (a tie goes to ',')."""
    return max(DELIMITERS, key=lambda d: len(next(csv.reader([header_line], delimiter=d), [])))


def _one_column(header_line: str, sep: str, given: bool) -> str:
    """Why a CSV came out as one column, and what to pass instead."""
    found = f"only one column found with delimiter {sep!r} (header {header_line[:80]!r})"
    other = _sniff_delimiter(header_line)
    if given and other != sep:
        return f"{found}; the header looks {other!r}-delimited: pass --delimiter {other!r}"
    return (f"{found}; none of {list(DELIMITERS)} splits it: pass --delimiter with the file's "
            "separator")


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _rename(table: pa.Table, mapping: dict[str, str], source: str) -> pa.Table:
    """Source names → contract names; a mapping wins over a same-named source column."""
    if missing := [(t, s) for t, s in mapping.items() if s not in table.column_names]:
        t, s = missing[0]
        raise ContractError(source, s, f"source column '{s}' (mapped to contract column '{t}') "
                            f"is not in the file; found {table.column_names}",
                            sample_row(table, 0))
    # one source column may feed several contract columns (e.g. item_id=sku and title=sku)
    kept = [c for c in table.column_names if c not in mapping]  # a mapped name is replaced
    out = table.select(kept)
    for target, src in mapping.items():
        out = out.append_column(target, table[src])
    return out


def _prepare_text(table: pa.Table, kind: str) -> pa.Table:
    """CSV text that conform would misread: epoch numbers in a timestamp column → int64 or
    float64 (conform reads numbers as epoch values and detects their unit), integers via float64
    so pandas' '2.0' exports fit. Text that does not cast is left for conform to report."""
    for field in SCHEMAS[kind]:
        if field.name not in table.column_names:
            continue
        col = table[field.name]
        if not pa.types.is_string(col.type):
            continue
        target = None
        if pa.types.is_timestamp(field.type):
            if _all_match(col, _INT):
                target = pa.int64()
            elif _all_match(col, _NUMBER):
                target = pa.float64()
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

