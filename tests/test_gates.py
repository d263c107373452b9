"""The evaluation gates: every check on synthetic metrics (each refusal with its one-line
reason), the report files, and the latency and sanity checks on a real export of the tiny shop.

The real export trains for one epoch with the ranker's fitting grid cut to one short setting
(its own tests cover the grid), so the module costs seconds of training, not minutes."""

from __future__ import annotations

import json
import math

import pytest

from shoprec.config import GateSettings, Settings, TrainingSettings
from shoprec.registry.gates import (
    BASELINES,
    GATE_HTML,
    GATE_JSON,
    Check,
    GateReport,
    Probe,
    Production,
    candidate_name,
    feast_check,
    judge_metrics,
    latency_check,
    probe,
    variety_check,
)
from shoprec.registry.manifest import per_user_paths
from tests.conftest import copy_published_warehouse

BASE = {"popularity": 0.10, "itemknn": 0.12, "personal_history": 0.1786, "ptopfreq": 0.17,
        "tifuknn": 0.175, "ease": 0.15}


def metrics(blend: float | None = 0.2, model: float = 0.15, coverage: float = 0.3,
            **baselines: float) -> dict:
    """A metrics.json `metrics` dict: test (and valid) entries of the model, the blend and
    every baseline, on the layout training writes."""
    def entry(ndcg: float) -> dict:
        return {"ndcg@10": ndcg, "recall@20": ndcg * 2, "coverage@20": coverage, "users": 500.0}

    out = {"model/valid": entry(model), "model/test": entry(model)}
    if blend is not None:
        out["blend/valid"] = entry(blend)
        out["blend/test"] = entry(blend)
    for name, v in {**BASE, **baselines}.items():
        out[f"{name}/valid"] = entry(v)
        out[f"{name}/test"] = entry(v)
    return out


def failed(checks: list[Check]) -> dict[str, str]:
    return {c.name: c.reason for c in checks if not c.passed}


def test_a_candidate_better_than_every_baseline_passes_and_no_production_is_skipped():
    checks = judge_metrics(metrics(blend=0.2), "time", GateSettings())
    assert failed(checks) == {}
    assert {f"beats_{b}" for b in BASELINES} <= {c.name for c in checks}
    reg = next(c for c in checks if c.name == "no_regression")
    assert reg.passed and reg.skipped and "no production version yet" in reg.reason


def test_a_candidate_worse_than_the_baselines_is_refused_with_one_reason_each():
    checks = judge_metrics(metrics(blend=0.11), "time", GateSettings())
    bad = failed(checks)
    assert set(bad) == {f"beats_{b}" for b in ("itemknn", "personal_history", "ptopfreq",
                                               "tifuknn", "ease")}
    assert bad["beats_ease"] == "blend ndcg@10 0.1100 does not beat ease 0.1500 by 0% (test)"


def test_losing_to_personal_history_only_is_refused_with_that_reason():
    m = metrics(blend=0.1612, personal_history=0.1786, tifuknn=0.16, ptopfreq=0.16)
    assert failed(judge_metrics(m, "time", GateSettings())) == {
        "beats_personal_history":
            "blend ndcg@10 0.1612 does not beat personal_history 0.1786 by 0% (test)"}


def test_equal_or_within_the_margin_is_not_beating():
    assert "beats_personal_history" in failed(
        judge_metrics(metrics(blend=0.1786), "time", GateSettings()))  # equal: not better
    within = failed(judge_metrics(metrics(blend=0.1786 * 1.03), "time",
                                  GateSettings(margin=0.05)))
    assert within["beats_personal_history"] == (
        "blend ndcg@10 0.1840 does not beat personal_history 0.1786 by 5% (test)")
    assert failed(judge_metrics(metrics(blend=0.1786 * 1.06), "time",
                                GateSettings(margin=0.05))) == {}


def test_the_metric_and_its_per_protocol_override():
    m = metrics(blend=0.2)
    m["blend/test"]["recall@20"] = 0.01  # loses on recall only
    gates = GateSettings(metric_by_protocol={"loo": "recall@20"})
    assert failed(judge_metrics(m, "time", gates)) == {}
    bad = failed(judge_metrics(m, "loo", gates))
    assert bad["beats_popularity"].startswith("blend recall@20 0.0100 does not beat popularity")


def test_no_blend_judges_the_model_and_no_baseline_is_refused():
    m = metrics(blend=None, model=0.3)
    assert failed(judge_metrics(m, "time", GateSettings())) == {}
    alone = {k: v for k, v in m.items() if k.startswith("model/")}
    assert "trained without baselines" in failed(
        judge_metrics(alone, "time", GateSettings()))["beats_baselines"]


