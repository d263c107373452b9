"""Several seeds of one training setup, summarised (called by the CLI, DAGs and benchmark)."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from shoprec.atomic import write_text
from shoprec.config import Settings
from training.data import TrainingDataError
from training.train import TrainResult, train

REPORTED = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10", "hit@10", "coverage@20")


@dataclass
class SeedsReport:
    dataset: str
    protocol: str
    exclude: str
    results: list[TrainResult]

    def mean(self) -> dict[str, dict[str, float]]:
        """Mean over seeds of every model's test metrics."""
        keys = [k for k in self.results[0].metrics if k.endswith("/test")]
        return {k.removesuffix("/test"): {m: statistics.fmean(r.metrics[k][m]
                                                              for r in self.results)
                                          for m in REPORTED}
                for k in keys}

    def table(self) -> str:
        rows = [f"| model | {' | '.join(REPORTED)} |", "|---" * (len(REPORTED) + 1) + "|"]
        for name, m in self.mean().items():
            rows.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in REPORTED) + " |")
        return "\n".join(rows)

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "protocol": self.protocol, "exclude": self.exclude,
                "seeds": [r.seed for r in self.results], "mean_test": self.mean(),
                "runs": [str(r.run_dir) for r in self.results],
                "epochs": [r.epochs for r in self.results],
                "sequences_per_s": [r.sequences_per_s for r in self.results],
                "device": self.results[0].device}


def train_seeds(settings: Settings, dataset: str | None, seeds: list[int], *,
                progress: bool = True) -> SeedsReport:
    """Train once per seed on data loaded once; write the summary to the training report."""
    from training.data import load_interactions

    dataset = dataset or settings.dataset
    x = load_interactions(settings, dataset)
    results = [train(settings, dataset, seed=seed, progress=progress, x=x) for seed in seeds]
    report = SeedsReport(dataset, settings.training.protocol, settings.training.exclude, results)
    write_text(settings.training_report(dataset, report.protocol),
               json.dumps(report.to_json(), indent=2))
    return report


def latest_run(settings: Settings, dataset: str) -> Path:
    """The newest run of a dataset with an export (run folders start with their UTC time)."""
    runs_dir = settings.runs_dir(dataset)
    runs = sorted(p for p in runs_dir.glob("*/export") if p.is_dir())
    if not runs:
        raise TrainingDataError(f"no exported run for {dataset!r} under {runs_dir}: "
                                f"run `shoprec train --dataset {dataset}` first")
    return runs[-1].parent
