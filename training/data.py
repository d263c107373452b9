"""Interactions from the warehouse, integer-encoded once: nothing per-sample runs in Python later.

Training reads dbt's marts (`fct_events`, `dim_items`) from the analysts' read-only snapshot: the
same deduplicated, validated events analysts see, and a build in progress never blocks it.
Consecutive events of one user on one item (view → click → add_to_cart → purchase of the same
product) collapse into one interaction that keeps the deepest funnel stage: otherwise "the next
item" would mostly be the item just viewed, which teaches the model nothing worth recommending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shoprec.config import Settings
from shoprec.contract import EVENT_TYPES

PAD = 0  # index 0 of items / event types / categories / brands / gaps is padding
PRICE_BUCKETS = 10
GAP_BUCKETS = 16  # log2-spaced time gaps between interactions: < 1 s ... > 2^14 s (~4.5 h) ...


class TrainingDataError(RuntimeError):
    """The warehouse does not hold what training needs (run transform first)."""


@dataclass
class Catalogue:
    """Item vocabulary and side features, aligned by item index (0 = padding)."""

    item_ids: np.ndarray  # object[n_items + 1]; [0] = ""
    category: np.ndarray  # int64[n_items + 1]
    brand: np.ndarray
    price_bucket: np.ndarray
    categories: list[str]  # vocab, index 0 = padding / unknown
    brands: list[str]
    price_edges: list[float]  # PRICE_BUCKETS - 1 quantile edges
    price: np.ndarray | None = None  # float64, NaN = unknown (buckets against other edges)

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids) if i}


@dataclass
class Interactions:
    """One row per collapsed interaction, sorted by (user, time)."""

    user: np.ndarray  # int64 user index
    item: np.ndarray  # int64 item index (1..n_items)
    etype: np.ndarray  # int64 1..len(EVENT_TYPES): deepest funnel stage reached
    ts: np.ndarray  # int64 microseconds since the epoch (UTC)
    user_ids: np.ndarray  # object: user index -> id
    catalogue: Catalogue
    dataset: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.item)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def user_bounds(self) -> np.ndarray:
        """Start offsets of each user's rows, plus the end: rows of user u are [b[u], b[u+1])."""
        return np.searchsorted(self.user, np.arange(self.n_users + 1))

    def gap_buckets(self) -> np.ndarray:
        """Bucketised log2 seconds since the user's previous interaction (1 = first one)."""
        gaps = np.diff(self.ts, prepend=self.ts[:1]) / 1e6
        first = np.r_[True, self.user[1:] != self.user[:-1]]
        b = np.clip(np.floor(np.log2(np.maximum(gaps, 0) + 1)).astype(np.int64) + 2, 2,
                    GAP_BUCKETS - 1)
        b[first] = 1
        return b

    def select(self, mask: np.ndarray) -> Interactions:
        """Rows where mask holds (keeps the vocabularies, so indices stay comparable)."""
        return Interactions(self.user[mask], self.item[mask], self.etype[mask], self.ts[mask],
                            self.user_ids, self.catalogue, self.dataset, self.source, self.extra)


def price_buckets(prices: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Catalogue-quantile buckets 1..PRICE_BUCKETS (0 = unknown price)."""
    known = np.isfinite(prices)
    if not known.any():
        return np.zeros(len(prices), dtype=np.int64), []
    edges = np.unique(np.quantile(prices[known], np.linspace(0, 1, PRICE_BUCKETS + 1)[1:-1]))
    return bucketize(prices, edges), [float(e) for e in edges]


def bucketize(prices: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Price bucket 1..len(edges) + 1 of each price against given edges (0 = unknown price)."""
    known = np.isfinite(prices)
    out = np.zeros(len(prices), dtype=np.int64)
    out[known] = np.searchsorted(edges, prices[known], side="right") + 1
    return out


def _vocab(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    vocab = [""] + sorted({v for v in values if v})
    index = {v: i for i, v in enumerate(vocab)}
    return np.array([index.get(v, 0) if v else 0 for v in values], dtype=np.int64), vocab


def warehouse_snapshot(settings: Settings, dataset: str) -> Path:
    path = settings.analytics_snapshot(dataset)
    if not path.exists():
        raise TrainingDataError(f"no analytics snapshot for dataset {dataset!r} at {path}: "
                                f"run `shoprec transform --dataset {dataset}` first")
    return path


def load_interactions(settings: Settings, dataset: str | None = None) -> Interactions:
    """Every event of the dataset from the warehouse, encoded and collapsed."""
    import duckdb

    dataset = dataset or settings.dataset
    path = warehouse_snapshot(settings, dataset)
    with duckdb.connect(str(path), read_only=True) as con:
        items = con.execute(
            "select item_id, coalesce(category, '') as category, coalesce(brand, '') as brand, "
            "cast(price as double) as price "
            "from marts.dim_items order by item_id").fetchnumpy()
        ev = con.execute(
            "select user_id, item_id, event_type, epoch_us(event_timestamp) as ts "
            "from marts.fct_events order by user_id, event_timestamp, event_id").fetchnumpy()
    if len(ev["ts"]) == 0:
        raise TrainingDataError(f"{path}: marts.fct_events is empty")
    ids = np.asarray(items["item_id"], dtype=object)
    cat, categories = _vocab(np.asarray(items["category"], dtype=object))
    brand, brands = _vocab(np.asarray(items["brand"], dtype=object))
    price = np.ma.filled(np.ma.asarray(items["price"], dtype=np.float64), np.nan)
    pb, edges = price_buckets(price)
    catalogue = Catalogue(
        item_ids=np.r_[np.array([""], dtype=object), ids],
        category=np.r_[0, cat], brand=np.r_[0, brand], price_bucket=np.r_[0, pb],
        categories=categories, brands=brands, price_edges=edges, price=np.r_[np.nan, price])

    item_index = catalogue.index()
    item = np.fromiter((item_index.get(i, 0) for i in ev["item_id"]), dtype=np.int64,
                       count=len(ev["item_id"]))
    if (item == 0).any():  # validation keeps unknown items under a tolerance: skip those rows
        keep = item != 0
        ev = {k: np.asarray(v)[keep] for k, v in ev.items()}
        item = item[keep]
    user_ids, user = np.unique(np.asarray(ev["user_id"], dtype=object), return_inverse=True)
    etype_index = {t: i + 1 for i, t in enumerate(EVENT_TYPES)}
    etype = np.fromiter((etype_index[t] for t in ev["event_type"]), dtype=np.int64,
                        count=len(item))
    ts = np.asarray(ev["ts"], dtype=np.int64)
    order = np.lexsort((ts, user))  # np.unique re-indexed users: keep (user, time) order
    raw = Interactions(user[order].astype(np.int64), item[order], etype[order], ts[order],
                       user_ids, catalogue, dataset, str(path))
    return collapse_runs(raw)


def collapse_runs(x: Interactions) -> Interactions:
    """Merge consecutive rows of one user on one item: first timestamp, deepest event type."""
    n = len(x)
    if n == 0:
        return x
    start = np.r_[True, (x.user[1:] != x.user[:-1]) | (x.item[1:] != x.item[:-1])]
    run = np.cumsum(start) - 1
    etype = np.zeros(int(run[-1]) + 1, dtype=np.int64)
    np.maximum.at(etype, run, x.etype)
    return Interactions(x.user[start], x.item[start], etype, x.ts[start], x.user_ids,
                        x.catalogue, x.dataset, x.source, {"raw_events": n})