def test_nan_metrics_are_refused():
    m = metrics(blend=float("nan"))
    bad = failed(judge_metrics(m, "time", GateSettings()))
    assert bad["metrics_finite"] == ("non-finite metrics: blend/valid.ndcg@10=nan, "
                                     "blend/valid.recall@20=nan, blend/test.ndcg@10=nan "
                                     "(+1 more)")
    assert "beats_popularity" in bad and "does not beat" in bad["beats_popularity"]


def test_coverage_floor():
    bad = failed(judge_metrics(metrics(coverage=0.005), "time", GateSettings()))
    assert bad == {"coverage": "blend coverage@20 0.0050 below the floor 0.01 (test)"}


def test_no_regression_against_production():
    cand, prod = metrics(blend=0.20), metrics(blend=0.21)
    worse = failed(judge_metrics(metrics(), "time", GateSettings(),
                                 Production("v1", cand, prod)))
    assert worse == {"no_regression": "candidate ndcg@10 0.2000 is below production v1 0.2100 x "
                                      "(1 - 0%) (both re-scored on current data, test)"}
    tolerated = GateSettings(max_regression=0.05)  # 0.2 >= 0.21 * 0.95
    assert failed(judge_metrics(metrics(), "time", tolerated, Production("v1", cand, prod))) == {}
    same = Production("v1", cand, metrics(blend=0.20))
    assert failed(judge_metrics(metrics(), "time", GateSettings(), same)) == {}
    broken = Production("v1", error="RegistryError: sha256 does not match")
    assert failed(judge_metrics(metrics(), "time", GateSettings(), broken))["no_regression"] == (
        "production v1 could not be re-scored: RegistryError: sha256 does not match")
    nan = Production("v1", metrics(blend=float("nan")), prod)
    bad = failed(judge_metrics(metrics(), "time", GateSettings(), nan))
    assert "no_regression" in bad and "metrics_finite" in bad


def test_latency_and_variety_checks():
    assert latency_check(3.2, 50.0, 200).passed
    slow = latency_check(80.0, 50.0, 200, "model + ranker", 12.0)
    assert not slow.passed and slow.reason == (
        "single-user p99 80.00 ms (model + ranker, 200 calls on CPU, p50 12.00 ms) over the "
        "budget of 50 ms")
    assert variety_check(Probe(1, 2, 200, 32, 30, 0.5, True)).passed
    same = variety_check(Probe(1, 2, 200, 32, 1, 0.0, True))
    assert not same.passed and same.reason.startswith("scores do not vary across users: 1")
    assert "NaN" in variety_check(Probe(1, 2, 200, 32, 30, 0.5, False)).reason


def test_report_files_hold_every_check_and_no_user_data(tmp_path):
    checks = judge_metrics(metrics(blend=float("nan")), "time", GateSettings())
    report = GateReport("shop", "run1", "time", "ndcg@10", "blend", "ranker", checks,
                        table={"candidate": {"ndcg@10": float("nan"), "recall@20": 0.3},
                               "personal_history": {"ndcg@10": 0.18, "recall@20": 0.35}},
                        settings=GateSettings().model_dump(mode="json"))
    j, h = report.write(tmp_path)
    data = json.loads(j.read_text())  # strict JSON: NaN written as text
    assert data["passed"] is False and len(data["checks"]) == len(checks)
    assert all(set(c) >= {"name", "passed", "value", "threshold", "reason"}
               for c in data["checks"])
    assert data["table"]["candidate"]["ndcg@10"] == "nan"
    assert per_user_paths(data) == []
    page = h.read_text()
    assert page.count("<svg") == 2 and "personal_history" in page
    assert "non-finite metrics" in page and "refused" in page
    assert {p.name for p in tmp_path.iterdir()} == {GATE_JSON, GATE_HTML}


# --- a real export of the tiny shop --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(built_shop, tmp_path_factory):
    """One epoch on the tiny shop in a home of its own (the built shop's warehouse, copied)."""
    import training.ranker
    from training.train import train

    s = Settings(home=tmp_path_factory.mktemp("gates-home"), training=TrainingSettings(
        max_epochs=1, dim=16, user_features=False))
    copy_published_warehouse(built_shop, s)
    with pytest.MonkeyPatch.context() as mp:  # the ranker's grid: one short setting
        mp.setattr(training.ranker, "STEP_GRID", (20,))
        mp.setattr(training.ranker, "L2_GRID", (1e-2,))
        result = train(s, seed=3, progress=False, run_dir=s.runs_dir("shop") / "tiny")
    return s, result


