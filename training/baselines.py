"""Baselines the model must beat (and the gates compare against). Every one scores the whole
catalogue on every protocol: it learns from the split's training rows only and, for an evaluated
row, reads the user's rows before its `hist_end` (nothing at or after it).

- popularity: interaction counts over a recent window of the training data;
- itemknn: RecBole's ItemKNN (cosine item-item similarity over the training users, each item
  keeps its k most similar items), scored from the user's whole history, optionally with its
  latest items weighing more;
- personal_history: what the user interacted with most (deeper funnel stages and recent
  interactions weigh more), backed by popularity for everything else;
- ptopfreq: P-TopFreq, the user's items by how many of their sessions hold them, then popularity;
- tifuknn: TIFU-KNN (Hu et al., 2020), sessions as baskets: the user's items decayed by how many
  sessions ago they came, blended with the mean vector of the k most similar users;
- ease: EASE (Steck, 2019), the closed-form item-item model B = I - P / diag(P) with
  P = (X^T X + lambda I)^-1; its Gram matrix is items^2, so it is skipped above a catalogue size.

Hyper-parameters with several candidates (`tune`) are chosen on the split's validation set by
NDCG@10, as the model's early stopping is; the test set is never read for it. One candidate of
itemknn, ease and tifuknn is `history_last`: the user's own items after every other item, which
validation picks where users do not come back to items (MovieLens) and exclude=none would
otherwise let the user's own items crowd the top of the list.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch

from training.arrays import ranges, unique
from training.data import Interactions
from training.metrics import evaluate
from training.splits import DAY_US, EvalSet, Split

log = logging.getLogger(__name__)

ETYPE_WEIGHT = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # pad, view, click, add_to_cart, purchase

# candidates chosen on validation one hyper-parameter at a time, in this order; the first value
# of each is the default (kept on a tie)
ITEMKNN_GRID = {"history_last": [False, True], "half_life": [None, 5.0, 20.0]}
EASE_GRID = {"history_last": [False, True], "l2": [250.0, 50.0]}
EASE_TUNE_MAX_ITEMS = 8_000  # above: lambda = 250 only (each candidate is one inversion)
TIFU_GRID = {"history_last": [False, True], "decay": [0.8, 0.5], "alpha": [0.7, 0.5, 0.9]}
CACHE_BYTES = 1 << 29  # tifuknn keeps a validation set's own/neighbour vectors up to this size


# --------------------------------------------------------------------------- shared helpers


def history_rows(x: Interactions, bounds: np.ndarray, es: EvalSet, rows: np.ndarray,
                 last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(batch row, row offset into x) of every history row of `rows`: the user's rows before
    hist_end (only the last `last` of them when given), in (batch row, time) order."""
    ends = es.hist_end[rows].astype(np.int64)
    starts = bounds[es.users[rows]].astype(np.int64)
    if last is not None:
        starts = np.maximum(starts, ends - last)
    return ranges(starts, np.maximum(ends, starts))


def _csr(r: np.ndarray, c: np.ndarray, v: np.ndarray | None, shape: tuple[int, int]
         ) -> sp.csr_matrix:
    """A sparse matrix of (r, c, v) triples, duplicates summed (v = 1 when None)."""
    v = np.ones(len(r), dtype=np.float32) if v is None else v.astype(np.float32)
    m = sp.csr_matrix((v, (r, c)), shape=shape)
    m.sum_duplicates()
    return m


def _binary(m: sp.csr_matrix) -> sp.csr_matrix:
    m.data[:] = 1.0
    return m


def _history(x: Interactions, bounds: np.ndarray, es: EvalSet, rows: np.ndarray,
             last: int | None = None) -> sp.csr_matrix:
    """The distinct items of each history, a binary [B, n_items + 1] matrix."""
    r, pos = history_rows(x, bounds, es, rows, last)
    return _binary(_csr(r, x.item[pos], None, (len(rows), x.catalogue.n_items + 1)))


