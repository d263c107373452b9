"""One DAG run through Airflow's own `dag.test()`, in a process of its own:
`python -m shoprec.pipeline.dagtest DAG_ID [CONF_JSON]` with the environment of
`shoprec.airflow_stack.airflow_env` (its metadata database migrated). The demo drives the
whole chain this way: the tasks, params, XComs, asset events and task states are Airflow's,
recorded in the home's metadata database, with no scheduler to start or stop.

It prints Airflow's log, then one last line `RESULT <json>` ({"state", "tasks": {id: state}})
and exits 0 when the run succeeded, 1 when it failed, 2 when the DAG folder did not parse."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

RESULT = "RESULT "
_END_TASK = re.compile(r"\[DAG TEST\] end task task_id=([\w.\-]+)")


def run(dag_id: str, conf: dict | None = None) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    from shoprec.airflow_stack import DAGS

    bag = DagBag(dag_folder=str(DAGS))
    if bag.import_errors or dag_id not in bag.dags:
        errors = "; ".join(f"{f}: {e.strip().splitlines()[-1]}"
                           for f, e in bag.import_errors.items())
        raise SystemExit(f"{dag_id}: not in {DAGS} ({errors or 'no such DAG'})")
    dr = bag.get_dag(dag_id).test(run_conf=conf or None)
    return {"dag_id": dag_id, "run_id": dr.run_id, "state": str(dr.state),
            "tasks": {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}}


def main(argv: list[str]) -> int:
    try:
        out = run(argv[0], json.loads(argv[1]) if len(argv) > 1 else None)
    except SystemExit as e:
        print(f"{RESULT}{json.dumps({'state': 'error', 'error': str(e.code), 'tasks': {}})}")
        return 2
    print(f"{RESULT}{json.dumps(out)}", flush=True)
    return 0 if out["state"] == "success" else 1




def run_in_child(env: dict[str, str], dag_id: str, conf: dict | None, log: Path,
                 on_task: Callable[[str], None] = lambda _task_id: None,
                 timeout_s: float = 3600) -> dict:
    """Run `dag_id` in a child process (this module's main) with Airflow's log in `log`;
    `on_task(task_id)` as each task ends. Its process group is stopped on the way out, whatever
    happens here (Ctrl-C included), so nothing is left running."""
    import os
    import signal
    import subprocess
    import time

    cmd = [sys.executable, "-m", "shoprec.pipeline.dagtest", dag_id, json.dumps(conf or {})]
    log.parent.mkdir(parents=True, exist_ok=True)
    result: dict | None = None
    deadline = time.monotonic() + timeout_s
    proc = subprocess.Popen(cmd, env={**env, "PYTHONUNBUFFERED": "1"},  # lines as they come
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    try:
        with log.open("a", encoding="utf-8") as fh:
            for line in proc.stdout:
                fh.write(line)
                if line.startswith(RESULT):
                    result = json.loads(line[len(RESULT):])
                elif (m := _END_TASK.search(line)) is not None:
                    on_task(m.group(1))
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{dag_id}: no result in {timeout_s:.0f} s; see {log}")
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    from shoprec.airflow_stack import AirflowError

    if result is None:
        raise AirflowError(f"{dag_id}: the run's process exited {proc.returncode} without a "
                           f"result; see {log}")
    if result["state"] == "error":
        raise AirflowError(result["error"])
    return result


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