def test_single_user_latency_and_sanity_on_a_real_export(tiny_run):
    from training.export import ExportedModel

    s, result = tiny_run
    exp = ExportedModel(result.run_dir / "export")
    p = probe(s, exp, "shop", calls=50)
    assert p.calls == 50 and p.users == 32 and p.finite
    assert 0 < p.p50_ms <= p.p99_ms
    assert latency_check(p.p99_ms, s.gates.latency_budget_ms, p.calls).passed, p
    assert not latency_check(p.p99_ms, 1e-6, p.calls).passed
    assert variety_check(p).passed, p
    assert p.distinct_top10 > 1
    checks = judge_metrics(result.metrics, "time", GateSettings(margin=-1.0))
    assert {c.name: c.passed for c in checks}["metrics_finite"]
    assert {c.name: c.passed for c in checks}["coverage"]
    assert all(math.isfinite(v) for m in result.metrics.values() for v in m.values())


def test_the_feature_service_must_exist_in_the_datasets_feast_registry(built_shop, tmp_path):
    from feature_repo.names import SERVING_SERVICE

    found = feast_check(built_shop, "shop", SERVING_SERVICE)
    assert found.passed and SERVING_SERVICE in found.reason
    missing = feast_check(built_shop, "shop", "recommender_v999")
    assert not missing.passed
    assert missing.reason.startswith("feature service recommender_v999 is not in the Feast "
                                     "registry")
    nowhere = feast_check(Settings(home=tmp_path), "shop", SERVING_SERVICE)
    assert not nowhere.passed and "shoprec features materialize" in nowhere.reason
    assert feast_check(built_shop, "shop", None).skipped


def test_gate_register_promote_on_a_real_run(tiny_run):
    """A passing gate (a test margin: one epoch on the tiny shop) is registered with its
    report and promoted; the same run again changes nothing."""
    from shoprec.pipeline.training import gate_register_promote
    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings

    s, result = tiny_run
    s = s.model_copy(update={"gates": GateSettings(margin=-0.9)})
    out = gate_register_promote(s, result.run_dir)
    assert out["passed"], out["reasons"]
    reg = Registry(store_from_settings(s), "shop")
    manifest = reg.manifest(out["version"])
    assert {GATE_JSON, GATE_HTML} <= set(manifest["files"])
    assert manifest["gate_report"]["passed"] is True
    assert {c["name"] for c in manifest["gate_report"]["checks"]} >= {
        "beats_personal_history", "no_regression", "latency_p99", "scores_vary", "coverage",
        "metrics_finite", "feature_service"}
    assert reg.aliases() == {"candidate": out["version"], "production": out["version"]}
    moves = len(reg.history())
    again = gate_register_promote(s, result.run_dir)
    assert again["version"] == out["version"] and reg.versions() == [out["version"]]
    assert len(reg.history()) == moves


def test_cli_gate_says_why_and_exits_1_when_refused(tiny_run, monkeypatch):
    from typer.testing import CliRunner

    from shoprec.cli import app
    from shoprec.config import reset_settings_cache

    s, result = tiny_run
    monkeypatch.setenv("SHOPREC_HOME", str(s.home))
    monkeypatch.setenv("SHOPREC_GATES__LATENCY_BUDGET_MS", "0.000001")
    reset_settings_cache()
    try:
        r = CliRunner().invoke(app, ["models", "gate", str(result.run_dir)], terminal_width=200)
        assert r.exit_code == 1, (r.output, r.exception)
        assert "FAIL  latency_p99" in r.output and "over the budget of 1e-06 ms" in r.output
        assert "gate refused tiny (shop): 1 of" in r.output and "gate.html" in r.output
        assert not json.loads((result.run_dir / "export" / GATE_JSON).read_text())["passed"]
        monkeypatch.setenv("SHOPREC_GATES__LATENCY_BUDGET_MS", "50")
        monkeypatch.setenv("SHOPREC_GATES__MARGIN", "-0.9")  # test margin: one tiny epoch
        reset_settings_cache()
        r = CliRunner().invoke(app, ["models", "gate", str(result.run_dir), "--register",
                                     "--run-id", "cli-run"], terminal_width=200)
        assert r.exit_code == 0, (r.output, r.exception)
        assert "gate passed" in r.output and "production" in r.output
    finally:
        reset_settings_cache()


