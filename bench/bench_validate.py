"""`shoprec validate` over the large scale (90 day batches, ~10M events): wall time, peak RSS.

Acceptance floor: under 60 s on the 2-core machine. The simulation is set up first and not timed.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from bench.report import run_measured, write_section
from shoprec.config import Settings

BIN = Path(sys.executable).parent / "shoprec"


def main(scale: str = "large") -> None:
    home = Path(tempfile.mkdtemp(prefix="shoprec-bench-validate-"))
    env = {"SHOPREC_HOME": str(home)}
    workers = Settings().validation.workers
    try:
        run_measured([str(BIN), "data", "simulate", "--scale", scale], env=env)
        files = list(home.rglob("*.parquet"))
        events = sum(1 for f in files if f.name == "events.parquet")
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        wall, rss, out = run_measured([str(BIN), "validate"], env=env)
        m = re.search(r"validate (\d+) validated, (\d+) quarantined", out)
        again, _, _ = run_measured([str(BIN), "validate"], env=env)  # nothing left in landing
    finally:
        shutil.rmtree(home, ignore_errors=True)
    body = (f"| batches | rows (events+items+users) | wall s | rows/s | peak RSS MiB |\n"
            f"|---|---|---|---|---|\n| {events} | {rows:,} | {wall:.1f} | {rows / wall:,.0f} "
            f"| {rss:.0f} |\n\n{m.group(1)} validated, {m.group(2)} quarantined, "
            f"{workers} worker processes. "
            f"A second run with nothing in landing: {again:.1f} s. Wall time includes Python "
            f"start-up and the GX import (~4 s). Floor: < 60 s.\n")
    write_section(f"validate ({scale})", f"python -m bench.bench_validate {scale}", body)


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["large"]))
