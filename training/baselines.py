"""Baselines the model must beat (and the gates compare against): all score the whole catalogue,
on every protocol. A baseline learns from the split's training rows only and, for an evaluated
row, reads the user's rows before its `hist_end` (nothing at or after it).

- popularity: interaction counts over a recent window of the training data;
- itemknn: RecBole's ItemKNN: cosine item-item similarity over users (binary, optional shrink),
  each item keeps its top-k most similar items, scored from the user's whole history;
- personal_history: what the user interacted with most (deeper funnel stages and recent
  interactions weigh more), backed by popularity for everything else;
- ptopfreq: P-TopFreq, the user's most frequent items (sessions holding them), then popularity;
- tifuknn: TIFU-KNN (Hu et al. 2020) with sessions as baskets: the user's items decayed by how
  many sessions ago they were, blended with the mean decayed vector of the k most similar users;
- ease: EASE (Steck 2019), the closed-form item-item model B = I - P / diag(P),
  P = (X^T X + lambda I)^-1 (a Gram matrix of items^2: skipped above a catalogue size).

Hyper-parameters with more than one candidate are chosen on the split's validation set (NDCG@10,
as the model's early stopping); the test set is never read for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from training.data import Interactions
from training.metrics import evaluate
from training.splits import DAY_US, EvalSet

log = logging.getLogger(__name__)

ETYPE_WEIGHT = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # pad, view, click, add_to_cart, purchase


# --------------------------------------------------------------------------- shared helpers


def history_rows(x: Interactions, bounds: np.ndarray, es: EvalSet, rows: np.ndarray,
                 last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(batch row, row offset into x) of every history row of `rows` (the user's rows before
    hist_end, or only the last `last` of them), in (batch row, time) order."""
    ends = es.hist_end[rows].astype(np.int64)
    starts = bounds[es.users[rows]].astype(np.int64)
    if last is not None:
        starts = np.maximum(starts, ends - last)
    lens = np.maximum(ends - starts, 0)
    r = np.repeat(np.arange(len(rows)), lens)
    pos = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    return r, np.repeat(starts, lens) + pos


def _csr(r: np.ndarray, c: np.ndarray, v: np.ndarray | None, shape: tuple[int, int]
         ) -> sp.csr_matrix:
    v = np.ones(len(r), dtype=np.float32) if v is None else v.astype(np.float32)
    m = sp.csr_matrix((v, (r, c)), shape=shape)  # duplicates are summed
    m.sum_duplicates()
    return m


def _history(x: Interactions, bounds: np.ndarray, es: EvalSet, rows: np.ndarray,
             last: int | None = None, binary: bool = True) -> sp.csr_matrix:
    """Users' histories as a [B, n_items + 1] sparse matrix (counts, or 1 where binary)."""
    r, pos = history_rows(x, bounds, es, rows, last)
    h = _csr(r, x.item[pos], None, (len(rows), x.catalogue.n_items + 1))
    if binary:
        h.data[:] = 1.0
    return h


def _user_items(x: Interactions, mask: np.ndarray, binary: bool = True) -> sp.csr_matrix:
    """The [n_users, n_items + 1] matrix of the rows where mask holds."""
    m = _csr(x.user[mask], x.item[mask], None, (x.n_users, x.catalogue.n_items + 1))
    if binary:
        m.data[:] = 1.0
    return m


def _recent_history(x: Interactions, bounds: np.ndarray, es: EvalSet, rows: np.ndarray,
                    half_life: float | None, last: int | None = None) -> sp.csr_matrix:
    """Distinct history items weighted 0.5 ** (rows since the item's latest row / half_life)
    (all 1 where half_life is None)."""
    if half_life is None:
        return _history(x, bounds, es, rows, last)
    r, pos = history_rows(x, bounds, es, rows, last)
    n = x.catalogue.n_items + 1
    _, latest = np.unique((r * n + x.item[pos])[::-1], return_index=True)
    latest = len(r) - 1 - latest  # each (row, item)'s latest history row
    r, pos = r[latest], pos[latest]
    age = (es.hist_end[rows][r] - 1 - pos).astype(np.float64)
    return _csr(r, x.item[pos], np.power(0.5, age / half_life), (len(rows), n))


def _session_age(r: np.ndarray, session: np.ndarray) -> np.ndarray:
    """Per row of groups `r` (sorted, each in time order): how many sessions of its group came
    after its own (0 = the group's last session)."""
    if len(r) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.r_[True, (r[1:] != r[:-1]) | (session[1:] != session[:-1])]
    ordinal = np.cumsum(new)
    last = np.r_[np.flatnonzero(r[1:] != r[:-1]), len(r) - 1]  # last row of each group
    return ordinal[last][np.cumsum(np.r_[True, r[1:] != r[:-1]]) - 1] - ordinal


