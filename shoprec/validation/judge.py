"""Judge landing batches: read them, run the suites, return verdicts. Moves nothing, so a worker
process can judge while the parent alone moves batches and writes the ledger."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shoprec.config import Settings
from shoprec.contract import SCHEMAS
from shoprec.lake import TABLES, content_hash, iter_files, list_batches, position
from shoprec.names import sql_literal
from shoprec.validation.failures import Failure, result_failures
from shoprec.validation.gx_session import GxSession

log = logging.getLogger(__name__)


class ValidatorError(RuntimeError):
    """The validator itself broke (an expectation raised): neither pass nor quarantine a batch."""


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
    # events whose item/user ids only a pending batch (`needs`) or a quarantined one (`held`)
    # introduced, by that batch: the parent decides (waits, warns or fails) once it knows which
    # pending batches passed
    needs: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["batch_dir"], d["docs"] = str(self.batch_dir), self.docs and str(self.docs)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Verdict:
        return cls(**{**d, "batch_dir": Path(d["batch_dir"]),
                      "docs": d["docs"] and Path(d["docs"]),
                      "failures": [Failure(**f) for f in d["failures"]]})


def build_known_ids(dirs: list[Path], settings: Settings, dataset: str | None,
                    out: Path) -> Path:
    """Every item and user id that exists: (kind, id, batch, state) for validated batches, the
    pending ones (batch k+1 may use items that batch k introduced while both wait in landing)
    and quarantined ones (their ids are held, not unknown: a later batch that uses them is not
    wrong, it waits for the fix). Unreadable files are left to their batch's verdict."""
    import duckdb

    parts = []
    zones = {"validated": list_batches("validated", dataset=dataset, settings=settings),
             "pending": dirs,
             "held": [d for d in list_batches("quarantine", dataset=dataset, settings=settings)
                      if not _superseded(d)]}
    for kind, key in (("items", "item_id"), ("users", "user_id")):
        for state, batch_dirs in zones.items():
            for d in batch_dirs:
                f = d / f"{kind}.parquet"
                if not f.exists():
                    continue
                arrival = position(d)
                parts.append(f"SELECT '{kind}' AS kind, CAST({key} AS VARCHAR) AS id, "
                             f"{sql_literal(d.name)} AS batch, '{state}' AS state, "
                             f"{arrival}::BIGINT AS arrival FROM read_parquet({sql_literal(f)})")
    con = duckdb.connect()
    try:
        good = []
        for q in parts:
            try:
                con.execute(f"DESCRIBE {q}")
                good.append(q)
            except duckdb.Error:
                pass
        body = " UNION ALL ".join(good) or (
            "SELECT NULL::VARCHAR AS kind, NULL::VARCHAR AS id, NULL::VARCHAR AS batch, "
            "NULL::VARCHAR AS state, NULL::BIGINT AS arrival WHERE false")
        con.execute(f"COPY ({body}) TO {sql_literal(out)} (FORMAT parquet)")
    finally:
        con.close()
    return out


def judge_batches(dirs: list[Path], settings: Settings, known: Path) -> list[Verdict]:
    """Run the suites over `dirs` in one GX session."""
    workdir = Path(tempfile.mkdtemp(prefix="shoprec-validate-"))
    gxs = GxSession(settings, workdir)
    out: list[Verdict] = []
    try:
        for d in dirs:
            t0 = time.perf_counter()
            h = content_hash(d)
            failures, rows, gx_results, (needs, held) = _judge(gxs, d, known)
            out.append(Verdict(d, h, failures, rows, gx_results if failures else {},
                               time.perf_counter() - t0, needs=needs, held=held))
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


def judge_in_workers(chunks: list[list[Path]], settings: Settings, known: Path,
                     tmp: Path) -> list[Verdict]:
    """One `python -m shoprec.validation.worker` process per chunk, JSON in and out: no pickles,
    and no dependence on how the calling process was started (CLI, pytest, an Airflow task).
    Workers die with this process, and are terminated and reaped on every way out of here."""
    import os
    import subprocess
    import sys

    from shoprec.lifeline import reap

    procs, outcomes = [], []
    try:
        for i, chunk in enumerate(chunks):
            req, res = tmp / f"request-{i}.json", tmp / f"result-{i}.json"
            req.write_text(json.dumps({"settings": settings.model_dump(mode="json"),
                                       "dirs": [str(d) for d in chunk], "known": str(known)}))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "shoprec.validation.worker", str(req), str(res),
                 str(os.getpid())], stderr=subprocess.PIPE, text=True))
            outcomes.append(res)
        errs = [p.communicate()[1] for p in procs]
    finally:
        reap(procs)
    verdicts, errors = [], []
    for proc, res, err in zip(procs, outcomes, errs, strict=True):
        if proc.returncode == 0:
            verdicts += [Verdict.from_json(v) for v in json.loads(res.read_text())]
        elif proc.returncode == 3 and res.exists():
            errors.append(json.loads(res.read_text())["validator_error"])
        else:
            errors.append(f"validation worker exited {proc.returncode}: {err.strip()[-2000:]}")
    if errors:
        raise ValidatorError("; ".join(errors))
    return verdicts


