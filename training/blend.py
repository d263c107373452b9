"""The recommender to promote: the model, or the model fused with one baseline, chosen on the
validation set (the test set is never read for it).

Real shops repeat, and a frequency baseline that knows a user's whole history can beat a model
that sees their last `max_len` steps. Rather than pretend otherwise, the candidate is a
reciprocal-rank fusion of the model and the baseline that validates best:
`w / (K + rank_model) + (1 - w) / (K + rank_baseline)`, with `w` from a small grid and `w = 1`
(the model alone) among the candidates, so the blend is never worse on validation than the model.
Ranks, not scores: the model's logits and a baseline's counts live on unrelated scales.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from training.metrics import evaluate
from training.splits import EvalSet

ScoreFn = Callable[[EvalSet, np.ndarray], torch.Tensor]
WEIGHTS = (1.0, 0.8, 0.6, 0.5, 0.4, 0.2, 0.0)  # the model's share; 1.0 first: kept on a tie
RRF_K = 10.0  # small: the top of each list decides, as it does for NDCG@10 and Recall@20


def ranks(scores: torch.Tensor) -> torch.Tensor:
    """0-based rank of every item in each row (0 = best); ties broken by item index."""
    order = scores.float().argsort(dim=1, descending=True, stable=True)
    out = torch.empty_like(order)
    out.scatter_(1, order, torch.arange(scores.shape[1]).expand_as(order).contiguous())
    return out


class Blend:
    """Reciprocal-rank fusion of the model and one baseline."""

    name = "blend"

    def __init__(self, model: ScoreFn, baseline: ScoreFn, baseline_name: str, weight: float):
        self.model, self.baseline, self.baseline_name = model, baseline, baseline_name
        self.weight = weight

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        if self.weight >= 1.0:
            return self.model(es, rows).float().cpu()
        m = ranks(self.model(es, rows).cpu()).double()
        b = ranks(self.baseline(es, rows).cpu()).double()
        return (self.weight / (RRF_K + m) + (1 - self.weight) / (RRF_K + b)).float()

    def describe(self) -> dict:
        return {"baseline": self.baseline_name, "model_weight": self.weight, "rrf_k": RRF_K}


def fit_blend(model: ScoreFn, baselines: dict[str, ScoreFn], valid_metrics: dict[str, dict],
              valid: EvalSet, n_items: int, ks: tuple[int, ...]) -> tuple[Blend, dict]:
    """The baseline that validates best (NDCG@10), fused with the model at the weight that
    validates best; returns the blend and its validation metrics."""
    name = max(baselines, key=lambda b: valid_metrics[b]["ndcg@10"])
    best, best_metrics = None, None
    for w in WEIGHTS:
        blend = Blend(model, baselines[name], name, w)
        m = evaluate(blend, valid, n_items, ks)
        if best_metrics is None or m["ndcg@10"] > best_metrics["ndcg@10"]:
            best, best_metrics = blend, m
    return best, best_metrics
