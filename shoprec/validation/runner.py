"""Validate landing batches with Great Expectations on DuckDB; move each whole to validated/ or
quarantine/. Nothing is deleted; a batch whose content hash was judged before is not judged again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
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

log = logging.getLogger(__name__)
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

    def sql(self, statement: str) -> list:
        from sqlalchemy import text

        with self.engine.get_connection() as conn:
            res = conn.execute(text(statement))
            rows = res.fetchall() if res.returns_rows else []
            conn.commit()
        return rows

    def fetcher(self, view: str, limit: int = 5) -> Callable[[str], list]:
        """Run an UnexpectedRowsExpectation query against `view` (to show what it found)."""
        return lambda q: self.sql(f"SELECT * FROM ({q.replace('{batch}', view)}) LIMIT {limit}")

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


def _failures(table: str, result, fetch: Callable[[str], list[tuple]] | None = None,
              ) -> tuple[list[Failure], list[str]]:
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
            detail = desc + f"; {res.get('observed_value')} offending rows"
            if fetch is not None:  # SUMMARY results carry no rows: ask once, on failure only
                try:
                    rows = fetch(cfg.kwargs["unexpected_rows_query"])
                    detail = desc + f"; found {_describe_row(rows[0])}" if rows else detail
                except Exception:  # the verdict stands without the extra detail
                    pass
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


def _describe_row(row) -> str:
    m = dict(row._mapping)
    if {"n", "rate"} <= m.keys():
        first = next(iter(m))
        return (f"{m[first]:,} of {m['n']:,} rows ({m['rate']:.2%}), e.g. "
                f"{list(m.get('sample') or [])[:5]}")
    return str(m)


# ------------------------------------------------------------------------------ one batch


def _parquet_view(gxs: GxSession, view: str, path: Path) -> None:
    gxs.sql(f"CREATE OR REPLACE VIEW \"{view}\" AS SELECT * FROM read_parquet('{path}')")


def build_known_ids(dirs: list[Path], settings: Settings, dataset: str | None,
                    out: Path) -> Path:
    """The catalogue an event may reference: (kind, id, batch) for every validated batch (batch
    '' so it always counts) and every pending batch, so batch k+1 may use items that batch k
    introduced while both wait in landing. Unreadable files are left to their batch's verdict."""
    import duckdb

    parts = []
    validated = list_batches("validated", dataset=dataset, settings=settings)
    for kind, key in (("items", "item_id"), ("users", "user_id")):
        for d in [*validated, *dirs]:
            f = d / f"{kind}.parquet"
            if not f.exists():
                continue
            tag = "" if d.parent.name == "validated" else d.name
            parts.append(f"SELECT '{kind}' AS kind, CAST({key} AS VARCHAR) AS id, '{tag}' AS batch "
                         f"FROM read_parquet('{f}')")
    con = duckdb.connect()
    try:
        good = []
        for q in parts:
            try:
                con.execute(f"DESCRIBE {q}")
                good.append(q)
            except duckdb.Error:
                pass
        body = " UNION ALL ".join(good) or \
            "SELECT NULL::VARCHAR AS kind, NULL::VARCHAR AS id, NULL::VARCHAR AS batch WHERE false"
        con.execute(f"COPY ({body}) TO '{out}' (FORMAT parquet)")
    finally:
        con.close()
    return out


def _known_views(gxs: GxSession, known: Path, batch_id: str) -> None:
    for kind, key in (("items", "item_id"), ("users", "user_id")):
        gxs.sql(f"CREATE OR REPLACE VIEW known_{kind} AS SELECT id AS {key} FROM "
                f"read_parquet('{known}') WHERE kind = '{kind}' AND batch <= '{batch_id}'")


