"""Bring an older analysts' snapshot up to the warehouse by rewriting only what changed.

A snapshot file records, in its own `_shoprec.parts` table and in the same transaction as its
data, a fingerprint of what it holds of each table. dbt stamps every row it inserts with its
invocation's start time (`built_at`; `loaded_at` in the event tables), so:
- a table with `built_at` and a dbt `unique_key` (the delete+insert increments) is synced by row:
  the rows stamped after the newest one the snapshot holds replace the rows of their keys, and a
  row count that still differs afterwards (a row removed without a replacement) rewrites the
  table whole;
- any other table by part: its rows grouped by day (the first of PART_EXPRESSIONS it has; one
  part otherwise), each part fingerprinted by its row count and newest audit time (a part that
  gained rows has a newer one, one that only lost rows a smaller count) or, without audit
  columns, the sum of its rows' hashes; the parts that differ are replaced.
Tables whose columns changed are rewritten whole; views and comments are re-created (cheap).
The whole sync is one transaction: killed halfway, the file is as it was.

`rows` makes the copy differ from its source: the rows written are those of a SELECT per table and
condition (the analysts' snapshot: ids replaced by pseudonyms), while fingerprints and counts still
read the source's own tables (the same rows, one to one, so they change exactly when the copy
must).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shoprec.names import sql_literal

META = "_shoprec"
# the day a row belongs to, first match wins; a table with none of them is one part
PART_EXPRESSIONS = (("feature_date", "feature_date"), ("event_date", "event_date"),
                    ("session_date", "session_date"),
                    ("last_interaction_at", "CAST(last_interaction_at AS DATE)"))
AUDIT_COLUMNS = ("built_at", "loaded_at")


@dataclass
class SyncReport:
    tables: int = 0
    replaced: list[str] = field(default_factory=list)  # whole tables rewritten
    parts: int = 0  # parts rewritten in the other tables
    rows: int = 0  # rows inserted


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _qualified(db: str | None, schema: str, table: str) -> str:
    return ".".join(ident(p) for p in ((db,) if db else ()) + (schema, table))


def tables(con, db: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(schema, table) → [(column, type)] of the database's own tables (no metadata)."""
    rows = con.execute(
        "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = ? AND schema_name <> ? AND NOT internal "
        "AND table_name IN (SELECT table_name FROM duckdb_tables() t WHERE "
        "t.database_name = ? AND t.schema_name = duckdb_columns.schema_name) "
        "ORDER BY schema_name, table_name, column_index", [db, META, db]).fetchall()
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, col, typ in rows:
        out.setdefault((schema, table), []).append((col, typ))
    return out


def part_key(columns: list[str]) -> str:
    """The SQL of a row's part (a string; '' when the table is one part)."""
    for col, expr in PART_EXPRESSIONS:
        if col in columns:
            return f"coalesce(CAST({expr} AS VARCHAR), '')"
    return "''"


def part_filter(columns: list[str], parts: list[str]) -> str:
    """The SQL condition of the rows in `parts` (day strings from `part_key`), on the day itself:
    DuckDB then skips every row group whose min/max days lie outside (a string compare scans
    every row)."""
    expr = next((e for col, e in PART_EXPRESSIONS if col in columns), None)
    if expr is None:
        return "TRUE"
    days = [p for p in parts if p]
    conds = [f"{expr} IN ({', '.join('DATE ' + sql_literal(p) for p in days)})"] if days else []
    if "" in parts:
        conds.append(f"{expr} IS NULL")
    return " OR ".join(conds) or "FALSE"


Parts = dict[str, tuple[str, object]]  # part → (fingerprint, newest audit time or None)
WHOLE = "*"  # the one part of a table synced by row


def by_row(columns: list[str], key: list[str] | None) -> bool:
    return bool(key) and "built_at" in columns and all(k in columns for k in key)


