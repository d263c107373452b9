"""Interactions from the warehouse, integer-encoded once: nothing per-sample runs in Python later.

Training reads dbt's marts (`fct_events`, `dim_items`) from the analysts' read-only snapshot: the
same deduplicated, validated events analysts see, and a build in progress never blocks it.
Consecutive events of one user on one item (view → click → add_to_cart → purchase of the same
product) collapse into one interaction that keeps the deepest funnel stage: otherwise "the next
item" would mostly be the item just viewed, which teaches the model nothing worth recommending.

A user's events are in time order; events at one timestamp in dbt's order (macro event_order,
contract.TIE_ORDER): delivery, then the source's row (`event_seq`), then md5(event_id), so no item
property decides which of them is "last" (leave-one-out's test item). `tie_seed` shuffles them
instead, to show that the metrics do not depend on it.

Every row carries its session (the session evaluation protocol holds out each user's last one):
the warehouse's `session_id` where the log has one, else dbt's rule redone here: a user's events in
time order, a new session at the user's first event or after a gap longer than
`session_gap_minutes`. A run never merges across a session boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shoprec.config import Settings
from shoprec.contract import EVENT_TYPES

DEFAULT_SESSION_GAP_MINUTES: int = Settings.model_fields["session_gap_minutes"].default

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
    titles: np.ndarray | None = None  # object[n_items + 1]; "" = none (serving's reasons)

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids) if i}


@dataclass
class Interactions:
    """One row per collapsed interaction, sorted by (user, time), with its session."""

    user: np.ndarray  # int64 user index
    item: np.ndarray  # int64 item index (1..n_items)
    etype: np.ndarray  # int64 1..len(EVENT_TYPES): deepest funnel stage reached
    ts: np.ndarray  # int64 microseconds since the epoch (UTC)
    user_ids: np.ndarray  # object: user index -> id
    catalogue: Catalogue
    dataset: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict)
    # int64 session ordinal per row, increasing within each user (None: derived from the
    # timestamps with the default gap, for hand-built interactions)
    session: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = session_index(self.user, self.ts, DEFAULT_SESSION_GAP_MINUTES)
            self.extra.setdefault("session_gap_minutes", DEFAULT_SESSION_GAP_MINUTES)

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

    def session_starts(self) -> np.ndarray:
        """True at the first row of every session (so at every user's first row)."""
        if len(self) == 0:
            return np.zeros(0, dtype=bool)
        return np.r_[True, (self.user[1:] != self.user[:-1])
                     | (self.session[1:] != self.session[:-1])]

    def select(self, mask: np.ndarray) -> Interactions:
        """Rows where mask holds (keeps the vocabularies, so indices stay comparable)."""
        return Interactions(self.user[mask], self.item[mask], self.etype[mask], self.ts[mask],
                            self.user_ids, self.catalogue, self.dataset, self.source, self.extra,
                            self.session[mask])


def session_index(user: np.ndarray, ts: np.ndarray, gap_minutes: float,
                  known: np.ndarray | None = None) -> np.ndarray:
    """A global session ordinal per row of rows sorted by (user, time), so increasing within
    each user: a session starts at a user's first row, and where the gap to the user's previous
    row is longer than `gap_minutes` (dbt's rule for a log without session ids).

    `known`: integer codes of the log's session ids (-1 = none). Between two rows with ids, the
    ids decide instead of the gap; a boundary never cuts through a session of the log, so
    sessions of one user that interleave (two tabs at once) are one session here."""
    n = len(user)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.r_[True, np.diff(ts) > int(gap_minutes * 60_000_000)]
    if known is not None:
        row = np.arange(n)
        has = known >= 0
        key = np.where(has, user * (int(known.max()) + 1) + known, -1)
        _, group = np.unique(key, return_inverse=True)
        last = np.zeros(int(group.max()) + 1, dtype=np.int64)
        np.maximum.at(last, group, row)  # the last row of each (user, session id)
        end = np.where(has, last[group], row)
        inside = np.r_[False, np.maximum.accumulate(end)[:-1] >= row[1:]]  # a session spans it
        both = np.r_[False, has[1:] & has[:-1]]
        start = ~inside & (both | start)
    start |= np.r_[True, user[1:] != user[:-1]]
    return np.cumsum(start, dtype=np.int64) - 1


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
    path = settings.internal_snapshot(dataset)
    if not path.exists():
        raise TrainingDataError(f"no published warehouse for dataset {dataset!r} at {path}: "
                                f"run `shoprec transform --dataset {dataset}` first")
    return path


TIE_COLUMNS = ("delivery_position", "event_seq")  # of marts.fct_events: contract.TIE_ORDER


def _tie_columns(con) -> list[str]:
    """contract.TIE_ORDER's columns that fct_events has: a warehouse built before they existed
    reads as NULL there (md5(event_id) decides) until `transform`."""
    have = {r[0] for r in con.execute(
        "select column_name from information_schema.columns "
        "where table_schema = 'marts' and table_name = 'fct_events'").fetchall()}
    return [c for c in TIE_COLUMNS if c in have]


def load_interactions(settings: Settings, dataset: str | None = None,
                      tie_seed: int | None = None) -> Interactions:
    """Every event of the dataset from the warehouse, encoded and collapsed. `tie_seed`: events
    of one user at one timestamp in a random order (seeded) instead of contract.TIE_ORDER: the
    metrics must not change beyond noise (order within one timestamp is not information).

    DuckDB encodes the ids (users, items, event types, sessions) and sorts; only integer columns
    reach Python, so 10M events cost their int64 arrays, not 10M Python strings. Users are
    numbered in id order (DuckDB compares VARCHAR as UTF-8 bytes, which is code point order)."""
    import duckdb

    dataset = dataset or settings.dataset
    path = warehouse_snapshot(settings, dataset)
    limit = {"memory_limit": f"{settings.training.duckdb_memory_mb}MB"}
    with duckdb.connect(str(path), read_only=True, config=limit) as con:
        items = con.execute(
            "select item_id, coalesce(category, '') as category, coalesce(brand, '') as brand, "
            "cast(price as double) as price, coalesce(title, '') as title "
            "from marts.dim_items order by item_id").fetchnumpy()
        ties = _tie_columns(con)
        con.execute(_EVENTS_SQL.format(
            ties="".join(f"e.{c}, " for c in ties),
            order="".join(f"{c} nulls last, " for c in ties)), [list(EVENT_TYPES)])
        ev = con.fetchnumpy()
        user_ids = con.execute("select user_id from ev_users order by user_id").fetchnumpy()
    n = len(ev["ts"])
    if n == 0:
        raise TrainingDataError(f"{path}: marts.fct_events is empty")
    if (ev["etype"] == 0).any():
        raise TrainingDataError(f"{path}: marts.fct_events holds {int((ev['etype'] == 0).sum())}"
                                f" events of a type outside {', '.join(EVENT_TYPES)}")
    user = np.asarray(ev["user"], dtype=np.int64)
    ts = np.asarray(ev["ts"], dtype=np.int64)
    known = np.asarray(ev["session"], dtype=np.int64)
    if tie_seed is not None:  # rows are in the warehouse's order; shuffle within a timestamp
        tie = np.random.default_rng(tie_seed).permutation(n)
        order = np.lexsort((tie, ts, user))
        user, ts, known = user[order], ts[order], known[order]
    else:
        order = slice(None)
    gap = settings.session_gap_minutes
    session = session_index(user, ts, gap, known)
    derived = int((known < 0).sum())
    extra = {"session_gap_minutes": gap,
             "sessions_from": "session_id" if derived == 0 else
             "derived" if derived == n else f"session_id, {derived} rows derived"}
    raw = Interactions(user, np.asarray(ev["item"], dtype=np.int64)[order],
                       np.asarray(ev["etype"], dtype=np.int64)[order], ts,
                       np.asarray(user_ids["user_id"], dtype=object), _catalogue(items),
                       dataset, str(path), extra, session)
    return collapse_runs(raw)


# Events whose item is in the catalogue (validation keeps unknown items under a tolerance: those
# rows are skipped), encoded: user = rank of user_id, item = rank of item_id in dim_items (1..n),
# etype = 1-based position in EVENT_TYPES (0 = unknown), session = a code of (user, session_id),
# -1 where the log has none; in (user, time, contract.TIE_ORDER) order. The temp table ev_users
# holds the user ids (in rank order once sorted).
_EVENTS_SQL = """
create temp table ev as
select e.user_id, i.item, e.event_type, e.event_timestamp, e.session_id, {ties}e.event_id
from marts.fct_events e
join (select item_id, row_number() over (order by item_id) as item from marts.dim_items) i
  using (item_id);
create temp table ev_users as select distinct user_id from ev;
select cast(dense_rank() over (order by user_id) - 1 as bigint) as user,
       cast(item as bigint) as item,
       cast(coalesce(list_position($1, event_type), 0) as bigint) as etype,
       epoch_us(event_timestamp) as ts,
       cast(case when session_id is null then -1
                 else dense_rank() over (order by user_id, session_id) end as bigint) as session
from ev order by user_id, event_timestamp, {order}md5(event_id)
"""


def _catalogue(items: dict) -> Catalogue:
    """dim_items (in item_id order) as the catalogue: item index i = row i - 1."""
    ids = np.asarray(items["item_id"], dtype=object)
    cat, categories = _vocab(np.asarray(items["category"], dtype=object))
    brand, brands = _vocab(np.asarray(items["brand"], dtype=object))
    price = np.ma.filled(np.ma.asarray(items["price"], dtype=np.float64), np.nan)
    pb, edges = price_buckets(price)
    return Catalogue(
        item_ids=np.r_[np.array([""], dtype=object), ids],
        category=np.r_[0, cat], brand=np.r_[0, brand], price_bucket=np.r_[0, pb],
        categories=categories, brands=brands, price_edges=edges, price=np.r_[np.nan, price],
        titles=np.r_[np.array([""], dtype=object), np.asarray(items["title"], dtype=object)])


def collapse_runs(x: Interactions) -> Interactions:
    """Merge consecutive rows of one user on one item within a session: first timestamp,
    deepest event type."""
    n = len(x)
    if n == 0:
        return x
    start = x.session_starts() | np.r_[True, x.item[1:] != x.item[:-1]]
    run = np.cumsum(start) - 1
    etype = np.zeros(int(run[-1]) + 1, dtype=np.int64)
    np.maximum.at(etype, run, x.etype)
    return Interactions(x.user[start], x.item[start], etype, x.ts[start], x.user_ids,
                        x.catalogue, x.dataset, x.source, {**x.extra, "raw_events": n},
                        x.session[start])
