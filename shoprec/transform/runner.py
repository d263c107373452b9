"""Run the dbt project programmatically (dbtRunner), with all output under SHOPREC_HOME."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shoprec.config import Settings, get_settings
from shoprec.lake_sync import synced

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"


class DbtError(RuntimeError):
    """dbt failed: a model did not build or a test failed (the message lists which)."""


@dataclass
class TransformReport:
    dataset: str
    warehouse: Path
    snapshot: Path | None
    seconds: float
    timings: list[tuple[str, str, float]] = field(default_factory=list)  # (node, status, s)
    counts: dict[str, int] = field(default_factory=dict)
    published: str | None = None  # how the analysts' snapshot was published, and how long

    def summary(self) -> str:
        c = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        return (f"{self.dataset}: dbt build {c} in {self.seconds:.1f} s → {self.warehouse}"
                + (f"; analysts: {self.snapshot}" if self.snapshot else "")
                + (f" ({self.published})" if self.published else ""))


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_dbt(args: list[str], *, settings: Settings | None = None, dataset: str | None = None):
    """Invoke dbt in-process on our project; returns dbt's result object, raises DbtError.
    The contract stubs are written first: every source then has a file to read."""
    from dbt.cli.main import dbtRunner

    from shoprec.transform.stubs import write_contract_stubs

    s = settings or get_settings()
    dataset = dataset or s.dataset
    s.warehouse(dataset).parent.mkdir(parents=True, exist_ok=True)
    write_contract_stubs(s, dataset)
    full = [*args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
            "--target-path", str(s.dbt_target(dataset)), "--log-path", str(s.dbt_logs(dataset))]
    with _env({**s.tool_env(dataset), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}):
        res = dbtRunner().invoke(full)
    if not res.success:
        raise DbtError(_describe_failure(args, res))
    return res


def _describe_failure(args: list[str], res) -> str:
    if res.exception is not None:
        return f"dbt {' '.join(args)} failed: {res.exception}"
    bad = []
    for r in getattr(res.result, "results", None) or []:
        status = str(r.status)
        if status in {"error", "fail", "runtime error"}:
            bad.append(f"{r.node.name}: {status}: {(r.message or '').strip()[:300]}")
    return f"dbt {' '.join(args)} failed: " + ("; ".join(bad) or "see the dbt log")


@synced(write=False)
def transform(*, settings: Settings | None = None, dataset: str | None = None,
              full_refresh: bool = False, select: str | None = None,
              publish: bool = True) -> TransformReport:
    """`dbt build` (models + tests + unit tests), then publish the analysts' snapshot. A full
    refresh when asked, or when a validated batch was retracted or superseded since the last
    build (dbt's increments are keyed by batch and would keep its old rows)."""
    from shoprec.lake import ensure_numbered
    from shoprec.lifecycle import rebuild_done, rebuild_needed
    from shoprec.transform.publish import publish as publish_snapshot

    s = settings or get_settings()
    dataset = dataset or s.dataset
    ensure_numbered(s, dataset)  # dbt orders deliveries by their numbers
    t0 = time.perf_counter()
    rebuild = select is None and rebuild_needed(s, dataset, "dbt")
    full_refresh = full_refresh or rebuild
    args = ["build"] + (["--full-refresh"] if full_refresh else []) + \
        (["--select", select] if select else [])
    res = run_dbt(args, settings=s, dataset=dataset)
    timings, counts = [], {}
    for r in res.result.results:
        status = str(r.status)
        counts[status] = counts.get(status, 0) + 1
        timings.append((r.node.unique_id, status, float(r.execution_time or 0.0)))
    if rebuild:
        rebuild_done(s, dataset, "dbt")
    pub = publish_snapshot(s, dataset, rebuilt=full_refresh and select is None) \
        if publish else None
    return TransformReport(dataset, s.warehouse(dataset), pub and pub.link,
                           time.perf_counter() - t0, timings, counts,
                           pub and f"{pub.how} in {pub.seconds:.1f} s")


def generate_docs(*, settings: Settings | None = None, dataset: str | None = None) -> Path:
    """`dbt docs generate`: the static docs site (index.html + catalog.json) under SHOPREC_HOME."""
    s = settings or get_settings()
    dataset = dataset or s.dataset
    run_dbt(["--quiet", "docs", "generate"], settings=s, dataset=dataset)
    return s.dbt_docs(dataset)
