"""The online store as serving sees it: a user's features through the production model's feature
service under a time budget, behind a circuit breaker, and live events pushed into the user's
sequence so that their next recommendation reflects them.

Every call to Feast runs on a small pool of threads of its own. A request waits for its lookup at
most `serving.feature_timeout_ms`; a store that is slower, raises, or leaves every thread of the
pool busy (a hanging Redis) is a failure: the caller answers from the export instead. After
`serving.breaker_failures` consecutive failures the breaker opens and the store is not asked at
all for `serving.breaker_reset_seconds`; then one request at a time probes it (half-open), and
the first answer in time closes the breaker again. A lookup abandoned at its budget keeps its
thread until the store answers or redis-py gives up; the pool's size bounds how many can hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from feature_repo.names import USER_KEY
from serving.model import OnlineFeatures
from shoprec.config import Settings
from shoprec.features.online import reachable

log = logging.getLogger("shoprec.serving")


class StoreUnavailable(RuntimeError):
    """The online store did not answer in time, failed, or is skipped by the open breaker;
    `cause` is one of CAUSES."""

    def __init__(self, cause: str, detail: str = ""):
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause
        self.detail = detail


CAUSES = ("store_timeout", "store_error", "store_busy", "breaker_open")


class Breaker:
    """closed → (N consecutive failures) → open → (after T seconds) half-open: one probe at a
    time; its success closes, its failure opens for another T seconds."""

    def __init__(self, failures: int, reset_seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self.failures_to_open = failures
        self.reset_seconds = reset_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self.clock() - self._opened_at >= self.reset_seconds \
                else "open"

    def allow(self) -> bool:
        """May this call go to the store? (In half-open, only the one probe may.)"""
        with self._lock:
            if self._opened_at is None:
                return True
            if self.clock() - self._opened_at < self.reset_seconds or self._probing:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        with self._lock:
            was_open = self._opened_at is not None
            self._failures, self._opened_at, self._probing = 0, None, False
        if was_open:
            log.warning("online store answers again: circuit breaker closed")

    def failure(self) -> bool:
        """Count one failure; True when this one opened (or re-opened) the breaker."""
        with self._lock:
            self._failures += 1
            if self._opened_at is not None:  # a failed probe: wait another period
                self._opened_at, self._probing = self.clock(), False
                return True
            if self._failures >= self.failures_to_open:
                self._opened_at = self.clock()
                return True
            return False


class _DaemonPool:
    """A fixed pool of daemon threads running submitted calls into Futures. Daemon threads: a
    call hanging on a dead store (redis-py's retries) never holds the process at exit, as a
    ThreadPoolExecutor's workers would."""

    def __init__(self, workers: int, name: str):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        for n in range(workers):
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True).start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            fut, fn = task
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

    def submit(self, fn: Callable[[], Any]) -> cf.Future:
        if self._closed:
            raise RuntimeError("pool closed")
        fut: cf.Future = cf.Future()
        self._tasks.put((fut, fn))
        return fut

    def shutdown(self, workers: int) -> None:
        self._closed = True
        for _ in range(workers):
            self._tasks.put(None)


@dataclass
class Event:
    """What a live sequence needs of one accepted event."""

    user_id: str
    item_id: str
    event_type: str
    ts: dt.datetime


