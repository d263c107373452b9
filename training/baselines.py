"""Baselines the model must beat (and the gates compare against): all score the whole catalogue.

- popularity: interaction counts over a recent window of the training data;
- ItemKNN: cosine item-item co-occurrence over users, top-k neighbours, scored from the user's
  recent items;
- personal history: what the user interacted with most (deeper funnel stages and recent
  interactions weigh more), backed by popularity for everything else.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from training.data import Interactions
from training.splits import DAY_US, EvalSet

ETYPE_WEIGHT = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # pad, view, click, add_to_cart, purchase


class Popularity:
    name = "popularity"

    def __init__(self, x: Interactions, train_mask: np.ndarray, window_days: int | None):
        tr = x.select(train_mask)
        if window_days is not None and len(tr):
            tr = tr.select(tr.ts >= tr.ts.max() - window_days * DAY_US)
        counts = np.bincount(tr.item, minlength=x.catalogue.n_items + 1).astype(np.float32)
        self.scores_ = torch.from_numpy(counts)

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        return self.scores_.expand(len(rows), -1)


def _history(x: Interactions, es: EvalSet, rows: np.ndarray, last: int | None,
             weights: np.ndarray | None = None) -> sp.csr_matrix:
    """Users' histories (up to their last `last` rows) as a [B, n_items + 1] sparse matrix."""
    bounds = x.user_bounds()
    r, c, v = [], [], []
    for i, row in enumerate(rows):
        end = int(es.hist_end[row])
        start = int(bounds[es.users[row]])
        if last is not None:
            start = max(start, end - last)
        r.append(np.full(end - start, i))
        c.append(x.item[start:end])
        v.append(np.ones(end - start) if weights is None else weights[start:end])
    return sp.csr_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))),
                         shape=(len(rows), x.catalogue.n_items + 1))


class ItemKNN:
    name = "itemknn"

    def __init__(self, x: Interactions, train_mask: np.ndarray, neighbours: int = 100,
                 last: int = 50, shrink: float = 10.0):
        tr = x.select(train_mask)
        n = x.catalogue.n_items + 1
        ui = sp.csr_matrix((np.ones(len(tr)), (tr.user, tr.item)), shape=(x.n_users, n))
        ui.data[:] = 1.0  # duplicates summed by csr: binarise
        co = (ui.T @ ui).tocsr().astype(np.float32)
        co.setdiag(0)
        co.eliminate_zeros()
        norms = np.sqrt(np.asarray(ui.sum(0)).ravel()).astype(np.float32)
        co = co.tocoo()
        sim = co.data / (norms[co.row] * norms[co.col] + shrink)
        sim = sp.csr_matrix((sim, (co.row, co.col)), shape=(n, n))
        self.sim = _top_k_per_row(sim, neighbours)
        self.x, self.last = x, last

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        h = _history(self.x, es, rows, self.last)
        h.data[:] = 1.0
        return torch.from_numpy(np.asarray((h @ self.sim).todense(), dtype=np.float32))


def _top_k_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    for i in range(m.shape[0]):
        s, e = m.indptr[i], m.indptr[i + 1]
        if e == s:
            continue
        d, c = m.data[s:e], m.indices[s:e]
        if e - s > k:
            keep = np.argpartition(-d, k)[:k]
            d, c = d[keep], c[keep]
        rows.append(np.full(len(c), i))
        cols.append(c)
        vals.append(d)
    if not rows:
        return sp.csr_matrix(m.shape, dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=m.shape)


class PersonalHistory:
    name = "personal_history"

    def __init__(self, x: Interactions, train_mask: np.ndarray, popularity: Popularity,
                 half_life_days: float = 7.0):
        self.x, self.pop = x, popularity
        self.half_life_us = half_life_days * DAY_US

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        x = self.x
        # weight = funnel depth x recency decay relative to the prediction time
        ends = es.hist_end[rows]
        cut = es.cutoff_us[rows]
        bounds = x.user_bounds()
        w = np.zeros(len(x))
        for i, row in enumerate(rows):
            s, e = int(bounds[es.users[row]]), int(ends[i])
            age = np.maximum(cut[i] - x.ts[s:e], 0)
            w[s:e] = ETYPE_WEIGHT[x.etype[s:e]] * np.power(0.5, age / self.half_life_us)
        h = np.asarray(_history(x, es, rows, None, w).todense(), dtype=np.float32)
        h = np.where(h > 0, 1.0 + h, 0.0)  # any history item ranks above any other item
        pop = self.pop(es, rows)
        return torch.from_numpy(h) + pop / (pop.max() + 1.0)  # < 1: orders the rest
