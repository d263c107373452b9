"""`shoprec up`: Airflow (api-server, scheduler, dag-processor, triggerer) and serving on this
home, in the foreground; Ctrl-C (or SIGTERM) stops every child by pid, Airflow's executor workers
included, and nothing is left running."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

from shoprec.airflow_stack import AirflowStack, credentials
from shoprec.children import Child
from shoprec.config import Settings


def default_db_url(s: Settings) -> str:
    return s.airflow.db_url or f"sqlite:///{s.airflow_db()}"


def urls(s: Settings, stack: AirflowStack, serve_port: int | None) -> list[tuple[str, str]]:
    """What to open, by name (files for the reports that are static sites)."""
    out = [("Airflow UI", f"{stack.url}/ (user {credentials(s)[0]}, password in "
                          f"{s.airflow_passwords()})")]
    docs = s.dbt_docs()
    out.append(("dbt docs", f"file://{docs}" if docs.exists()
                else f"file://{docs} (after `shoprec transform --docs`)"))
    out.append(("GX Data Docs", f"file://{s.data_docs_index()}" if s.data_docs_index().exists()
                else f"file://{s.data_docs_index()} (after the first validation)"))
    if serve_port:
        out.append(("serving API / demo page", f"http://127.0.0.1:{serve_port}/ "
                                               f"(OpenAPI at /docs)"))
    return out


def up(s: Settings, airflow_port: int = 8080, serve_port: int = 8000,
       say: Callable[[str], None] = print, stop: threading.Event | None = None) -> None:
    """Start everything, print where it is, wait for Ctrl-C / SIGTERM (or `stop`), stop it."""
    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    stack = AirflowStack(s, default_db_url(s), airflow_port)
    serve: Child | None = None
    try:
        say(f"starting Airflow on {stack.url} (metadata: {default_db_url(s)}) ...")
        stack.start()
        if Registry(store_from_settings(s), s.dataset).alias("production") is not None:
            logs = s.airflow_logs()
            serve = Child([sys.executable, "-m", "shoprec.cli", "serve", "--port",
                           str(serve_port)], stack.env, logs / "serve.out")
            serve.wait_http(f"http://127.0.0.1:{serve_port}/healthz")
        else:
            say("serving not started: no production model yet (run `make demo`, or the "
                "shoprec_training DAG)")
        for name, where in urls(s, stack, serve_port if serve else None):
            say(f"  {name:<24} {where}")
        say("  new DAGs start paused: unpause them in the UI (or `airflow dags unpause "
            "shoprec_pipeline` with the same AIRFLOW_HOME). Ctrl-C stops everything.")
        while not stop.wait(1.0):
            dead = [n for n, c in stack.children.items() if c.proc.poll() is not None]
            if serve is not None and serve.proc.poll() is not None:
                dead.append("serve")
            if dead:
                say(f"stopping: {', '.join(dead)} exited (logs in {s.airflow_logs()})")
                break
    finally:
        if serve is not None:
            serve.stop()
        stack.stop()
        say("stopped: Airflow and serving")
