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
        def csr(ptr: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            starts = ptr[np.asarray(rows, dtype=np.int64)]
            lens = ptr[np.asarray(rows, dtype=np.int64) + 1] - starts
            out = np.r_[0, np.cumsum(lens)].astype(np.int64)
            take = np.repeat(starts - out[:-1], lens) + np.arange(out[-1])
            return out, values[take].astype(np.int64)

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
        raise SplitError(f"time split: {valid_days}+{test_days} days leave no training data")
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


def session_split(x: Interactions, exclude: str = "none") -> Split:
    """Per user in time order: the last session = test, the one before = valid, earlier ones =
    train; users with fewer than 3 sessions only train. A held-out session is predicted at its
    first event (cutoff = its first timestamp) from the rows before it; every distinct item of it
    is a target, an item the user had before included (unless `exclude` removes it)."""
    b = x.user_bounds()
    starts = np.flatnonzero(x.session_starts())  # first row of every session, in row order
    n_sessions = np.bincount(x.user[starts], minlength=x.n_users)
    last = np.searchsorted(starts, b[1:]) - 1  # per user: index into starts of its last session
    train = np.ones(len(x), dtype=bool)
    valid_rows, test_rows = [], []
    for u in np.flatnonzero(n_sessions >= 3):
        v0, t0, end = int(starts[last[u] - 1]), int(starts[last[u]]), int(b[u + 1])
        train[v0:end] = False
        valid_rows.append((u, v0, x.item[v0:t0], x.ts[v0]))
        test_rows.append((u, t0, x.item[t0:end], x.ts[t0]))
    gap = x.extra.get("session_gap_minutes")
    if not test_rows:
        raise SplitError(f"session split: no user has 3 sessions ({len(starts)} sessions of "
                         f"{x.n_users} users, gap {gap} minutes where the log has no session_id)")
    window = {"protocol": "session", "session_gap_minutes": gap,
              "sessions_from": x.extra.get("sessions_from", "derived"),
              "first_event": _iso(x.ts.min()), "last_event": _iso(x.ts.max())}
    return Split("session", train, _eval_set("valid", x, valid_rows, exclude, b),
                 _eval_set("test", x, test_rows, exclude, b), window)


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
