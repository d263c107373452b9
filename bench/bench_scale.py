"""The whole chain at one scale (default: large, 10M events), stage by stage, each next to its
physical reference measured in the same run on the same files:

- validate (90 batches)      ↔ the same rules as ONE DuckDB query over every batch's files
                               (grouped per batch: what a batch-level verdict needs);
- dbt build (full, +1 day)   ↔ the per-user daily 1/7/30-day window features as plain DuckDB SQL
                               over the validated events;
- Feast materialize          ↔ a bulk write of the same rows (the latest row per entity of each
  (SQLite, Redis)              view, every feature a field) into the same kind of store: SQLite
                               executemany into Feast's table layout, Redis pipelined HSETs;
- training (--train)         ↔ none: its floor is absolute (≤ 20 min wall, ≤ 8 GiB).

Each stage runs as the CLI in a child process (`bench.report.run_measured`: wall and peak RSS of
that process tree), so the figures are what a user of `shoprec` gets; each reference runs in a
process of its own too (a child's peak RSS on Linux starts from its parent's RSS at fork, so the
benchmark's own process must stay small).

    python -m bench.bench_scale [large|small|tiny] [--train] [--keep]
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from bench.report import run_measured, write_section
from shoprec.children import redis_server
from shoprec.config import Settings
from shoprec.names import sql_literal

BIN = str(Path(sys.executable).parent / "shoprec")
DAYS = {"large": 90, "small": 60, "tiny": 30}
# the floors (#22): stage → (seconds, peak RSS MiB, max ratio to its reference)
FLOORS = {"validate": (15, 1024, 5), "dbt build (full)": (40, 3072, None),
          "dbt build (+1 day)": (10, None, None), "dbt build (+1 more day)": (10, None, None),
          "feast materialize (sqlite)": (45, None, None),
          "feast materialize (redis)": (45, None, None), "train": (1200, 8192, None)}


def _parquet(home: Path, zone: str, table: str) -> str:
    files = sorted((Settings(home=home).zone(zone, "shop")).glob(f"*/{table}.parquet"))
    return "[" + ", ".join(sql_literal(f) for f in files) + "]"


def ref_validate(home: Path, zone: str = "validated") -> float:
    """Every rule of the validation suites as one query, one row per batch."""
    ev, items, users = (_parquet(home, zone, t) for t in ("events", "items", "users"))
    sql = f"""
    WITH e AS (SELECT *, filename AS batch FROM read_parquet({ev}, filename = true)),
    known_items AS (SELECT DISTINCT item_id FROM read_parquet({items})),
    known_users AS (SELECT DISTINCT user_id FROM read_parquet({users})),
    s AS (SELECT *, coalesce(session_id, user_id) AS s_key FROM e),
    views AS (SELECT batch, s_key, item_id, min(event_timestamp) AS first_view FROM s
              WHERE event_type = 'view' GROUP BY ALL),
    funnel AS (SELECT p.batch, count(*) FILTER (WHERE v.item_id IS NULL) AS bad
               FROM (SELECT * FROM s WHERE event_type = 'purchase') AS p
               LEFT JOIN views AS v ON v.batch = p.batch AND v.s_key = p.s_key
                    AND v.item_id = p.item_id AND v.first_view <= p.event_timestamp
               GROUP BY p.batch)
    SELECT e.batch, count(*) AS n,
           count(*) - count(event_id) + count(*) - count(user_id) + count(*) - count(item_id)
             + count(*) - count(event_type) + count(*) - count(event_timestamp) AS nulls,
           count(*) - count(DISTINCT event_id) AS dup_ids,
           count(*) FILTER (WHERE event_type NOT IN ('view', 'click', 'add_to_cart',
                                                     'purchase')) AS bad_types,
           count(*) FILTER (WHERE event_timestamp < TIMESTAMPTZ '2000-01-01'
                            OR event_timestamp > now() + INTERVAL 10 MINUTE) AS bad_times,
           count(*) FILTER (WHERE price < 0 OR price > 1e6) AS bad_prices,
           count(*) FILTER (WHERE quantity < 1 OR quantity > 1000) AS bad_qty,
           count(*) FILTER (WHERE length(event_id) > 128 OR length(user_id) > 128
                            OR length(item_id) > 128) AS too_long,
           count(*) - count(DISTINCT (user_id, item_id, event_type, event_timestamp)) AS dups,
           count(*) FILTER (WHERE ki.item_id IS NULL) AS unknown_items,
           count(*) FILTER (WHERE ku.user_id IS NULL) AS unknown_users,
           any_value(f.bad) AS funnel
    FROM e LEFT JOIN known_items AS ki USING (item_id) LEFT JOIN known_users AS ku
         USING (user_id) LEFT JOIN funnel AS f ON f.batch = e.batch
    GROUP BY e.batch"""
    with duckdb.connect() as con:
        t0 = time.perf_counter()
        rows = con.execute(sql).fetchall()
        took = time.perf_counter() - t0
    assert len(rows) >= 1
    return took


def ref_windows(home: Path) -> float:
    """feat_user_daily's activity windows (1/7/30 days per user and active day) in plain SQL."""
    ev = _parquet(home, "validated", "events")
    sql = f"""
    WITH daily AS (
        SELECT user_id, CAST(event_timestamp AS DATE) AS d,
               count(*) FILTER (WHERE event_type = 'view') AS views,
               count(*) FILTER (WHERE event_type = 'click') AS clicks,
               count(*) FILTER (WHERE event_type = 'add_to_cart') AS carts,
               count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
               sum(price * quantity) FILTER (WHERE event_type = 'purchase') AS spend
        FROM read_parquet({ev}) GROUP BY ALL)
    SELECT count(*), sum(v7), sum(v30) FROM (
        SELECT user_id, d,
               sum(views) OVER w7 AS v7, sum(views) OVER w30 AS v30,
               sum(clicks) OVER w7, sum(clicks) OVER w30, sum(carts) OVER w7,
               sum(carts) OVER w30, sum(purchases) OVER w7, sum(purchases) OVER w30,
               sum(spend) OVER w30
        FROM daily
        WINDOW w7 AS (PARTITION BY user_id ORDER BY d RANGE BETWEEN INTERVAL 6 DAYS PRECEDING
                      AND CURRENT ROW),
               w30 AS (PARTITION BY user_id ORDER BY d RANGE BETWEEN INTERVAL 29 DAYS
                       PRECEDING AND CURRENT ROW))"""
    with duckdb.connect() as con:
        t0 = time.perf_counter()
        con.execute(sql).fetchall()
        return time.perf_counter() - t0


