"""Training benchmarks: MovieLens-100K leave-one-out (mean of 3 seeds, full ranking) against the
published RecBole figures, the small simulated shop on a time split, and training throughput.

Every stage runs through the CLI a user would run (import/simulate → validate → transform →
Feast materialize → train), in a fresh SHOPREC_HOME.

    python -m bench.bench_training            # every dataset
    python -m bench.bench_training ml-100k    # or: shop, grocer, orders

`orders` is the simulated grocery order history with consumables of
`examples/grocer-orders/generate.py` (generated at bench time from its frozen seed; the section
names the sha256 of its orders.csv), imported as a shop's export would be, on the session
(next-basket) protocol.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from bench.report import run_measured, write_section

BIN = Path(sys.executable).parent / "shoprec"
ROOT = Path(__file__).resolve().parents[1]
FLOORS = "NDCG@10 > 0.068 and Recall@20 > 0.235 (the best RecBole figures on this protocol)"


def _prepare(env: dict, dataset: str) -> None:
    sh = str(BIN)
    if dataset == "ml-100k":
        run_measured([sh, "data", "import", "movielens"], env)
    else:
        run_measured([sh, "data", "simulate", "--scale", "small"], env)
    run_measured([sh, "validate", "--dataset", dataset], env)
    run_measured([sh, "transform", "--dataset", dataset], env)
    run_measured([sh, "features", "materialize", "--dataset", dataset], env)


def _table(report: dict) -> str:
    cols = ["recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10", "coverage@20"]
    rows = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in report["mean_test"].items():
        rows.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + " |")
    return "\n".join(rows)


def _train(env: dict, home: Path, dataset: str, args: list[str]) -> tuple[dict, float, float]:
    wall, rss, _ = run_measured([str(BIN), "train", "--dataset", dataset, *args], env)
    from shoprec.config import Settings

    protocol = args[args.index("--protocol") + 1] if "--protocol" in args else "time"
    report = json.loads(Settings(home=home).training_report(dataset, protocol).read_text())
    return report, wall, rss


def _mean_excluding(home: Path, runs: list[str]) -> dict:
    """The same exports re-evaluated with the user's rated movies kept out of the ranking."""
    from shoprec.config import Settings
    from training.evaluate import evaluate_export

    s = Settings(home=home)
    per_run = [evaluate_export(s, Path(r) / "export", exclude="interacted")[0] for r in runs]
    return {"mean_test": {k.removesuffix("/test"): {m: sum(p[k][m] for p in per_run) / len(runs)
                                                    for m in per_run[0][k]}
                          for k in per_run[0] if k.endswith("/test")}}


def bench_ml(home: Path, env: dict) -> str:
    _prepare(env, "ml-100k")
    cmd = ["--protocol", "loo", "--seeds", "1,2,3", "--patience", "10"]
    rep, wall, rss = _train(env, home, "ml-100k", cmd)
    m = rep["mean_test"]["model"]
    excl = _mean_excluding(home, rep["runs"])
    ties = _shuffled_ties(home, rep["runs"])
    return (
        "MovieLens-100K through the importer, leave-one-out per user in time order (last "
        "interaction = test, second to last = validation), full ranking over all 1,682 items, "
        f"mean of seeds 1, 2, 3. `shoprec train --dataset ml-100k {' '.join(cmd)}`: {wall:.0f} s "
        f"for 3 seeds with baselines, blend and export, peak RSS {rss:.0f} MiB, epochs "
        f"{rep['epochs']} (early stopping, patience 10), "
        f"{sum(rep['sequences_per_s']) / 3:,.0f} training "
        f"sequences/s on {rep['device']}.\n\n**Every item ranked** (`exclude=none`, RecBole's "
        f"setting for sequential models):\n\n{_table(rep)}\n\nMean ± std:\n\n"
        f"{_seed_table(rep)}\n\n{_verdict(rep)}\n\n"
        f"Model: NDCG@10 {m['ndcg@10']:.4f}, Recall@20 {m['recall@20']:.4f} (floor: {FLOORS})."
        f"\n\n**Ties in time shuffled** (each user's events at one timestamp in a random order, "
        f"`load_interactions(tie_seed=...)`, the same three exports re-scored by "
        f"`evaluate_export` with their baselines refitted on the shuffled order, test, mean of the "
        f"exports; the source order is one draw of the shuffled ones' spread when no model "
        f"reads it):\n\n{ties}"
        "\n\n**Rated movies excluded** (`shoprec evaluate RUN --exclude interacted`, the same "
        f"three exports):\n\n{_table(excl)}")


