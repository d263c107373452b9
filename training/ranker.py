"""The recommender to promote: the model re-ranked with what the shopper's whole history says.

Real shops repeat, and a frequency count that knows a user's whole history beats a sequence model
that sees the last `max_len` steps (BENCHMARKS.md). The ranker is a learned blend of three
servable sources, one score per (user, item):
- the model's rank of the item;
- the item's popularity rank (the export holds the counts);
- the user's repeat statistics of the item (training/repeat.py; online from Feast): how many of
  their sessions held it, how many bought it, how long ago they last came to it, and how "due"
  it is: the time since, over their own mean interval between sessions with it (replenishment);
  crossed with how many sessions the user has, so the repeat-versus-explore trade-off is
  learned per user (a shopper on their 2nd visit is not one on their 40th).

Each input is bucketed and every bucket has a learned weight (a generalised additive model: it
learns "due items first" or "never re-rank the history" from the data, as the data says). It is
fitted on the validation set with a listwise loss (softmax over the whole catalogue, every target
of a row weighing the same); its L2 strength and length of training are chosen by 2-fold cross-
validation over validation users, and it is kept only where that out-of-fold score beats the
model alone (`model_weight_only`). The test set is never read for any of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from training.data import Interactions
from training.metrics import csr_rows, evaluate
from training.repeat import MAX_ITEMS, RepeatStats, repeat_stats
from training.splits import DAY_US, EvalSet

ScoreFn = Callable[[EvalSet, np.ndarray], torch.Tensor]

RANK_EDGES = np.array([1, 2, 3, 4, 6, 10, 20, 50, 100, 200, 500])  # rank < edge -> bucket
SESSION_EDGES = np.array([2, 3, 4, 6, 10, 20])  # of the item (1 = once)
PURCHASE_EDGES = np.array([1, 2, 3, 5, 10])
USER_EDGES = np.array([2, 3, 5, 9, 17, 33])  # sessions of the user
SHARE_EDGES = np.array([0.1, 0.25, 0.5, 0.75, 0.999])
HOUR_US = 3_600 * 1_000_000
RECENCY_BUCKETS = 18  # log2 hours since last: < 1 h ... > 2^16 h
DUE_EDGES = np.arange(-3.0, 3.01, 0.5)  # log2(time since last / own interval)
L2_GRID = (1e-3, 1e-2)
STEP_GRID = (60, 200)  # Adam steps (full batch)
LR = 0.1
MAX_CELLS = 12_000_000  # rows x items the fit holds at once (int8 bucket tables)


def edges() -> dict[str, list[float] | int]:
    """The bucket edges, written beside the weights (an export says how it buckets)."""
    return {"rank": RANK_EDGES.tolist(), "sessions": SESSION_EDGES.tolist(),
            "purchases": PURCHASE_EDGES.tolist(), "user_sessions": USER_EDGES.tolist(),
            "share": SHARE_EDGES.tolist(), "recency_buckets": RECENCY_BUCKETS,
            "due": DUE_EDGES.tolist()}


def _bucket(v: np.ndarray | torch.Tensor, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, np.asarray(v), side="right")


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    """0-based rank of every item in each row (0 = best); ties by item index."""
    order = scores.float().argsort(dim=1, descending=True, stable=True)
    out = torch.empty_like(order)
    out.scatter_(1, order, torch.arange(scores.shape[1]).expand_as(order).contiguous())
    return out


# the feature groups: name -> number of buckets (index 0 = "not in the history" where it applies)
GROUPS = {
    "model_rank": len(RANK_EDGES) + 1,
    "pop_rank": len(RANK_EDGES) + 1,
    "model_rank_x_seen": 2 * (len(RANK_EDGES) + 1),
    "sessions": len(SESSION_EDGES) + 2,
    "purchases": len(PURCHASE_EDGES) + 2,
    "share": len(SHARE_EDGES) + 2,
    "recency": RECENCY_BUCKETS + 1,
    "due": len(DUE_EDGES) + 2,
    "seen_x_user": 2 * (len(USER_EDGES) + 1),
}


REPEAT_GROUPS = ("sessions", "purchases", "share", "recency", "due")


def repeat_buckets(st: RepeatStats) -> dict[str, np.ndarray]:
    """Bucket of each repeat group for every (row, item) of `st` (0 is "not in the history",
    so these start at 1, except `due`, 0 for items seen in one session only)."""
    r = st.row
    since = np.maximum(st.cutoff_us[r] - st.last_us, 0)
    rep = st.sessions >= 2
    interval = (st.last_us - st.first_us) / np.maximum(st.sessions - 1, 1)
    ratio = np.log2(np.maximum(since, 1) / np.maximum(interval, DAY_US / 24))
    return {
        "sessions": 1 + _bucket(st.sessions, SESSION_EDGES),
        "purchases": 1 + _bucket(st.purchase_sessions, PURCHASE_EDGES),
        "share": 1 + _bucket(st.sessions / np.maximum(st.total_sessions[r], 1), SHARE_EDGES),
        "recency": 1 + np.clip(np.floor(np.log2(since / HOUR_US + 1)), 0,
                               RECENCY_BUCKETS - 1).astype(np.int64),
        "due": np.where(rep, 1 + _bucket(ratio, DUE_EDGES), 0),
    }


def features(model_scores: torch.Tensor, pop_scores: torch.Tensor, st: RepeatStats
             ) -> dict[str, torch.Tensor]:
    """Bucket index of every group for every (row, item): int8 tensors [rows, n_items + 1]."""
    b, n = model_scores.shape
    mr = _rank_buckets(model_scores)
    out = {"model_rank": mr, "pop_rank": _rank_buckets(pop_scores)}
    seen = np.zeros((b, n), dtype=np.int64)
    r, i = st.row, st.item
    seen[r, i] = 1
    for name, v in repeat_buckets(st).items():
        out[name] = np.zeros((b, n), dtype=np.int64)
        out[name][r, i] = v
    user = _bucket(st.total_sessions, USER_EDGES)[:, None]
    out.update(model_rank_x_seen=seen * (len(RANK_EDGES) + 1) + mr,
               seen_x_user=seen * (len(USER_EDGES) + 1) + user)
    return {k: torch.from_numpy(v.astype(np.int8)) for k, v in out.items()}


def _rank_buckets(scores: torch.Tensor) -> np.ndarray:
    """`_bucket(_ranks(scores))` of rows [b, n]; rows all equal (popularity, the same for every
    user) are ranked once: a full sort of a 63k-item row costs ~7 ms."""
    if scores.shape[0] > 1 and bool((scores == scores[:1]).all()):
        one = _bucket(_ranks(scores[:1]).numpy(), RANK_EDGES)
        return np.broadcast_to(one, scores.shape)
    return _bucket(_ranks(scores).numpy(), RANK_EDGES)


def rank_buckets(scores: torch.Tensor) -> torch.Tensor:
    """`_bucket(_ranks(scores))` of one row [n] without sorting the whole row: only ranks below
    the last edge have buckets of their own, so only the items scoring at least the top-K'th
    (ties included) are sorted, stably, as `_ranks` sorts them."""
    n, k = scores.numel(), int(RANK_EDGES[-1])
    if n <= 4 * k:
        return torch.from_numpy(_bucket(_ranks(scores.unsqueeze(0)).numpy()[0], RANK_EDGES))
    s = scores.float()
    cand = (s >= torch.topk(s, k).values[-1]).nonzero().squeeze(1)  # index order
    order = cand[s[cand].argsort(descending=True, stable=True)][:k]
    out = torch.full((n,), len(RANK_EDGES), dtype=torch.long)
    out[order] = torch.from_numpy(_bucket(np.arange(k), RANK_EDGES))
    return out


OFFSETS = dict(zip(GROUPS, np.cumsum([0, *GROUPS.values()])[:-1].tolist(), strict=True))


class Ranker(torch.nn.Module):
    """One learned weight per bucket of every group (one vector, groups at OFFSETS); the score
    is their sum."""

    name = "blend"

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(sum(GROUPS.values())))

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        # one embedding lookup per group into a preallocated sum: 2.5x faster than summing
        # advanced-indexing results (no int64 copies of the [rows, items] tables)
        s = torch.zeros(next(iter(feats.values())).shape)
        for k, n in GROUPS.items():
            w = self.w[OFFSETS[k]:OFFSETS[k] + n].unsqueeze(1)
            s += torch.nn.functional.embedding(feats[k].int(), w).squeeze(-1)
        s[:, 0] = float("-inf")  # padding
        return s

    def pattern_scores(self, patterns: torch.Tensor) -> torch.Tensor:
        """Scores of bucket combinations [P, groups], given as indices into `w` (global)."""
        return self.w[patterns].sum(1)

    def tables(self) -> dict[str, list[float]]:
        w = self.w.detach().tolist()
        return {k: w[OFFSETS[k]:OFFSETS[k] + n] for k, n in GROUPS.items()}

    @classmethod
    def from_tables(cls, tables: dict[str, list[float]]) -> Ranker:
        """The ranker an export describes (blend.json's `weights`); a table of the wrong size
        is refused (an export of another version)."""
        r = cls()
        for k, n in GROUPS.items():
            w = tables.get(k)
            if not isinstance(w, list) or len(w) != n:
                raise ValueError(f"weights.{k}: expected {n} numbers")
            with torch.no_grad():
                r.w[OFFSETS[k]:OFFSETS[k] + n] = torch.tensor(w, dtype=torch.float32)
        return r


class OneUser:
    """`Ranker.forward` for one user, as serving needs it: the same bucket weights summed in the
    same order (equal scores, bit for bit), without [n_items] tables per group: the popularity
    part is fixed per export, the model rank needs only the top ranks (`rank_buckets`), and the
    repeat groups differ from their "not seen" weight only at the user's few repeat items."""

    def __init__(self, ranker: Ranker, pop_scores: torch.Tensor):
        w = ranker.w.detach()
        self.w = {k: w[OFFSETS[k]:OFFSETS[k] + n] for k, n in GROUPS.items()}
        self.pop = self.w["pop_rank"][rank_buckets(pop_scores.reshape(-1))]

    def __call__(self, model_scores: torch.Tensor, st: RepeatStats) -> torch.Tensor:
        """Scores [n] of one user's model scores [n] and repeat stats (row 0)."""
        w, n = self.w, model_scores.numel()
        items = torch.from_numpy(st.item)
        mr = rank_buckets(model_scores)
        seen = torch.zeros(n, dtype=torch.long)
        seen[items] = 1
        s = w["model_rank"][mr] + self.pop
        s += w["model_rank_x_seen"][seen * (len(RANK_EDGES) + 1) + mr]
        for name, v in repeat_buckets(st).items():
            col = w[name][0].expand(n).clone()
            col[items] = w[name][torch.from_numpy(v)]
            s += col
        user = int(_bucket(st.total_sessions, USER_EDGES)[0])
        s += w["seen_x_user"][seen * (len(USER_EDGES) + 1) + user]
        s[0] = float("-inf")
        return s


@dataclass
class Inputs:
    """What the ranker reads for rows of an EvalSet."""

    model: ScoreFn
    popularity: ScoreFn
    x: Interactions
    bounds: np.ndarray
    max_items: int = MAX_ITEMS  # per user, as the online store keeps them (feast.repeat_max_items)

    def features(self, es: EvalSet, rows: np.ndarray, model: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
        """`model`: the model's scores of these rows when the caller has them already."""
        st = repeat_stats(self.x, self.bounds, es, rows, self.max_items)
        model = self.model(es, rows).float().cpu() if model is None else model
        return features(model, self.popularity(es, rows).float().cpu(), st)


RANKER_ROWS = 128  # rows the ranker scores at a time (memory ∝ rows × items)


class Blend:
    """The promoted recommender: the fitted ranker over its inputs, or the model alone."""

    name = "blend"

    def __init__(self, inputs: Inputs, ranker: Ranker | None, info: dict):
        self.inputs, self.ranker, self.info = inputs, ranker, info

    @torch.no_grad()
    def __call__(self, es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        if self.ranker is None:
            return self.inputs.model(es, rows).float().cpu()
        # the features hold ~10 [rows, items] tables and two full-row sorts: an evaluation
        # batch of 1,024 rows over 63k items needed ~5 GB of them at once (peak 9.6 GB at 10M
        # events); chunks of RANKER_ROWS rows give the same scores, row by row
        return torch.cat([self.ranker(self.inputs.features(es, rows[lo:lo + RANKER_ROWS]))
                          for lo in range(0, len(rows), RANKER_ROWS)])

    def describe(self) -> dict:
        return self.info


def _targets(es: EvalSet, rows: np.ndarray, n: int) -> torch.Tensor:
    """Row-normalised target matrix [rows, n]: each of a row's targets weighs 1 / their count."""
    t = torch.zeros(len(rows), n)
    r, items = csr_rows(es.target_ptr, es.target_items, rows)
    counts = torch.from_numpy(np.diff(es.target_ptr)[rows]).double()
    t[r, items] = (1.0 / counts[r].clamp(min=1)).float()
    return t


def _mask(es: EvalSet, rows: np.ndarray, n: int) -> torch.Tensor:
    """True where an item cannot be recommended to a row (padding, the split's exclusions)."""
    m = torch.zeros(len(rows), n, dtype=torch.bool)
    m[:, 0] = True
    m[csr_rows(es.excluded_ptr, es.excluded_items, rows)] = True
    return m


HISTORY_GROUPS = ("sessions", "purchases", "share", "recency", "due")
N_RANK = len(RANK_EDGES) + 1


@dataclass
class _Data:
    """The validation rows the ranker is fitted on: dense features (to rank with), and for the
    fit a compact, exact form of the same softmax. An item the user never came to differs from
    another only by its (model rank, popularity rank) buckets, so those items are summed per
    bucket pair (a count), and only the items of the history are listed one by one: the fit
    costs rows x (history + 144) instead of rows x catalogue."""

    feats: dict[str, torch.Tensor]  # dense bucket indices [R, n]
    model: torch.Tensor  # [R, n]
    targets: torch.Tensor  # [R, n], rows sum to 1
    mask: torch.Tensor  # [R, n] not recommendable
    fold: np.ndarray
    patterns: torch.Tensor | None = None  # [P, groups]: distinct bucket combinations
    pattern: torch.Tensor | None = None  # [R, E]: each entry's pattern
    log_mult: torch.Tensor | None = None  # [R, E]: log(items an entry stands for), -inf = none
    entry_targets: torch.Tensor | None = None  # [R, E]

    def __post_init__(self) -> None:
        if self.pattern is None:
            self._compact()

    def _compact(self) -> None:
        r_n, n = self.model.shape
        seen = (self.feats["sessions"] > 0) & ~self.mask
        unseen = ~(self.feats["sessions"] > 0) & ~self.mask
        combo = (self.feats["model_rank"].long() * N_RANK + self.feats["pop_rank"].long())
        kk = N_RANK * N_RANK
        rr = torch.arange(r_n).unsqueeze(1).expand(-1, n)
        key = (rr * kk + combo)[unseen]
        count = torch.bincount(key, minlength=r_n * kk).view(r_n, kk).double()
        t_combo = torch.zeros(r_n * kk).index_add_(0, key, self.targets[unseen]).view(r_n, kk)
        m = max(int(seen.sum(1).max()), 1) if r_n else 1
        slot = torch.cumsum(seen.long(), 1) - 1  # position of each seen item in its row
        sr, sc = seen.nonzero(as_tuple=True)
        ss = slot[sr, sc]
        user = self.feats["seen_x_user"][:, 0].long() % (len(USER_EDGES) + 1)  # any item's user
        ent = torch.zeros(r_n, m + kk, len(GROUPS), dtype=torch.long)
        for j, g in enumerate(GROUPS):
            ent[sr, ss, j] = self.feats[g][sr, sc].long()
        c = torch.arange(kk)
        col = {g: j for j, g in enumerate(GROUPS)}
        ent[:, m:, col["model_rank"]] = c // N_RANK
        ent[:, m:, col["pop_rank"]] = c % N_RANK
        ent[:, m:, col["model_rank_x_seen"]] = c // N_RANK  # seen = 0
        ent[:, m:, col["seen_x_user"]] = user.unsqueeze(1)  # seen = 0
        log_mult = torch.full((r_n, m + kk), float("-inf"))
        log_mult[sr, ss] = 0.0
        log_mult[:, m:] = torch.where(count > 0, count.log(), float("-inf")).float()
        tgt = torch.zeros(r_n, m + kk)
        tgt[sr, ss] = self.targets[sr, sc]
        tgt[:, m:] = t_combo
        # entries with the same buckets everywhere share one score: compute each pattern once
        # one int64 key per entry (mixed radix over the groups' sizes): a 1-D unique is far
        # cheaper than a unique over rows
        sizes = torch.tensor(list(GROUPS.values()))
        radix = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), sizes[:-1]]), 0)
        keys, inverse = torch.unique((ent * radix).sum(-1).view(-1), return_inverse=True)
        patterns = (keys.unsqueeze(1) // radix) % sizes
        patterns += torch.tensor(list(OFFSETS.values()))  # global indices into the weights
        self.patterns, self.pattern = patterns, inverse.view(r_n, m + kk)
        self.log_mult, self.entry_targets = log_mult, tgt

    def part(self, f: int, inside: bool) -> _Data:
        sel = torch.from_numpy((self.fold == f) == inside)
        return _Data({k: v[sel] for k, v in self.feats.items()}, self.model[sel],
                     self.targets[sel], self.mask[sel], self.fold[sel.numpy()],
                     self.patterns, self.pattern[sel], self.log_mult[sel],
                     self.entry_targets[sel])


def _fit(d: _Data, l2: float, steps: tuple[int, ...], seed: int) -> list[Ranker]:
    """Listwise softmax over the whole catalogue (in its compact form), Adam, L2; the ranker as
    it is after each of `steps` (one run serves every length of training)."""
    torch.manual_seed(seed)
    ranker = Ranker()
    opt = torch.optim.Adam(ranker.parameters(), lr=LR)
    out = []
    for step in range(1, max(steps) + 1):
        opt.zero_grad()
        s = ranker.pattern_scores(d.patterns)[d.pattern]
        log_z = torch.logsumexp(s + d.log_mult, dim=1)
        loss = (log_z - (s * d.entry_targets).sum(1)).mean()
        loss = loss + l2 * (ranker.w ** 2).sum()
        loss.backward()
        opt.step()
        if step in steps:
            snap = Ranker()
            snap.w.data.copy_(ranker.w.data)
            out.append(snap)
    return out


def _oof_scores(d: _Data, l2: float, seed: int) -> dict[int, torch.Tensor]:
    """Per length of training: every row scored by a ranker fitted on the other fold."""
    out = {steps: torch.empty_like(d.model) for steps in STEP_GRID}
    for f in (0, 1):
        rankers = _fit(d.part(f, inside=False), l2, STEP_GRID, seed)
        te = torch.from_numpy(d.fold == f)
        feats = d.part(f, inside=True).feats
        with torch.no_grad():
            for steps, r in zip(STEP_GRID, rankers, strict=True):
                out[steps][te] = r(feats)
    return {k: v.masked_fill(d.mask, float("-inf")) for k, v in out.items()}


def _ndcg10(s: torch.Tensor, targets: torch.Tensor) -> float:
    top = s.topk(10, dim=1).indices
    hit = (targets.gather(1, top) > 0).double()
    disc = 1.0 / torch.log2(torch.arange(2, 12).double())
    n_t = (targets > 0).sum(1).clamp(max=10)
    ideal = torch.cumsum(disc, 0)[(n_t - 1).clamp(min=0)]
    ok = n_t > 0
    return float(((hit * disc).sum(1) / ideal)[ok].mean()) if ok.any() else 0.0


def fit_blend(inputs: Inputs, valid: EvalSet, n_items: int, ks: tuple[int, ...],
              seed: int = 0) -> tuple[Blend, dict]:
    """Fit the ranker on the validation rows; keep it only where it beats the model alone out of
    fold. Returns the blend and its validation metrics: out of fold (each row scored by a ranker
    that never saw it), since in-sample figures would flatter it. One torch thread: its steps
    are small, and a second thread costs more in hand-offs than it saves (2.7x slower measured
    on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_blend(inputs, valid, n_items, ks, seed)
    finally:
        torch.set_num_threads(threads)


def _fit_blend(inputs: Inputs, valid: EvalSet, n_items: int, ks: tuple[int, ...],
               seed: int) -> tuple[Blend, dict]:
    t0 = time.perf_counter()
    n = n_items + 1
    rng = np.random.default_rng(seed)
    rows = np.arange(len(valid))
    if len(rows) * n > MAX_CELLS:
        rows = np.sort(rng.choice(rows, MAX_CELLS // n, replace=False))
    model = inputs.model(valid, rows).float().cpu()
    d = _Data(inputs.features(valid, rows, model), model, _targets(valid, rows, n),
              _mask(valid, rows, n), rng.permutation(len(rows)) % 2)
    oof = {None: d.model.masked_fill(d.mask, float("-inf"))}
    for l2 in L2_GRID:
        oof.update({(l2, steps): v for steps, v in _oof_scores(d, l2, seed).items()})
    scores = {p: _ndcg10(v, d.targets) for p, v in oof.items()}
    best = max(scores, key=lambda p: scores[p])  # the model alone first: kept on a tie
    info = {"kind": "ranker", "inputs": ["model", "popularity", "repeat"], "fit_rows": len(rows),
            "repeat_max_items": inputs.max_items,
            "oof_ndcg@10": {("model" if p is None else f"l2={p[0]},steps={p[1]}"): round(v, 5)
                            for p, v in scores.items()}}
    if best is None:
        info.update(kind="model", reason="the ranker did not beat the model alone out of fold")
        ranker = None
    else:
        ranker = _fit(d, best[0], (best[1],), seed)[0]
        info.update(l2=best[0], steps=best[1], weights=ranker.tables())
    oof = oof[best]
    info["fit_seconds"] = round(time.perf_counter() - t0, 1)
    sub = valid.subset(rows)
    metrics = evaluate(lambda es, r: oof[torch.from_numpy(r)], sub, n_items, ks)
    return Blend(inputs, ranker, info), metrics
