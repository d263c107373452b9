"""Baselines on hand-built interactions: each scores the whole catalogue on every protocol, reads
nothing at or after a history's end, and ranks what its definition says it ranks."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from shoprec.config import TrainingSettings
from training import baselines as bl
from training.data import Catalogue, Interactions
from training.splits import DAY_US, EvalSet, make_split
from training.train import run_baselines

MINUTE_US = 60 * 1_000_000
NAMES = ("popularity", "itemknn", "personal_history", "ptopfreq", "tifuknn", "ease")


def _catalogue(n_items: int) -> Catalogue:
    ids = np.array([""] + [f"i{k}" for k in range(1, n_items + 1)], dtype=object)
    return Catalogue(item_ids=ids, category=np.r_[0, np.ones(n_items, dtype=np.int64)],
                     brand=np.zeros(n_items + 1, dtype=np.int64),
                     price_bucket=np.zeros(n_items + 1, dtype=np.int64),
                     categories=["", "c"], brands=[""], price_edges=[])


def _interactions(rows: list[tuple[int, int, int]], n_items: int, etype: int = 1
                  ) -> Interactions:
    """rows of (user, item, day), each user's in time order; a day is one session (its rows a
    minute apart)."""
    u, i, d = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    order = np.argsort(u, kind="stable")
    u, i, d = u[order], i[order], d[order]
    ts, count = [], {}
    for uu, dd in zip(u.tolist(), d.tolist(), strict=True):
        k = count[uu, dd] = count.get((uu, dd), -1) + 1
        ts.append(dd * DAY_US + k * MINUTE_US)
    users = np.array([f"u{k}" for k in range(u.max() + 1)], dtype=object)
    return Interactions(u, i, np.full(len(u), etype, dtype=np.int64), np.array(ts), users,
                        _catalogue(n_items), "t")


def _shop(seed: int = 0, n_users: int = 40, n_items: int = 24) -> Interactions:
    """Users with a favourite cluster of items, 4-7 sessions over 20 days, some repeats."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        cluster = 1 + (u % 4) * 6 + np.arange(6)
        days = np.sort(rng.choice(20, size=rng.integers(4, 8), replace=False))
        for day in days:
            for _ in range(rng.integers(2, 5)):
                item = rng.choice(cluster) if rng.random() < 0.8 else rng.integers(1, n_items + 1)
                rows.append((u, int(item), int(day)))
    return _interactions(rows, n_items)


def _one_row(user: int, hist_end: int) -> EvalSet:
    return EvalSet("test", np.array([user]), np.array([hist_end]), np.array([0, 1]),
                   np.array([1]), np.array([0, 0]), np.empty(0, dtype=np.int64),
                   np.array([0]))


def _fitted(x: Interactions, split) -> dict:
    pop = bl.Popularity(x, split.train_mask, 14 if split.protocol == "time" else None)
    return {"popularity": pop,
            "itemknn": bl.fit_itemknn(x, split, 100),
            "personal_history": bl.PersonalHistory(x, split.train_mask, pop),
            "ptopfreq": bl.PTopFreq(x, split.train_mask, pop),
            "tifuknn": bl.fit_tifuknn(x, split, pop),
            "ease": bl.fit_ease(x, split, 20_000)}


@pytest.mark.parametrize("protocol", ["time", "loo", "session"])
def test_every_baseline_scores_the_whole_catalogue_on_every_protocol(protocol):
    x = _shop()
    split = make_split(x, protocol, test_days=3, valid_days=3)
    assert len(split.valid) and len(split.test)
    rows = np.arange(len(split.test))
    for name, model in _fitted(x, split).items():
        s = model(split.test, rows)
        assert s.shape == (len(rows), x.catalogue.n_items + 1), name
        assert torch.isfinite(s).all(), name
    models, seconds = {}, {}
    metrics = run_baselines(x, split, TrainingSettings(protocol=protocol), seconds, models)
    assert set(metrics) == {f"{n}/{part}" for n in NAMES for part in ("valid", "test")}
    assert list(models) == list(seconds) == list(NAMES)
    keys = set(metrics["popularity/test"])
    assert all(set(m) == keys for m in metrics.values())