def _shuffled_ties(home: Path, runs: list[str]) -> str:
    """Model, blend and the model-free baselines of each export on the source tie order and on
    four shuffled ones: a model reading the tie rule would lose more than the baselines do."""
    import statistics

    from shoprec.config import Settings
    from training.data import load_interactions
    from training.evaluate import evaluate_export

    s = Settings(home=home)
    who = ("model", "blend", "itemknn", "popularity")
    cols = [(w, c) for w in who for c in ("recall@20", "ndcg@10")]
    rows = ["| tie order | " + " | ".join(f"{w} {c}" for w, c in cols) + " |",
            "|---" * (len(cols) + 1) + "|"]
    shuffled = []
    for seed in (None, 1, 2, 3, 4):
        x = load_interactions(s, "ml-100k", tie_seed=seed)
        per = [evaluate_export(s, Path(r) / "export", x=x)[0] for r in runs]
        cell = [sum(p[f"{w}/test"][c] for p in per) / len(per) for w, c in cols]
        if seed is not None:
            shuffled.append(cell)
        name = "source (contract.TIE_ORDER)" if seed is None else f"shuffled, seed {seed}"
        rows.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in cell) + " |")
    rows.append("| shuffled, mean ± std | " + " | ".join(
        f"{statistics.fmean(v):.4f} ± {statistics.stdev(v):.4f}" for v in zip(*shuffled,
                                                                             strict=True)) + " |")
    return "\n".join(rows)


def _seed_table(report: dict, cols: tuple[str, ...] = ("recall@20", "ndcg@10")) -> str:
    """Mean ± standard deviation over the seeds' runs, from each run's metrics.json."""
    import statistics

    runs = [json.loads((Path(r) / "metrics.json").read_text())["metrics"]
            for r in report["runs"]]
    names = [k.removesuffix("/test") for k in runs[0] if k.endswith("/test")]
    rows = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for n in names:
        cells = []
        for c in cols:
            v = [r[f"{n}/test"][c] for r in runs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.fmean(v):.4f} ± {sd:.4f}")
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _verdict(report: dict) -> str:
    """Model and blend against the best baseline on each headline metric: "beats" only by more
    than the seed spread (the larger standard deviation of the two; 4 decimals with one seed)."""
    import statistics

    runs = [json.loads((Path(r) / "metrics.json").read_text())["metrics"]
            for r in report["runs"]]

    def stats(name: str, c: str) -> tuple[float, float]:
        v = [r[f"{name}/test"][c] for r in runs]
        return round(statistics.fmean(v), 4), statistics.stdev(v) if len(v) > 1 else 0.0

    names = [k.removesuffix("/test") for k in runs[0] if k.endswith("/test")]
    base = [n for n in names if n not in ("model", "blend")]
    out = []
    for c in ("recall@20", "ndcg@10"):
        best = max(base, key=lambda n: stats(n, c)[0])
        b, b_sd = stats(best, c)
        for who in ("model", "blend"):
            if who in names:
                m, m_sd = stats(who, c)
                word = "beats" if m - b > max(m_sd, b_sd) else "does NOT beat"
                out.append(f"{who} {word} the best baseline on {c} ({m:.4f} vs {best} {b:.4f})")
    return "; ".join(out) + (" (beating means by more than the seed spread)."
                             if len(runs) > 1 else ".")