def fingerprints(con, db: str, schema: str, table: str, columns: list[str],
                 whole: bool = False) -> Parts:
    """part → (fingerprint, newest audit time) of one table (see the module's docstring)."""
    audit = next((c for c in AUDIT_COLUMNS if c in columns), None)
    newest = f"max({ident(audit)})" if audit else "NULL"
    digest = f"CAST({newest} AS VARCHAR)" if audit else "CAST(sum(hash(t)) AS VARCHAR)"
    part = sql_literal(WHOLE) if whole else part_key(columns)
    rows = con.execute(f"SELECT {part} AS p, CAST(count(*) AS VARCHAR) || ':' || "
                       f"coalesce({digest}, ''), {newest} FROM {_qualified(db, schema, table)} "
                       "t GROUP BY p").fetchall()
    return {p: (f, n) for p, f, n in rows}


def record(con, schema: str, table: str, parts: Parts) -> None:
    con.execute(f"DELETE FROM {META}.parts WHERE schema_name = ? AND table_name = ?",
                [schema, table])
    if parts:
        con.executemany(f"INSERT INTO {META}.parts VALUES (?, ?, ?, ?, ?)",
                        [(schema, table, p, f, n) for p, (f, n) in parts.items()])


def init_meta(con) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {META}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {META}.parts (schema_name VARCHAR, table_name "
                "VARCHAR, part VARCHAR, fingerprint VARCHAR, newest TIMESTAMPTZ)")


def has_meta(con, db: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND "
                            "schema_name = ? AND table_name = 'parts'", [db, META]).fetchone()[0])


Keys = dict[tuple[str, str], list[str]]  # (schema, table) → dbt's unique_key
# (qualified source table, its columns, a condition) → the SELECT of the rows to write
Rows = Callable[[str, list[str], str], str]


def plain_rows(src: str, _columns: list[str], where: str) -> str:
    return f"SELECT * FROM {src} WHERE {where}"


def record_all(con, db: str, keys: Keys) -> None:
    """Fingerprint every table of a freshly copied snapshot (its first publish)."""
    init_meta(con)
    for (schema, table), cols in tables(con, db).items():
        names = [c for c, _ in cols]
        whole = by_row(names, keys.get((schema, table)))
        record(con, schema, table, fingerprints(con, db, schema, table, names, whole))


def recorded(con) -> dict[tuple[str, str], Parts]:
    out: dict[tuple[str, str], Parts] = {}
    for schema, table, part, fp, newest in con.execute(
            f"SELECT schema_name, table_name, part, fingerprint, newest FROM {META}.parts"
    ).fetchall():
        out.setdefault((schema, table), {})[part] = (fp, newest)
    return out


def sync(con, db: str, source: str, keys: Keys, rows: Rows | None = None,
         views: bool = True, schemas: tuple[str, ...] | None = None) -> SyncReport:
    """Make database `db` hold what database `source` holds (both attached to `con`, `source`
    in use); `keys`: the unique keys of dbt's delete+insert models (from its manifest); `rows`:
    the rows to write of each table (default: the table's own); `views`: re-create the views
    (the analysts' copy has none: dbt's staging views read the lake's raw files); `schemas`:
    only the tables of these (default: all)."""
    try:
        con.execute("BEGIN TRANSACTION")
        report = _sync(con, db, source, keys, rows or plain_rows, views, schemas)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.execute("USE " + ident(source))
    con.execute("CHECKPOINT " + ident(db))
    return report


def _sync(con, db: str, source: str, keys: Keys, rows: Rows, views: bool,
          schemas: tuple[str, ...] | None) -> SyncReport:
    report = SyncReport()
    con.execute("USE " + ident(db))
    init_meta(con)
    want, have, marks = tables(con, source), tables(con, db), recorded(con)
    want = {k: v for k, v in want.items() if schemas is None or k[0] in schemas}
    for schema, table in set(have) - set(want):
        con.execute(f"DROP TABLE {_qualified(db, schema, table)}")
        record(con, schema, table, {})
    for schema in {s for s, _ in want}:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_qualified(None, db, schema)}")
    for (schema, table), cols in want.items():
        report.tables += 1
        names = [c for c, _ in cols]
        key = keys.get((schema, table))
        whole = by_row(names, key)
        dst, src = _qualified(db, schema, table), _qualified(source, schema, table)

        def select(where: str, src=src, names=names) -> str:
            return rows(src, names, where)
        now = fingerprints(con, source, schema, table, names, whole)
        before = marks.get((schema, table))
        same = have.get((schema, table)) == cols and before is not None \
            and (WHOLE in before) == whole
        if same and whole:
            same = _rows(con, dst, src, select, key, before.get(WHOLE), now.get(WHOLE), report)
        elif same:
            same = _parts(con, dst, src, select, names, before, now, report)
        if not same:
            con.execute(f"CREATE OR REPLACE TABLE {dst} AS {select('TRUE')}")
            report.replaced.append(f"{schema}.{table}")
        record(con, schema, table, now)
    if views:
        _views(con, db, source)
    _comments(con, db, source, set(want))
    return report