def _recent_history(x: Interactions, bounds: np.ndarray, es: EvalSet, rows: np.ndarray,
                    half_life: float | None, last: int | None = None) -> sp.csr_matrix:
    """The distinct items of each history weighted 0.5 ** (rows after the item's latest row /
    half_life); 1 each where half_life is None."""
    if half_life is None:
        return _history(x, bounds, es, rows, last)
    r, pos = history_rows(x, bounds, es, rows, last)
    n = x.catalogue.n_items + 1
    _, latest = np.unique((r * n + x.item[pos])[::-1], return_index=True)
    latest = len(r) - 1 - latest  # each (batch row, item)'s latest history row
    r, pos = r[latest], pos[latest]
    age = (es.hist_end[rows][r] - 1 - pos).astype(np.float64)
    return _csr(r, x.item[pos], np.power(0.5, age / half_life), (len(rows), n))


def _user_items(x: Interactions, mask: np.ndarray) -> sp.csr_matrix:
    """The binary [n_users, n_items + 1] matrix of the rows where mask holds."""
    return _binary(_csr(x.user[mask], x.item[mask], None, (x.n_users, x.catalogue.n_items + 1)))


def _session_age(groups: np.ndarray, session: np.ndarray) -> np.ndarray:
    """Per row of sorted `groups` (each group's rows in time order): how many of the group's
    sessions come after the row's own (0 = the group's last session)."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.r_[True, groups[1:] != groups[:-1]]
    ordinal = np.cumsum(first | np.r_[True, session[1:] != session[:-1]])
    last = np.r_[np.flatnonzero(first[1:]), len(groups) - 1]  # each group's last row
    return ordinal[last][np.cumsum(first) - 1] - ordinal


def _dense(m: sp.spmatrix | np.ndarray) -> torch.Tensor:
    a = m.toarray() if sp.issparse(m) else np.asarray(m)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel())
    return (sp.diags((1.0 / np.maximum(norms, 1e-12)).astype(np.float32)) @ m).tocsr()


def _popularity_after(scores: torch.Tensor, pop: torch.Tensor) -> torch.Tensor:
    """Items with a positive score first (in its order), then every other item by popularity."""
    back = pop / (pop.max() + 1.0)  # in [0, 1)
    return torch.where(scores > 0, scores + 1.0, back.expand_as(scores))


def _history_last(scores: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """The items where `seen` > 0 after every other item of the row, both groups in their
    order."""
    span = (scores.amax(1) - scores.amin(1) + 1.0).unsqueeze(1)
    return scores - (seen > 0).float() * span


def tune(model, grid: dict[str, list], valid: EvalSet, n_items: int,
         ks: tuple[int, ...] = (10, 20)) -> dict:
    """Set `model` (model.set(**params)) to the hyper-parameters of `grid` with the best
    validation NDCG@10, found one key at a time in the grid's order (each key's values tried
    with the others at their best so far; the first value of each is the start, and stays on a
    tie). Without validation users: the first values. Only the validation set is read; the
    chosen model's validation metrics (at `ks`) are kept as model.valid_metrics."""
    best = {k: v[0] for k, v in grid.items()}
    model.set(**best)
    model.valid_metrics = None
    if len(valid) and any(len(v) > 1 for v in grid.values()):
        best_m = evaluate(model, valid, n_items, ks)
        _remember(model)
        for key, values in grid.items():
            for v in values[1:]:
                params = {**best, key: v}
                model.set(**params)
                m = evaluate(model, valid, n_items, ks)
                log.debug("%s %s: validation NDCG@10 %.4f", model.name, params, m["ndcg@10"])
                if m["ndcg@10"] > best_m["ndcg@10"]:
                    best, best_m = params, m
                    _remember(model)
        log.info("%s: %s chosen on validation (NDCG@10 %.4f)", model.name, best,
                 best_m["ndcg@10"])
        model.set(**best)
        model.valid_metrics = best_m
    model.chosen = best
    return best


def _remember(model) -> None:
    """Tell a model that its current fit is the best so far (EASE keeps it, not to refit)."""
    if hasattr(model, "remember"):
        model.remember()


class _Tunable:
    name = ""
    chosen: dict | None = None  # what `tune` chose
    valid_metrics: dict | None = None  # and its validation metrics

    def set(self, **params) -> None:
        for k, v in params.items():
            setattr(self, k, v)


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
    k = min(k, m.shape[1])
    rows, cols, vals = [], [], []
    for lo in range(0, m.shape[0], block):
        v, c = _dense(m[lo:lo + block]).topk(k, dim=1)
        keep = v > 0
        rows.append((torch.arange(lo, lo + len(v)).unsqueeze(1).expand_as(c))[keep].numpy())
        cols.append(c[keep].numpy())
        vals.append(v[keep].numpy())
    if not rows:
        return sp.csr_matrix(m.shape, dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=m.shape)