class OnlineFeaturesReader:
    """Feast's online store of one dataset, for one serving process."""

    def __init__(self, settings: Settings, dataset: str, on_failure: Callable[[str], None]
                 | None = None):
        from shoprec.features.live import LiveSequences
        from shoprec.features.store import get_store

        self.settings = settings
        self.dataset = dataset
        cfg = settings.serving
        self.timeout_s = cfg.feature_timeout_ms / 1000
        self.push_timeout_s = cfg.push_timeout_ms / 1000
        self.sequence_length = settings.feast.sequence_length
        self.store = get_store(settings, dataset)
        self.live = LiveSequences(self.store, settings, dataset)
        self.breaker = Breaker(cfg.breaker_failures, cfg.breaker_reset_seconds)
        self._workers = cfg.store_workers
        self._pool = _DaemonPool(cfg.store_workers, "online-store")
        self._slots = threading.BoundedSemaphore(cfg.store_workers)
        self._services: dict[str, Any] = {}
        self._services_lock = threading.Lock()
        self.on_failure = on_failure or (lambda cause: None)

    def close(self) -> None:
        self._pool.shutdown(self._workers)

    # ------------------------------------------------------------------ the guarded call
    def _submit(self, fn: Callable[[], Any], what: str) -> cf.Future:
        """fn() started on the pool through the breaker and the pool's free slots; raises
        StoreUnavailable (counted) when it may not run."""
        if not self.breaker.allow():
            raise StoreUnavailable("breaker_open", f"{what}: the online store failed "
                                   f"{self.breaker.failures_to_open} times in a row")
        if not self._slots.acquire(blocking=False):
            self._failed("store_busy", f"{what}: all {self._workers} store threads are busy")

        def run():
            try:
                with reachable(self.settings):
                    return fn()
            finally:
                self._slots.release()

        try:
            return self._pool.submit(run)
        except RuntimeError:  # the pool is shut down (the process is stopping)
            self._slots.release()
            raise StoreUnavailable("store_error", f"{what}: shutting down") from None

    def _call(self, fn: Callable[[], Any], timeout_s: float, what: str) -> Any:
        """fn() on the pool, waited for at most `timeout_s`, through the breaker; raises
        StoreUnavailable (and counts the failure) instead of waiting longer."""
        fut = self._submit(fn, what)
        try:
            out = fut.result(timeout=timeout_s)
        except cf.TimeoutError:
            self._failed("store_timeout", f"{what}: no answer within {timeout_s * 1000:.0f} ms")
        except Exception as e:
            self._failed("store_error", f"{what}: {type(e).__name__}: {_first_line(e)}")
        self.breaker.success()
        return out

    async def _call_async(self, fn: Callable[[], Any], timeout_s: float, what: str) -> Any:
        """`_call` awaited on the event loop instead of blocking a thread."""
        fut = self._submit(fn, what)
        try:
            out = await asyncio.wait_for(asyncio.wrap_future(fut), timeout_s)
        except TimeoutError:
            self._failed("store_timeout", f"{what}: no answer within {timeout_s * 1000:.0f} ms")
        except Exception as e:
            self._failed("store_error", f"{what}: {type(e).__name__}: {_first_line(e)}")
        self.breaker.success()
        return out

    def _failed(self, cause: str, detail: str):
        if self.breaker.failure():
            log.warning("online store failing (%s): circuit breaker open for %.1f s", detail,
                        self.breaker.reset_seconds)
        self.on_failure(cause)
        raise StoreUnavailable(cause, detail)

    # --------------------------------------------------------------------- reading
    def service(self, name: str):
        """The FeatureService object (looked up once per name; KeyError-like Feast error when
        the dataset's registry lacks it)."""
        with self._services_lock:
            svc = self._services.get(name)
        if svc is None:
            svc = self.store.get_feature_service(name)
            with self._services_lock:
                self._services[name] = svc
        return svc

    def _lookup(self, user_id: str, service) -> Callable[[], dict]:
        return lambda: self.store.get_online_features(
            features=service, entity_rows=[{USER_KEY: user_id}]).to_dict()

    def features(self, user_id: str, service) -> OnlineFeatures:
        """One user's OnlineFeatures through `service`; raises StoreUnavailable."""
        d = self._call(self._lookup(user_id, service), self.timeout_s, "feature lookup")
        return OnlineFeatures.from_feast(d, self.sequence_length)

    async def features_async(self, user_id: str, service) -> OnlineFeatures:
        """`features`, awaited on the event loop."""
        d = await self._call_async(self._lookup(user_id, service), self.timeout_s,
                                   "feature lookup")
        return OnlineFeatures.from_feast(d, self.sequence_length)

    def ping(self, service) -> bool:
        """Does the store answer a lookup within the budget (readiness)?"""
        try:
            self.features("__shoprec_readyz__", service)
            return True
        except StoreUnavailable:
            return False

    # --------------------------------------------------------------------- writing
    def push(self, events: Iterable[Event]) -> int:
        """Push accepted events into their users' live sequences; returns how many events the
        sequences now reflect; raises StoreUnavailable at the first user whose push fails (the
        events stay in the spool). One guarded store call per user (one read-merge-write:
        LiveSequences.push_many), each within `serving.push_timeout_ms`. Of one user's events
        only the newest `sequence_length` can survive the merge (the sequence keeps the newest
        N of stored + pushed), so only those are sent."""
        by_user: dict[str, list[Event]] = {}
        for e in events:
            by_user.setdefault(e.user_id, []).append(e)
        done = 0
        for evs in by_user.values():
            evs = sorted(evs, key=lambda e: e.ts)  # stable: equal times keep the call's order
            keep = evs[-self.sequence_length:]

            def push_user(user=evs[0].user_id, keep=keep) -> None:
                self.live.push_many(user, [(e.item_id, e.event_type, e.ts) for e in keep])

            self._call(push_user, self.push_timeout_s, "live push")
            done += len(evs)
        return done


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""
