"""The README's demo, end to end on the tiny shop: the whole chain through Airflow (dag.test()
of shoprec_pipeline and shoprec_training), then serving asked for recommendations and a click;
it exits 0 with nothing left running, and a second run changes nothing it should not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from tests import scaled


def _ours(home) -> list[psutil.Process]:
    """Processes still running with this home in their environment."""
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.pid != os.getpid() and p.environ().get("SHOPREC_HOME") == str(home):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _pipeline_runs(home) -> int:
    """shoprec_pipeline's runs in the home's Airflow metadata (SQLite, or the scaled mode's
    PostgreSQL): the demo's tasks ran in Airflow when they are recorded there."""
    import sqlalchemy as sa

    from shoprec.config import Settings
    from shoprec.up import default_db_url

    s = Settings(home=home)
    if not s.airflow.db_url and not s.airflow_db().is_file():
        return 0
    engine = sa.create_engine(default_db_url(s))
    try:
        with engine.connect() as con:
            return con.execute(sa.text("select count(*) from dag_run where dag_id = :d"),
                               {"d": "shoprec_pipeline"}).scalar_one()
    except sa.exc.DBAPIError:  # no Airflow table there yet
        return 0
    finally:
        engine.dispose()


def _demo(home, timeout_s: float = 900) -> str:
    # the machine's settings (the scaled mode's S3, Redis, PostgreSQL) stay; no other
    keep = set(scaled.environment("", 0, "")) if scaled.enabled() else set()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOPREC_", "AIRFLOW")) or k in keep}
    env |= {"SHOPREC_HOME": str(home), "SHOPREC_TRAINING__MAX_MINUTES": "0.3",
            "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "shoprec.cli", "demo", "--scale", "tiny"],
                       env=env, capture_output=True, text=True, timeout=timeout_s)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    return out


@pytest.mark.slow
def test_the_demo_runs_the_chain_through_airflow_and_asks_serving(tmp_path):
    from shoprec.config import Settings
    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings

    home = tmp_path / "home"
    runs = _pipeline_runs(home)
    out = _demo(home)
    for dataset in ("shop", "ml-100k"):
        assert f"shoprec_pipeline on '{dataset}'" in out
    assert out.count("shoprec_pipeline: success") == 2, out[-4000:]
    assert "shoprec_training: success" in out
    # the run's tasks are Airflow's: the metadata database of the home recorded them
    assert _pipeline_runs(home) == runs + 2
    s = Settings(home=home)
    reg = Registry(store_from_settings(s), "shop")
    production = reg.alias("production")
    assert production is not None and production["version"] in out
    assert "(personalized, model" in out and "(cold_start, model" in out
    assert "the list changed at once" in out, out[-3000:]
    assert "nothing left running" in out
    time.sleep(1)
    assert not _ours(home), [" ".join(p.cmdline()) for p in _ours(home)]

    # again: every batch already judged, too few new events to retrain, the same production
    again = _demo(home)
    assert "train skipped: too few new events" in again
    assert reg.alias("production")["version"] == production["version"]
    assert not _ours(home)
