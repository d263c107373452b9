"""`dbt build` on the large scale: a full build over 89 validated days, then the incremental
build after day 90 lands. Per-model timings from dbt's run results.

Acceptance floor: the full build under 120 s on the 2-core machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.report import run_measured, write_section
from shoprec.config import Settings

BIN = Path(sys.executable).parent / "shoprec"



def _timings(home: Path) -> list[tuple[str, str, float]]:
    target = Settings(home=home).dbt_target("shop")
    res = json.loads((target / "run_results.json").read_text())
    out = [(r["unique_id"], r["status"], r["execution_time"])
           for r in res["results"]]
    return sorted(out, key=lambda r: -r[2])


def main(scale: str = "large") -> None:
    home = Path(tempfile.mkdtemp(prefix="shoprec-bench-dbt-"))
    env = {"SHOPREC_HOME": str(home)}
    sh = [str(BIN)]
    try:
        days = {"large": 90, "small": 60, "tiny": 30}[scale]
        run_measured([*sh, "data", "simulate", "--scale", scale, "--days", str(days - 1)], env)
        run_measured([*sh, "validate"], env)
        full, full_rss, out = run_measured([*sh, "transform"], env)
        full_timings = _timings(home)
        events = subprocess.run(
            [sys.executable, "-c", "import duckdb,sys; print(duckdb.connect(sys.argv[1], "
             "read_only=True).execute('select count(*) from marts.fct_events').fetchone()[0])",
             str(Settings(home=home).analytics_snapshot("shop"))],
            capture_output=True, text=True, check=True).stdout.split()[0]
        run_measured([*sh, "data", "simulate", "--scale", scale], env)
        run_measured([*sh, "validate"], env)
        inc, inc_rss, _ = run_measured([*sh, "transform"], env)
        inc_timings = _timings(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    models = [t for t in full_timings if t[0].startswith("model.")]
    tests = [t for t in full_timings if not t[0].startswith("model.")]
    body = (f"| build | events in fct_events | wall s (incl. publish + Python start) | "
            f"peak RSS MiB |\n|---|---|---|---|\n"
            f"| full, {days - 1} days | {int(events):,} | {full:.1f} | {full_rss:.0f} |\n"
            f"| incremental, +1 day | | {inc:.1f} | {inc_rss:.0f} |\n\n"
            f"Full build, per model (2 dbt threads run models side by side, so times overlap):\n\n"
            "| node | status | s (full) | s (incremental) |\n|---|---|---|---|\n")
    inc_map = {t[0]: t[2] for t in inc_timings}
    for name, status, secs in models:
        body += f"| {name} | {status} | {secs:.1f} | {inc_map.get(name, 0):.1f} |\n"
    body += (f"\nData tests and unit tests: {len(tests)} nodes, "
             f"{sum(t[2] for t in tests):.1f} s in all (slowest: {tests[0][0]} "
             f"{tests[0][2]:.1f} s). Floor: full build < 120 s.\n")
    write_section(f"dbt build ({scale})", f"python -m bench.bench_transform {scale}", body)


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["large"]))