def item_neighbours(ui: sp.csr_matrix, k: int, shrink: float = 0.0,
                    block: int = 2048) -> sp.csr_matrix:
    """W[i, j] = sim(i, j) for the k items i most similar to each item j (cosine over the users
    of `ui`, shrunk). Built a block of items at a time: the whole item-item co-occurrence matrix
    of 50k items (and its copies) peaked at 8 GB at 10M events."""
    norms = np.sqrt(np.asarray(ui.sum(0)).ravel()).astype(np.float32)
    items_users = ui.T.tocsr()
    n = ui.shape[1]
    tops = []
    for lo in range(0, n, block):
        co = (items_users[lo:lo + block] @ ui).tocoo()  # rows: items lo..; columns: every item
        off = co.row + lo != co.col  # an item is not its own neighbour
        row, col = co.row[off], co.col[off]
        sim = co.data[off] / (norms[row + lo] * norms[col] + shrink + 1e-6)
        tops.append(top_k_per_row(sp.csr_matrix((sim.astype(np.float32), (row, col)),
                                                shape=(co.shape[0], n)), k))
    # symmetric: row j's top k are item j's neighbours i; W[i, j] is that transposed
    return sp.vstack(tops).T.tocsr()


class ItemKNN(_Tunable):
    """RecBole's ItemKNN: sim(i, j) = |U_i & U_j| / (|U_i|^0.5 |U_j|^0.5 + shrink) over the
    training users (binary); item j keeps its `neighbours` most similar items i as W[i, j]; the
    score of j = sum of W[i, j] over the distinct items i of the history (or of its `last` rows).

    `half_life` (in history rows; None = RecBole, every history item weighs 1): an item weighs
    0.5 ** (rows after its latest occurrence / half_life), so the latest items lead.
    `history_last`: the history's own items after every other item."""

    name = "itemknn"

    def __init__(self, x: Interactions, train_mask: np.ndarray, neighbours: int = 100,
                 last: int | None = None, shrink: float = 0.0, half_life: float | None = None,
                 history_last: bool = False):
        self.w = item_neighbours(_user_items(x, train_mask), neighbours, shrink)
        self.x, self.bounds, self.last = x, x.user_bounds(), last
        self.half_life, self.history_last = half_life, history_last

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        h = _recent_history(self.x, self.bounds, es, rows, self.half_life, self.last)
        s = _dense(h @ self.w)
        return _history_last(s, _dense(h)) if self.history_last else s


class EASE(_Tunable):
    """Steck's EASE on the binary user-item matrix of the training rows, scored from the user's
    distinct history items; float32 torch.linalg on `device` (the Gram matrix and B are
    (items + 1)^2). `history_last`: the history's own items after every other item."""

    name = "ease"

    def __init__(self, x: Interactions, train_mask: np.ndarray, l2: float = 250.0,
                 history_last: bool = False, device: torch.device | str = "cpu"):
        ui = _user_items(x, train_mask)
        self.gram: torch.Tensor | None = _dense(ui.T @ ui).to(device)
        self.x, self.bounds, self.history_last = x, x.user_bounds(), history_last
        self.l2: float | None = None
        self._kept: tuple[float, torch.Tensor] | None = None
        self.set(l2=l2)

    def set(self, l2: float | None = None, history_last: bool | None = None) -> None:
        if history_last is not None:
            self.history_last = history_last
        if l2 is None or l2 == self.l2:
            return
        if self._kept is not None and self._kept[0] == l2:
            self.l2, self.b = self._kept
            return
        g = self.gram.clone()
        g.diagonal().add_(l2)  # symmetric positive definite: P = L^-T L^-1 with g = L L^T
        chol = torch.linalg.cholesky(g)
        del g  # (LAPACK's cholesky_inverse and inv are slower here, and single-threaded)
        eye = torch.eye(len(chol), dtype=chol.dtype, device=chol.device)
        inv_l = torch.linalg.solve_triangular(chol, eye, upper=False)
        del chol, eye
        p = inv_l.T @ inv_l
        del inv_l
        b = p.div_(-p.diagonal().clone())  # B[i, j] = -P[i, j] / P[j, j]
        b.diagonal().zero_()
        self.l2, self.b = l2, b.cpu()

    def remember(self) -> None:
        self._kept = (self.l2, self.b)

    def done(self) -> None:
        """Tuning is over: drop what only refits need."""
        self.gram, self._kept = None, None

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        h = _history(self.x, self.bounds, es, rows)
        s = _dense(h @ self.b.numpy())  # scipy: faster than torch's sparse products here
        return _history_last(s, _dense(h)) if self.history_last else s


