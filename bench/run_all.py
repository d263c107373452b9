"""Run every benchmark in turn; each rewrites its own section of BENCHMARKS.md."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_simulate, bench_validate  # noqa: E402

if __name__ == "__main__":
    bench_simulate.main()
    bench_validate.main()
