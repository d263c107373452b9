"""`shoprec up`: Airflow's four components (and serving, once a model is promoted) on the home,
their URLs printed, the login working, and Ctrl-C leaving nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.conftest import free_port


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_up_starts_airflow_prints_where_and_ctrl_c_stops_every_child(tmp_path):
    from shoprec.airflow_stack import credentials
    from shoprec.config import Settings

    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPREC_", "AIRFLOW"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoprec.cli", "up", "--airflow-port", str(port),
         "--serve-port", str(free_port())], env={**env, "SHOPREC_HOME": str(home)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300
        while not any("Ctrl-C stops everything" in x for x in lines):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines)[-3000:]
            lines.append(line)
            assert time.monotonic() < deadline, "".join(lines)[-3000:]
        out = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in out and "GX Data Docs" in out, out
        assert "serving not started: no production model yet" in out
        children = _descendants(proc.pid)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        for component in ("api_server", "scheduler", "dag-processor", "triggerer"):
            assert f"airflow {component}" in names, names  # (the api-server renames itself)
        user, password = credentials(Settings(home=home))
        r = httpx.post(f"http://127.0.0.1:{port}/auth/token", timeout=30,
                       json={"username": user, "password": password})
        assert r.status_code in (200, 201) and r.json()["access_token"]
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            rest = proc.communicate(timeout=120)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, rest[-3000:]
    assert "stopped: Airflow and serving" in rest
    time.sleep(1)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [" ".join(c.cmdline()) for c in alive]
