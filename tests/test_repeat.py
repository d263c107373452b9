"""Repeat statistics: their definitions, the cap the online store keeps, and that the collapse of
consecutive events (training's interactions) leaves them unchanged, so dbt (raw events) and
training (collapsed) agree."""

from __future__ import annotations

import numpy as np

from tests.test_baselines import MINUTE_US, _catalogue
from training.data import Interactions, collapse_runs
from training.repeat import repeat_stats
from training.splits import DAY_US, PURCHASE, EvalSet


def _x(rows: list[tuple[int, int, int, int, int]], n_items: int = 5) -> Interactions:
    """rows of (user, item, day, minute, etype), in (user, time) order; a day is a session."""
    u, i, d, m, e = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    users = np.array([f"u{k}" for k in range(u.max() + 1)], dtype=object)
    return Interactions(u, i, e, d * DAY_US + m * MINUTE_US, users, _catalogue(n_items), "t")


def _at_end(x: Interactions) -> EvalSet:
    b = x.user_bounds()
    n = x.n_users
    z = np.zeros(n + 1, dtype=np.int64)
    return EvalSet("valid", np.arange(n), b[1:], z, z[:0], z, z[:0],
                   np.full(n, 30 * DAY_US, dtype=np.int64))


def test_definitions() -> None:
    x = _x([(0, 1, 0, 0, 1), (0, 1, 0, 1, PURCHASE), (0, 2, 0, 2, 1),  # day 0: 1 bought, 2 seen
            (0, 2, 3, 0, 1), (0, 1, 3, 5, 1),  # day 3: 2 then 1 (minute 5)
            (0, 1, 7, 9, PURCHASE), (1, 3, 1, 0, 1)])
    st = repeat_stats(x, x.user_bounds(), _at_end(x), np.arange(2))
    got = {(int(r), int(i)): (int(s), int(p), int(f), int(last)) for r, i, s, p, f, last in
           zip(st.row, st.item, st.sessions, st.purchase_sessions, st.first_us, st.last_us,
               strict=True)}
    assert got == {(0, 1): (3, 2, 0, 7 * DAY_US + 9 * MINUTE_US),
                   (0, 2): (2, 0, 2 * MINUTE_US, 3 * DAY_US),
                   (1, 3): (1, 0, DAY_US, DAY_US)}
    assert st.total_sessions.tolist() == [3, 1]
    assert st.item[st.row == 0].tolist() == [1, 2]  # latest first


def test_history_end_is_respected_and_the_cap_keeps_the_latest() -> None:
    x = _x([(0, k, k, 0, 1) for k in (1, 2, 3, 4)])
    es = _at_end(x)
    es.hist_end[:] = 3  # the last row (item 4) is after the cutoff
    st = repeat_stats(x, x.user_bounds(), es, np.arange(1), max_items=2)
    assert st.item.tolist() == [3, 2]
    assert st.total_sessions.tolist() == [3]


def test_ties_in_last_time_go_by_item_id() -> None:
    x = _x([(0, 3, 0, 0, 1), (0, 2, 0, 0, 1), (0, 1, 0, 0, 1)])
    st = repeat_stats(x, x.user_bounds(), _at_end(x), np.arange(1), max_items=2)
    assert st.item.tolist() == [1, 2]  # ids i1 < i2 < i3


def test_collapsing_consecutive_events_changes_nothing() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for u in range(20):
        for day in np.sort(rng.choice(40, 6, replace=False)):
            for minute in range(int(rng.integers(2, 9))):
                rows.append((u, int(rng.integers(1, 6)), int(day), minute,
                             int(rng.choice([1, 2, 3, PURCHASE]))))
    raw = _x(rows)
    col = collapse_runs(raw)
    assert len(col) < len(raw)
    a = repeat_stats(raw, raw.user_bounds(), _at_end(raw), np.arange(20))
    b = repeat_stats(col, col.user_bounds(), _at_end(col), np.arange(20))
    for f in ("row", "item", "sessions", "purchase_sessions", "first_us", "last_us",
              "total_sessions"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
