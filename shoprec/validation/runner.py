"""Validate landing batches with Great Expectations on DuckDB; move each whole to validated/ or
quarantine/. Nothing is deleted; a batch whose content hash was judged before is not judged again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shoprec.config import Settings, get_settings
from shoprec.lake import TABLES, content_hash, find_batch, list_batches

RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}


class ValidatorError(RuntimeError):
    """The validator itself broke (an expectation raised): neither pass nor quarantine a batch."""


@dataclass
class Failure:
    table: str
    rule: str
    column: str | None
    detail: str
    structural: bool = False

    def line(self) -> str:
        col = f" column '{self.column}'" if self.column else ""
        return f"{self.table}.parquet{col}: {self.rule}: {self.detail}"


@dataclass
class BatchResult:
    batch_id: str
    status: str  # validated | quarantined | unchanged
    content_hash: str
    path: Path
    failures: list[Failure] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "quarantined"

    def reason(self) -> str:
        return "; ".join(f.line() for f in self.failures[:3]) + (
            f" (+{len(self.failures) - 3} more)" if len(self.failures) > 3 else "")


# ------------------------------------------------------------------------------ ledger


def _ledger_path(settings: Settings, dataset: str | None) -> Path:
    return settings.lake(dataset) / "_validation_ledger.jsonl"


def _ledger(settings: Settings, dataset: str | None) -> dict[str, dict]:
    """content hash → last verdict. Append-only JSON lines: one verdict per judged batch."""
    p = _ledger_path(settings, dataset)
    if not p.exists():
        return {}
    out = {}
    for line in p.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out[rec["content_hash"]] = rec
    return out


def _append_ledger(settings: Settings, dataset: str | None, rec: dict) -> None:
    p = _ledger_path(settings, dataset)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a") as fh:
        fh.write(json.dumps(rec, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# ------------------------------------------------------------------------------ GX session


class GxSession:
    """One GX context and one DuckDB connection for a whole validation run: GX's set-up costs
    seconds, a batch costs a fraction of one."""

    def __init__(self, settings: Settings, workdir: Path):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        from shoprec.validation import gx_duckdb  # noqa: F401  (registers add_duckdb)
        from shoprec.validation.suites import table_suite

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
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(settings.data_docs_dir)},
        })
        db = workdir / "validate.duckdb"
        self.ds = self.context.data_sources.add_duckdb(
            name="lake", connection_string=f"duckdb:///{db}",
            kwargs={"connect_args": {"config": {"threads": os.cpu_count() or 2}}})
        self.engine = self.ds.get_execution_engine()
        now = dt.datetime.now(dt.UTC)
        self.suites = {}
        for kind in TABLES:
            self.suites[kind] = self.context.suites.add(
                table_suite(kind, settings.validation, now))
        self._n = 0

    def sql(self, statement: str) -> list[tuple]:
        from sqlalchemy import text

        with self.engine.get_connection() as conn:
            res = conn.execute(text(statement))
            rows = res.fetchall() if res.returns_rows else []
            conn.commit()
        return rows

    def run(self, view: str, kind: str):
        """Validate one view against its table's suite (GX's ExpectationSuiteValidationResult)."""
        self._n += 1
        name = f"{view}__{self._n}"
        asset = self.ds.add_table_asset(name=name, table_name=view)
        bd = asset.add_batch_definition_whole_table(name="whole")
        vd = self.context.validation_definitions.add(
            self.gx.ValidationDefinition(name=name, data=bd, suite=self.suites[kind]))
        return vd.run(result_format=RESULT_FORMAT)

    def build_docs(self) -> Path:
        self.context.build_data_docs(site_names=[self.docs_site])
        return self.settings.data_docs_dir / "index.html"

    def close(self) -> None:
        self.engine.close()


# ------------------------------------------------------------------------------ results


def _exceptions(r) -> list[str]:
    info = r.exception_info or {}
    if "raised_exception" in info:
        info = {"_": info}
    return [v.get("exception_message") or "unknown error" for v in info.values()
            if isinstance(v, dict) and v.get("raised_exception")]


def _failures(table: str, result) -> tuple[list[Failure], list[str]]:
    """Rule failures, and errors raised by expectations. Errors count as a broken validator only
    when the structure held (a missing column makes its expectations raise, by design)."""
    from shoprec.validation.suites import is_structure_rule

    fails, broken = [], []
    for r in result.results:
        cfg = r.expectation_config
        errs = _exceptions(r)
        if errs:
            broken.append(f"{table}: {cfg.type}({cfg.kwargs.get('column', '')}): {errs[0]}")
            continue
        if r.success:
            continue
        res = r.result or {}
        column = cfg.kwargs.get("column")
        if cfg.type == "unexpected_rows_expectation":
            desc = cfg.description or ""
            if desc.startswith("column "):
                column = desc.split()[1].rstrip(":")
            rows = (res.get("details") or {}).get("unexpected_rows") or []
            detail = desc + (f"; found {rows[0]}" if rows else
                             f"; {res.get('observed_value')} offending rows")
        elif cfg.type == "expect_table_columns_to_match_set":
            obs = set(res.get("observed_value") or [])
            want = set(cfg.kwargs.get("column_set") or [])
            missing, extra = sorted(want - obs), sorted(obs - want)
            column = (missing or extra or [None])[0]
            detail = f"columns differ from the contract: missing {missing}, unexpected {extra}"
        elif cfg.type == "expect_table_row_count_to_be_between":
            detail = f"row count {res.get('observed_value')}, need at least " \
                     f"{cfg.kwargs.get('min_value')}"
        elif cfg.type == "expect_column_values_to_be_of_type":
            detail = f"type {res.get('observed_value')}, contract wants {cfg.kwargs.get('type_')}"
        else:
            n, pct = res.get("unexpected_count"), res.get("unexpected_percent")
            sample = res.get("partial_unexpected_list") or []
            detail = f"{n} unexpected ({pct:.3g}%)" if pct is not None else f"{n} unexpected"
            bounds = {k: cfg.kwargs[k] for k in ("min_value", "max_value", "value_set")
                      if cfg.kwargs.get(k) is not None}
            if bounds:
                detail += f", expected {bounds}"
            detail += f", e.g. {sample[:5]}"
        fails.append(Failure(table, cfg.type, column, detail,
                             structural=is_structure_rule(cfg.type, cfg.description)))
    if any(f.structural for f in fails):
        broken = []
    return fails, broken


# ------------------------------------------------------------------------------ one batch


def _parquet_view(gxs: GxSession, view: str, path: Path) -> None:
    gxs.sql(f"CREATE OR REPLACE VIEW \"{view}\" AS SELECT * FROM read_parquet('{path}')")


def _known_view(gxs: GxSession, ref: str, settings: Settings, dataset: str | None,
                batch_dir: Path) -> None:
    """Known ids = every validated batch's rows plus this batch's own."""
    files = [str(p / f"{ref}.parquet") for p in list_batches("validated", dataset=dataset,
                                                              settings=settings)
             if (p / f"{ref}.parquet").exists()]
    own = batch_dir / f"{ref}.parquet"
    key = f"{ref[:-1]}_id"
    parts = []
    if files:
        parts.append(f"SELECT {key} FROM read_parquet({files!r}, union_by_name=true)")
    if own.exists():
        parts.append(f"SELECT {key} FROM read_parquet('{own}')")
    body = " UNION ALL ".join(parts) or f"SELECT NULL::VARCHAR AS {key} WHERE false"
    gxs.sql(f"CREATE OR REPLACE VIEW known_{ref} AS {body}")


def _judge(gxs: GxSession, batch_dir: Path, settings: Settings, dataset: str | None,
           ) -> tuple[list[Failure], dict[str, int], dict]:
    failures: list[Failure] = []
    rows: dict[str, int] = {}
    results: dict = {}
    if not (batch_dir / "events.parquet").exists():
        failures.append(Failure("events", "batch_has_events_file", None,
                                "events.parquet is missing from the batch"))
    stray = sorted(p.name for p in batch_dir.iterdir()
                   if p.is_file() and p.name not in {f"{t}.parquet" for t in TABLES})
    if stray:
        failures.append(Failure("batch", "known_files_only", None, f"unexpected files {stray}"))
    for ref in ("items", "users"):
        _known_view(gxs, ref, settings, dataset, batch_dir)
    for kind in TABLES:
        f = batch_dir / f"{kind}.parquet"
        if not f.exists():
            continue
        view = f"b_{kind}"
        try:
            _parquet_view(gxs, view, f)
            rows[kind] = int(gxs.sql(f'SELECT count(*) FROM "{view}"')[0][0])
        except Exception as e:  # duckdb raises its own types through SQLAlchemy
            msg = str(e).splitlines()[0][:300]
            failures.append(Failure(kind, "readable_parquet", None, f"cannot read {f}: {msg}"))
            continue
        res = gxs.run(view, kind)
        results[kind] = res.to_json_dict()
        fails, broken = _failures(kind, res)
        if broken:
            raise ValidatorError("; ".join(broken))
        failures += fails
    return failures, rows, results


def _move(src: Path, zone_dir: Path, name: str) -> Path:
    zone_dir.mkdir(parents=True, exist_ok=True)
    dst = zone_dir / name
    if dst.exists():
        dst = zone_dir / f"{name}~{uuid.uuid4().hex[:8]}"
    os.rename(src, dst)  # atomic: the whole batch appears at once, files untouched
    return dst


def _write_report(dst: Path, result: BatchResult, gx_results: dict, docs: Path | None) -> None:
    rep = dst / "_validation"
    tmp = dst / f".tmp-validation-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    (tmp / "reason.txt").write_text(result.reason() + "\n")
    (tmp / "result.json").write_text(json.dumps(
        {"batch": result.batch_id, "content_hash": result.content_hash,
         "failures": [asdict(f) for f in result.failures], "gx": gx_results}, indent=1,
        default=str))
    if docs is not None:
        (tmp / "data_docs.txt").write_text(f"{docs.as_uri()}\n")
    os.rename(tmp, rep)


def validate_batch(batch_dir: Path, gxs: GxSession, *, settings: Settings,
                   dataset: str | None = None, ledger: dict[str, dict] | None = None,
                   ) -> BatchResult:
    t0 = time.perf_counter()
    batch_id = batch_dir.name
    h = content_hash(batch_dir)
    ledger = _ledger(settings, dataset) if ledger is None else ledger
    seen = ledger.get(h)
    if seen is not None and seen["batch_id"] == batch_id:
        # the same bytes under the same name were judged before: a redelivery, nothing to do
        return BatchResult(batch_id, "unchanged", h, batch_dir,
                           note=f"already {seen['status']} at {seen['at']}")
    failures, rows, gx_results = _judge(gxs, batch_dir, settings, dataset)
    clash = find_batch(batch_id, dataset=dataset, settings=settings)
    if not failures and clash and clash[0] != "landing":
        failures.append(Failure("batch", "batch_id_unique", None,
                                f"batch id already {clash[0]} with other content"))
    status = "quarantined" if failures else "validated"
    result = BatchResult(batch_id, status, h, batch_dir, failures, rows)
    dst = _move(batch_dir, settings.zone("quarantine" if failures else "validated", dataset),
                batch_id)
    result.path = dst
    if failures:
        docs = None
        try:
            docs = gxs.build_docs()
        except Exception as e:  # docs are a convenience; the verdict and JSON must not depend on it
            result.note = f"data docs not built: {e}"
        _write_report(dst, result, gx_results, docs)
    result.seconds = time.perf_counter() - t0
    rec = {"batch_id": batch_id, "content_hash": h, "status": status, "path": str(dst),
           "at": dt.datetime.now(dt.UTC).isoformat(), "reason": result.reason()}
    _append_ledger(settings, dataset, rec)
    ledger[h] = rec
    return result


def validate(batches: Iterable[str] | None = None, *, dataset: str | None = None,
             settings: Settings | None = None,
             on_batch: Callable[[BatchResult], None] | None = None) -> list[BatchResult]:
    """Validate the named landing batches (default: all), oldest first, so a batch's catalogue
    rows are known before later batches reference them."""
    settings = settings or get_settings()
    if batches is None:
        dirs = list_batches("landing", dataset=dataset, settings=settings)
    else:
        dirs = []
        for b in batches:
            where = find_batch(b, dataset=dataset, settings=settings)
            if where is None:
                raise FileNotFoundError(f"batch {b!r} not found in {settings.lake(dataset)}")
            if where[0] != "landing":
                if on_batch:
                    on_batch(BatchResult(b, "unchanged", "", where[1], note=f"already {where[0]}"))
                continue
            dirs.append(where[1])
    out: list[BatchResult] = []
    if not dirs:
        return out
    ledger = _ledger(settings, dataset)
    workdir = Path(tempfile.mkdtemp(prefix="shoprec-validate-"))
    gxs = GxSession(settings, workdir)
    try:
        for d in sorted(dirs, key=lambda p: p.name):
            r = validate_batch(d, gxs, settings=settings, dataset=dataset, ledger=ledger)
            out.append(r)
            if on_batch:
                on_batch(r)
    finally:
        gxs.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return out
