"""How long the dag-processor takes to parse each DAG file.

    python -m bench.bench_dag_parse

Airflow 3's dag-processor parses every file again every few seconds, each in a child process of
its own that already holds Airflow's imports. Each file here is parsed the same way: a fresh
Python process imports Airflow's DagBag (not timed), then `DagBag(dag_folder=<file>)` parses the
file, and its own `dagbag_stats` duration (what the dag-processor reports) is the figure. The
first parse of a new home runs `dbt parse` once to cache dbt's manifest (reported apart); every
later one reads the cache. A test checks that a cached parse starts no process at all
(`tests/test_dags.py`); the times are measured here, not asserted there.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.report import write_section

ROOT = Path(__file__).resolve().parent.parent
REPEAT = 5
CHILD = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
(stat,) = bag.dagbag_stats
print(json.dumps({"s": stat.duration.total_seconds(), "dags": stat.dag_num,
                  "tasks": stat.task_num, "errors": len(bag.import_errors)}))
"""


def parse(path: Path, env: dict[str, str]) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env, capture_output=True,
                       text=True, check=True, timeout=600)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if out["errors"]:
        raise SystemExit(f"{path.name}: import errors while parsing:\n{r.stderr[-2000:]}")
    return out


def measure() -> tuple[float, list[tuple[str, int, int, list[float]]]]:
    files = sorted((ROOT / "dags").glob("*.py"))
    with tempfile.TemporaryDirectory(prefix="shoprec-parse-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPREC_", "AIRFLOW"))}
        env |= {"SHOPREC_HOME": home, "AIRFLOW_HOME": str(Path(home) / "airflow")}
        first = parse(ROOT / "dags" / "shoprec_pipeline.py", env)["s"]  # runs `dbt parse`
        rows = []
        for f in files:
            runs = [parse(f, env) for _ in range(REPEAT)]
            rows.append((f.name, runs[0]["dags"], runs[0]["tasks"], [r["s"] for r in runs]))
    return first, rows


def report(first: float, rows: list[tuple[str, int, int, list[float]]]) -> str:
    lines = [f"Each file parsed {REPEAT} times, each time in a fresh process (Airflow imported "
             "first, not timed); seconds are the DagBag's own `dagbag_stats` duration, as the "
             "dag-processor reports it, with dbt's manifest cached. The first parse of a new "
             f"home, which runs `dbt parse` once to fill that cache: {first:.2f} s.", "",
             "| DAG file | DAGs | tasks | median s | max s |", "|---|---|---|---|---|"]
    for name, dags, tasks, secs in rows:
        lines.append(f"| `{name}` | {dags} | {tasks} | {statistics.median(secs):.2f} | "
                     f"{max(secs):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    first, rows = measure()
    body = report(first, rows)
    print(body)
    write_section("airflow: DAG parsing", "python -m bench.bench_dag_parse", body)


if __name__ == "__main__":
    main()
