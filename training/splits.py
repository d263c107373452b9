"""Evaluation protocols: a global time split, and leave-one-out per user (RecBole's protocol).

Both yield the training rows and, per evaluated user, where the history ends (a row offset: the
model sees the user's rows before it) and the set of target items. Ranking is always over the
whole catalogue; `exclude` removes items from the candidates (and from the targets, since an
unrankable target could never be hit): none, what the user purchased before, or anything the user
interacted with before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data import Interactions

DAY_US = 86_400 * 1_000_000
PURCHASE = 4  # etype index of "purchase" (1-based EVENT_TYPES)


@dataclass
class EvalSet:
    name: str
    users: np.ndarray  # user index per row
    hist_end: np.ndarray  # exclusive row offset into the Interactions: the history's end
    target_ptr: np.ndarray  # CSR over target_items: row r's targets = [ptr[r], ptr[r + 1])
    target_items: np.ndarray
    excluded_ptr: np.ndarray  # CSR of items removed from row r's candidates
    excluded_items: np.ndarray
    cutoff_us: np.ndarray  # when the prediction is made (for point-in-time features)

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class Split:
    protocol: str
    train_mask: np.ndarray  # rows the models learn from
    valid: EvalSet
    test: EvalSet
    window: dict  # human-readable data window (for the model's metadata)


def _excluded(x: Interactions, start: int, end: int, exclude: str) -> np.ndarray:
    if exclude == "none":
        return np.empty(0, dtype=np.int64)
    items, etypes = x.item[start:end], x.etype[start:end]
    if exclude == "purchased":
        items = items[etypes == PURCHASE]
    return np.unique(items)


def _eval_set(name: str, x: Interactions, rows: list[tuple[int, int, np.ndarray, int]],
              exclude: str, bounds: np.ndarray) -> EvalSet:
    """rows: (user, hist_end, candidate targets, cutoff); drops users left without a target."""
    users, ends, cutoffs, tptr, titems, eptr, eitems = [], [], [], [0], [], [0], []
    for u, end, targets, cutoff in rows:
        excl = _excluded(x, bounds[u], end, exclude)
        targets = np.setdiff1d(np.unique(targets), excl, assume_unique=True)
        if len(targets) == 0:
            continue
        users.append(u)
        ends.append(end)
        cutoffs.append(cutoff)
        titems.append(targets)
        tptr.append(tptr[-1] + len(targets))
        eitems.append(excl)
        eptr.append(eptr[-1] + len(excl))
    def cat(a: list) -> np.ndarray:
        return np.concatenate(a).astype(np.int64) if a else np.empty(0, dtype=np.int64)

    return EvalSet(name, np.array(users, dtype=np.int64), np.array(ends, dtype=np.int64),
                   np.array(tptr, dtype=np.int64), cat(titems), np.array(eptr, dtype=np.int64),
                   cat(eitems), np.array(cutoffs, dtype=np.int64))


def leave_one_out(x: Interactions, exclude: str = "none") -> Split:
    """Per user in time order: last interaction = test, second to last = valid, rest = train.
    Users with fewer than 3 interactions only train."""
    b = x.user_bounds()
    n = np.diff(b)
    train = np.ones(len(x), dtype=bool)
    valid_rows, test_rows = [], []
    for u in np.flatnonzero(n >= 3):
        last = b[u + 1] - 1
        train[last - 1:last + 1] = False
        valid_rows.append((u, last - 1, x.item[last - 1:last], x.ts[last - 2]))
        test_rows.append((u, last, x.item[last:last + 1], x.ts[last - 1]))
    window = {"protocol": "loo", "first_event": _iso(x.ts.min()), "last_event": _iso(x.ts.max())}
    return Split("loo", train, _eval_set("valid", x, valid_rows, exclude, b),
                 _eval_set("test", x, test_rows, exclude, b), window)


def time_split(x: Interactions, test_days: int, valid_days: int,
               exclude: str = "none") -> Split:
    """Train before T_valid; validate on [T_valid, T_test); test on [T_test, end]. A user is
    evaluated on a period when they have history before it and interactions in it; the targets are
    the distinct items of that period."""
    end_day = (x.ts.max() // DAY_US) + 1
    t_test = (end_day - test_days) * DAY_US
    t_valid = t_test - valid_days * DAY_US
    if t_valid <= x.ts.min():
        raise ValueError(f"time split: {valid_days}+{test_days} days leave no training data")
    b = x.user_bounds()

    def period(lo: int, hi: int) -> list:
        rows = []
        for u in range(x.n_users):
            s, e = b[u], b[u + 1]
            ts = x.ts[s:e]
            hist_end = s + int(np.searchsorted(ts, lo, side="left"))
            stop = s + int(np.searchsorted(ts, hi, side="left"))
            if hist_end > s and stop > hist_end:
                rows.append((u, hist_end, x.item[hist_end:stop], lo))
        return rows

    t_end = end_day * DAY_US
    window = {"protocol": "time", "train": [_iso(x.ts.min()), _iso(t_valid)],
              "valid": [_iso(t_valid), _iso(t_test)], "test": [_iso(t_test), _iso(t_end)]}
    return Split("time", x.ts < t_valid,
                 _eval_set("valid", x, period(t_valid, t_test), exclude, b),
                 _eval_set("test", x, period(t_test, t_end), exclude, b), window)


def make_split(x: Interactions, protocol: str, *, test_days: int = 3, valid_days: int = 3,
               exclude: str = "none") -> Split:
    if protocol == "loo":
        return leave_one_out(x, exclude)
    if protocol == "time":
        return time_split(x, test_days, valid_days, exclude)
    raise ValueError(f"unknown protocol {protocol!r}: time | loo")


def _iso(us: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(int(us) / 1e6, tz=dt.UTC).isoformat()
