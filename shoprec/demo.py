"""The demo: every stage that exists, end to end, on the embedded defaults (idempotent)."""

from __future__ import annotations

import time

from rich.console import Console

from shoprec.config import Settings, get_settings

console = Console(stderr=True, soft_wrap=True)  # one-line summaries stay one line


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

    from shoprec.validation import validate

    for dataset in (s.dataset, "ml-100k"):
        console.print(f"[bold]3. validate[/] landing batches of '{dataset}' (Great Expectations)")
        results = validate(dataset=dataset, settings=s)
        n = {k: sum(r.status == k for r in results)
             for k in ("validated", "quarantined", "waiting", "unchanged")}
        console.print(f"   {dataset}: {n['validated']} validated, {n['quarantined']} quarantined, "
                      f"{n['waiting']} waiting, {n['unchanged']} unchanged → {s.lake(dataset)}")
        if n["quarantined"]:
            console.print(f"   [red]see {s.zone('quarantine', dataset)} and "
                          f"{s.data_docs_index()}[/]")

    from shoprec.transform import transform
    from shoprec.transform.runner import generate_docs

    for dataset in (s.dataset, "ml-100k"):
        console.print(f"[bold]4. transform[/] '{dataset}' with dbt (staging → marts → features)")
        report = transform(settings=s, dataset=dataset)
        console.print(f"   {report.summary()}")
    console.print(f"   dbt docs: {generate_docs(settings=s)}")

    from shoprec.features.materialize import materialize

    console.print(f"[bold]5. features[/] Feast apply + materialize ('{s.dataset}', "
                  f"{s.feast.online_store} online store)")
    console.print(f"   {materialize(settings=s).summary()}")

    from training.train import train

    budget = s.training.max_minutes or 1.5  # the whole step stays under 3 min (BENCHMARKS.md)
    s = s.model_copy(update={"training": s.training.model_copy(update={"max_minutes": budget})})
    console.print(f"[bold]6. train[/] the sequential model on '{s.dataset}' (time split, Feast "
                  f"point-in-time user features, at most {budget:g} min of epochs)")
    t_train = time.perf_counter()
    result = train(s, s.dataset)
    for name in [k.removesuffix("/test") for k in result.metrics if k.endswith("/test")]:
        m = result.metrics[f"{name}/test"]
        console.print(f"   {name:>16}: Recall@20 {m['recall@20']:.4f}  NDCG@10 {m['ndcg@10']:.4f}")
    if result.blend:
        b = result.blend
        what = ("the model re-ranked with popularity and each shopper's repeat statistics"
                if b["kind"] == "ranker" else "the model alone (" + b["reason"] + ")")
        console.print(f"   blend = {what}, fitted and chosen on validation")
    console.print(f"   {result.summary()}; the step took {time.perf_counter() - t_train:.0f} s")

    from shoprec.pipeline.training import gate_register_promote

    console.print("[bold]7. gate, register, promote[/] (default gates: beat every baseline on "
                  "the test split, no regression against production, p99 latency, sanity)")
    g = gate_register_promote(s, result.run_dir, by="shoprec demo")
    verdict = "passed: production" if g["passed"] else "refused: candidate only"
    console.print(f"   version {g['version']} {verdict}; production = {g['production']}")
    for reason in g["reasons"]:
        console.print(f"   - {reason}")
    console.print(f"   report: {g['gate_html']}; `shoprec models list` shows the registry")

    if g["production"]:
        console.print("[bold]next:[/] serve it with `.venv/bin/shoprec serve` (same SHOPREC_HOME),"
                      " then open http://127.0.0.1:8000/ (the demo page) or /docs (the API)")
    console.rule(f"demo finished in {time.perf_counter() - t0:.1f} s; nothing left running")