@pytest.mark.parametrize("protocol", ["time", "loo", "session"])
def test_no_baseline_reads_a_row_at_or_after_the_history_end(protocol):
    """Every row no model may see for the test set (not training, not in a test history) is
    changed: the test scores stay the same, tuning on validation included."""
    x = _shop(seed=1)
    split = make_split(x, protocol, test_days=3, valid_days=3)
    es, rows = split.test, np.arange(len(split.test))
    visible = split.train_mask.copy()
    b = x.user_bounds()
    for u, end in zip(es.users, es.hist_end, strict=True):
        visible[b[u]:end] = True
    hidden = ~visible
    assert hidden.sum() >= len(es)  # every test user has a target row
    rng = np.random.default_rng(7)
    item = x.item.copy()
    item[hidden] = rng.integers(1, x.catalogue.n_items + 1, size=int(hidden.sum()))
    etype = x.etype.copy()
    etype[hidden] = 4
    changed = Interactions(x.user, item, etype, x.ts, x.user_ids, x.catalogue, x.dataset,
                           x.source, x.extra, x.session)
    before, after = _fitted(x, split), _fitted(changed, split)
    for name in before:
        assert torch.equal(before[name](es, rows), after[name](es, rows)), name


def test_ease_recovers_an_item_item_pattern():
    # items 1 and 2 always come together, as do 3 and 4; 5 and 6 are noise
    rows = [(u, i, 0) for u in range(20) for i in ((1, 2) if u % 2 else (3, 4))]
    rows += [(20, 5, 0), (20, 6, 0), (21, 5, 0)]
    x = _interactions(rows, 6)
    ease = bl.EASE(x, np.ones(len(x), dtype=bool), l2=1.0)
    first = {i: int(np.flatnonzero(x.item == i)[0]) for i in (1, 3)}
    for seen, partner in ((1, 2), (3, 4)):
        u = int(x.user[first[seen]])
        s = ease(_one_row(u, first[seen] + 1), np.array([0]))[0]  # history: `seen` only
        s[seen] = -np.inf
        assert s[1:].argmax().item() + 1 == partner
        assert s[partner] > 0.5 and abs(s[5]) < 0.1


def test_tifuknn_favours_frequent_recent_items_and_borrows_from_a_similar_user():
    rows = ([(0, 2, 0), (0, 7, 1)] + [(0, 1, d) for d in range(2, 6)] + [(0, 8, 5)]
            + [(1, 1, d) for d in range(4)] + [(1, 5, d) for d in range(4)]  # like user 0
            + [(2, 3, d) for d in range(4)] + [(2, 6, d) for d in range(4)])  # unlike user 0
    x = _interactions(rows, 8)
    pop = bl.Popularity(x, np.ones(len(x), dtype=bool), None)
    tifu = bl.TIFUKNN(x, np.ones(len(x), dtype=bool), pop, decay=0.5, alpha=0.7, neighbours=1)
    n0 = int((x.user == 0).sum())
    s = tifu(_one_row(0, n0), np.array([0]))[0]
    assert s[1] > s[8] > s[7] > s[2]  # in 4 sessions > latest session > older ones
    assert s[5] > s[6] and s[5] > s[3]  # from the similar user; the other one is no neighbour
    assert s[1] > s[5]  # the user's own frequent item above the borrowed one (alpha 0.7)
    tifu.set(history_last=True)
    s = tifu(_one_row(0, n0), np.array([0]))[0]
    assert s[5] > s[1]  # own items last


