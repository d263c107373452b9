"""Real-time: a pushed event extends the user's online sequence in one call, losing nothing when
pushes for one user race (a read-merge-write under a per-user lock: a thread lock stripe in the
process, and a Redis lock or a file lock across processes)."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import threading
import time
import zlib
from collections.abc import Iterator

import pandas as pd

from feature_repo.names import LIVE_EVENTS, SEQUENCE, USER_KEY, USER_LIVE_SEQUENCE
from shoprec.config import Settings, get_settings
from shoprec.features.online import reachable, redis_client

STRIPES = 256
VIEWS_TTL_S = 30.0
ITEMS, TYPES, TIMES = SEQUENCE


class LiveSequences:
    def __init__(self, store, settings: Settings | None = None, dataset: str | None = None):
        self.store = store
        self.settings = settings or get_settings()
        self.dataset = dataset or self.settings.dataset
        self.n = self.settings.feast.sequence_length
        self._thread_locks = [threading.Lock() for _ in range(STRIPES)]
        self._clock = threading.Lock()
        self._last_row_us = 0
        self._views: list[str] | None = None
        self._views_at = 0.0
        self._redis = None
        if self.settings.feast.online_store == "redis":
            self._redis = redis_client(self.settings)
        self._lock_dir = self.settings.feast_locks(self.dataset)
        self._lock_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self, user_id: str) -> Iterator[None]:
        stripe = zlib.crc32(user_id.encode()) % STRIPES
        with self._thread_locks[stripe]:
            if self._redis is not None:
                name = f"shoprec:{self.store.project}:live-lock:{user_id}"
                with self._redis.lock(name, timeout=10, blocking_timeout=10):
                    yield
            else:
                with open(self._lock_dir / f"{stripe}.lock", "w") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                    try:
                        yield
                    finally:
                        fcntl.flock(fh, fcntl.LOCK_UN)

    def get(self, user_id: str) -> list[tuple[int, str, str]]:
        """The online sequence as (time µs, item_id, event_type), oldest first."""
        with reachable(self.settings):
            d = self.store.get_online_features(
                features=[f"{USER_LIVE_SEQUENCE}:{f}" for f in SEQUENCE],
                entity_rows=[{USER_KEY: user_id}],
            ).to_dict()
        times, items, types = (d[f][0] or [] for f in (TIMES, ITEMS, TYPES))
        return list(zip(times, items, types, strict=True))

    def push(self, user_id: str, item_id: str, event_type: str,
             ts: dt.datetime | None = None) -> list[tuple[int, str, str]]:
        """Append one event (in time order, keeping the latest N); returns the new sequence.
        Raises OnlineStoreUnavailable when Redis cannot be reached."""
        return self.push_many(user_id, [(item_id, event_type, ts)])

    def push_many(self, user_id: str,
                  events: list[tuple[str, str, dt.datetime | None]]) -> list[tuple[int, str, str]]:
        """Append several events of one user, (item_id, event_type, time or None = now), in
        one read-merge-write (one lock, one lookup, one write): the sequence is the same as
        after pushing them one by one in the given order."""
        now = dt.datetime.now(dt.UTC)
        new = [(int((ts or now).timestamp() * 1_000_000), item, etype)
               for item, etype, ts in events]
        with reachable(self.settings), self._locked(user_id):
            seq = self.get(user_id)
            seq.extend(new)
            seq.sort(key=lambda e: e[0])  # stable: equal times keep arrival order
            seq = seq[-self.n:]
            # The row's timestamp must grow with every write: Redis' online store drops a write
            # that is not newer than the stored one (an out-of-order event does not move the
            # sequence's newest time). Row time = max(now, newest event), strictly increasing.
            with self._clock:
                row_us = max(int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000), seq[-1][0],
                             self._last_row_us + 1)
                self._last_row_us = row_us
            latest = dt.datetime.fromtimestamp(row_us / 1_000_000, dt.UTC)
            df = pd.DataFrame({
                USER_KEY: [user_id],
                TIMES: [[e[0] for e in seq]],
                ITEMS: [[e[1] for e in seq]],
                TYPES: [[e[2] for e in seq]],
                "sequence_length": [len(seq)],
                "event_timestamp": [pd.Timestamp(latest)],
            })
            for view in self._targets():
                self.store.write_to_online_store(view, df)
        return seq

    def _targets(self) -> list[str]:
        """The views `LIVE_EVENTS` feeds (what `store.push` writes to). `store.push` rebuilds
        every view of the registry on each call (~10 ms, most of a push); they change only
        when the repo is applied again, so they are looked up every VIEWS_TTL_S seconds."""
        now = time.monotonic()
        with self._clock:
            if self._views is not None and now - self._views_at < VIEWS_TTL_S:
                return self._views
        views = self._push_views()
        with self._clock:
            self._views, self._views_at = views, now
        return views

    def _push_views(self) -> list[str]:
        from feast.data_source import PushSource

        views = [*self.store.list_feature_views(), *self.store.list_stream_feature_views()]
        names = sorted({v.name for v in views if isinstance(v.stream_source, PushSource)
                        and v.stream_source.name == LIVE_EVENTS})
        if not names:
            raise LookupError(f"no feature view of the registry is fed by the push source "
                              f"{LIVE_EVENTS!r}: run `shoprec features apply`")
        if any(getattr(svc, "precompute_online", False)
               for svc in self.store.list_feature_services()):
            raise NotImplementedError("a feature service precomputes online vectors: pushes "
                                      "would have to recompute them (store.push does)")
        return names