def _dense(m: sp.spmatrix | np.ndarray) -> torch.Tensor:
    a = m.toarray() if sp.issparse(m) else np.asarray(m)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _backed_by(scores: torch.Tensor, pop: torch.Tensor) -> torch.Tensor:
    """Items with a positive score first (in its order), then the rest by popularity."""
    back = pop / (pop.max() + 1.0)  # in [0, 1)
    return torch.where(scores > 0, scores + 1.0, back.expand_as(scores))


Scorer = Callable[[EvalSet, np.ndarray], torch.Tensor]


def choose_on_valid(name: str, candidates: Sequence, make: Callable[..., Scorer],
                    valid: EvalSet | None, n_items: int) -> tuple[Scorer, object]:
    """The candidate whose scorer has the best validation NDCG@10 (the first one on a tie, or
    when there is nothing to validate on). Only the validation set is read."""
    if len(candidates) == 1 or valid is None or len(valid) == 0:
        return make(candidates[0]), candidates[0]
    best, best_ndcg, best_c = None, -1.0, None
    for c in candidates:
        m = make(c)
        ndcg = evaluate(m, valid, n_items, (10,))["ndcg@10"]
        log.debug("%s %s: validation NDCG@10 %.4f", name, c, ndcg)
        if ndcg > best_ndcg:
            best, best_ndcg, best_c = m, ndcg, c
    log.info("%s: chose %s on validation (NDCG@10 %.4f)", name, best_c, best_ndcg)
    return best, best_c


# --------------------------------------------------------------------------- non-personal


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


def top_k_per_row(m: sp.spmatrix, k: int, block: int = 1024) -> sp.csr_matrix:
    """The k largest positive entries of every row (dense row blocks through torch.topk)."""
    m = m.tocsr().astype(np.float32)
    n_rows, n_cols = m.shape
    k = min(k, n_cols)
    rows, cols, vals = [], [], []
    for lo in range(0, n_rows, block):
        d = _dense(m[lo:lo + block])
        v, c = d.topk(k, dim=1)
        keep = v > 0
        r = torch.arange(lo, lo + len(d)).unsqueeze(1).expand_as(c)
        rows.append(r[keep].numpy())
        cols.append(c[keep].numpy())
        vals.append(v[keep].numpy())
    if not rows:
        return sp.csr_matrix(m.shape, dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=m.shape)


class ItemKNN:
    """RecBole's ItemKNN: sim(i, j) = |U_i & U_j| / (|U_i|^0.5 |U_j|^0.5 + shrink) over the
    training users; item j keeps its `neighbours` most similar items i (W[i, j]); a user's score
    of j = sum of W[i, j] over the items i of the history (or of its `last` rows).

    `half_life` (history rows; None = RecBole: every distinct history item weighs 1): an item
    weighs 0.5 ** (rows since its latest occurrence / half_life), so the latest items lead."""

    name = "itemknn"

    def __init__(self, x: Interactions, train_mask: np.ndarray, neighbours: int = 100,
                 last: int | None = None, shrink: float = 0.0, half_life: float | None = None):
        ui = _user_items(x, train_mask)
        co = (ui.T @ ui).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        norms = np.sqrt(np.asarray(ui.sum(0)).ravel()).astype(np.float32)
        co = co.tocoo()
        sim = co.data / (norms[co.row] * norms[co.col] + shrink + 1e-6)
        sim = sp.csr_matrix((sim.astype(np.float32), (co.row, co.col)), shape=co.shape)
        # symmetric: the top-k of row j are the neighbours of item j, W = that transposed
        self.sim = top_k_per_row(sim, neighbours).T.tocsr()
        self.x, self.last, self.half_life, self.bounds = x, last, half_life, x.user_bounds()

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        return _dense(_recent_history(self.x, self.bounds, es, rows, self.half_life, self.last)
                      @ self.sim)


class EASE:
    """Steck's EASE on the binary user-item matrix of the training rows, scored from the user's
    distinct history items. float32 through torch.linalg; the Gram matrix is (items + 1)^2."""

    name = "ease"

    def __init__(self, x: Interactions, train_mask: np.ndarray, l2: float = 250.0):
        ui = _user_items(x, train_mask)
        self.gram = _dense(ui.T @ ui)  # kept to refit with another lambda
        self.x, self.bounds = x, x.user_bounds()
        self.fit(l2)

    def fit(self, l2: float) -> EASE:
        g = self.gram.clone()
        g.diagonal().add_(l2)
        p = torch.linalg.inv(g)
        del g
        b = p.div_(-p.diagonal().clone())  # column j / -P_jj
        b.diagonal().zero_()
        self.l2, self.b = l2, b.numpy()
        return self

    def release(self) -> None:
        self.gram = None

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        h = _history(self.x, self.bounds, es, rows)
        return _dense(h @ self.b)


# --------------------------------------------------------------------------- personal


