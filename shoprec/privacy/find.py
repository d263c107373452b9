"""Where does the platform hold a user? Every store searched through its own engine, since a
byte search misses what compression hides: DuckDB over every Parquet file and every DuckDB
table, SQLite over the spool and the online store (entity keys decoded), Redis by SCAN with
decoded keys, and a token search over the text files (reports, logs, run records). The audit
behind `shoprec privacy find` and the proof of a forget."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from shoprec.config import Settings

TEXT_SUFFIXES = {".json", ".jsonl", ".html", ".txt", ".md", ".csv", ".log", ".yaml", ".yml"}
SQLITE_MAGIC = b"SQLite format 3\x00"


def find_user(settings: Settings, dataset: str, user_id: str,
              event_ids: Iterable[str] = ()) -> dict[str, int]:
    """`place → rows` holding the user (by user_id) or one of `event_ids`; {} when none."""
    root = settings.root
    ids = sorted(set(event_ids))
    hits: dict[str, int] = {}

    def add(place: str, n: int) -> None:
        if n:
            hits[place] = hits.get(place, 0) + n

    files = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()]
    for p in files:
        where = str(p.relative_to(root))
        if p.suffix == ".parquet":
            add(where, _parquet(p, user_id, ids))
        elif p.suffix == ".duckdb":
            for table, n in _duckdb(p, user_id, ids).items():
                add(f"{where}:{table}", n)
        elif _is_sqlite(p):
            for table, n in _sqlite(p, user_id, ids).items():
                add(f"{where}:{table}", n)
        elif p.suffix.lower() in TEXT_SUFFIXES:
            add(where, _text(p, [user_id]))  # event ids are too generic for text ("e7")
    if settings.feast.online_store == "redis":
        add("redis", _redis(settings, dataset, user_id))
    for place, n in _bucket(settings, dataset, user_id, ids).items():
        add(place, n)
    return hits


def _bucket(settings: Settings, dataset: str, user_id: str, ids: list[str]) -> dict[str, int]:
    """The lake's objects on S3 (storage_uri): one byte-identical to the working copy's file
    (same MD5 ETag) was searched there; any other is downloaded and searched."""
    import tempfile

    from shoprec.lake_sync import WorkingCopy, lake_store, md5

    store = lake_store(settings, dataset)
    if store is None:
        return {}
    out = {}
    copy = WorkingCopy(settings, dataset, store)
    with tempfile.TemporaryDirectory() as tmp:
        for rel, (_size, etag) in copy.remote().items():
            local = copy.base / rel
            if local.is_file() and md5(local) == etag.strip('"'):
                continue
            path = store.get_file(rel, Path(tmp) / Path(rel).name)
            n = _parquet(path, user_id, ids) if path.suffix == ".parquet" else \
                _text(path, [user_id]) if path.suffix.lower() in TEXT_SUFFIXES else 0
            if n:
                out[store.uri(rel)] = n
            path.unlink()
    return out


def _match(cols: list[str], user_id: str, ids: list[str]) -> tuple[str, list] | None:
    conds, params = [], []
    if "user_id" in cols:
        conds.append("CAST(user_id AS VARCHAR) = ?")
        params.append(user_id)
    if "event_id" in cols and ids:
        conds.append("CAST(event_id AS VARCHAR) IN (SELECT unnest(?::VARCHAR[]))")
        params.append(ids)
    return (" OR ".join(conds), params) if conds else None


def _parquet(path: Path, user_id: str, ids: list[str]) -> int:
    import duckdb

    with duckdb.connect() as con:
        cols = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)",
                                          [str(path)]).fetchall()]
        m = _match(cols, user_id, ids)
        if m is None:
            return 0
        where, params = m
        return con.execute(f"SELECT count(*) FROM read_parquet(?) WHERE {where}",
                           [str(path), *params]).fetchone()[0]


def _duckdb(path: Path, user_id: str, ids: list[str]) -> dict[str, int]:
    from shoprec.transform.snapshot_sync import ident

    out = {}
    with _open(path) as con:
        tables = con.execute(
            "SELECT table_schema, table_name, list(column_name) FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND (table_schema, table_name) IN "
            "(SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE') GROUP BY ALL").fetchall()
        for schema, table, cols in tables:
            m = _match(cols, user_id, ids)
            if m is None:
                continue
            where, params = m
            n = con.execute(f"SELECT count(*) FROM {ident(schema)}.{ident(table)} WHERE {where}",
                            params).fetchone()[0]
            if n:
                out[f"{schema}.{table}"] = n
    return out


def _open(path: Path):
    """Read-only; or, when this process already holds the file open read-write (DuckDB keeps
    one instance per file and process), through that instance."""
    import duckdb

    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.ConnectionException:
        return duckdb.connect(str(path))


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == SQLITE_MAGIC


def _sqlite(path: Path, user_id: str, ids: list[str]) -> dict[str, int]:
    import sqlite3

    out = {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for name in names:
            cols = [r[0] for r in con.execute("SELECT name FROM pragma_table_info(?)", (name,))]
            q = '"' + name.replace('"', '""') + '"'
            n = 0
            if "entity_key" in cols:  # Feast's online tables: one row per entity and feature
                n += sum(1 for (k,) in con.execute(f"SELECT DISTINCT entity_key FROM {q}")
                         if user_id in _entity_values(k))
            if "row" in cols:  # the serving spool: a JSON array, the user second
                n += con.execute(f"SELECT count(*) FROM {q} WHERE row IS NOT NULL AND "
                                 "json_extract(row, '$[1]') = ?", (user_id,)).fetchone()[0]
            if "event_id" in cols and ids:
                n += con.execute(f"SELECT count(*) FROM {q} WHERE event_id IN "
                                 "(SELECT value FROM json_each(?))",
                                 (json.dumps(ids),)).fetchone()[0]
            if n:
                out[name] = n
    finally:
        con.close()
    return out


def _entity_values(key: bytes) -> list[str]:
    from feast.infra.key_encoding_utils import deserialize_entity_key

    try:
        ek = deserialize_entity_key(bytes(key), entity_key_serialization_version=3)
    except Exception:  # not a key of this version: nothing to decode
        return []
    return [v.string_val or str(v.int64_val) for v in ek.entity_values]


def _redis(settings: Settings, dataset: str, user_id: str) -> int:
    from shoprec.features.store import get_store

    store = get_store(settings, dataset)
    project = store.config.project.encode()
    client = store._get_provider().online_store._get_client(store.config.online_store)
    return sum(1 for key in client.scan_iter(match=b"*" + project, count=1000)
               if user_id in _entity_values(key[:-len(project)]))


def _text(path: Path, needles: list[str]) -> int:
    text = path.read_text(errors="replace")
    return sum(len(re.findall(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)) for n in needles
               if n in text)
