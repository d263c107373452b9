"""Evaluation protocols: a global time split, leave-one-out per user (RecBole's protocol), and
per user the last session (or order) as the test and the session before it as the validation.

Each yields the training rows and, per evaluated user, where the history ends (a row offset: the
model sees the user's rows before it) and the set of target items. Ranking is always over the
whole catalogue; `exclude` removes items from the candidates (and from the targets, since an
unrankable target could never be hit): none, what the user purchased before, or anything the user
interacted with before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np

from shoprec.config import TrainingSettings
from training.arrays import ranges, unique
from training.data import Interactions, TrainingDataError

DAY_US = 86_400 * 1_000_000
PURCHASE = 4  # etype index of "purchase" (1-based EVENT_TYPES)
PROTOCOLS: tuple[str, ...] = get_args(TrainingSettings.model_fields["protocol"].annotation)


class SplitError(TrainingDataError, ValueError):
    """The data cannot be split by the protocol asked for (a ValueError; the CLI says it in one
    line, as for any TrainingDataError)."""


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

    def subset(self, rows: np.ndarray) -> EvalSet:
        """The same evaluation restricted to `rows` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)

        def csr(ptr: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            take = ranges(ptr[rows], ptr[rows + 1])[1]
            lens = ptr[rows + 1] - ptr[rows]
            return np.r_[0, np.cumsum(lens)].astype(np.int64), values[take].astype(np.int64)

        tp, ti = csr(self.target_ptr, self.target_items)
        ep, ei = csr(self.excluded_ptr, self.excluded_items)
        return EvalSet(self.name, self.users[rows], self.hist_end[rows], tp, ti, ep, ei,
                       self.cutoff_us[rows])


@dataclass
class Split:
    protocol: str
    train_mask: np.ndarray  # rows the models learn from
    valid: EvalSet
    test: EvalSet
    window: dict  # human-readable data window (for the model's metadata)


def _eval_set(name: str, x: Interactions, users: np.ndarray, hist_end: np.ndarray,
              stop: np.ndarray, cutoff: np.ndarray, exclude: str,
              bounds: np.ndarray) -> EvalSet:
    """Per user (ascending): the history ends at `hist_end`, the targets are the distinct items
    of rows [hist_end, stop), less the user's `exclude`d items of the history; users left
    without a target are dropped. (row, item) pairs are packed in one int64 and sorted once."""
    users = np.asarray(users, dtype=np.int64)
    width = int(x.item.max(initial=0)) + 1
    owner, rows = ranges(hist_end, stop)
    targets = unique(owner * width + x.item[rows])
    excluded = np.empty(0, dtype=np.int64)
    if exclude != "none":
        owner, rows = ranges(bounds[users], hist_end)
        if exclude == "purchased":
            bought = x.etype[rows] == PURCHASE
            owner, rows = owner[bought], rows[bought]
        excluded = unique(owner * width + x.item[rows])
        targets = targets[~np.isin(targets, excluded, assume_unique=True)]
    kept = np.bincount(targets // width, minlength=len(users)) > 0
    renumber = np.cumsum(kept) - 1

    def csr(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        row = keys // width
        keys = keys[kept[row]]
        counts = np.bincount(renumber[keys // width], minlength=int(kept.sum()))
        return np.r_[0, np.cumsum(counts)].astype(np.int64), (keys % width).astype(np.int64)

    tptr, titems = csr(targets)
    eptr, eitems = csr(excluded)
    return EvalSet(name, users[kept], np.asarray(hist_end, dtype=np.int64)[kept], tptr, titems,
                   eptr, eitems, np.asarray(cutoff, dtype=np.int64)[kept])


def leave_one_out(x: Interactions, exclude: str = "none") -> Split:
    """Per user in time order: last interaction = test, second to last = valid, rest = train.
    Users with fewer than 3 interactions only train."""
    b = x.user_bounds()
    users = np.flatnonzero(np.diff(b) >= 3)
    last = b[users + 1] - 1
    train = np.ones(len(x), dtype=bool)
    train[last] = train[last - 1] = False
    window = {"protocol": "loo", "first_event": _iso(x.ts.min()), "last_event": _iso(x.ts.max())}
    return Split("loo", train,
                 _eval_set("valid", x, users, last - 1, last, x.ts[last - 2], exclude, b),
                 _eval_set("test", x, users, last, last + 1, x.ts[last - 1], exclude, b),
                 window)


def time_split(x: Interactions, test_days: int, valid_days: int,
               exclude: str = "none") -> Split:
    """Train before T_valid; validate on [T_valid, T_test); test on [T_test, end]. A user is
    evaluated on a period when they have history before it and interactions in it; the targets are
    the distinct items of that period."""
    end_day = (x.ts.max() // DAY_US) + 1
    t_test = (end_day - test_days) * DAY_US
    t_valid = t_test - valid_days * DAY_US
    if t_valid <= x.ts.min():
        raise SplitError(f"time split: {valid_days}+{test_days} days leave no training data")
    b = x.user_bounds()

    def before(t: int) -> np.ndarray:
        """Per user, the row where their rows at or after `t` begin (rows are in time order)."""
        return b[:-1] + np.bincount(x.user[x.ts < t], minlength=x.n_users)

    def period(name: str, lo: int, hi: int) -> EvalSet:
        hist_end, stop = before(lo), before(hi)
        users = np.flatnonzero((hist_end > b[:-1]) & (stop > hist_end))
        return _eval_set(name, x, users, hist_end[users], stop[users],
                         np.full(len(users), lo, dtype=np.int64), exclude, b)

    t_end = end_day * DAY_US
    window = {"protocol": "time", "train": [_iso(x.ts.min()), _iso(t_valid)],
              "valid": [_iso(t_valid), _iso(t_test)], "test": [_iso(t_test), _iso(t_end)]}
    return Split("time", x.ts < t_valid, period("valid", t_valid, t_test),
                 period("test", t_test, t_end), window)


def session_split(x: Interactions, exclude: str = "none") -> Split:
    """Per user in time order: the last session = test, the one before = valid, earlier ones =
    train; users with fewer than 3 sessions only train. A held-out session is predicted at its
    first event (cutoff = its first timestamp) from the rows before it; every distinct item of it
    is a target, an item the user had before included (unless `exclude` removes it)."""
    b = x.user_bounds()
    starts = np.flatnonzero(x.session_starts())  # first row of every session, in row order
    n_sessions = np.bincount(x.user[starts], minlength=x.n_users)
    last = np.searchsorted(starts, b[1:]) - 1  # per user: index into starts of its last session
    users = np.flatnonzero(n_sessions >= 3)
    gap = x.extra.get("session_gap_minutes")
    if len(users) == 0:
        raise SplitError(f"session split: no user has 3 sessions ({len(starts)} sessions of "
                         f"{x.n_users} users, gap {gap} minutes where the log has no session_id)")
    v0, t0, end = starts[last[users] - 1], starts[last[users]], b[users + 1]
    train = np.ones(len(x), dtype=bool)
    train[ranges(v0, end)[1]] = False
    window = {"protocol": "session", "session_gap_minutes": gap,
              "sessions_from": x.extra.get("sessions_from", "derived"),
              "first_event": _iso(x.ts.min()), "last_event": _iso(x.ts.max())}
    return Split("session", train, _eval_set("valid", x, users, v0, t0, x.ts[v0], exclude, b),
                 _eval_set("test", x, users, t0, end, x.ts[t0], exclude, b), window)


def make_split(x: Interactions, protocol: str, *, test_days: int = 3, valid_days: int = 3,
               exclude: str = "none") -> Split:
    if protocol == "loo":
        split = leave_one_out(x, exclude)
    elif protocol == "time":
        split = time_split(x, test_days, valid_days, exclude)
    elif protocol == "session":
        split = session_split(x, exclude)
    else:
        raise SplitError(f"unknown protocol {protocol!r}: {' | '.join(PROTOCOLS)}")
    # who is measured: a protocol leaves some users out (too few sessions, no test period)
    split.window["evaluated_users"] = {"valid": len(split.valid), "test": len(split.test),
                                       "of": int(x.n_users)}
    return split


def _iso(us: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(int(us) / 1e6, tz=dt.UTC).isoformat()