class PersonalHistory:
    name = "personal_history"

    def __init__(self, x: Interactions, train_mask: np.ndarray, popularity: Popularity,
                 half_life_days: float = 7.0):
        self.x, self.pop = x, popularity
        self.half_life_us = half_life_days * DAY_US
        self.bounds = x.user_bounds()

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        x = self.x
        # weight = funnel depth x recency decay relative to the prediction time
        r, pos = history_rows(x, self.bounds, es, rows)
        age = np.maximum(es.cutoff_us[rows][r] - x.ts[pos], 0)
        w = ETYPE_WEIGHT[x.etype[pos]] * np.power(0.5, age / self.half_life_us)
        h = _csr(r, x.item[pos], w, (len(rows), x.catalogue.n_items + 1)).toarray()
        h = np.where(h > 0, 1.0 + h, 0.0).astype(np.float32)  # history above any other item
        pop = self.pop(es, rows)
        return torch.from_numpy(h) + pop / (pop.max() + 1.0)  # < 1: orders the rest


class PTopFreq:
    """P-TopFreq: the user's items by the number of their sessions that hold them, ties and
    every other item by popularity."""

    name = "ptopfreq"

    def __init__(self, x: Interactions, train_mask: np.ndarray, popularity: Popularity):
        self.x, self.pop, self.bounds = x, popularity, x.user_bounds()

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        x = self.x
        r, pos = history_rows(x, self.bounds, es, rows)
        n = x.catalogue.n_items + 1
        # one count per (row, session, item)
        key = np.unique((r * (int(x.session.max()) + 1) + x.session[pos]) * n + x.item[pos])
        freq = _csr(key // n // (int(x.session.max()) + 1), key % n, None, (len(rows), n))
        pop = self.pop(es, rows)
        return _dense(freq) + pop / (pop.max() + 1.0)


class TIFUKNN:
    """TIFU-KNN with each session a basket (groups of one): a user's vector is the sum over
    their rows of decay^(sessions since the row's session), divided by the sum of the sessions'
    weights (so an item in every session scores about 1). The score is
    alpha * own vector + (1 - alpha) * the mean vector of the `neighbours` training users most
    similar to it (cosine; the user's own training vector excluded); items no one scores come
    after, by popularity.

    Neighbours' vectors come from the training rows only (decayed from each user's last training
    session); the user's own vector from their rows before hist_end."""

    name = "tifuknn"

    def __init__(self, x: Interactions, train_mask: np.ndarray, popularity: Popularity,
                 decay: float = 0.8, alpha: float = 0.7, neighbours: int = 100):
        self.x, self.pop, self.bounds = x, popularity, x.user_bounds()
        self.alpha, self.neighbours = alpha, neighbours
        self.train_mask = train_mask
        self.set_decay(decay)

    def set_decay(self, decay: float) -> TIFUKNN:
        x, self.decay = self.x, decay
        idx = np.flatnonzero(self.train_mask)
        u, users = self._vectors(x.user[idx], idx, x.n_users)
        self.users = u  # [n_users, n_items + 1], rows of users with training rows
        norms = np.sqrt(np.asarray(u.multiply(u).sum(1)).ravel())
        self.unit = sp.diags(1.0 / np.maximum(norms, 1e-12)).astype(np.float32) @ u
        self.has_train = np.zeros(x.n_users, dtype=bool)
        self.has_train[users] = True
        return self

    def _vectors(self, groups: np.ndarray, pos: np.ndarray, n_groups: int
                 ) -> tuple[sp.csr_matrix, np.ndarray]:
        """Decayed, normalised item vectors of groups of rows (sorted by group, time order)."""
        x = self.x
        age = _session_age(groups, x.session[pos])
        w = np.power(self.decay, age.astype(np.float64))
        # the weight of a group's sessions: the weight of each distinct (group, age) once
        first = np.r_[True, (groups[1:] != groups[:-1]) | (age[1:] != age[:-1])]
        total = np.bincount(groups[first], weights=w[first], minlength=n_groups)
        w = w / np.where(total > 0, total, 1.0)[groups]
        m = _csr(groups, x.item[pos], w, (n_groups, x.catalogue.n_items + 1))
        return m, np.unique(groups)

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        r, pos = history_rows(self.x, self.bounds, es, rows)
        own, _ = self._vectors(r, pos, len(rows))
        norms = np.sqrt(np.asarray(own.multiply(own).sum(1)).ravel())
        q = sp.diags(1.0 / np.maximum(norms, 1e-12)).astype(np.float32) @ own
        sim = _dense(q @ self.unit.T)  # [B, n_users] cosine
        sim[:, torch.from_numpy(~self.has_train)] = -1.0
        sim[torch.arange(len(rows)), torch.from_numpy(es.users[rows])] = -1.0  # not oneself
        k = max(1, min(self.neighbours, int(self.has_train.sum())))
        v, nb = sim.topk(k, dim=1)
        keep = (v > 0).numpy()
        br = np.repeat(np.arange(len(rows)), k).reshape(len(rows), k)
        pick = sp.csr_matrix((np.full(int(keep.sum()), 1.0 / k, dtype=np.float32),
                              (br[keep], nb.numpy()[keep])), shape=(len(rows), self.x.n_users))
        scores = self.alpha * _dense(own) + (1.0 - self.alpha) * _dense(pick @ self.users)
        return _backed_by(scores, self.pop(es, rows))