def _exports(home: Path) -> list[tuple[str, str]]:
    """(view, the glob of its day files) of each exported view (imports Feast: outside the
    timing)."""
    from feature_repo.data_sources import export_dir, export_glob
    from feature_repo.names import EXPORTS

    s = Settings(home=home)
    return [(view, export_glob(s.feature_exports("shop"), view)) for view in EXPORTS
            if any(export_dir(s.feature_exports("shop"), view).glob("*.parquet"))]


def _latest_rows(exports: list[tuple[str, str]]) -> list[tuple[str, list[str], list[tuple]]]:
    """Per feature export: (view, feature columns, the latest row per entity as text)."""
    out = []
    with duckdb.connect() as con:
        for view, path in exports:
            cols = [c for (c,) in con.execute(
                f"SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet("
                f"{sql_literal(path)}))").fetchall()]
            key = "item_id" if "item_id" in cols and "user_id" not in cols else "user_id"
            feats = [c for c in cols if c not in (key, "event_timestamp", "feature_date")]
            sel = ", ".join([key, *[f"CAST({c} AS VARCHAR)" for c in feats]])
            rows = con.execute(
                f"SELECT {sel} FROM read_parquet({sql_literal(path)}) QUALIFY row_number() OVER "
                f"(PARTITION BY {key} ORDER BY event_timestamp DESC) = 1").fetchall()
            out.append((view, feats, rows))
    return out