# --------------------------------------------------------------------------- personal


class PersonalHistory:
    name = "personal_history"

    def __init__(self, x: Interactions, train_mask: np.ndarray, popularity: Popularity,
                 half_life_days: float = 7.0):
        self.x, self.pop, self.bounds = x, popularity, x.user_bounds()
        self.half_life_us = half_life_days * DAY_US

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
    """P-TopFreq: the user's items by the number of their sessions holding them; ties, and
    every item the user never had, by popularity."""

    name = "ptopfreq"

    def __init__(self, x: Interactions, train_mask: np.ndarray, popularity: Popularity):
        self.x, self.pop, self.bounds = x, popularity, x.user_bounds()

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        x = self.x
        r, pos = history_rows(x, self.bounds, es, rows)
        n = x.catalogue.n_items + 1
        # one count per (batch row, session, item): rank the sessions within each batch row
        first = np.r_[True, (r[1:] != r[:-1]) | (x.session[pos][1:] != x.session[pos][:-1])]
        ordinal = np.cumsum(first) - 1  # sessions are consecutive rows of a history
        key = unique(ordinal * n + x.item[pos])
        sess_row = r[first]
        freq = _csr(sess_row[key // n], key % n, None, (len(rows), n))
        pop = self.pop(es, rows)
        return _dense(freq) + pop / (pop.max() + 1.0)


class TIFUKNN(_Tunable):
    """TIFU-KNN with each session a basket (and groups of one basket): a user's vector sums,
    over their rows, decay ** (sessions after the row's own), divided by the summed weight of
    their sessions (an item in every session scores about 1). Score = alpha * own vector +
    (1 - alpha) * the mean vector of the `neighbours` training users most similar to it
    (cosine; never the user), then every item no one scored by popularity.

    Neighbours' vectors come from the training rows only (decayed from each user's last training
    session), the user's own from their rows before hist_end. `history_last`: the user's own
    items after every other item (the neighbours' vectors alone rank the rest)."""

    name = "tifuknn"

    def __init__(self, x: Interactions, train_mask: np.ndarray, popularity: Popularity,
                 decay: float = 0.8, alpha: float = 0.7, neighbours: int = 300,
                 history_last: bool = False):
        self.x, self.pop, self.bounds = x, popularity, x.user_bounds()
        self.train_rows = np.flatnonzero(train_mask)
        self.alpha, self.neighbours, self.history_last = alpha, neighbours, history_last
        self.decay = None
        self._cache: dict | None = None  # batch -> (own, neighbours) while tuning
        self.set(decay=decay)

    def set(self, decay: float | None = None, neighbours: int | None = None, **params) -> None:
        super().set(**params)
        if neighbours is not None and neighbours != self.neighbours:
            self.neighbours = neighbours
            if self._cache is not None:
                self._cache.clear()
        if decay is not None and decay != self.decay:
            self.decay = decay
            idx = self.train_rows
            self.users = self._vectors(self.x.user[idx], idx, self.x.n_users)
            self.unit_t = _row_normalised(self.users).T.tocsr()
            if self._cache is not None:
                self._cache.clear()

    def cache(self, on: bool) -> None:
        """Keep each batch's (own, neighbour) vectors while only alpha and history_last change
        (tuning); cleared when the decay or the neighbours change."""
        self._cache = {} if on else None

    def _vectors(self, groups: np.ndarray, pos: np.ndarray, n_groups: int) -> sp.csr_matrix:
        """Decayed, normalised item vectors of groups of rows (sorted by group, time order)."""
        x = self.x
        age = _session_age(groups, x.session[pos])
        w = np.power(self.decay, age.astype(np.float64))
        new_session = np.r_[True, (groups[1:] != groups[:-1]) | (age[1:] != age[:-1])]
        total = np.bincount(groups[new_session], weights=w[new_session], minlength=n_groups)
        w = w / np.where(total > 0, total, 1.0)[groups]
        return _csr(groups, x.item[pos], w, (n_groups, x.catalogue.n_items + 1))

    def _parts(self, es: EvalSet, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        r, pos = history_rows(self.x, self.bounds, es, rows)
        own = self._vectors(r, pos, len(rows))
        q = _row_normalised(own)
        n_users = self.x.n_users
        k = max(1, min(self.neighbours, n_users - 1))
        chunk = max(1, (1 << 24) // max(n_users, 1))  # [chunk, n_users] similarities at once
        mean = []
        for lo in range(0, len(rows), chunk):
            sim = _dense(q[lo:lo + chunk] @ self.unit_t)  # cosine to every training user
            b = len(sim)
            sim[torch.arange(b), torch.from_numpy(es.users[rows[lo:lo + chunk]])] = -1.0
            v, nb = sim.topk(k, dim=1)
            keep = (v > 0).numpy()
            br = np.broadcast_to(np.arange(b)[:, None], keep.shape)
            pick = sp.csr_matrix((np.full(int(keep.sum()), 1.0 / k, dtype=np.float32),
                                  (br[keep], nb.numpy()[keep])), shape=(b, n_users))
            mean.append(_dense(pick @ self.users))
        own = _dense(own)
        return own, torch.cat(mean) if mean else torch.zeros_like(own)

    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        key = (es.name, int(rows[0]), len(rows)) if len(rows) else None
        if self._cache is not None and key in self._cache:
            own, nbr = self._cache[key]
        else:
            own, nbr = self._parts(es, rows)
            if self._cache is not None:
                self._cache[key] = (own, nbr)
        s = _popularity_after(self.alpha * own + (1.0 - self.alpha) * nbr, self.pop(es, rows))
        return _history_last(s, own) if self.history_last else s


# --------------------------------------------------------------------------- fitted and tuned


def fit_itemknn(x: Interactions, split: Split, neighbours: int,
                ks: tuple[int, ...] = (10, 20)) -> ItemKNN:
    m = ItemKNN(x, split.train_mask, neighbours)
    tune(m, ITEMKNN_GRID, split.valid, x.catalogue.n_items, ks)
    return m


def fit_ease(x: Interactions, split: Split, max_items: int,
             device: torch.device | str = "cpu", ks: tuple[int, ...] = (10, 20)) -> EASE | None:
    """EASE with lambda chosen on validation; None (logged) above `max_items` items."""
    n = x.catalogue.n_items
    if n > max_items:
        log.warning("ease skipped: %s items > ease_max_items %s (its Gram matrix is items^2 = "
                    "%.1f GiB in float32)", f"{n:,}", f"{max_items:,}", (n + 1) ** 2 * 4 / 2**30)
        return None
    grid = EASE_GRID if n <= EASE_TUNE_MAX_ITEMS else {**EASE_GRID, "l2": EASE_GRID["l2"][:1]}
    m = EASE(x, split.train_mask, grid["l2"][0], device=device)
    tune(m, grid, split.valid, n, ks)
    m.done()
    return m


def fit_tifuknn(x: Interactions, split: Split, popularity: Popularity,
                ks: tuple[int, ...] = (10, 20), max_users: int | None = None) -> TIFUKNN | None:
    """TIFU-KNN tuned on validation; None (logged) above `max_users` users: every evaluated
    user is compared with every user (at 270k users, 93k evaluated: minutes per evaluation
    on 2 CPU cores, the whole training run's budget)."""
    if max_users is not None and x.n_users > max_users:
        log.warning("tifuknn skipped: %s users > tifu_max_users %s (each evaluated user is "
                    "compared with every user)", f"{x.n_users:,}", f"{max_users:,}")
        return None
    m = TIFUKNN(x, split.train_mask, popularity)
    n = x.catalogue.n_items
    m.cache(2 * len(split.valid) * (n + 1) * 4 <= CACHE_BYTES)
    tune(m, TIFU_GRID, split.valid, n, ks)
    m.cache(False)
    return m
