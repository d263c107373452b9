"""Airflow on one machine as Shoprec runs it: api-server, scheduler, dag-processor and triggerer
with LocalExecutor on a metadata database of our choosing, every component a child of ours in a
process group of its own (stopped by pid, with its executor workers: `airflow standalone`
leaves orphans behind, STACK-NOTES.md).

Its configuration lives under `Settings.airflow_home()`: the login (`admin`, a random password
written once to `passwords.json`, also the credentials the importers use to announce new data),
the JWT secret every component must share, the logs. `shoprec up`, the end-to-end test and the
pipeline benchmark use it; the REST helpers below are what the UI's forms do.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoprec.children import Child, ChildFailed
from shoprec.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
USER = "admin"


class AirflowError(RuntimeError):
    pass


def _secret(path: Path, make) -> str:
    """A value generated once per home and kept (0600): the same across restarts."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(make())
        tmp.chmod(0o600)
        os.replace(tmp, path)
    return path.read_text()


def credentials(s: Settings) -> tuple[str, str]:
    """The UI/API login of this home's Airflow (SimpleAuthManager's passwords file)."""
    path = s.airflow_passwords()
    data = json.loads(_secret(path, lambda: json.dumps({USER: secrets.token_urlsafe(12)})))
    return USER, data[USER]


def airflow_env(s: Settings, db_url: str, port: int, extra: dict[str, str] | None = None
                ) -> dict[str, str]:
    """The environment of every component (and of `airflow` CLI calls on the same home)."""
    home = s.airflow_home()
    user, password = credentials(s)
    # the user's SHOPREC_* settings (an online store on Redis, a registry on S3...) hold in
    # the tasks too; another Airflow's AIRFLOW_* do not
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    url = f"http://127.0.0.1:{port}"
    return {
        **base,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(s.airflow_passwords()),
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(s.airflow_jwt_secret(),
                                                 lambda: secrets.token_urlsafe(32)),
        # a small machine: a few task processes at a time (dbt's one build, the sensors that
        # start and defer), one parsing process
        "AIRFLOW__CORE__PARALLELISM": str(max(4, 3 * (os.cpu_count() or 2))),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(s.airflow_logs()),
        "SHOPREC_HOME": str(s.root),
        "SHOPREC_AIRFLOW__API_URL": url,
        "SHOPREC_AIRFLOW__API_USERNAME": user,
        "SHOPREC_AIRFLOW__API_PASSWORD": password,
        **(extra or {}),
    }


def airflow_cli(env: dict[str, str], *args: str, timeout_s: float = 600) -> str:
    r = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True,
                       text=True, timeout=timeout_s)
    if r.returncode != 0:
        raise AirflowError(f"airflow {' '.join(args)} exited {r.returncode}:\n"
                           f"{(r.stdout + r.stderr)[-3000:]}")
    return r.stdout


@dataclass
class AirflowStack:
    settings: Settings
    db_url: str
    port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return airflow_env(self.settings, self.db_url, self.port, self.extra_env)

    def start(self, timeout_s: float = 240) -> None:
        """Migrate the metadata database, start every component, wait for the API."""
        env = self.env
        logs = self.settings.airflow_logs()
        logs.mkdir(parents=True, exist_ok=True)
        airflow_cli(env, "db", "migrate")
        for name in COMPONENTS:
            self.children[name] = Child([sys.executable, "-m", "airflow", name], env,
                                        logs / f"{name}.out")
        try:
            self.children["api-server"].wait_http(f"{self.url}/api/v2/monitor/health",
                                                  timeout_s)
        except ChildFailed:
            self.stop()
            raise

    def stop(self) -> dict[str, int | None]:
        """SIGTERM to each component's whole process group (its workers too), SIGKILL after a
        grace period to what is left, including any descendant that left the group (a task
        process in a session of its own); returns the exit codes."""
        import psutil

        family = []
        for child in self.children.values():
            with contextlib.suppress(psutil.Error):
                family += psutil.Process(child.pid).children(recursive=True)
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        out = {}
        for name, child in self.children.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGKILL)  # stragglers of the group (workers)
            out[name] = child.stop(grace_s=5)
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(family, timeout=10)
        return out

    def client(self):
        """An httpx client of the REST API with a bearer token, as the UI gets it (use it in a
        `with` block)."""
        import httpx

        user, password = credentials(self.settings)
        r = httpx.post(f"{self.url}/auth/token", timeout=30, trust_env=False,
                       json={"username": user, "password": password})
        if r.status_code not in (200, 201):
            raise AirflowError(f"POST /auth/token: {r.status_code} {r.text[:300]}")
        return httpx.Client(base_url=self.url, timeout=30, trust_env=False,
                            headers={"Authorization": f"Bearer {r.json()['access_token']}"})

    def wait_dag(self, client, dag_id: str, timeout_s: float = 180) -> dict:
        """Until the dag-processor has parsed `dag_id`; unpauses it (new DAGs start paused)."""
        deadline = time.monotonic() + timeout_s
        while True:
            r = client.get(f"/api/v2/dags/{dag_id}")
            if r.status_code == 200:
                if r.json().get("is_paused"):
                    client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False})
                return r.json()
            if time.monotonic() > deadline:
                errors = client.get("/api/v2/importErrors").text[:2000]
                raise AirflowError(f"{dag_id} not parsed in {timeout_s:.0f} s: {errors}")
            time.sleep(2)

    def trigger(self, client, dag_id: str, conf: dict[str, Any]) -> str:
        """Trigger a run with `conf` (the trigger form's params); its run id."""
        from datetime import UTC, datetime

        r = client.post(f"/api/v2/dags/{dag_id}/dagRuns",
                        json={"logical_date": None, "conf": conf,
                              "run_after": datetime.now(UTC).isoformat()})
        if r.status_code not in (200, 201):
            raise AirflowError(f"trigger {dag_id}: {r.status_code} {r.text[:500]}")
        return r.json()["dag_run_id"]

    def wait_all_runs(self, client, dag_id: str, timeout_s: float = 900) -> list[dict]:
        """Until no run of `dag_id` is queued or running; every run."""
        deadline = time.monotonic() + timeout_s
        while True:
            runs = client.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}).json()
            runs = runs["dag_runs"]
            if all(r["state"] in ("success", "failed") for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise AirflowError(f"{dag_id}: runs still active after {timeout_s:.0f} s")
            time.sleep(2)

    def wait_run(self, client, dag_id: str, run_id: str, timeout_s: float = 900) -> dict:
        """Until the run finishes: {state, tasks: {task_id: state}, seconds}."""
        t0 = time.monotonic()
        while True:
            run = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
            if run.get("state") in ("success", "failed"):
                tis = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                                 params={"limit": 500}).json()
                return {"state": run["state"], "seconds": time.monotonic() - t0,
                        "tasks": {t["task_id"]: t["state"] for t in tis["task_instances"]},
                        "run": run}
            if time.monotonic() - t0 > timeout_s:
                raise AirflowError(f"{dag_id}/{run_id} still {run.get('state')} after "
                                   f"{timeout_s:.0f} s")
            time.sleep(1)
