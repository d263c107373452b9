"""The demo: every stage that exists, end to end, on the embedded defaults (idempotent)."""

from __future__ import annotations

import time

from rich.console import Console

from shoprec.airflow_stack import airflow_cli, airflow_env
from shoprec.children import free_port
from shoprec.config import Settings, get_settings
from shoprec.pipeline.dagtest import run_in_child
from shoprec.transform.runner import generate_docs
from shoprec.up import default_db_url

console = Console(stderr=True, soft_wrap=True)  # one-line summaries stay one line


class DemoError(RuntimeError):
    """A DAG run of the demo failed for another reason than a quarantined batch."""


def _dag(s: Settings, env: dict[str, str], dag_id: str, conf: dict) -> dict:
    """One dag.test() run, a line per task as it ends (dbt's per-model sensors counted)."""
    dbt = []

    def ended(task_id: str) -> None:
        if task_id.startswith("dbt.") and task_id != "dbt.dbt_producer_watcher":
            dbt.append(task_id)
        else:
            console.print(f"   · {task_id}", highlight=False)

    t0 = time.perf_counter()
    result = run_in_child(env, dag_id, conf, s.demo_log(dag_id), ended)
    states: dict[str, int] = {}
    for state in result["tasks"].values():
        states[state] = states.get(state, 0) + 1
    console.print(f"   {dag_id}: {result['state']} in {time.perf_counter() - t0:.0f} s; "
                  f"{len(result['tasks'])} tasks: "
                  + ", ".join(f"{n} {k}" for k, n in sorted(states.items()))
                  + (f" (dbt: {len(dbt)} model and test tasks)" if dbt else ""),
                  highlight=False)
    return result


def _failed(result: dict) -> str:
    return ", ".join(t for t, st in result["tasks"].items() if st == "failed") or "?"


def _pipeline_failed(s: Settings, dataset: str, result: dict) -> None:
    """A run that failed only at check_quarantine took its clean batches all the way: say
    where the bad ones are and go on; any other failure ends the demo."""
    if _failed(result) == "check_quarantine":
        console.print(f"   [red]quarantined batches of '{dataset}': see "
                      f"{s.zone('quarantine', dataset)} and {s.data_docs_index()}[/]")
        return
    raise DemoError(f"shoprec_pipeline on {dataset!r} failed at {_failed(result)}; its log: "
                    f"{s.demo_log('shoprec_pipeline')}")


def _show_version(s: Settings, result: dict) -> None:
    """The version the run registered: its metrics on the test split and the gates' verdict."""
    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings

    if result["tasks"].get("train") == "skipped":
        console.print("   train skipped: too few new events since the last trained version "
                      "(SHOPREC_GATES__MIN_NEW_EVENTS)")
        return
    from shoprec.pipeline.training import run_key

    reg = Registry(store_from_settings(s), s.dataset)
    version = reg.run_version(run_key(result["run_id"]))
    if version is None:
        return
    m = reg.manifest(version)
    for key, row in sorted((m.get("metrics") or {}).items()):
        if key.endswith("/test") and isinstance(row, dict) and "recall@20" in row:
            console.print(f"   {key.removesuffix('/test'):>16}: Recall@20 "
                          f"{row['recall@20']:.4f}  NDCG@10 {row.get('ndcg@10', 0):.4f}")
    gate = m.get("gate_report") or {}
    verdict = "passed: production" if gate.get("passed") else "refused: candidate only"
    console.print(f"   version {version} {verdict}; aliases {reg.aliases()}")
    for reason in gate.get("reasons") or []:
        console.print(f"   - {reason}")


def run_demo(scale: str | None = None, settings: Settings | None = None) -> None:
    s = settings or get_settings()
    scale = scale or s.scale
    t0 = time.perf_counter()
    console.rule(f"Shoprec demo — state in {s.root}")

    from shoprec.simulate import simulate

    console.print(f"[bold]1. simulate[/] the shop at scale '{scale}'")
    sim = simulate(scale, seed=s.seed, settings=s, progress=True)
    console.print(f"   {sim.summary()}")

    from shoprec.importers.movielens import import_movielens

    console.print("[bold]2. import[/] MovieLens-100K into dataset 'ml-100k'")
    ml = import_movielens(settings=s)
    console.print(f"   {ml.summary()}")

    console.print("[bold]3. Airflow[/]: the metadata database of this home "
                  f"({default_db_url(s)}); each DAG runs with dag.test() (Airflow runs every "
                  "task, no scheduler to stop)")
    env = airflow_env(s, default_db_url(s), free_port())
    airflow_cli(env, "db", "migrate")

    for dataset in (s.dataset, "ml-100k"):
        console.print(f"[bold]4. shoprec_pipeline[/] on '{dataset}': validate (Great "
                      "Expectations) → dbt build (staging → marts → features, with tests) → "
                      "analysts' snapshot → Feast apply + materialize")
        result = _dag(s, env, "shoprec_pipeline", {"dataset": dataset})
        if result["state"] != "success":
            _pipeline_failed(s, dataset, result)
    console.print(f"   dbt docs: {generate_docs(settings=s)}")

    budget = s.training.max_minutes or 1.5  # the whole step stays under 3 min (BENCHMARKS.md)
    console.print(f"[bold]5. shoprec_training[/] on '{s.dataset}': train the sequential model "
                  f"(at most {budget:g} min of epochs) and the baselines → gates (beat every "
                  "baseline on the test split, no regression against production, p99 latency, "
                  "sanity) → register → promote")
    t_train = time.perf_counter()
    result = _dag(s, env, "shoprec_training", {"dataset": s.dataset, "max_minutes": budget})
    if result["state"] != "success":
        raise DemoError(f"shoprec_training failed at {_failed(result)}; its log: "
                        f"{s.demo_log('shoprec_training')}")
    _show_version(s, result)
    console.print(f"   the step took {time.perf_counter() - t_train:.0f} s")

    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings

    if Registry(store_from_settings(s), s.dataset).alias("production") is None:
        console.print("[yellow]no production model (the gates refused it): serving skipped[/]")
    else:
        from shoprec.demo_serving import show

        console.print("[bold]6. serving[/]: `shoprec serve` on this home, a few shoppers' "
                      "recommendations, then a click")
        show(s, lambda line: console.print(line, markup=False, highlight=False))
        console.print("[bold]next:[/] `.venv/bin/shoprec up` (same SHOPREC_HOME) starts Airflow's"
                      " UI and serving: http://127.0.0.1:8000/ (demo page), /docs (the API)")
    console.rule(f"demo finished in {time.perf_counter() - t0:.1f} s; nothing left running")
