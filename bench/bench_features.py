"""Feast: materialization throughput on a built warehouse, and online lookup latency (one user,
and a batch of 100 users) on SQLite and on Redis, in-process through the Feast SDK.

Run after a build of the scale (`shoprec data simulate/validate/transform`), or let this script
build it in a temp home first (`python -m bench.bench_features large`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.report import run_measured, write_section

BIN = Path(sys.executable).parent / "shoprec"


def _percentiles(xs: list[float]) -> tuple[float, float]:
    a = np.array(xs) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def _lookups(store, users: list[str], service) -> dict[str, tuple[float, float]]:
    out = {}
    for label, batch, n in (("1 user", 1, 2000), ("100 users", 100, 300)):
        rng = np.random.default_rng(0)
        times = []
        for k in range(n + 20):
            rows = [{"user_id": u} for u in rng.choice(users, batch)]
            t0 = time.perf_counter()
            store.get_online_features(features=service, entity_rows=rows).to_dict()
            if k >= 20:  # warm-up excluded
                times.append(time.perf_counter() - t0)
        out[label] = _percentiles(times)
    return out


def main(scale: str = "large") -> None:
    from feature_repo.data_sources import export_glob
    from feature_repo.names import SERVING_SERVICE, USER_DAILY
    from shoprec.config import FeastSettings, Settings
    from shoprec.features.materialize import materialize, teardown
    from shoprec.features.store import get_store

    home = Path(tempfile.mkdtemp(prefix="shoprec-bench-feast-"))
    env = {"SHOPREC_HOME": str(home)}
    try:
        for cmd in (["data", "simulate", "--scale", scale], ["validate"], ["transform"]):
            run_measured([str(BIN), *cmd], env)
        rows = {}
        results = {}
        for backend in ("sqlite", "redis"):
            s = Settings(home=home, feast=FeastSettings(
                online_store=backend, project=f"bench_{backend}_{uuid.uuid4().hex[:6]}"))
            t0 = time.perf_counter()
            rep = materialize(settings=s)
            secs = time.perf_counter() - t0
            rows = rep.exported
            store = get_store(s)
            import duckdb

            users = [u for (u,) in duckdb.connect().execute(
                f"select distinct user_id from read_parquet("
                f"'{export_glob(s.feature_exports(), USER_DAILY)}')").fetchall()]
            svc = store.get_feature_service(SERVING_SERVICE)
            results[backend] = (secs, _lookups(store, users, svc), len(users))
            teardown(s)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    total = sum(rows.values())
    body = ("Materialization (export of dbt's feature tables + `materialize` of 4 views, first "
            f"run, full history): {total:,} offline feature rows "
            f"({', '.join(f'{k} {v:,}' for k, v in rows.items())}).\n\n"
            "| online store | materialize s | offline rows/s | 1 user p50 ms | 1 user p99 ms | "
            "100 users p50 ms | 100 users p99 ms |\n|---|---|---|---|---|---|---|\n")
    for backend, (secs, lat, _n) in results.items():
        body += (f"| {backend} | {secs:.1f} | {total / secs:,.0f} | {lat['1 user'][0]:.2f} | "
                 f"{lat['1 user'][1]:.2f} | {lat['100 users'][0]:.2f} | "
                 f"{lat['100 users'][1]:.2f} |\n")
    body += (f"\nLookups go through the `{SERVING_SERVICE}` feature service (live sequence + "
             "6 user features: 9 values per user), random users, in-process SDK calls after 20 "
             "warm-up calls; 2,000 single and 300 batch lookups.\n")
    write_section(f"feast ({scale})", f"python -m bench.bench_features {scale}", body)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main(*(sys.argv[1:2] or ["large"]))
