"""The promoted recommender (training/ranker.py): a ranker fitted on validation that learns from
the whole history what the model misses, and keeps the model alone where it cannot add to it."""

from __future__ import annotations

import numpy as np
import torch

from tests.test_baselines import _interactions
from training.metrics import evaluate
from training.ranker import GROUPS, Inputs, features, fit_blend
from training.repeat import repeat_stats
from training.splits import DAY_US, EvalSet

N_ITEMS = 30


def _data(n_users: int = 160, seed: int = 0):
    """Each user came to a staple in 5 of 6 sessions and to two other items once; the staple is
    what they want next."""
    rng = np.random.default_rng(seed)
    rows, staple = [], []
    for u in range(n_users):
        a, b, c = rng.choice(np.arange(1, N_ITEMS + 1), 3, replace=False)
        staple.append(int(a))
        for day in range(6):
            rows.append((u, int(a if day != 2 else b), day))
        rows.append((u, int(c), 6))
    x = _interactions(rows, N_ITEMS)
    bounds = x.user_bounds()
    n = x.n_users
    es = EvalSet("valid", np.arange(n), bounds[1:], np.arange(n + 1), np.array(staple),
                 np.zeros(n + 1, dtype=np.int64), np.empty(0, dtype=np.int64),
                 np.full(n, 10 * DAY_US, dtype=np.int64))
    return x, es


def _noise(es: EvalSet, rows: np.ndarray) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(rows[0]))
    return torch.rand(len(rows), N_ITEMS + 1, generator=g)


def _flat(es: EvalSet, rows: np.ndarray) -> torch.Tensor:
    return torch.zeros(len(rows), N_ITEMS + 1)


def _oracle(es: EvalSet, rows: np.ndarray) -> torch.Tensor:
    s = torch.zeros(len(rows), N_ITEMS + 1)
    s[torch.arange(len(rows)), torch.from_numpy(es.target_items[rows])] = 1.0
    return s


def test_features_are_buckets_of_the_history() -> None:
    x, es = _data(4)
    rows = np.arange(4)
    st = repeat_stats(x, x.user_bounds(), es, rows)
    f = features(_oracle(es, rows), _flat(es, rows), st)
    assert set(f) == set(GROUPS)
    for k, n in GROUPS.items():
        assert int(f[k].max()) < n and int(f[k].min()) >= 0, k
    seen = torch.zeros(4, N_ITEMS + 1, dtype=torch.bool)
    seen[torch.from_numpy(st.row), torch.from_numpy(st.item)] = True
    assert ((f["sessions"] > 0) == seen).all()  # bucket 0 = never came to it
    assert f["model_rank"][torch.arange(4), torch.from_numpy(es.target_items[:4])].eq(0).all()


def test_the_ranker_learns_what_the_history_says_where_the_model_does_not() -> None:
    x, valid = _data(seed=0)
    inputs = Inputs(_noise, _flat, x, x.user_bounds())
    blend, valid_metrics = fit_blend(inputs, valid, N_ITEMS, (10, 20))
    assert blend.describe()["kind"] == "ranker"
    model = evaluate(_noise, valid, N_ITEMS, (10, 20))
    assert valid_metrics["ndcg@10"] > model["ndcg@10"] + 0.5  # out of fold, not in-sample
    test = evaluate(blend, valid, N_ITEMS, (10, 20))
    assert test["hit@10"] == 1.0 and test["mrr@10"] > 0.9


def test_the_ranker_scores_in_chunks_what_it_scores_at_once(monkeypatch) -> None:
    import training.ranker as ranker

    def row_noise(es: EvalSet, rows: np.ndarray) -> torch.Tensor:  # each row's own, any batch
        return torch.stack([_noise(es, rows[j:j + 1])[0] for j in range(len(rows))])

    x, valid = _data(seed=0)
    blend, _ = fit_blend(Inputs(row_noise, _flat, x, x.user_bounds()), valid, N_ITEMS, (10, 20))
    assert blend.describe()["kind"] == "ranker"
    rows = np.arange(len(valid))
    whole = blend(valid, rows)
    monkeypatch.setattr(ranker, "RANKER_ROWS", 3)  # 3, 3, ..., and a shorter last chunk
    assert len(rows) % 3 and torch.equal(blend(valid, rows), whole)


def test_the_model_alone_is_kept_where_the_ranker_cannot_beat_it() -> None:
    x, valid = _data(seed=1)
    blend, _ = fit_blend(Inputs(_oracle, _flat, x, x.user_bounds()), valid, N_ITEMS, (10, 20))
    assert blend.describe()["kind"] == "model"
    assert torch.equal(blend(valid, np.arange(5)), _oracle(valid, np.arange(5)))


def test_the_compact_fit_is_the_full_catalogue_softmax() -> None:
    from training.ranker import Ranker, _Data, _mask, _targets

    x, valid = _data(12, seed=2)
    rows = np.arange(12)
    feats = Inputs(_noise, _noise, x, x.user_bounds()).features(valid, rows)
    d = _Data(feats, _noise(valid, rows), _targets(valid, rows, N_ITEMS + 1),
              _mask(valid, rows, N_ITEMS + 1), np.zeros(12, dtype=np.int64))
    ranker = Ranker()
    torch.manual_seed(0)
    for p in ranker.parameters():
        torch.nn.init.normal_(p)
    dense = ranker(feats).masked_fill(d.mask, float("-inf"))
    want = -(torch.log_softmax(dense, 1).nan_to_num(neginf=0.0) * d.targets).sum(1)
    s = ranker.pattern_scores(d.patterns)[d.pattern]
    got = torch.logsumexp(s + d.log_mult, 1) - (s * d.entry_targets).sum(1)
    assert torch.allclose(got, want, atol=1e-4)


def test_rank_buckets_of_one_row_equal_the_full_ranks_ties_included() -> None:
    from training.ranker import RANK_EDGES, _bucket, _ranks, rank_buckets

    g = torch.Generator().manual_seed(3)
    for n in (50, 3_000, 20_001):
        s = torch.randn(n, generator=g)
        s[torch.randint(0, n, (n // 3,), generator=g)] = 0.5  # a block of ties across rank 500
        full = _bucket(_ranks(s.unsqueeze(0)).numpy()[0], RANK_EDGES)
        assert torch.equal(rank_buckets(s), torch.from_numpy(full)), n


def test_one_user_scores_equal_the_ranker_bit_for_bit() -> None:
    """Serving's one-user ranker (no per-item tables) against Ranker.forward on the same row."""
    from training.ranker import OneUser, Ranker
    from training.repeat import RepeatStats

    g = torch.Generator().manual_seed(0)
    ranker = Ranker()
    with torch.no_grad():
        ranker.w.copy_(torch.randn(ranker.w.shape, generator=g))
    rng = np.random.default_rng(0)
    for n, m in ((N_ITEMS + 1, 5), (2_000, 40), (12_000, 0)):
        model = torch.randn(n, generator=g)
        pop = torch.randint(0, 50, (1, n), generator=g).float()
        items = rng.choice(np.arange(1, n), m, replace=False)
        sessions = rng.integers(1, 30, m)
        first = rng.integers(0, 100, m) * DAY_US
        last = first + rng.integers(0, 200, m) * DAY_US
        st = RepeatStats(np.zeros(m, np.int64), items, sessions, rng.integers(0, 5, m), first,
                         last, np.array([40]), np.array([400 * DAY_US]))
        expect = ranker(features(model.unsqueeze(0), pop, st))[0]
        assert torch.equal(OneUser(ranker, pop)(model, st), expect), n