def _judge(gxs: GxSession, batch_dir: Path, known: Path,
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
    _known_views(gxs, known, batch_dir.name)
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
        fails, broken = _failures(kind, res, gxs.fetcher(view))
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


@dataclass
class Verdict:
    """What a worker found about one batch; the parent acts on it (moves, ledger, report)."""

    batch_dir: Path
    content_hash: str
    failures: list[Failure]
    rows: dict[str, int]
    gx_results: dict
    seconds: float
    docs: Path | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["batch_dir"], d["docs"] = str(self.batch_dir), self.docs and str(self.docs)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Verdict:
        return cls(**{**d, "batch_dir": Path(d["batch_dir"]),
                      "docs": d["docs"] and Path(d["docs"]),
                      "failures": [Failure(**f) for f in d["failures"]]})


def judge_batches(dirs: list[Path], settings: Settings, known: Path) -> list[Verdict]:
    """Run the suites over `dirs` in one GX session. Pure: reads the batches, moves nothing."""
    workdir = Path(tempfile.mkdtemp(prefix="shoprec-validate-"))
    gxs = GxSession(settings, workdir)
    out: list[Verdict] = []
    try:
        for d in dirs:
            t0 = time.perf_counter()
            h = content_hash(d)
            failures, rows, gx_results = _judge(gxs, d, known)
            out.append(Verdict(d, h, failures, rows, gx_results if failures else {},
                               time.perf_counter() - t0))
        if any(v.failures for v in out):
            try:
                docs = gxs.build_docs()
                for v in out:
                    v.docs = docs
            except Exception as e:  # docs are a convenience; the verdict must not depend on it
                log.warning("Data Docs not built: %s", e)
    finally:
        gxs.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def _judge_in_workers(chunks: list[list[Path]], settings: Settings, known: Path,
                      tmp: Path) -> list[Verdict]:
    """One `python -m shoprec.validation.worker` process per chunk, JSON in and out: no pickles,
    and no dependence on how the calling process was started (CLI, pytest, an Airflow task)."""
    import subprocess
    import sys

    procs = []
    for i, chunk in enumerate(chunks):
        req, res = tmp / f"request-{i}.json", tmp / f"result-{i}.json"
        req.write_text(json.dumps({"settings": settings.model_dump(mode="json"),
                                   "dirs": [str(d) for d in chunk], "known": str(known)}))
        procs.append((subprocess.Popen([sys.executable, "-m", "shoprec.validation.worker",
                                        str(req), str(res)], stderr=subprocess.PIPE, text=True),
                      res))
    verdicts, errors = [], []
    for proc, res in procs:
        _, err = proc.communicate()
        if proc.returncode == 0:
            verdicts += [Verdict.from_json(v) for v in json.loads(res.read_text())]
        elif proc.returncode == 3 and res.exists():
            errors.append(json.loads(res.read_text())["validator_error"])
        else:
            errors.append(f"validation worker exited {proc.returncode}: {err.strip()[-2000:]}")
    if errors:
        raise ValidatorError("; ".join(errors))
    return verdicts


def _apply(v: Verdict, settings: Settings, dataset: str | None,
           ledger: dict[str, dict]) -> BatchResult:
    """Move the batch whole to its zone, write the quarantine report, record the verdict."""
    batch_id = v.batch_dir.name
    failures = list(v.failures)
    clash = find_batch(batch_id, dataset=dataset, settings=settings)
    if clash and clash[0] != "landing" and not failures:
        failures.append(Failure("batch", "batch_id_unique", None,
                                f"batch id already {clash[0]} with other content"))
    status = "quarantined" if failures else "validated"
    result = BatchResult(batch_id, status, v.content_hash, v.batch_dir, failures, v.rows,
                         v.seconds)
    zone = "quarantine" if failures else "validated"
    result.path = _move(v.batch_dir, settings.zone(zone, dataset), batch_id)
    if failures:
        _write_report(result.path, result, v.gx_results, v.docs)
    rec = {"batch_id": batch_id, "content_hash": v.content_hash, "status": status,
           "path": str(result.path), "at": dt.datetime.now(dt.UTC).isoformat(),
           "reason": result.reason()}
    _append_ledger(settings, dataset, rec)
    ledger[v.content_hash] = rec
    return result


def validate(batches: Iterable[str] | None = None, *, dataset: str | None = None,
             settings: Settings | None = None, workers: int | None = None,
             force: bool = False, on_batch: Callable[[BatchResult], None] | None = None,
             ) -> list[BatchResult]:
    """Validate the named landing batches (default: all) and move each to its zone.

    Judging runs in `workers` processes (settings.validation.workers; GX's per-batch overhead
    is Python, so two cores halve it); moving and the ledger stay in this process, in batch order.
    `force` judges again batches whose bytes were judged before (after the rules changed).
    """
    settings = settings or get_settings()
    note = on_batch or (lambda _r: None)
    if batches is None:
        dirs = list_batches("landing", dataset=dataset, settings=settings)
    else:
        dirs = []
        for b in batches:
            where = find_batch(b, dataset=dataset, settings=settings)
            if where is None:
                raise FileNotFoundError(f"batch {b!r} not found in {settings.lake(dataset)}")
            if where[0] == "landing":
                dirs.append(where[1])
            else:
                note(BatchResult(b, "unchanged", "", where[1], note=f"already {where[0]}"))
    dirs = sorted(dirs, key=lambda p: p.name)
    ledger = _ledger(settings, dataset)
    out: list[BatchResult] = []
    todo = []
    for d in dirs:
        h = content_hash(d)
        seen = ledger.get(h)
        if seen is not None and seen["batch_id"] == d.name and not force:
            # the same bytes under the same name were judged before: a redelivery, no-op
            r = BatchResult(d.name, "unchanged", h, d,
                            note=f"already {seen['status']} at {seen['at']}")
            out.append(r)
            note(r)
        else:
            todo.append(d)
    if not todo:
        return out
    n = max(1, min(workers or settings.validation.workers, len(todo)))
    tmp = Path(tempfile.mkdtemp(prefix="shoprec-known-"))
    try:
        known = build_known_ids(todo, settings, dataset, tmp / "known.parquet")
        chunks = [todo[i::n] for i in range(n)]
        if n == 1:
            verdicts = judge_batches(todo, settings, known)
        else:
            verdicts = _judge_in_workers(chunks, settings, known, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for v in sorted(verdicts, key=lambda v: v.batch_dir.name):
        r = _apply(v, settings, dataset, ledger)
        out.append(r)
        note(r)
    return out
