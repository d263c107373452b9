"""Repeat statistics: what a shopper's whole history says about each item they came to before.

Shops live on repeats (groceries, consumables, re-views), and the sequence model sees only the
last `max_len` steps. These per (user, item) figures cover the whole history and are servable:
dbt computes the same from the warehouse (`features.feat_user_item_history`) and Feast serves them
through the recommender's feature service, so the ranker reads at serving time exactly what it
was trained on (a parity test holds the two equal).

Definitions, chosen to survive the collapse of consecutive events (training/data.py) unchanged:
- `sessions`: the user's sessions that hold the item (any event type);
- `purchase_sessions`: the user's sessions in which the item was purchased;
- `first_us`: the user's first event on the item;
- `last_us`: when the user last came to it: their first event on it in the latest session
  that holds it;
and per user `total_sessions`. Only the `max_items` items with the latest `last_us` are kept (ties:
item id ascending), as the online store keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data import Interactions
from training.splits import PURCHASE, EvalSet

MAX_ITEMS = 200  # per user; dbt's var `repeat_max_items` and the Feast arrays hold as many


@dataclass
class RepeatStats:
    """Sparse per (batch row, item) statistics, sorted by row then `last_us` descending."""

    row: np.ndarray  # batch row
    item: np.ndarray  # item index
    sessions: np.ndarray
    purchase_sessions: np.ndarray
    first_us: np.ndarray
    last_us: np.ndarray
    total_sessions: np.ndarray  # per batch row
    cutoff_us: np.ndarray  # per batch row: when they are read


def repeat_stats(x: Interactions, bounds: np.ndarray, es: EvalSet, rows: np.ndarray,
                 max_items: int = MAX_ITEMS) -> RepeatStats:
    """Statistics of the history of each of `rows` (the user's rows before its hist_end)."""
    from training.baselines import history_rows

    r, pos = history_rows(x, bounds, es, rows)
    return _stats(r, x.item[pos], x.session[pos], x.etype[pos], x.ts[pos], len(rows),
                  x.catalogue.item_ids, max_items, es.cutoff_us[rows])


def _stats(r: np.ndarray, item: np.ndarray, session: np.ndarray, etype: np.ndarray,
           ts: np.ndarray, n_rows: int, item_ids: np.ndarray, max_items: int,
           cutoff_us: np.ndarray) -> RepeatStats:
    if len(r):
        total = np.bincount(r[np.r_[True, (r[1:] != r[:-1]) | (session[1:] != session[:-1])]],
                            minlength=n_rows)
    else:
        total = np.zeros(n_rows, dtype=np.int64)
    # (row, item, session) groups in time order: their first event and whether one is a purchase
    order = np.lexsort((np.arange(len(r)), session, item, r))
    r, item, session, etype, ts = r[order], item[order], session[order], etype[order], ts[order]
    new_group = np.r_[True, (r[1:] != r[:-1]) | (item[1:] != item[:-1])
                      | (session[1:] != session[:-1])] if len(r) else np.zeros(0, bool)
    g = np.flatnonzero(new_group)
    bought = np.maximum.reduceat((etype == PURCHASE).astype(np.int64), g) if len(g) else g
    gr, gi, gts = r[g], item[g], ts[g]
    new_pair = np.r_[True, (gr[1:] != gr[:-1]) | (gi[1:] != gi[:-1])] if len(g) else g.astype(bool)
    p = np.flatnonzero(new_pair)
    ends = np.r_[p[1:], len(g)] - 1
    sessions = np.diff(np.r_[p, len(g)])
    purchase = np.add.reduceat(bought, p) if len(p) else p
    pr, pi, first, last = gr[p], gi[p], gts[p], gts[ends]
    # keep each row's max_items latest, ties by item id; sorted by row, then latest first
    id_rank = np.argsort(np.argsort(item_ids.astype(str), kind="stable"), kind="stable")
    keep = np.lexsort((id_rank[pi], -last, pr))
    pr, pi, first, last = pr[keep], pi[keep], first[keep], last[keep]
    sessions, purchase = sessions[keep], purchase[keep]
    start = np.searchsorted(pr, np.arange(n_rows))
    nth = np.arange(len(pr)) - start[pr] if len(pr) else pr
    sel = nth < max_items
    return RepeatStats(pr[sel], pi[sel], sessions[sel], purchase[sel], first[sel], last[sel],
                       total, np.asarray(cutoff_us, dtype=np.int64))
