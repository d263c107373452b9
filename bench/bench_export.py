"""Feast's offline export at scale: day files written again only where dbt changed them.

Builds a home (every day but the last), then times, in this process, what `features
materialize` runs first: the export of dbt's four feature tables, in full, again with nothing
new, and after one more day's dbt build. The reference is the same rows to one Parquet file per
table in one COPY each (what the export cost before it kept day files, without its sort).

    python -m bench.bench_export [large|small|tiny]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from bench.report import run_measured, write_section

BIN = str(Path(sys.executable).parent / "shoprec")
DAYS = {"large": 90, "small": 60, "tiny": 30}


def _reference(settings, out: Path) -> float:
    """Each feature table to one Parquet file, one COPY each."""
    from feature_repo.names import EXPORTS
    from shoprec.names import sql_literal

    t0 = time.perf_counter()
    with duckdb.connect(str(settings.internal_snapshot("shop")), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        for view, table in EXPORTS.items():
            con.execute(f"COPY (SELECT * EXCLUDE (dbt_invocation_id, built_at) FROM {table}) TO "
                        f"{sql_literal(out / f'{view}.parquet')} (FORMAT parquet, "
                        f"COMPRESSION zstd)")
    return time.perf_counter() - t0


def _export(settings) -> tuple[float, int, int, int]:
    from shoprec.features.export import export_features

    t0 = time.perf_counter()
    done = export_features(settings, "shop")
    secs = time.perf_counter() - t0
    return (secs, sum(e.rows for e in done.values()), sum(e.written for e in done.values()),
            sum(e.days for e in done.values()))


def main(scale: str = "large") -> None:
    from shoprec.config import Settings

    home = Path(tempfile.mkdtemp(prefix=f"shoprec-bench-export-{scale}-"))
    env = {"SHOPREC_HOME": str(home)}
    s = Settings(home=home)
    days = DAYS[scale]
    rows = []
    try:
        for cmd in (["data", "simulate", "--scale", scale, "--days", str(days - 1)],
                    ["validate"], ["transform"]):
            run_measured([BIN, *cmd], env)
        ref_dir = home / "reference"
        ref_dir.mkdir()
        ref = _reference(s, ref_dir)
        for label in ("in full (first export)", "again, nothing new"):
            secs, n, written, of = _export(s)
            rows.append((label, secs, n, written, of, ref))
        for cmd in (["data", "simulate", "--scale", scale, "--days", str(days)],
                    ["validate"], ["transform"]):
            run_measured([BIN, *cmd], env)
        ref = _reference(s, ref_dir)
        secs, n, written, of = _export(s)
        rows.append(("after one more day's dbt build", secs, n, written, of, ref))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    body = ("| export | s | feature rows | day files written | reference s | ratio |\n"
            "|---|---|---|---|---|---|\n"
            + "\n".join(f"| {label} | {secs:.1f} | {n:,} | {w} of {of} | {ref:.1f} | "
                        f"{secs / ref:.2f}x |" for label, secs, n, w, of, ref in rows)
            + "\n\nThe export of dbt's four feature tables that `shoprec features materialize` "
            "runs before Feast reads them, timed in one process on a home built with every day "
            f"but the last ({days - 1} days), then after the last day's `validate` and "
            "`transform`. Reference: the same rows to one Parquet file per table, one COPY each "
            "(what every export cost when a view was one file, less its sort).")
    write_section(f"feast export ({scale})", f"python -m bench.bench_export {scale}", body)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "large")
