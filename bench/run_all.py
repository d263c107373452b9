"""Run every benchmark in turn; each rewrites its own section of BENCHMARKS.md."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (  # noqa: E402
    bench_airflow,
    bench_dag_parse,
    bench_export,
    bench_features,
    bench_scale,
    bench_serving,
    bench_simulate,
    bench_training,
    bench_transform,
    bench_validate,
)

if __name__ == "__main__":
    bench_simulate.main()
    bench_validate.main()
    bench_transform.main()
    bench_features.main("tiny")
    bench_features.main("large")
    bench_export.main()
    bench_training.main()
    bench_serving.main()
    bench_airflow.main()
    bench_dag_parse.main()
    bench_scale.main()