def test_ptopfreq_ranks_by_sessions_holding_an_item_then_popularity():
    rows = ([(0, 1, d) for d in range(3)]  # item 1 in 3 sessions
            + [(0, 2, 3), (0, 4, 3), (0, 2, 3), (0, 2, 4)]  # 2: 3 rows in 2 sessions
            + [(0, 3, 5)]  # 3: one session
            + [(1, 5, d) for d in range(5)] + [(1, 6, 0), (2, 6, 0)])  # popular: 5, then 6
    x = _interactions(rows, 7)
    mask = np.ones(len(x), dtype=bool)
    m = bl.PTopFreq(x, mask, bl.Popularity(x, mask, None))
    s = m(_one_row(0, int((x.user == 0).sum())), np.array([0]))[0]
    order = s[1:].argsort(descending=True).add(1).tolist()
    assert order[:2] == [1, 2]  # 3 sessions, then 2 (of 3 rows)
    assert set(order[2:4]) == {3, 4} and order[4:] == [5, 6, 7]  # 1 session each; popularity


def test_itemknn_keeps_each_items_k_nearest_as_recbole_does():
    # co-occurrence: 1-2 (2 users), 2-3 (3 users): item 2's nearest is 3, item 3's nearest is 2,
    # item 1's nearest is 2
    rows = [(0, 1, 0), (0, 2, 0), (1, 1, 0), (1, 2, 0)] + [(u, i, 0) for u in (2, 3, 4)
                                                           for i in (2, 3)]
    x = _interactions(rows, 4)
    knn = bl.ItemKNN(x, np.ones(len(x), dtype=bool), neighbours=1)
    s = knn(_one_row(0, 1), np.array([0]))[0]  # history: item 1
    assert s[2] == 0  # 1 is not among item 2's one nearest item
    s = knn(_one_row(2, int(np.flatnonzero(x.user == 2)[0]) + 1), np.array([0]))[0]  # item 2
    assert s[1] > 0 and s[3] > 0  # 2 is item 1's and item 3's nearest


def test_tuning_puts_history_items_last_where_users_never_come_back():
    """Leave-one-out where every target is new to the user: validation picks history_last, and
    the user's own items leave the top of the ranking."""
    rng = np.random.default_rng(3)
    rows = [(u, int(i), d) for u in range(60)
            for d, i in enumerate(rng.permutation(np.arange(1, 13) + 12 * (u % 2))[:8])]
    x = _interactions(rows, 24)
    split = make_split(x, "loo")
    for m in (bl.fit_itemknn(x, split, 100), bl.fit_ease(x, split, 20_000)):
        assert m.chosen["history_last"] is True, m.name
        s = m(split.test, np.array([0]))[0]
        u, end = split.test.users[0], split.test.hist_end[0]
        hist = x.item[x.user_bounds()[u]:end]
        assert s[hist].max() < s[1:].max()


def test_ease_is_skipped_above_its_catalogue_limit(caplog):
    x = _shop()
    split = make_split(x, "loo")
    with caplog.at_level(logging.WARNING, logger="training.baselines"):
        assert bl.fit_ease(x, split, max_items=10) is None
    assert "ease skipped: 24 items > ease_max_items 10" in caplog.text
    metrics = run_baselines(x, split, TrainingSettings(protocol="loo", ease_max_items=10))
    assert "ease/test" not in metrics and "tifuknn/test" in metrics
    with caplog.at_level(logging.WARNING, logger="training.baselines"):
        metrics = run_baselines(x, split, TrainingSettings(protocol="loo", tifu_max_users=3))
    assert f"tifuknn skipped: {x.n_users:,} users > tifu_max_users 3" in caplog.text
    assert "tifuknn/test" not in metrics and "ease/test" in metrics


def test_tuning_reads_no_test_target():
    """The chosen hyper-parameters and the validation figures do not depend on the test set."""
    x = _shop(seed=2)
    split = make_split(x, "session")
    a = bl.fit_tifuknn(x, split, bl.Popularity(x, split.train_mask, None))
    scrambled = EvalSet(split.test.name, split.test.users, split.test.hist_end,
                        split.test.target_ptr, np.ones_like(split.test.target_items),
                        split.test.excluded_ptr, split.test.excluded_items,
                        split.test.cutoff_us)
    split.test = scrambled
    b = bl.fit_tifuknn(x, split, bl.Popularity(x, split.train_mask, None))
    assert a.chosen == b.chosen and a.valid_metrics == b.valid_metrics
