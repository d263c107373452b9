"""The vectorised splits, windows and target bounds against plain per-user loops (the code they
replaced), on random interactions: same rows, same order, same values."""

from __future__ import annotations

import numpy as np
import pytest

from training.arrays import ranges, unique
from training.data import Catalogue, Interactions
from training.splits import DAY_US, PURCHASE, make_split
from training.tensors import training_windows
from training.train import target_bounds


def _random(seed: int, n_users: int = 60, n_items: int = 25) -> Interactions:
    """Users with 0..12 rows over 20 days, repeated timestamps, items and types at random."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 13, n_users)
    user = np.repeat(np.arange(n_users), counts)
    ts = rng.integers(0, 20 * 8, len(user)) * (DAY_US // 8)
    ts = ts[np.lexsort((ts, user))]  # sorted within each user, ties kept
    ids = np.array([""] + [f"i{k}" for k in range(1, n_items + 1)], dtype=object)
    cat = Catalogue(item_ids=ids, category=np.zeros(n_items + 1, dtype=np.int64),
                    brand=np.zeros(n_items + 1, dtype=np.int64),
                    price_bucket=np.zeros(n_items + 1, dtype=np.int64),
                    categories=[""], brands=[""], price_edges=[])
    return Interactions(user, rng.integers(1, n_items + 1, len(user)),
                        rng.integers(1, 5, len(user)), ts,
                        np.array([f"u{k:03d}" for k in range(n_users)], dtype=object), cat, "r")


def _excluded(x: Interactions, start: int, end: int, exclude: str) -> set[int]:
    if exclude == "none":
        return set()
    items, etypes = x.item[start:end], x.etype[start:end]
    return set((items[etypes == PURCHASE] if exclude == "purchased" else items).tolist())


def _reference_rows(x: Interactions, protocol: str, name: str) -> list[tuple]:
    """(user, hist_end, target rows stop, cutoff) per evaluated user, one user at a time."""
    b = x.user_bounds()
    out = []
    if protocol == "time":
        end_day = x.ts.max() // DAY_US + 1
        t_test = (end_day - 3) * DAY_US
        lo, hi = (t_test - 3 * DAY_US, t_test) if name == "valid" else (t_test, end_day * DAY_US)
        for u in range(x.n_users):
            s, e = b[u], b[u + 1]
            he = s + int(np.searchsorted(x.ts[s:e], lo))
            stop = s + int(np.searchsorted(x.ts[s:e], hi))
            if he > s and stop > he:
                out.append((u, he, stop, lo))
    elif protocol == "loo":
        for u in range(x.n_users):
            last = b[u + 1] - 1
            if b[u + 1] - b[u] >= 3:
                he = last - 1 if name == "valid" else last
                out.append((u, he, he + 1, x.ts[he - 1]))
    else:
        starts = np.flatnonzero(x.session_starts())
        for u in range(x.n_users):
            mine = starts[(starts >= b[u]) & (starts < b[u + 1])]
            if len(mine) >= 3:
                v0, t0 = mine[-2], mine[-1]
                out.append((u, v0, t0, x.ts[v0]) if name == "valid" else
                           (u, t0, b[u + 1], x.ts[t0]))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("protocol", ["time", "loo", "session"])
@pytest.mark.parametrize("exclude", ["none", "purchased", "interacted"])
def test_splits_match_a_per_user_loop(seed: int, protocol: str, exclude: str) -> None:
    x = _random(seed)
    split = make_split(x, protocol, test_days=3, valid_days=3, exclude=exclude)
    b = x.user_bounds()
    for es in (split.valid, split.test):
        expected = []
        for u, he, stop, cutoff in _reference_rows(x, protocol, es.name):
            excl = _excluded(x, b[u], he, exclude)
            targets = sorted(set(x.item[he:stop].tolist()) - excl)
            if targets:
                expected.append((u, he, cutoff, targets, sorted(excl)))
        got = [(int(es.users[r]), int(es.hist_end[r]), int(es.cutoff_us[r]),
                es.target_items[es.target_ptr[r]:es.target_ptr[r + 1]].tolist(),
                es.excluded_items[es.excluded_ptr[r]:es.excluded_ptr[r + 1]].tolist())
               for r in range(len(es))]
        assert got == expected and expected, (protocol, es.name)
        sub = es.subset(np.array([len(es) - 1, 0]))
        assert sub.target_items[:sub.target_ptr[1]].tolist() == expected[-1][3]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_training_windows_match_a_per_user_loop(seed: int, max_len: int) -> None:
    x = _random(seed)
    train = make_split(x, "loo").train_mask
    w = training_windows(x, train, max_len)
    orig = np.flatnonzero(train)
    b = x.select(train).user_bounds()
    expected = []
    for u in range(x.n_users):
        s, e = int(b[u]), int(b[u + 1])
        while e - s >= 2:
            expected.append([int(orig[r]) if r >= s else -1 for r in range(e - max_len - 1, e)])
            e -= max_len
    assert w.rows.tolist() == expected
    assert (w.items.numpy() == np.where(w.rows.numpy() >= 0, x.item[w.rows.numpy()], 0)).all()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("horizon_days", [0, 2, 20_000_000])  # the last: 2 users per key chunk
def test_target_bounds_match_a_per_user_loop(seed: int, horizon_days: int) -> None:
    x = _random(seed)
    train = make_split(x, "time", test_days=3, valid_days=3).train_mask
    horizon = horizon_days * DAY_US
    b = x.user_bounds()
    expected = np.arange(len(x)) + 1
    for u in range(x.n_users):
        s = int(b[u])
        e = s + int(train[s:b[u + 1]].sum())
        if e - s >= 2:
            upto = s + np.searchsorted(x.ts[s:e], x.ts[s:e] + horizon, side="right")
            expected[s:e] = np.minimum(np.maximum(upto, np.arange(s, e) + 2), e)
    assert target_bounds(x, train, horizon).tolist() == expected.tolist()
    broken = train.copy()
    # a training row followed by one of the same user, dropped: no longer a prefix
    broken[np.flatnonzero(train[:-1] & train[1:] & (x.user[:-1] == x.user[1:]))[0]] = False
    with pytest.raises(ValueError, match="prefix"):
        target_bounds(x, broken, horizon)


def test_array_idioms() -> None:
    v = np.array([5, 3, 5, -1, 3, 9])
    assert unique(v).tolist() == [-1, 3, 5, 9] and unique(v[:0]).tolist() == []
    owner, rows = ranges(np.array([4, 0, 7]), np.array([6, 0, 10]))
    assert owner.tolist() == [0, 0, 2, 2, 2] and rows.tolist() == [4, 5, 7, 8, 9]
