"""The retraining DAG for real through dag.test() against Airflow's own metadata database (the
session's throwaway AIRFLOW_HOME, as in test_dags.py): a run trains, passes its gate, registers
and promotes; a re-run of the same Airflow run registers nothing twice; a run with too few new
events skips; a deliberately worse run is refused and production stays.

Test-only settings, to keep the runs short on the tiny shop: no Feast user features, dim 16,
the ranker's fitting grid cut to one short setting, and gate margins chosen per run: the first
run's margin (-0.9) lets a two-epoch tiny model through (this test proves the wiring; the gate's
judgement is unit-tested in test_gates.py), the refused run's margin (+1.0: beat every baseline
by 100%) is one no model meets."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from shoprec.config import Settings, reset_settings_cache
from tests.conftest import ROOT, copy_published_warehouse

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   capture_output=True)


@pytest.fixture
def home(airflow_db, built_shop, tmp_path, monkeypatch):
    """A home of its own holding the built shop's warehouse; the DAG's tasks read it through
    SHOPREC_* (dag.test runs every task in this process)."""
    import training.ranker

    s = Settings(home=tmp_path / "home")
    copy_published_warehouse(built_shop, s)
    saved = dict(os.environ)
    monkeypatch.setenv("SHOPREC_HOME", str(s.home))
    monkeypatch.setenv("SHOPREC_TRAINING__USER_FEATURES", "false")
    monkeypatch.setenv("SHOPREC_TRAINING__DIM", "16")
    monkeypatch.setattr(training.ranker, "STEP_GRID", (20,))
    monkeypatch.setattr(training.ranker, "L2_GRID", (1e-2,))
    reset_settings_cache()
    yield s
    os.environ.clear()
    os.environ.update(saved)
    reset_settings_cache()


@pytest.fixture
def training_dag(home):
    """The DAG parsed under this home (its asset's URI is this home's online store)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "shoprec_training.py"))
    assert bag.import_errors == {}
    return bag.dags["shoprec_training"]


def _run(dag, when: dt.datetime, monkeypatch, conf: dict, **gates: str):
    """One dag.test() run at `when` (its run id derives from it) with SHOPREC_GATES__* set."""
    for k in ("MARGIN", "MIN_NEW_EVENTS"):
        monkeypatch.delenv(f"SHOPREC_GATES__{k}", raising=False)
    for k, v in gates.items():
        monkeypatch.setenv(f"SHOPREC_GATES__{k.upper()}", v)
    reset_settings_cache()
    dr = dag.test(logical_date=when, run_after=when, run_conf=conf)
    return dr.state, {ti.task_id: ti.state for ti in dr.get_task_instances()}


def test_run_keys_are_names_stable_and_distinct():
    from shoprec.names import is_name
    from shoprec.pipeline.training import run_key

    a = run_key("manual__2026-03-02T00:00:00+00:00")
    assert is_name(a) and a.startswith("manual__2026-03-02T00-00-00-00-00-")
    assert run_key("manual__2026-03-02T00:00:00+00:00") == a
    assert run_key("manual__2026-03-02T00-00-00-00-00") != a  # cleans up alike, stays apart
    for odd in ("../../etc", "..", "x" * 400, "é/ü", "-lead"):
        assert is_name(run_key(odd)), odd


def test_new_events_are_counted_after_a_data_window(built_shop):
    from shoprec.pipeline.training import _window_end, count_events_after

    window = {"protocol": "time",
              "train": ["2026-01-05T00:00:00+00:00", "2026-01-18T00:00:00+00:00"],
              "test": ["2026-01-21T00:00:00+00:00", "2026-01-24T00:00:00+00:00"],
              "evaluated_users": {"valid": 3, "test": 3, "of": 5}}
    assert _window_end(window) == dt.datetime(2026, 1, 24, tzinfo=dt.UTC)
    assert _window_end({"protocol": "loo"}) is None
    total = count_events_after(built_shop, "shop", dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    assert total > 1000
    assert count_events_after(built_shop, "shop", dt.datetime(2100, 1, 1, tzinfo=dt.UTC)) == 0
    middle = count_events_after(built_shop, "shop", dt.datetime(2026, 1, 15, tzinfo=dt.UTC))
    assert 0 < middle < total


@pytest.mark.slow
def test_train_gate_register_promote_then_refuse_a_worse_model(training_dag, home, monkeypatch):
    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings

    reg = Registry(store_from_settings(home), "shop")

    # 1. the first model: trained, gated, registered with its report, promoted
    state, tasks = _run(training_dag, T0, monkeypatch, {"epochs": 2, "seeds": [11]},
                        margin="-0.9")
    assert state == "success", tasks
    assert tasks == {"train": "success", "gate": "success", "register": "success",
                     "promote": "success", "register_candidate": "skipped"}
    [v1] = reg.versions()
    assert reg.aliases() == {"candidate": v1, "production": v1}
    m1 = reg.manifest(v1)
    assert {"gate.json", "gate.html"} <= set(m1["files"])
    assert m1["gate_report"]["passed"] is True
    assert m1["run_id"].startswith("manual__2026-03-02T00-00-00-00-00-")
    moves = len(reg.history())

    # 2. the same Airflow run again: its runs and verdict are reused, nothing registered twice
    state, tasks = _run(training_dag, T0, monkeypatch, {"epochs": 2, "seeds": [11]},
                        margin="-0.9")
    assert state == "success", tasks
    assert tasks["promote"] == "success"
    assert reg.versions() == [v1] and len(reg.history()) == moves

    # 3. no new events since v1's data window: train skips, and everything after it
    state, tasks = _run(training_dag, T0 + dt.timedelta(days=1), monkeypatch, {"epochs": 1},
                        min_new_events="1")
    assert tasks["train"] == "skipped"
    assert set(tasks.values()) == {"skipped"}, tasks
    assert reg.versions() == [v1]

    # 4. a worse config (one epoch) with a margin no model meets: refused, production stays
    state, tasks = _run(training_dag, T0 + dt.timedelta(days=2), monkeypatch,
                        {"epochs": 1, "seeds": [5]}, margin="1.0", min_new_events="0")
    assert state == "success", tasks
    assert tasks["register_candidate"] == "success"
    assert tasks["register"] == "skipped" and tasks["promote"] == "skipped"
    v1_, v2 = reg.versions()
    assert v1_ == v1
    assert reg.aliases() == {"candidate": v2, "production": v1}
    report = reg.manifest(v2)["gate_report"]
    assert report["passed"] is False
    assert any("does not beat personal_history" in r and "by 100% (test)" in r
               for r in report["reasons"]), report["reasons"]
    # the production was re-scored on the same data as the candidate
    regression = next(c for c in report["checks"] if c["name"] == "no_regression")
    assert not regression.get("skipped") and v1 in regression["reason"]
    gate_json = json.loads(
        (home.runs_dir("shop").glob("*seed5-af*/export/gate.json").__next__()).read_text())
    assert gate_json["production"] == v1
    last = reg.history("candidate")[-1]
    assert last["to"] == v2 and last["why"].startswith("gate refused: ")
    assert last["by"].startswith("airflow:shoprec_training/manual__")


def test_the_forms_hyperparameters_reach_training_checked_like_settings(tmp_path):
    from shoprec.pipeline.training import train_task

    s = Settings(home=tmp_path)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        train_task("shop", hyper={"dim": 32, "rm -rf": 1}, settings=s)
    with pytest.raises(ValueError, match="dim"):  # the settings' own type check
        train_task("shop", hyper={"dim": "wide"}, settings=s)
