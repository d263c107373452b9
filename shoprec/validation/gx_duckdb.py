"""Great Expectations 1.24 on DuckDB: a fluent datasource type "duckdb" with one kept connection.

Why: GX runs `with get_connection() as c: return c.execute(q)` and fetches *after* the block. For
dialects outside its private persisted-connection list the connection is closed first; closing
rolls back, and duckdb-engine's cursor is the DuckDB connection itself, so the pending result is
discarded and every metric dies with "list index out of range". This engine keeps one connection
and rolls back before each query instead, which also clears a transaction DuckDB aborted after a
failed query. Importing this module registers `context.data_sources.add_duckdb`.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Literal

from great_expectations.datasource.fluent import SQLDatasource
from great_expectations.execution_engine import SqlAlchemyExecutionEngine


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    @contextmanager
    def get_connection(self) -> Generator:  # type: ignore[override]
        conn = self._connection
        if conn is None or conn.closed or conn.invalidated:
            conn = self._connection = self.engine.connect()
        elif conn.in_transaction():
            conn.rollback()  # the previous result is fetched by now
        yield conn

    def close(self) -> None:
        # the base class closes _connection only for sqlite/mssql/snowflake/mysql
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None
        super().close()


class DuckDBDatasource(SQLDatasource):
    """SQL datasource for DuckDB files (`duckdb:///path.duckdb`) through duckdb-engine."""

    type: Literal["duckdb"] = "duckdb"  # type: ignore[assignment]

    @property
    def execution_engine_type(self) -> type[SqlAlchemyExecutionEngine]:
        return DuckDBExecutionEngine
