"""Full-ranking metrics: every model scores the whole catalogue; no sampled negatives.

Recall@K = hits / |targets|, NDCG@K with the ideal DCG of min(|targets|, K) hits, MRR@K = 1 / rank
of the first hit, HitRate@K = any hit; averaged over evaluated users. Coverage@K = share of the
catalogue that appears in at least one top-K list. With one target per user (leave-one-out)
Recall@K equals HitRate@K, as in RecBole.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from training.arrays import ranges
from training.splits import EvalSet

Tensor = torch.Tensor
ScoreFn = Callable[[EvalSet, np.ndarray], torch.Tensor]  # rows -> scores [B, n_items + 1]


def csr_rows(ptr: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[Tensor, Tensor]:
    """(position in `rows`, value) of every value of those CSR rows."""
    owner, take = ranges(ptr[rows], ptr[rows + 1])
    return torch.from_numpy(owner), torch.from_numpy(values[take])


@torch.no_grad()
def evaluate(score: ScoreFn, es: EvalSet, n_items: int, ks: tuple[int, ...] = (10, 20),
             batch_size: int = 1024) -> dict[str, float]:
    kmax = max(ks)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "mrr", "hit")}
    seen = {k: torch.zeros(n_items + 1, dtype=torch.bool) for k in ks}
    discounts = 1.0 / torch.log2(torch.arange(kmax, dtype=torch.float64) + 2)
    idcg = torch.cumsum(discounts, 0)
    for lo in range(0, len(es), batch_size):
        rows = np.arange(lo, min(lo + batch_size, len(es)))
        s = score(es, rows).float().cpu().clone()
        s[:, 0] = float("-inf")
        er, ec = csr_rows(es.excluded_ptr, es.excluded_items, rows)
        s[er, ec] = float("-inf")
        top = s.topk(kmax, dim=1).indices
        target = torch.zeros(len(rows), n_items + 1, dtype=torch.bool)
        tr, tc = csr_rows(es.target_ptr, es.target_items, rows)
        target[tr, tc] = True
        n_t = torch.from_numpy(np.diff(es.target_ptr)[rows]).double()
        hits = target.gather(1, top).double()
        for k in ks:
            h = hits[:, :k]
            n_hit = h.sum(1)
            sums[f"recall@{k}"] += (n_hit / n_t).sum().item()
            ideal = idcg[(torch.clamp(n_t, max=k) - 1).long()]
            sums[f"ndcg@{k}"] += ((h * discounts[:k]).sum(1) / ideal).sum().item()
            first = torch.where(n_hit > 0, h.argmax(1).double() + 1, torch.inf)
            sums[f"mrr@{k}"] += (1.0 / first).sum().item()
            sums[f"hit@{k}"] += (n_hit > 0).double().sum().item()
            seen[k][top[:, :k].reshape(-1)] = True
    n = max(len(es), 1)
    out = {m: v / n for m, v in sums.items()}
    for k in ks:
        out[f"coverage@{k}"] = seen[k][1:].double().mean().item()
    out["users"] = float(len(es))
    return out
