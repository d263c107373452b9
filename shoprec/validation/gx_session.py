"""One GX context and one DuckDB connection for a whole validation run: GX's set-up costs
seconds, a batch costs a fraction of one."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path

from shoprec.config import Settings

RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}


def _duckdb_config(settings: Settings, workers: int | None = None) -> dict:
    """Each judging process gets its share of the cores (more threads than cores only thrash)
    and a bounded buffer pool."""
    v = settings.validation
    return {"threads": max(1, (os.cpu_count() or 2) // max(1, workers or v.workers)),
            "memory_limit": f"{v.duckdb_memory_mb}MB"}


class GxSession:
    def __init__(self, settings: Settings, workdir: Path, workers: int | None = None):
        """`workers`: processes sharing the cores (default: settings.validation.workers)."""
        import great_expectations as gx  # imported here: seconds, paid only when validating
        from great_expectations.data_context.types.base import ProgressBarsConfig

        from shoprec.validation import gx_duckdb  # noqa: F401  (registers add_duckdb)
        # DuckDB has no GX dialect module; the type checks use SQLAlchemy's class names on purpose
        logging.getLogger("great_expectations.expectations.type_comparison").setLevel(
            logging.ERROR)
        self.gx = gx
        self.settings = settings
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        for site in list(self.context.list_data_docs_sites()):
            self.context.delete_data_docs_site(site)
        self.docs_site = "shoprec"
        settings.data_docs_dir.mkdir(parents=True, exist_ok=True)
        self.context.add_data_docs_site(site_name=self.docs_site, site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"module_name": "shoprec.validation.gx_docs",
                                   "class_name": "KeepingSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(settings.data_docs_dir)},
        })
        db = workdir / "validate.duckdb"
        self.ds = self.context.data_sources.add_duckdb(
            name="lake", connection_string=f"duckdb:///{db}",
            kwargs={"connect_args": {"config": _duckdb_config(settings, workers)}})
        self.engine = self.ds.get_execution_engine()
        self._now = dt.datetime.now(dt.UTC)
        self._suites: dict = {}  # the table suites, built on first use (the screen has its own)
        self._n = 0

    def suite(self, kind: str):
        """The table's suite, with its time bounds as of this session's start."""
        from shoprec.validation.suites import table_suite

        if kind not in self._suites:
            self._suites[kind] = self.context.suites.add(table_suite(
                kind, self.settings.validation, self._now, self.settings.session_gap_minutes))
        return self._suites[kind]

    def sql(self, statement: str) -> list:
        from sqlalchemy import text

        with self.engine.get_connection() as conn:
            res = conn.execute(text(statement))
            rows = res.fetchall() if res.returns_rows else []
            conn.commit()
        return rows

    def fetcher(self, view: str, limit: int = 5) -> Callable[[str], list]:
        """Run an UnexpectedRowsExpectation query against `view`: SUMMARY results carry no rows."""
        return lambda q: self.sql(f"SELECT * FROM ({q.replace('{batch}', view)}) LIMIT {limit}")

    def run(self, view: str, kind: str):
        """Validate one view against its table's suite (GX's ExpectationSuiteValidationResult)."""
        return self.run_suite(view, self.suite(kind))

    def run_suite(self, view: str, suite, result_format: dict | None = None):
        """Validate one view against a suite added to this session's context."""
        self._n += 1
        name = f"{view}__{self._n}"  # GX names are unique per context
        asset = self.ds.add_table_asset(name=name, table_name=view)
        bd = asset.add_batch_definition_whole_table(name="whole")
        vd = self.context.validation_definitions.add(
            self.gx.ValidationDefinition(name=name, data=bd, suite=suite))
        return vd.run(result_format=result_format or RESULT_FORMAT)

    def build_docs(self) -> Path:
        """One builder at a time per site: validation workers build it side by side."""
        import fcntl

        with open(self.settings.data_docs_lock(), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            self.context.build_data_docs(site_names=[self.docs_site])
        return self.settings.data_docs_index()

    def close(self) -> None:
        self.engine.close()
