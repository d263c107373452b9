"""One shopper scored from the online store's features exactly as evaluation scores them offline.

The production export is loaded with torch only (TorchScript model, weights-only tensors, JSON).
Per request the model reads the user's live sequence (Feast's `user_live_sequence`, pushed by
`POST /events`), their activity features and, for the blend, their repeat statistics: the inputs
of `training.evaluate.evaluate_export`, built the same way (consecutive events on one item in one
session collapse to the first time and the deepest stage; log2 gap buckets; window times).

The online sequence keeps the last `feast.sequence_length` raw events. When it is full, its first
collapsed interaction only serves as the previous time of the second (its own run and gap may
start before the window), so serving reads at most `sequence_length - 1` interactions; the parity
test holds scores equal to evaluation's for users whose history the online sequence holds whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from feature_repo.names import MODEL_USER_FEATURES, REPEAT, SEQUENCE
from shoprec.contract import EVENT_TYPES
from training.data import GAP_BUCKETS
from training.export import ExportedModel
from training.features import user_feature_vector

EVENT_INDEX = {t: i + 1 for i, t in enumerate(EVENT_TYPES)}
PURCHASE = EVENT_INDEX["purchase"]
DAY_US = 86_400_000_000
ITEMS, TYPES, TIMES = SEQUENCE
R_ITEMS, R_SESSIONS, R_PURCHASES, R_FIRST, R_LAST, R_TOTAL = REPEAT


@dataclass
class OnlineFeatures:
    """What the feature service returns for one user (missing views: empty lists / None)."""

    items: list[str] = field(default_factory=list)  # live sequence, oldest first
    types: list[str] = field(default_factory=list)
    times_us: list[int] = field(default_factory=list)
    activity: dict[str, float | None] = field(default_factory=dict)
    repeat: dict[str, list] = field(default_factory=dict)  # REPEAT arrays, latest first
    total_sessions: int | None = None
    full: bool = False  # the sequence holds as many events as the store keeps

    @classmethod
    def from_feast(cls, d: dict, sequence_length: int) -> OnlineFeatures:
        """From `get_online_features(...).to_dict()` of one entity row."""
        def one(name: str):
            v = d.get(name)
            return v[0] if v else None

        items = list(one(ITEMS) or [])
        return cls(items, list(one(TYPES) or []), [int(t) for t in one(TIMES) or []],
                   {f: one(f) for f in MODEL_USER_FEATURES},
                   {k: list(one(k) or []) for k in REPEAT if k != R_TOTAL},
                   one(R_TOTAL), len(items) >= sequence_length)

    @property
    def known(self) -> bool:
        """Anything about this user at all (else: cold start)."""
        return bool(self.items) or bool(self.repeat.get(R_ITEMS)) or any(
            v is not None for v in self.activity.values())


def collapse(items: list[str], types: list[str], times_us: list[int], gap_us: int
             ) -> tuple[list[str], list[int], list[int]]:
    """Runs of one item within a session (gap <= session gap) → (item, deepest stage, first
    time), as training.data.collapse_runs; unknown event types count as views."""
    out_i: list[str] = []
    out_t: list[int] = []
    out_ts: list[int] = []
    prev_ts = None
    for item, etype, ts in zip(items, types, times_us, strict=True):
        stage = EVENT_INDEX.get(etype, 1)
        same_session = prev_ts is not None and ts - prev_ts <= gap_us
        if out_i and same_session and out_i[-1] == item:
            out_t[-1] = max(out_t[-1], stage)
        else:
            out_i.append(item)
            out_t.append(stage)
            out_ts.append(ts)
        prev_ts = ts
    return out_i, out_t, out_ts


def gap_buckets(times_us: list[int], first_is_start: bool) -> list[int]:
    """training.data.Interactions.gap_buckets over one user's rows (1 = their first row)."""
    out = []
    for j, ts in enumerate(times_us):
        if j == 0:
            out.append(1 if first_is_start else 2)
            continue
        sec = max((ts - times_us[j - 1]) / 1e6, 0.0)
        out.append(int(min(max(math.floor(math.log2(sec + 1)) + 2, 2), GAP_BUCKETS - 1)))
    return out


@dataclass
class Scored:
    scores: torch.Tensor  # [n_items + 1] in export indices, -inf = never recommend
    history: list[int]  # export indices of the window, oldest first (0 = unknown item)
    repeat: dict[int, tuple[int, int, int, int]]  # index -> (sessions, purchases, first, last)