def ref_sqlite(home: Path) -> tuple[float, int]:
    """Read + dedup the exports in DuckDB, then one executemany per view into Feast's SQLite
    layout (entity_key, feature_name, value, event_ts, created_ts; one row per feature)."""
    exports = _exports(home)
    t0 = time.perf_counter()
    views = _latest_rows(exports)
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "online.db")
        for view, feats, rows in views:
            db.execute(f"CREATE TABLE t_{view} (entity_key BLOB, feature_name TEXT, value BLOB, "
                       f"event_ts timestamp, created_ts timestamp, "
                       f"PRIMARY KEY(entity_key, feature_name))")
            data = [(r[0].encode(), f, (v or "").encode(), None, None)
                    for r in rows for f, v in zip(feats, r[1:], strict=True)]
            n += len(data)
            db.executemany(f"INSERT OR REPLACE INTO t_{view} VALUES (?, ?, ?, ?, ?)", data)
            db.commit()
        db.close()
    return time.perf_counter() - t0, n


def ref_redis(home: Path, port: int) -> tuple[float, int]:
    """Read + dedup in DuckDB, then pipelined HSETs (one hash per entity, a field per feature)."""
    import redis

    exports = _exports(home)
    t0 = time.perf_counter()
    views = _latest_rows(exports)
    client = redis.Redis(port=port)
    n = 0
    for view, feats, rows in views:
        pipe = client.pipeline(transaction=False)
        for i, r in enumerate(rows, 1):
            pipe.hset(f"ref:{view}:{r[0]}", mapping={f: (v or "") for f, v in
                                                     zip(feats, r[1:], strict=True)})
            if i % 10_000 == 0:
                pipe.execute()
        pipe.execute()
        n += len(rows) * len(feats)
    took = time.perf_counter() - t0
    client.flushall()  # the benchmark's own server
    client.close()
    return took, n


def measure_ref(name: str, home: Path, *args: str) -> tuple[float, int]:
    """A reference in a process of its own: the benchmark's process stays small, so the peak
    RSS of each stage's child (which Linux starts from its parent's) is the stage's own."""
    _, _, out = run_measured([sys.executable, "-m", "bench.bench_scale", "--ref", name,
                              str(home), *args])
    seconds, n = out.strip().splitlines()[-1].split()
    return float(seconds), int(n)


def _ref_main(name: str, home: str, *args: str) -> None:
    fn = {"validate": lambda: (ref_validate(Path(home), "landing"), 0),
          "windows": lambda: (ref_windows(Path(home)), 0),
          "sqlite": lambda: ref_sqlite(Path(home)),
          "redis": lambda: ref_redis(Path(home), int(args[0]))}[name]
    seconds, n = fn()
    print(f"{seconds:.3f} {n}")


def _row(stage: str, secs: float, rss: float | None, ref: float | None = None,
         note: str = "") -> str:
    floor = FLOORS.get(stage)
    checks = []
    if floor:
        s_max, rss_max, ratio_max = floor
        checks.append(f"≤ {s_max} s: {'met' if secs <= s_max else 'NOT met'}")
        if rss_max and rss is not None:
            checks.append(f"≤ {rss_max} MiB: {'met' if rss <= rss_max else 'NOT met'}")
        if ratio_max and ref:
            checks.append(f"≤ {ratio_max}x: {'met' if secs / ref <= ratio_max else 'NOT met'}")
    return (f"| {stage} | {secs:.1f} | {'' if rss is None else f'{rss:.0f}'} | "
            f"{'' if ref is None else f'{ref:.1f}'} | "
            f"{'' if not ref else f'{secs / ref:.1f}x'} | {'; '.join(checks)} | {note} |")


def _published(out: str) -> str:
    """How `transform` published the analysts' snapshot, from its summary line."""
    line = next((ln for ln in out.splitlines() if "; analysts: " in ln), "")
    tail = line.split("; analysts: ", 1)[-1]
    return tail[tail.find("(") + 1:tail.rfind(")")] if "(" in tail else "?"


def _days_written(out: str) -> str:
    """How many day files `features materialize` exported again, from its summary line."""
    m = re.search(r"\((\d+ of \d+ day files written)\)", out)
    return m.group(1) if m else "?"