def _judge(gxs: GxSession, batch_dir: Path, known: Path,
           ) -> tuple[list[Failure], dict[str, int], dict, tuple[dict, dict]]:
    failures: list[Failure] = []
    rows: dict[str, int] = {}
    results: dict = {}
    deps: tuple[dict, dict] = ({}, {})
    names = [f"{t}.parquet" for t in TABLES]
    if not any((batch_dir / n).is_file() for n in names):  # any subset is a delivery, not none
        failures.append(Failure("batch", "batch_has_a_table", None,
                                f"no table file; a batch holds one or more of {names}"))
    stray = sorted(p.name for p in iter_files(batch_dir) if p.name not in names)
    if stray:
        failures.append(Failure("batch", "known_files_only", None, f"unexpected files {stray}"))
    _known_views(gxs, known, batch_dir)
    for kind in TABLES:
        f = batch_dir / f"{kind}.parquet"
        if not f.exists():
            continue
        view = f"b_{kind}"
        try:
            absent = _parquet_view(gxs, view, f, kind)
            rows[kind] = int(gxs.sql(f'SELECT count(*) FROM "{view}"')[0][0])
        except Exception as e:  # duckdb raises its own types through SQLAlchemy
            msg = str(e).splitlines()[0][:300]
            failures.append(Failure(kind, "readable_parquet", None, f"cannot read {f}: {msg}"))
            continue
        res = gxs.run(view, kind)
        results[kind] = res.to_json_dict()
        fails, broken = result_failures(kind, res, gxs.fetcher(view))
        if broken:
            raise ValidatorError("; ".join(broken))
        for x in fails:
            if x.rule == "expect_table_columns_to_match_set" and absent:
                x.detail += f" (optional columns absent, read as null: {absent})"
        failures += fails
        if kind == "events" and not fails:
            deps = _dependencies(gxs, view, gxs.settings.validation.skip_rules)
    return failures, rows, results, deps


def _parquet_view(gxs: GxSession, view: str, path: Path, kind: str) -> list[str]:
    """The file as a view in which an optional column it leaves out is a typed column of nulls:
    optional means it may be absent (dbt reads it so too). Returns the absent ones."""
    from shoprec.validation.suites import duck_type

    src = f"read_parquet({sql_literal(path)})"
    present = {str(r[0]).lower() for r in gxs.sql(f"DESCRIBE SELECT * FROM {src}")}
    absent = [f for f in SCHEMAS[kind] if f.nullable and f.name not in present]
    fill = "".join(f', CAST(NULL AS {duck_type(f)}) AS "{f.name}"' for f in absent)
    gxs.sql(f'CREATE OR REPLACE VIEW "{view}" AS SELECT *{fill} FROM {src}')
    return [f.name for f in absent]


def _superseded(batch_dir: Path) -> bool:
    """A version replaced by a correction holds nothing: what it dropped is simply unknown."""
    reason = batch_dir / "_validation" / "reason.txt"
    return "~superseded" in batch_dir.name or (
        reason.is_file() and reason.read_text().startswith("superseded:"))


def _known_views(gxs: GxSession, known: Path, batch_dir: Path) -> None:
    """known_items/known_users: what exists for this batch (validated, pending batches that
    arrived up to it, held in quarantine); id_source: for each id this batch may use that is
    not validated, the batch that brings it (the first pending arrival, else the quarantined
    one holding it)."""
    me = sql_literal(batch_dir.name)
    arrival = position(batch_dir)
    gxs.sql(f"CREATE OR REPLACE VIEW known_ids AS SELECT * FROM read_parquet({sql_literal(known)}) "
            f"WHERE state <> 'pending' OR arrival <= {arrival} OR batch = {me}")
    for kind, key in (("items", "item_id"), ("users", "user_id")):
        gxs.sql(f"CREATE OR REPLACE VIEW known_{kind} AS SELECT DISTINCT id AS {key} "
                f"FROM known_ids WHERE kind = '{kind}'")
    gxs.sql(f"""CREATE OR REPLACE VIEW id_source AS
        SELECT kind, id, coalesce(arg_min(batch, arrival) FILTER (WHERE state = 'pending'),
                                  min(batch)) AS batch,
               CASE WHEN count(*) FILTER (WHERE state = 'pending') > 0 THEN 'pending'
                    ELSE 'held' END AS state
        FROM known_ids GROUP BY kind, id
        HAVING count(*) FILTER (WHERE state = 'validated') = 0
           AND count(*) FILTER (WHERE state = 'pending' AND batch = {me}) = 0""")


def _dependencies(gxs: GxSession, view: str, skip: list[str],
                  ) -> tuple[dict[str, int], dict[str, int]]:
    """(pending batch → events needing it, quarantined batch → events needing it). A kind whose
    unknown-reference rule is off (`skip`) makes no dependency: an id no batch brought passes
    then, so one that a held batch brought has nothing to wait for."""
    parts = [f"""SELECT e.event_id, s.state, s.batch FROM "{view}" AS e JOIN id_source AS s
                   ON s.kind = '{kind}' AND s.id = CAST(e.{key} AS VARCHAR)"""
             for kind, key in (("items", "item_id"), ("users", "user_id"))
             if f"unknown_{kind}" not in skip]
    if not parts:
        return {}, {}
    rows = gxs.sql(f"SELECT state, batch, count(*) FROM ({' UNION '.join(parts)}) AS d "
                   "GROUP BY 1, 2 ORDER BY 2")
    needs = {b: int(n) for state, b, n in rows if state == "pending"}
    held = {b: int(n) for state, b, n in rows if state == "held"}
    return needs, held