class LoadedModel:
    """The production export, ready to score single users (one torch thread per request)."""

    def __init__(self, export_dir: Path, version: str = "", session_gap_minutes: int = 30,
                 exclude: str | None = None):
        self.version = version
        self.exp = exp = ExportedModel(Path(export_dir))
        meta = exp.meta
        self.dataset: str = meta["dataset"]
        self.max_len = int(meta["inputs"]["max_len"])
        self.n_features = int(meta["inputs"]["n_user_features"])
        self.feature_service: str | None = meta.get("feature_service")
        self.gap_us = session_gap_minutes * 60_000_000
        self.exclude = exclude or meta["training"].get("exclude", "none")
        items = meta["items"]
        self.ids: list[str] = ["", *items["ids"]]
        self.index = exp.index
        self.titles: list[str] = ["", *items.get("titles", [""] * len(items["ids"]))]
        cats = items["categories"]
        of = items.get("category_of") or [0] * len(items["ids"])
        self.category: list[str] = ["", *[cats[c] if 0 <= c < len(cats) else "" for c in of]]
        n = len(self.ids)
        pop = exp.popularity.float() if exp.popularity is not None else torch.zeros(n)
        self.popularity = pop.unsqueeze(0)
        self.ranker = None
        if exp.blend is not None and exp.blend.get("kind") == "ranker":
            from training.ranker import OneUser, Ranker

            self.ranker = OneUser(Ranker.from_tables(exp.blend["weights"]), self.popularity)
        order = torch.argsort(pop[1:], descending=True, stable=True) + 1
        self.trending: list[int] = order.tolist()
        self.vectors = torch.nn.functional.normalize(exp.items.float(), dim=1)
        # The TorchScript model's `scores` recomputes every item's output vector (id + side
        # embeddings: most of a request's time on a large catalogue); they are constant for a
        # loaded export, so they are computed once here by the model itself and `_scores` does
        # the rest of `scores` with the same operations (the same scores, bit for bit). An export
        # without those methods is scored by `scores` itself.
        self._item_vectors: torch.Tensor | None = None
        if all(hasattr(exp.model, m) for m in ("forward", "item_vectors", "_last_repeat_weights")):
            with torch.inference_mode():
                self._item_vectors = exp.model.item_vectors()

    # -- inputs ----------------------------------------------------------------------------
    def _window(self, f: OnlineFeatures) -> tuple[list[int], list[int], list[int], list[int]]:
        items, stages, times = collapse(f.items, f.types, f.times_us, self.gap_us)
        gaps = gap_buckets(times, first_is_start=not f.full)
        if f.full and items:  # the first run may have begun before the window: context only
            items, stages, times, gaps = items[1:], stages[1:], times[1:], gaps[1:]
        items, stages, times, gaps = (v[-self.max_len:] for v in (items, stages, times, gaps))
        idx = [self.index.get(i, 0) for i in items]
        return idx, stages, gaps, times

    def _tensors(self, f: OnlineFeatures) -> tuple[tuple[torch.Tensor, ...], list[int]]:
        idx, stages, gaps, times = self._window(f)
        # No left padding: the model places a shorter window at the last positions itself
        # (positions count from max_len - n) and padding is masked out of attention, so the
        # window alone scores the same (to float rounding) at a fraction of the work for a
        # shopper with a short history. An empty window is one padding position.
        pad = 0 if idx else 1
        keep = [int(i != 0) for i in idx]
        it = torch.tensor([[0] * pad + idx], dtype=torch.long)
        et = torch.tensor([[0] * pad + [s * k for s, k in zip(stages, keep, strict=True)]])
        gp = torch.tensor([[0] * pad + [g * k for g, k in zip(gaps, keep, strict=True)]])
        t0 = min(times) if times else 0
        tm = torch.tensor([[0.0] * pad + [(t - t0) / 1e6 for t in times]], dtype=torch.float32)
        if self.n_features:
            feats = torch.tensor([user_feature_vector(f.activity)], dtype=torch.float32)
        else:
            feats = torch.zeros(1, 0)
        return (it, et, gp, feats, tm), idx

    def _repeat(self, f: OnlineFeatures) -> dict[int, tuple[int, int, int, int]]:
        r = f.repeat
        out = {}
        for j, item in enumerate(r.get(R_ITEMS, [])):
            i = self.index.get(item, 0)
            if i:
                out[i] = (int(r[R_SESSIONS][j]), int(r[R_PURCHASES][j]), int(r[R_FIRST][j]),
                          int(r[R_LAST][j]))
        return out

    # -- scoring ---------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, f: OnlineFeatures, now_us: int) -> Scored:
        """Every item's score for this user at `now_us` (the recency of repeat statistics)."""
        args, idx = self._tensors(f)
        s = self._scores(args).float()[0]
        rep = self._repeat(f)
        if self.ranker is not None:
            s = self.ranker(s, self._repeat_stats(rep, f, now_us))
        else:
            s = s.clone()
            s[0] = float("-inf")
        return Scored(s, idx, rep)

    def _scores(self, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """`exp.model.scores(*args)` with the item vectors computed at load (see __init__)."""
        model = self.exp.model
        if self._item_vectors is None:
            return model.scores(*args)
        items, etypes, gaps, feats, times = args
        h = model.forward(items, etypes, gaps, feats)  # the user vector after the last position
        s = h @ self._item_vectors.t()
        w = model._last_repeat_weights(items, etypes, h.unsqueeze(1), times)
        return s.scatter_add(1, items, w.to(s.dtype))

    @staticmethod
    def _repeat_stats(rep: dict, f: OnlineFeatures, now_us: int):
        """The user's repeat statistics as the ranker reads them (one row, cutoff = now)."""
        from training.repeat import RepeatStats

        items = np.fromiter(rep.keys(), dtype=np.int64, count=len(rep))
        vals = np.array(list(rep.values()), dtype=np.int64).reshape(-1, 4)
        return RepeatStats(np.zeros(len(items), np.int64), items, vals[:, 0], vals[:, 1],
                           vals[:, 2], vals[:, 3], np.array([int(f.total_sessions or 0)]),
                           np.array([now_us], dtype=np.int64))

    def mask(self, scored: Scored, f: OnlineFeatures) -> torch.Tensor:
        """The scores with the exclusion rule applied: `purchased` drops items the user bought
        (sequence or repeat statistics), `interacted` everything they came to."""
        s = scored.scores
        if self.exclude == "none":
            return s
        s = s.clone()
        drop = set()
        if self.exclude == "interacted":
            drop |= {i for i in scored.history if i} | set(scored.repeat)
        else:
            drop |= {i for i, v in scored.repeat.items() if v[1] > 0}
            drop |= {self.index.get(i, 0) for i, t in zip(f.items, f.types, strict=False)
                     if t == "purchase"}
        drop.discard(0)
        if drop:
            s[torch.tensor(sorted(drop))] = float("-inf")
        return s

    # -- reasons ---------------------------------------------------------------------------
    def reason(self, i: int, scored: Scored | None, now_us: int) -> str:
        """A short why for item `i`: a replenishment cycle, a similar recent item, or its
        popularity in its category; degrades when a title or category is missing."""
        return self.reasons([i], scored, now_us)[i]

    def reasons(self, items: list[int], scored: Scored | None, now_us: int) -> dict[int, str]:
        """`reason` of each item, with one similarity product for all of them."""
        out = {i: self._history_reason(i, scored) for i in items}
        recent = [h for h in scored.history[-5:] if h] if scored is not None else []
        need = [i for i, r in out.items() if r is None]
        if recent and need:
            best = (self.vectors[need] @ self.vectors[recent].t()).argmax(1).tolist()
            for i, j in zip(need, best, strict=True):
                near = recent[j]
                out[i] = f"because you viewed {self.titles[near] or self.ids[near]}"
        for i in need:
            if out[i] is None:
                cat = self.category[i]
                out[i] = f"popular in {cat}" if cat else "popular right now"
        return out

    @staticmethod
    def _history_reason(i: int, scored: Scored | None) -> str | None:
        if scored is None:
            return None
        rep = scored.repeat.get(i)
        if rep and rep[1] >= 2 and rep[0] >= 2 and rep[3] > rep[2]:
            # the store keeps the first and last session with the item, not each purchase:
            # the cycle is the mean interval between those sessions (the ranker's "due" too)
            days = max(round((rep[3] - rep[2]) / (rep[0] - 1) / DAY_US), 1)
            return f"bought again every ~{days} days"
        if rep or i in scored.history:
            return "you came back to it" if rep and rep[0] >= 2 else "you viewed it before"
        return None

    def similar(self, item_id: str, k: int) -> list[tuple[int, float]]:
        """Nearest items by the model's item vectors (cosine); KeyError for an unknown item."""
        i = self.index[item_id]
        sim = self.vectors @ self.vectors[i]
        sim[0] = sim[i] = float("-inf")
        top = torch.topk(sim, min(k, len(self.ids) - 2))
        return list(zip(top.indices.tolist(), top.values.tolist(), strict=True))