def bench_shop(home: Path, env: dict) -> str:
    _prepare(env, "shop")
    args = ["--seeds", "1,2,3", "--max-minutes", "2"]
    rep, wall, rss = _train(env, home, "shop", args)
    return (f"Small simulated shop (`shoprec data simulate --scale small`, 60 days), global time "
            f"split: train before the last 6 days, validate on days 55-57, test on days 58-60; "
            f"targets = the distinct items a user interacted with in the test period, full "
            f"ranking. `shoprec train --dataset shop {' '.join(args)}` (each seed is the demo's "
            f"training step): {wall:.0f} s wall for 3 seeds (load, Feast point-in-time "
            f"features, training, evaluation of model, baselines and blend, export), peak "
            f"RSS {rss:.0f} MiB, epochs {rep['epochs']}, "
            f"{sum(rep['sequences_per_s']) / len(rep['sequences_per_s']):,.0f} training "
            f"sequences/s on {rep['device']}.\n\nTest, mean of seeds 1, 2, 3:\n\n{_table(rep)}"
            f"\n\nTest, mean ± std:\n\n{_seed_table(rep)}\n\n{_verdict(rep)}\n\n"
            f"{_blend_gain(rep, 'personal_history')}")


def _blend_gain(report: dict, baseline: str) -> str:
    m, b = report["mean_test"]["blend"], report["mean_test"][baseline]
    return "; ".join(f"blend {c} {m[c]:.4f} vs {baseline} {b[c]:.4f} "
                     f"({(m[c] / b[c] - 1) * 100:+.1f}%)" for c in ("recall@20", "ndcg@10"))


def bench_grocer(home: Path, env: dict) -> str:
    """The README's worked example: a repeat-heavy order history, session protocol, 3 seeds."""
    import os
    import subprocess

    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- example:byod -->\n```bash\n", 1)[1].split("```", 1)[0]
    steps = "\n".join(line for line in block.splitlines() if "shoprec train" not in line)
    subprocess.run(["bash", "-c", "set -euo pipefail\n" + steps], cwd=ROOT, check=True,
                   env={**os.environ, **env, "PATH": f"{BIN.parent}:{os.environ['PATH']}"},
                   capture_output=True)
    args = ["--protocol", "session", "--seeds", "1,2,3", "--epochs", "20"]
    rep, wall, rss = _train(env, home, "grocer", args)
    runs = [json.loads((Path(r) / "metrics.json").read_text()) for r in rep["runs"]]
    who = runs[0]["window"].get("evaluated_users", {})
    repeat = _repeat_share(home, "grocer")
    return (f"The README's grocer export (`examples/shop-export/`, purchases only, no prices or "
            f"sessions: sessions cut at 30 minutes), session protocol: each customer's last "
            f"order is the test, every item in it a target; {who.get('test', '?')} of "
            f"{who.get('of', '?')} customers evaluated (3+ orders). Repeat-heavy: {repeat:.0%} of "
            f"the test targets were bought by that customer before. `shoprec train --dataset "
            f"grocer {' '.join(args)}`: {wall:.0f} s for 3 seeds, peak RSS {rss:.0f} MiB.\n\n"
            f"Test, mean ± std of seeds 1, 2, 3:\n\n{_seed_table(rep)}\n\n{_verdict(rep)}")


def _repeat_share(home: Path, dataset: str = "grocer") -> float:
    """Share of test targets the user had bought before (what makes the log repeat-heavy)."""
    from shoprec.config import Settings
    from training.data import load_interactions
    from training.splits import make_split

    s = Settings(home=home)
    x = load_interactions(s, dataset)
    t = make_split(x, "session").test
    b = x.user_bounds()
    hits = total = 0
    for r in range(len(t)):
        seen = set(x.item[b[t.users[r]]:t.hist_end[r]].tolist())
        targets = t.target_items[t.target_ptr[r]:t.target_ptr[r + 1]]
        hits += sum(int(i) in seen for i in targets)
        total += len(targets)
    return hits / max(total, 1)


ORDERS_GENERATOR = ROOT / "examples" / "grocer-orders" / "generate.py"
ORDERS_SIM = {"seed": 2026, "customers": 2000, "products": 800, "days": 120}  # its defaults
ORDERS_MINUTES = 1.0  # --max-minutes per seed: the training loop's budget (baselines, blend and
# export come on top of it)


