"""Materialization watermarks kept in the online store itself.

Feast's registry remembers what it materialized, not whether the online store still holds it: a
flushed or restarted Redis, a deleted online.db, or a home switched from SQLite to Redis all
leave the registry saying "done" over an empty store. A marker written next to the data goes
away with the data, so `materialize` can tell. Redis: one key per view,
`shoprec:<project>:watermark:<view>`; SQLite: a small table in the online .db file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shoprec.config import Settings
from shoprec.features.export import ExportStats
from shoprec.features.online import redis_client
from shoprec.features.store import project_name

TABLE = "shoprec_watermarks"


def _ts(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


@dataclass(frozen=True)
class Watermark:
    """One view's last successful materialization, as the online store remembers it."""

    view: str
    end: dt.datetime  # exclusive end of the last window written
    export: ExportStats  # the offline export it was read from
    registry: str  # the registry that recorded it: a shared Redis may hold another home's
    written_at: dt.datetime

    def to_json(self) -> str:
        return json.dumps({"view": self.view, "end": _ts(self.end), "rows": self.export.rows,
                           "lo": _ts(self.export.lo), "hi": _ts(self.export.hi),
                           "registry": self.registry, "written_at": _ts(self.written_at)})

    @classmethod
    def from_json(cls, text: str | bytes) -> Watermark:
        d = json.loads(text)
        return cls(d["view"], _dt(d["end"]), ExportStats(d["rows"], _dt(d["lo"]), _dt(d["hi"])),
                   d["registry"], _dt(d["written_at"]))


class Watermarks(Protocol):
    """The one interface `materialize` and `status` use, whatever the backend."""

    def read(self, views: Iterable[str]) -> dict[str, Watermark]: ...

    def write(self, mark: Watermark) -> None: ...

    def clear(self) -> None: ...


class RedisWatermarks:
    def __init__(self, settings: Settings, project: str):
        self.client = redis_client(settings)
        self.prefix = f"shoprec:{project}:watermark:"

    def read(self, views: Iterable[str]) -> dict[str, Watermark]:
        views = list(views)
        values = self.client.mget([self.prefix + v for v in views]) if views else []
        return {v: Watermark.from_json(x) for v, x in zip(views, values, strict=True) if x}

    def write(self, mark: Watermark) -> None:
        self.client.set(self.prefix + mark.view, mark.to_json())

    def clear(self) -> None:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "*"
        keys = list(self.client.scan_iter(match=pattern))
        if keys:
            self.client.delete(*keys)


class SqliteWatermarks:
    def __init__(self, path: Path, project: str):
        self.path = Path(path)
        self.project = project

    def read(self, views: Iterable[str]) -> dict[str, Watermark]:
        if not self.path.exists():  # a deleted store: nothing is online (and read creates none)
            return {}
        # not read-only: a materialization killed mid-write leaves a hot journal, which the
        # next connection must roll back (a read-only one fails with "readonly database")
        with contextlib.closing(sqlite3.connect(self.path)) as con:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               [TABLE]).fetchone():
                return {}
            rows = con.execute(f"SELECT view, marker FROM {TABLE} WHERE project = ?",
                               [self.project]).fetchall()
        wanted = set(views)
        return {v: Watermark.from_json(m) for v, m in rows if v in wanted}

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One transaction on the online .db, creating the table beside Feast's if needed."""
        with contextlib.closing(sqlite3.connect(self.path)) as con, con:
            con.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (project TEXT, view TEXT, "
                        "marker TEXT, PRIMARY KEY (project, view))")
            yield con

    def write(self, mark: Watermark) -> None:
        with self._writing() as con:
            con.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?) ON CONFLICT (project, view) "
                        "DO UPDATE SET marker = excluded.marker",
                        [self.project, mark.view, mark.to_json()])

    def clear(self) -> None:
        if self.path.exists():
            with self._writing() as con:
                con.execute(f"DELETE FROM {TABLE} WHERE project = ?", [self.project])


def watermarks(settings: Settings, dataset: str) -> Watermarks:
    """The watermarks of a dataset's online store, on the backend Settings select."""
    project = project_name(settings, dataset)
    if settings.feast.online_store == "redis":
        return RedisWatermarks(settings, project)
    return SqliteWatermarks(settings.feast_online_db(dataset), project)


def registry_id(settings: Settings, dataset: str) -> str:
    """Which registry a watermark belongs to (homes sharing one Redis must not trust another's)."""
    return str(settings.feast_registry(dataset))
