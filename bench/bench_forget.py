"""Time to forget one user (`shoprec privacy forget`) on a built shop, step by step, and the
audit that proves it (`shoprec privacy find`), each as the CLI in a child process (wall and peak
RSS of that process).

    python -m bench.bench_forget [large|small|tiny] [--home PATH]

Without --home it builds the shop first (simulate, validate, transform, materialize: the large
scale takes ~10 minutes); with --home it uses one already built (it forgets a user of it).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb

from bench.bench_scale import _published
from bench.report import run_measured, write_section
from shoprec.config import Settings

BIN = str(Path(sys.executable).parent / "shoprec")
DAYS = {"large": 89, "small": 60, "tiny": 30}


def busiest(home: Path) -> tuple[str, int, int]:
    """(a user with the most events, their events, all events) from the analysts' snapshot."""
    s = Settings(home=home)
    with duckdb.connect(str(s.internal_snapshot(s.dataset)), read_only=True) as con:
        user, n = con.execute("SELECT user_id, count(*) FROM marts.fct_events GROUP BY 1 "
                              "ORDER BY 2 DESC, 1 LIMIT 1").fetchone()
        total = con.execute("SELECT count(*) FROM marts.fct_events").fetchone()[0]
    return user, n, total


def main(scale: str = "large", home: Path | None = None) -> None:
    own = home is None
    home = home or Path(tempfile.mkdtemp(prefix=f"shoprec-bench-forget-{scale}-"))
    env = {"SHOPREC_HOME": str(home)}
    built = []
    try:
        if own:
            for cmd in (["data", "simulate", "--scale", scale, "--days", str(DAYS[scale])],
                        ["validate"], ["transform"], ["features", "materialize"]):
                t, _, out = run_measured([BIN, *cmd], env)
                how = f" (snapshots: {_published(out)})" if cmd == ["transform"] else ""
                built.append(f"`shoprec {' '.join(cmd)}` {t:.1f} s{how}")
                print(built[-1])
        user, n, total = busiest(home)
        t_forget, rss, out = run_measured([BIN, "privacy", "forget", user], env)
        print(out[-600:])
        rec = [json.loads(x) for x in
               Settings(home=home).forget_log().read_text().splitlines()][-1]
        t_find, rss_find, found = run_measured([BIN, "privacy", "find", user], env)
        assert "found nowhere" in found, found[-2000:]
    finally:
        if own:
            shutil.rmtree(home, ignore_errors=True)
    steps = " | ".join(f"{rec['timings'].get(k, 0):.1f}" for k in
                       ("lake", "dbt", "feast", "snapshots", "text"))
    body = (f"The {scale} shop ({total:,} events); the forgotten user is the one with the most "
            f"events ({n:,}). " + (f"Built first: {'; '.join(built)}. " if built else "") +
            "Each command is the CLI in a child process.\n\n"
            "| command | wall s | peak RSS MiB | lake s | dbt full s | Feast full s | "
            "older snapshots s | text files s |\n|---|---|---|---|---|---|---|---|\n"
            f"| `shoprec privacy forget USER` | {t_forget:.1f} | {rss:.0f} | {steps} |\n"
            f"| `shoprec privacy find USER` (audit: found nowhere) | {t_find:.1f} | "
            f"{rss_find:.0f} | | | | | |\n\n"
            f"Removed: {', '.join(f'{k} {v:,}' for k, v in rec['removed'].items())}. "
            "The rebuild (dbt in full, then Feast's exports and online store in full) is the "
            "lifecycle's machinery, as after a retracted batch; it is most of the time.\n")
    write_section(f"privacy: forget one user ({scale})", "python -m bench.bench_forget "
                  f"{scale}", body)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    args = sys.argv[1:]
    at = Path(args[args.index("--home") + 1]) if "--home" in args else None
    main(next((a for a in args if a in DAYS), "large"), at)
