"""The pipeline DAG in a real Airflow scheduler against the same stages run from the CLI.

    python -m bench.bench_airflow            # tiny and small (= all)
    python -m bench.bench_airflow small

For each scale, two fresh homes hold the same simulated landing data. In one, the CLI runs the
pipeline's stages one after the other (`shoprec validate`, `transform`, `features materialize`:
what the DAG's tasks call). In the other, `shoprec.airflow_stack.AirflowStack` starts Airflow's
api-server, scheduler, dag-processor and triggerer (LocalExecutor, metadata on a fresh
PostgreSQL database at 127.0.0.1:5432 when one answers, else SQLite) and `shoprec_pipeline` is
triggered through the REST API as the UI's form does; its time is the run's own (start to end as
Airflow records it), and every task's duration is read back. Starting Airflow is reported
apart. Floor (the Airflow issue): small shop in the scheduler within 2x the CLI.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from bench.report import run_measured, write_section

BIN = Path(sys.executable).parent / "shoprec"
FLOOR_RATIO = 2.0
STAGES = (("validate", ["validate"]), ("transform", ["transform"]),
          ("materialize", ["features", "materialize"]))
PG = {"host": "127.0.0.1", "port": 5432, "user": "root", "dbname": "postgres"}


def _env(home: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPREC_", "AIRFLOW"))}
    return {**clean, "SHOPREC_HOME": str(home)}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _metadata_db() -> tuple[str, callable]:
    """(SQLAlchemy URL, drop function): a fresh PostgreSQL database, else a SQLite file."""
    try:
        import psycopg2

        con = psycopg2.connect(**PG)
        con.autocommit = True
    except Exception:
        path = Path(tempfile.mkdtemp(prefix="shoprec-bench-airflow-db-")) / "airflow.db"
        return f"sqlite:///{path}", lambda: shutil.rmtree(path.parent, ignore_errors=True)
    name = f"shoprec_bench_{uuid.uuid4().hex[:10]}"
    with con.cursor() as cur:
        cur.execute(f'create database "{name}"')

    def drop() -> None:
        with con.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        con.close()

    return f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}", drop


def _seconds(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def _validated(api, run_id: str) -> list[str]:
    """The batches the run's validate_landing moved to validated/ (its return value)."""
    r = api.get(f"/api/v2/dags/shoprec_pipeline/dagRuns/{run_id}/taskInstances/"
                "validate_landing/xcomEntries/return_value", params={"deserialize": True})
    if r.status_code != 200:
        return []
    value = r.json().get("value")
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            return []
    return list((value or {}).get("validated") or [])


def measure(scale: str) -> dict:
    from shoprec.airflow_stack import AirflowStack
    from shoprec.config import Settings

    root = Path(tempfile.mkdtemp(prefix=f"shoprec-bench-airflow-{scale}-"))
    try:
        cli_home, af_home = root / "cli", root / "airflow"
        run_measured([str(BIN), "data", "simulate", "--scale", scale], _env(cli_home))
        shutil.copytree(cli_home, af_home, symlinks=True)
        out: dict = {"scale": scale, "cli": {}}
        for label, cmd in STAGES:
            out["cli"][label] = run_measured([str(BIN), *cmd], _env(cli_home))[0]
        out["cli_total"] = sum(out["cli"].values())
        s = Settings(home=af_home)
        db_url, drop = _metadata_db()
        out["metadata"] = db_url.split(":", 1)[0]
        stack = AirflowStack(s, db_url, _free_port())
        try:
            t0 = time.perf_counter()
            stack.start()
            with stack.client() as api:
                stack.wait_dag(api, "shoprec_pipeline")
                out["startup_s"] = time.perf_counter() - t0
                t1 = time.perf_counter()
                stack.trigger(api, "shoprec_pipeline",
                              {"dataset": "shop", "batches": [], "full_refresh": False})
                # unpausing a daily DAG also starts its latest scheduled run: the run measured
                # is the one that validated the batches (the other finds nothing new)
                runs = stack.wait_all_runs(api, "shoprec_pipeline", timeout_s=3600)
                out["wall_s"] = time.perf_counter() - t1
                worked = [r for r in runs if _validated(api, r["dag_run_id"])]
                run = (worked or runs)[0]
                out["runs"] = len(runs)
                out["state"] = run["state"]
                out["run_s"] = _seconds(run.get("start_date"), run.get("end_date"))
                rid = run["dag_run_id"]
                tis = api.get(f"/api/v2/dags/shoprec_pipeline/dagRuns/{rid}/taskInstances",
                              params={"limit": 500}).json()["task_instances"]
                out["tasks"] = {t["task_id"]: _seconds(t.get("start_date"), t.get("end_date"))
                                for t in tis}
        finally:
            stack.stop()
            drop()
        out["ratio"] = (out["run_s"] or out["wall_s"]) / out["cli_total"]
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(results: list[dict]) -> str:
    rows = []
    for r in results:
        c = r["cli"]
        rows.append(f"| {r['scale']} | {c['validate']:.1f} | {c['transform']:.1f} | "
                    f"{c['materialize']:.1f} | {r['cli_total']:.1f} | {r['run_s']:.1f} | "
                    f"{r['wall_s']:.1f} | {r['ratio']:.2f}x | {r['state']} | "
                    f"{r['startup_s']:.0f} |")
    body = [
        "`shoprec_pipeline` triggered through the REST API of a real Airflow (api-server, "
        "scheduler, dag-processor, triggerer; LocalExecutor; metadata on "
        f"{results[0]['metadata']}), against the same stages from the CLI on a copy of the same "
        "landing data (`shoprec validate`, `transform`, `features materialize`). dbt runs as one "
        "`dbt build` (cosmos `ExecutionMode.WATCHER`) with a sensor task per model "
        "and per model's tests, started once the build finished. Airflow = the run's start to "
        "end as Airflow records it; wall = trigger to the end of the last run (unpausing the "
        "daily DAG starts its latest scheduled run besides the triggered one; the run measured "
        "is the one that validated the batches, the other finds nothing new; the client polls "
        "every 2 s).", "",
        "| scale | CLI validate s | CLI transform s | CLI materialize s | CLI total s | "
        "Airflow run s | Airflow wall s | run ÷ CLI | run state | Airflow start-up s |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows, ""]
    small = next((r for r in results if r["scale"] == "small"), None)
    if small:
        ok = small["ratio"] <= FLOOR_RATIO and small["state"] == "success"
        body.append(f"**Floor** (small shop in the scheduler within {FLOOR_RATIO:g}x the CLI): "
                    f"{small['ratio']:.2f}x: **{'met' if ok else 'MISSED'}**")
    for r in results:
        slow = sorted(((v or 0.0, k) for k, v in r["tasks"].items()), reverse=True)[:8]
        body += ["", f"Longest tasks, {r['scale']} (s): " + ", ".join(
            f"`{k}` {v:.1f}" for v, k in slow)]
    return "\n".join(body)


def main(which: str = "all") -> None:
    scales = ["tiny", "small"] if which == "all" else [which]
    results = [measure(sc) for sc in scales]
    write_section("airflow", f"python -m bench.bench_airflow {which}", report(results))


if __name__ == "__main__":
    main(*sys.argv[1:2])