def test_one_feature_retrieval_per_data_and_service():
    """Inside a gate run the Feast point-in-time retrieval of one (settings, data, service) runs
    once; other data or another service retrieve anew; outside, the function is the original."""
    import training.features as tf
    from shoprec.registry.gates import one_feature_retrieval

    calls = []

    def fake(settings, x, service="svc"):
        calls.append((id(x), service))
        return (len(calls),)

    s, x, y = Settings(home="/nonexistent"), object(), object()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tf, "user_day_features", fake)
        with one_feature_retrieval():
            with one_feature_retrieval():  # nested (a second gate run in the process)
                assert tf.user_day_features(s, x, "v2") == (1,)
            assert tf.user_day_features(s.model_copy(), x, "v2") == (1,)  # an equal copy
            assert tf.user_day_features(s, x, "v1") == (2,)
            assert tf.user_day_features(s, y, "v2") == (3,)
        assert tf.user_day_features is fake
        assert fake(s, x, "v2") == (4,)


def test_a_gate_run_reads_the_data_once_and_evaluates_each_export_once(tiny_run, tmp_path):
    """With production another export: the interactions are loaded once for both re-scorings
    and the probe, each export is evaluated once, and the numbers are those of a plain
    `evaluate_export` of each; with production the candidate's very export, it is evaluated
    once and both rows are that evaluation."""
    import shutil

    import training.data
    import training.evaluate
    from shoprec.registry import Registry
    from shoprec.registry.gates import run_gates
    from shoprec.storage import LocalStore

    s, result = tiny_run
    export = result.run_dir / "export"
    other = tmp_path / "other" / "export"  # the same model, its metadata one key longer
    shutil.copytree(export, other, ignore=shutil.ignore_patterns("gate.*"))
    meta = json.loads((other / "metadata.json").read_text())
    (other / "metadata.json").write_text(json.dumps({**meta, "note": "another export"}))
    reg = Registry(LocalStore(tmp_path / "registry"), "shop")
    reg.promote(reg.register(other, "other"))

    real_eval, real_load = training.evaluate.evaluate_export, training.data.load_interactions
    evaluated, loads = [], []

    def counting_eval(settings, export_dir, *args, **kwargs):
        evaluated.append(str(export_dir))
        return real_eval(settings, export_dir, *args, **kwargs)

    def counting_load(*args, **kwargs):
        loads.append(1)
        return real_load(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.evaluate, "evaluate_export", counting_eval)
        mp.setattr(training.evaluate, "load_interactions", counting_load)
        mp.setattr(training.data, "load_interactions", counting_load)
        report = run_gates(s, result.run_dir, "shop", store=reg.store, write=False)
        assert len(evaluated) == 2 and len(loads) == 1, (evaluated, loads)
        assert report.production == reg.aliases()["production"]
        alone, _ = real_eval(s, export, "shop", baselines=False)
        cand = report.table["candidate (re-scored)"]
        assert cand == report.table["production (re-scored)"]  # one model, two exports
        name = f"{candidate_name(alone)}/test"
        assert cand == {k: v for k, v in alone[name].items() if k in cand}
        # production is this very export: evaluated once
        reg.promote(reg.register(export, "self"))
        evaluated.clear()
        loads.clear()
        again = run_gates(s, result.run_dir, "shop", store=reg.store, write=False)
        assert len(evaluated) == 1 and len(loads) == 1, (evaluated, loads)
        assert again.table == report.table
        check = {c.name: c for c in again.checks}["no_regression"]
        assert check.passed and check.value == check.threshold


def test_the_gate_and_the_registry_resolve_a_run_alike(tmp_path):
    """A run folder and its export/ give the same run: its export, its metadata's dataset and
    the run folder's name as run id (an export folder given directly was registered as run
    'export' before); what cannot be read is one line."""
    from shoprec.names import InvalidName
    from shoprec.pipeline.training import resolve_run
    from shoprec.registry import RegistryError

    run = tmp_path / "20260101T000000Z-time-seed1"
    (run / "export").mkdir(parents=True)
    (run / "export" / "metadata.json").write_text(json.dumps({"dataset": "shop"}))
    for given in (run, run / "export"):
        ref = resolve_run(given)
        assert (ref.run_dir, ref.export, ref.dataset, ref.run_id) == (
            run, run / "export", "shop", run.name)
    assert resolve_run(run, "acme", "r1").dataset == "acme"
    assert resolve_run(run, run_id="r1").run_id == "r1"
    with pytest.raises(InvalidName, match="run name"):
        resolve_run(run, run_id="../r1")
    (run / "export" / "metadata.json").write_text("{half")
    with pytest.raises(RegistryError, match="not valid JSON"):
        resolve_run(run)
    (run / "export" / "metadata.json").write_text("[]")
    with pytest.raises(RegistryError, match="names no dataset"):
        resolve_run(run)
    with pytest.raises(RegistryError, match="no metadata.json"):
        resolve_run(tmp_path / "nothing")
