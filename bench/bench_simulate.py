"""`shoprec data simulate --scale large`: wall time and peak RSS, each in a fresh process.

Acceptance floor: 10M events in under 60 s with peak RSS under 2 GB on the 2-core machine.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from bench.report import run_measured, write_section

BIN = Path(sys.executable).parent / "shoprec"


def main(scale: str = "large", repeats: int = 3) -> None:
    rows = []
    for i in range(repeats):
        home = Path(tempfile.mkdtemp(prefix="shoprec-bench-"))
        try:
            wall, rss, out = run_measured([str(BIN), "data", "simulate", "--scale", scale],
                                          env={"SHOPREC_HOME": str(home)})
            events = int(re.search(r"([\d,]+) events", out).group(1).replace(",", ""))
            size = sum(f.stat().st_size for f in home.rglob("*.parquet")) / 2**20
        finally:
            shutil.rmtree(home, ignore_errors=True)
        rows.append((i + 1, events, wall, events / wall, rss, size))
    best = min(rows, key=lambda r: r[2])
    body = ("| run | events | wall s | events/s | peak RSS MiB | Parquet MiB |\n"
            "|---|---|---|---|---|---|\n")
    body += "".join(f"| {r[0]} | {r[1]:,} | {r[2]:.1f} | {r[3]:,.0f} | {r[4]:.0f} | {r[5]:.0f} |\n"
                    for r in rows)
    body += (f"\nBest of {repeats}: {best[1]:,} events in {best[2]:.1f} s; worst peak RSS "
             f"{max(r[4] for r in rows):.0f} MiB (floor: < 60 s, < 2048 MiB).\n")
    write_section(f"simulate ({scale})", f"python -m bench.bench_simulate {scale}", body)


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["large"]))