def main(scale: str = "large", train: bool = False, keep: bool = False) -> None:
    home = Path(tempfile.mkdtemp(prefix=f"shoprec-bench-scale-{scale}-"))
    env = {"SHOPREC_HOME": str(home)}
    days = DAYS[scale]
    rows: list[str] = []
    say = print
    try:
        # every day but the last two, which then land as the next days' deliveries
        t, rss, _ = run_measured([BIN, "data", "simulate", "--scale", scale, "--days",
                                  str(days - 2)], env)
        rows.append(_row("simulate", t, rss, note=f"{days - 2} day batches"))
        say(rows[-1])
        ref, _ = measure_ref("validate", home)
        t, rss, _ = run_measured([BIN, "validate"], env)
        rows.append(_row("validate", t, rss, ref, f"{days - 2} batches"))
        say(rows[-1])
        ref, _ = measure_ref("windows", home)
        t, rss, out = run_measured([BIN, "transform"], env)
        rows.append(_row("dbt build (full)", t, rss, ref, f"snapshot {_published(out)}"))
        say(rows[-1])
        t, rss, out = run_measured([BIN, "features", "materialize"], env)
        ref, n = measure_ref("sqlite", home)
        rows.append(_row("feast materialize (sqlite)", t, rss, ref,
                         f"incl. the export ({_days_written(out)}); reference writes {n:,} "
                         "feature values"))
        say(rows[-1])
        with redis_server() as (port, _):
            renv = {**env, "SHOPREC_FEAST__ONLINE_STORE": "redis",
                    "SHOPREC_FEAST__REDIS_CONNECTION": f"127.0.0.1:{port}"}
            t, rss, out = run_measured([BIN, "features", "materialize"], renv)
            ref, n = measure_ref("redis", home, str(port))
            rows.append(_row("feast materialize (redis)", t, rss, ref,
                             f"incl. the export ({_days_written(out)}); reference writes "
                             f"{n:,} feature values"))
            say(rows[-1])
        if train:
            t, rss, _ = run_measured([BIN, "train", "--max-minutes", "10"], env)
            rows.append(_row("train", t, rss, note="10-minute epoch budget, end to end"))
            say(rows[-1])
        # two more days, one at a time: each publish brings an older snapshot up to date (the
        # first publish copied, then left a spare for the second)
        for day, label in ((days - 1, "+1 day"), (days, "+1 more day")):
            run_measured([BIN, "data", "simulate", "--scale", scale, "--days", str(day)], env)
            t, rss, _ = run_measured([BIN, "validate"], env)
            rows.append(_row(f"validate ({label})", t, rss, note="1 batch"))
            t, rss, out = run_measured([BIN, "transform"], env)
            rows.append(_row(f"dbt build ({label})", t, rss,
                             note=f"incremental; snapshot {_published(out)}"))
            say(rows[-1])
            t, rss, out = run_measured([BIN, "features", "materialize"], env)
            rows.append(_row(f"feast materialize ({label}, sqlite)", t, rss,
                             note=f"incremental; export: {_days_written(out)}"))
            say(rows[-1])
    finally:
        if keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    body = ("| stage | wall s | peak RSS MiB | reference s | ratio | floors (#22) | notes |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            "Each stage is the CLI in a child process (wall time includes Python start-up and "
            "imports). References run on the same files, each in a process of its own: validate ↔ "
            "every rule of the suites as one DuckDB query grouped per batch (over the landing "
            "files, before validation moves them); dbt ↔ feat_user_daily's 1/7/30-day activity "
            "windows in plain DuckDB SQL; Feast ↔ reading the exports, keeping the latest row "
            "per entity (DuckDB) and writing every feature value in one executemany (SQLite, "
            "Feast's table layout) or pipelined HSETs (a Redis of the benchmark's own).\n")
    write_section(f"whole chain ({scale})", f"python -m bench.bench_scale {scale}"
                  + (" --train" if train else ""), body)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ref"]:
        _ref_main(*sys.argv[2:])
        raise SystemExit(0)
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(args[0] if args else "large", "--train" in sys.argv, "--keep" in sys.argv)
