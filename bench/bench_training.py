"""Training benchmarks: MovieLens-100K leave-one-out (mean of 3 seeds, full ranking) against the
published RecBole figures, the small simulated shop on a time split, and training throughput.

Every stage runs through the CLI a user would run (import/simulate → validate → transform →
Feast materialize → train), in a fresh SHOPREC_HOME.

    python -m bench.bench_training            # both datasets
    python -m bench.bench_training ml-100k    # or: shop
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
    return (
        "MovieLens-100K through the importer, leave-one-out per user in time order (last "
        "interaction = test, second to last = validation), full ranking over all 1,682 items, "
        f"mean of seeds 1, 2, 3. `shoprec train --dataset ml-100k {' '.join(cmd)}`: {wall:.0f} s "
        f"for 3 seeds with baselines and export, peak RSS {rss:.0f} MiB, epochs {rep['epochs']} "
        f"(early stopping, patience 10), {sum(rep['sequences_per_s']) / 3:,.0f} training "
        f"sequences/s on {rep['device']}.\n\n**Every item ranked** (`exclude=none`, RecBole's "
        f"setting for sequential models):\n\n{_table(rep)}\n\n"
        f"Model: NDCG@10 {m['ndcg@10']:.4f}, Recall@20 {m['recall@20']:.4f} (floor: {FLOORS})."
        "\n\n**Rated movies excluded** (`shoprec evaluate RUN --exclude interacted`, the same "
        f"three exports):\n\n{_table(excl)}")


def bench_shop(home: Path, env: dict) -> str:
    _prepare(env, "shop")
    rep, wall, rss = _train(env, home, "shop", ["--seeds", "42", "--max-minutes", "2"])
    m, pop, knn = (rep["mean_test"][k] for k in ("model", "popularity", "itemknn"))
    verdict = ("beats" if m["recall@20"] > max(pop["recall@20"], knn["recall@20"])
               else "does NOT beat")
    return (f"Small simulated shop (`shoprec data simulate --scale small`, 60 days), global time "
            f"split: train before the last 6 days, validate on days 55-57, test on days 58-60; "
            f"targets = the distinct items a user interacted with in the test period, full "
            f"ranking. `shoprec train --dataset shop --max-minutes 2` (the demo's training step): "
            f"{wall:.0f} s wall (load, Feast "
            f"point-in-time features, training, evaluation of model and baselines, export), peak "
            f"RSS {rss:.0f} MiB, {rep['epochs'][0]} epochs, {rep['sequences_per_s'][0]:,.0f} "
            f"training sequences/s on {rep['device']}.\n\n{_table(rep)}\n\n"
            f"The model {verdict} popularity and ItemKNN on Recall@20 "
            f"({m['recall@20']:.4f} vs {pop['recall@20']:.4f} and {knn['recall@20']:.4f}).")


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
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