def bench_orders(home: Path, env: dict) -> str:
    """The simulated grocery order history with consumables, generated from its frozen seed,
    through the importer as a shop's export; session protocol, 3 seeds."""
    import hashlib

    sh, ds = str(BIN), "orders"
    data = Path(tempfile.mkdtemp(prefix="shoprec-grocer-orders-"))
    try:
        flags = [a for k, v in ORDERS_SIM.items() for a in (f"--{k}", str(v))]
        gen_wall, _, _ = run_measured([sys.executable, str(ORDERS_GENERATOR), str(data), *flags],
                                      env)
        sha = hashlib.sha256((data / "orders.csv").read_bytes()).hexdigest()
        run_measured([sh, "data", "import", "file", str(data / "products.csv"), "--kind",
                      "items", "--dataset", ds, "--map", "item_id=product", "--map",
                      "title=name", "--map", "category=category"], env)
        run_measured([sh, "data", "import", "file", str(data / "orders.csv"), "--kind",
                      "events", "--dataset", ds, "--event-type", "purchase",
                      "--map", "event_id=order_line", "--map", "user_id=customer",
                      "--map", "item_id=product", "--map", "event_timestamp=ordered_at",
                      "--map", "quantity=qty"], env)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    # an order history has no views to follow
    run_measured([sh, "data", "profile", "--dataset", ds, "--set", "rules.funnel=false"], env)
    for step in (["validate"], ["transform"], ["features", "materialize"]):
        run_measured([sh, *step, "--dataset", ds], env)
    args = ["--protocol", "session", "--seeds", "1,2,3", "--max-minutes", f"{ORDERS_MINUTES:g}"]
    rep, wall, rss = _train(env, home, ds, args)
    runs = [json.loads((Path(r) / "metrics.json").read_text()) for r in rep["runs"]]
    who = runs[0]["window"].get("evaluated_users", {})
    repeat = _repeat_share(home, ds)
    from shoprec.config import Settings
    from training.data import load_interactions

    x = load_interactions(Settings(home=home), ds)
    return (f"Simulated grocery order history with consumables (`python examples/grocer-orders/"
            f"generate.py OUT_DIR {' '.join(flags)}`, generated in {gen_wall:.1f} s; orders.csv "
            f"sha256 `{sha}`), imported with `shoprec "
            f"data import file ... --dataset orders` (purchases only, no prices, no sessions: "
            f"cut at 30 minutes, which cuts exactly the orders): {len(x):,} events, "
            f"{x.n_users:,} customers, {x.catalogue.n_items:,} items. Session protocol: each "
            f"customer's last order is the test, every item in it a target; "
            f"{who.get('test', '?')} of {who.get('of', '?')} customers evaluated. Repeat-heavy: "
            f"{repeat:.0%} of the test targets were bought by that customer before. `shoprec "
            f"train --dataset orders {' '.join(args)}`: {wall:.0f} s for 3 seeds (training "
            f"loop capped at {ORDERS_MINUTES:g} min a seed; baselines, blend and export on top), "
            f"epochs {rep['epochs']}, peak RSS {rss:.0f} MiB, on {rep['device']}.\n\n"
            f"Test, mean ± std of seeds 1, 2, 3:\n\n{_seed_table(rep)}\n\n{_verdict(rep)}")


def main(which: str = "all") -> None:
    home = Path(tempfile.mkdtemp(prefix="shoprec-bench-train-"))
    env = {"SHOPREC_HOME": str(home)}
    gpu = (f"CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else
           "CUDA: not measured on this machine (no GPU); run the same command where one is "
           "present, the trainer picks it up (`--device auto`, bf16 autocast).")
    try:
        if which in ("all", "ml-100k"):
            write_section("training: MovieLens-100K", "python -m bench.bench_training ml-100k",
                          bench_ml(home, env) + "\n\n" + gpu)
        if which in ("all", "shop"):
            write_section("training: small shop", "python -m bench.bench_training shop",
                          bench_shop(home, env) + "\n\n" + gpu)
        if which in ("all", "grocer"):
            write_section("training: grocer order history (session protocol)",
                          "python -m bench.bench_training grocer", bench_grocer(home, env))
        if which in ("all", "orders"):
            write_section("training: grocer order history with consumables (session protocol)",
                          "python -m bench.bench_training orders", bench_orders(home, env))
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