def _parts(con, dst: str, src: str, select: Callable[[str], str], columns: list[str],
           before: Parts, now: Parts, report: SyncReport) -> bool:
    """The parts whose fingerprints differ replaced; False when the table must be rewritten
    whole (its counts still differ: a part column of an unexpected type)."""
    changed = sorted(p for p in set(now) | set(before) if now.get(p) != before.get(p))
    if not changed:
        return True
    where = part_filter(columns, changed)
    con.execute(f"DELETE FROM {dst} WHERE {where}")
    n = con.execute(f"INSERT INTO {dst} {select(where)}").fetchone()[0]
    report.parts += len(changed)
    report.rows += n
    return _same_count(con, dst, src)


def _same_count(con, dst: str, src: str) -> bool:
    count = f"SELECT (SELECT count(*) FROM {dst}) = (SELECT count(*) FROM {src})"
    return bool(con.execute(count).fetchone()[0])


def _rows(con, dst: str, src: str, select: Callable[[str], str], key: list[str], before, now,
          report: SyncReport) -> bool:
    """The rows stamped after `before`'s newest replace those of their keys; False when the
    table must be rewritten whole (its counts still differ: a row left without replacement)."""
    if before == now:
        return True
    if before is None or now is None or before[1] is None:
        return False
    on = " AND ".join(f"d.{ident(k)} IS NOT DISTINCT FROM n.{ident(k)}" for k in key)
    cols = ", ".join(ident(k) for k in key)
    newer = select("built_at > ?")
    con.execute(f"DELETE FROM {dst} d USING (SELECT DISTINCT {cols} FROM ({newer})) n WHERE {on}",
                [before[1]])
    n = con.execute(f"INSERT INTO {dst} {newer}", [before[1]]).fetchone()[0]
    report.parts += 1
    report.rows += n
    return _same_count(con, dst, src)


def _views(con, db: str, source: str) -> None:
    """Every view as the warehouse defines it (their SQL names no database: they resolve in
    whichever database they live in)."""
    for schema, view in con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = ? AND NOT "
            "internal", [db]).fetchall():
        con.execute(f"DROP VIEW {_qualified(db, schema, view)}")
    for (sql,) in con.execute("SELECT sql FROM duckdb_views() WHERE database_name = ? AND NOT "
                              "internal ORDER BY view_oid", [source]).fetchall():
        con.execute(sql)


def _comments(con, db: str, source: str, copied: set[tuple[str, str]]) -> None:
    """dbt's persisted docs (table and column comments), as the warehouse has them."""
    for schema, table, comment in con.execute(
            "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE database_name = ? "
            "AND comment IS NOT NULL", [source]).fetchall():
        if (schema, table) not in copied:
            continue
        con.execute(f"COMMENT ON TABLE {_qualified(db, schema, table)} IS {sql_literal(comment)}")
    for schema, table, col, comment in con.execute(
            "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() WHERE "
            "database_name = ? AND comment IS NOT NULL AND table_name IN (SELECT table_name "
            "FROM duckdb_tables() t WHERE t.database_name = ? AND t.schema_name = "
            "duckdb_columns.schema_name)", [source, source]).fetchall():
        if (schema, table) not in copied:
            continue
        con.execute(f"COMMENT ON COLUMN {_qualified(db, schema, table)}.{ident(col)} IS "
                    f"{sql_literal(comment)}")
