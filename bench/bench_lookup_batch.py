"""What one user's online features cost through Feast's SDK when users are looked up together.

The serving floor of #20 (the small catalogue at >= 40 % of a bare FastAPI endpoint's max req/s,
measured at 6,000 req/s: 2,400 req/s on the one core the server gets) leaves ~0.42 ms of CPU per
request for everything. This measures the part no serving design can leave out while the
features come "from the Feast online store through its feature service": the production model's
feature service read with `get_online_features`, one call for B users at once (micro-batching
requests), per user, on one core, for the small shop on SQLite and on a Redis of its own.

    python -m bench.bench_lookup_batch      # prepares a small shop (~4 min), then measures
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_serving import DATASET, on_core, prepare, real_users, settings_for
from bench.report import write_section

SIZES = (1, 8, 32, 64, 128)
ROWS = 3_000  # rows looked up per batch size (after a warm-up of as many)


def measure(s, users: list[str]) -> dict[int, float]:
    """batch size → median ms per user of `get_online_features(...).to_dict()`."""
    from feature_repo.names import SERVING_SERVICE, USER_KEY
    from shoprec.features.store import get_store

    store = get_store(s, DATASET)
    service = store.get_feature_service(SERVING_SERVICE)
    rng = np.random.default_rng(4)
    out = {}
    for b in SIZES:
        calls = max(ROWS // b, 20)
        times = []
        for k in range(2 * calls):
            rows = [{USER_KEY: users[i]} for i in rng.integers(0, len(users), b)]
            t0 = time.perf_counter()
            store.get_online_features(features=service, entity_rows=rows).to_dict()
            if k >= calls:
                times.append((time.perf_counter() - t0) * 1000 / b)
        out[b] = float(np.median(times))
    return out


def main() -> None:
    from bench.bench_serving import own_redis

    home = Path(tempfile.mkdtemp(prefix="shoprec-bench-lookup-"))
    logs = home / "logs-bench"
    logs.mkdir()
    core = max(os.sched_getaffinity(0))
    try:
        prep = prepare(home, "small")
        users = real_users(home, 3000, 1)
        results = {}
        with on_core(core):
            results["sqlite"] = measure(settings_for(home, None), users)
        with own_redis(logs, None) as (port, _):
            from shoprec.features.materialize import materialize

            rs = settings_for(home, port)
            materialize(rs, DATASET)
            with on_core(core):
                results["redis"] = measure(rs, users)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    head = "| store | " + " | ".join(f"B = {b}" for b in SIZES) + " |\n"
    head += "|---|" + "---|" * len(SIZES) + "\n"
    rows = "".join(f"| {k} | " + " | ".join(f"{v[b]:.3f}" for b in SIZES) + " |\n"
                   for k, v in results.items())
    best = min(min(v.values()) for v in results.values())
    body = (f"Small shop ({prep['items']:,} items, feature service of model {prep['version']}), "
            f"{len(users):,} users; median ms of CPU-bound wall time per user, one call of "
            f"`get_online_features(features=<service>, entity_rows=<B users>).to_dict()` on "
            f"one core, {ROWS:,}+ users per size after as many warm-up.\n\n" + head + rows +
            f"\nThe cheapest a user's lookup gets is {best:.3f} ms, against ~0.42 ms for a whole "
            "request at 2,400 req/s on one core (the serving floor's 40 % of the bare endpoint's "
            "6,000 req/s), before HTTP, scoring and the answer.\n")
    write_section("serving: batched Feast lookups", "python -m bench.bench_lookup_batch", body)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
