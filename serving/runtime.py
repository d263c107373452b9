"""What one serving process holds: the production model (swapped whole on reload), the online
store behind its budget and breaker, and the rules that turn scores into an answer.

The model in use is one `Active` object read once per request: a reload builds, warms and checks
the next one off the request path, then replaces the reference in one assignment, so a request
finishes on the object it started with. A background thread polls the registry's `production`
alias every `serving.reload_seconds` (and the analysts' warehouse snapshot, whose catalogue says
which items are still sold); `POST /admin/reload` runs the same check at once.

Strategies: `personalized` (the model over the user's online features), `cold_start` (the store
knows nothing of the user: trending = the export's popularity, with "popular in <category>"),
`fallback` (the store is down, slow or skipped by its breaker, or the model failed: the export's
popularity, never an error). Every fallback is logged in one line and counted by cause.

Items no longer in the catalogue: the export's items are checked against the warehouse snapshot's
`marts.dim_items` when a model is loaded and whenever the snapshot is republished; an item the
warehouse no longer lists at all (its batches retracted), or whose catalogue row was retracted
while the export knew it from the catalogue (a title or category), is never recommended. Without a
snapshot every item is kept (logged once per load).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import gc
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from feature_repo.names import SERVING_SERVICE
from serving.metrics import Metrics
from serving.model import LoadedModel, OnlineFeatures
from serving.online import Event, OnlineFeaturesReader, StoreUnavailable
from shoprec.config import Settings

log = logging.getLogger("shoprec.serving")

PERSONALIZED, COLD_START, FALLBACK = "personalized", "cold_start", "fallback"
SAMPLE_USERS = 12
RELOAD_NICE = 10  # the reload thread's priority below the request threads (Linux)


class NoModel(RuntimeError):
    """No production model is loaded (none registered yet, or it cannot be loaded)."""


@dataclass(frozen=True)
class Catalogue:
    """Which export items may be recommended, and a few users to try (from the warehouse)."""

    available: torch.Tensor  # bool [n_items + 1]
    source: str  # the snapshot file it was read from, or why none
    sample_users: tuple[str, ...] = ()


@dataclass(frozen=True)
class Active:
    model: LoadedModel
    service_name: str
    catalogue: Catalogue
    popular: list[int]  # trending indices still in the catalogue
    swapped_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        return self.model.version


@dataclass
class Item:
    item_id: str
    title: str | None
    category: str | None
    score: float
    reason: str


@dataclass
class Answer:
    user_id: str
    items: list[Item]
    strategy: str
    model_version: str
    fallback_cause: str | None = None


def _now_us() -> int:
    return time.time_ns() // 1000


def snapshot_target(settings: Settings, dataset: str) -> str | None:
    """The internal snapshot the symlink points at now (changes on every republish)."""
    path = settings.internal_snapshot(dataset)
    try:
        return os.readlink(path) if path.is_symlink() else (str(path) if path.exists() else None)
    except OSError:
        return None


def read_catalogue(settings: Settings, dataset: str, model: LoadedModel) -> Catalogue:
    """The export's items the warehouse still lists (see the module's docstring)."""
    n = len(model.ids)
    keep = torch.ones(n, dtype=torch.bool)
    keep[0] = False
    path = settings.internal_snapshot(dataset)
    if not path.exists():
        log.warning("no warehouse snapshot at %s: every item of the export is recommendable",
                    path)
        return Catalogue(keep, f"none ({path} missing)")
    import duckdb

    try:
        with duckdb.connect(str(path), read_only=True) as con:
            rows = con.execute("select item_id, in_catalogue from marts.dim_items").fetchall()
            users = [u for (u,) in con.execute(
                "select user_id from marts.fct_events group by user_id "
                "order by count(*) desc, user_id limit ?", [SAMPLE_USERS]).fetchall()]
    except duckdb.Error as e:
        log.warning("warehouse snapshot %s unreadable (%s): every item is recommendable", path,
                    str(e).splitlines()[0])
        return Catalogue(keep, f"none ({path} unreadable)")
    listed = dict(rows)
    for i in range(1, n):
        state = listed.get(model.ids[i])
        if state is None or (state is False and (model.titles[i] or model.category[i])):
            keep[i] = False
    gone = int(n - 1 - keep.sum())
    if gone:
        log.info("%d of %d items of model %s are no longer in the catalogue: never recommended",
                 gone, n - 1, model.version)
    return Catalogue(keep, str(path.resolve()), tuple(users))


def load_model(settings: Settings, dataset: str, folder: Path, version: str) -> LoadedModel:
    """A registered version's export as serving scores with it: the session gap the run was
    trained with (else the setting's), the dataset's exclusion rule (else the run's)."""
    import json

    meta = json.loads((Path(folder) / "metadata.json").read_bytes())
    window = meta.get("data_window")
    gap = window.get("session_gap_minutes") if isinstance(window, dict) else None
    if not (isinstance(gap, int) and gap >= 1):
        gap = settings.session_gap_minutes
    model = LoadedModel(Path(folder), version, gap, settings.serving.exclude.get(dataset))
    if model.dataset != dataset:
        raise ValueError(f"{folder}: a model of dataset {model.dataset!r}, serving {dataset!r}")
    return model


class Service:
    """The serving process's state; the FastAPI app (serving/app.py) is a thin layer over it."""

    def __init__(self, settings: Settings, dataset: str | None = None,
                 metrics: Metrics | None = None):
        self.settings = settings
        self.dataset = dataset or settings.dataset
        self.metrics = metrics or Metrics()
        torch.set_num_threads(1)  # one request, one core: concurrency comes from requests
        self.reader = OnlineFeaturesReader(
            settings, self.dataset,
            on_failure=lambda cause: self.metrics.store_failures.labels(cause).inc())
        self.active: Active | None = None
        self.load_error: str | None = None
        self._reload_lock = threading.Lock()
        self._snapshot: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------- loading
    def _registry(self):
        from shoprec.registry import Registry
        from shoprec.storage import store_from_settings

        return Registry(store_from_settings(self.settings), self.dataset)

    def production_version(self) -> str | None:
        """The version the production alias points at (None: none promoted yet)."""
        rec = self._registry().alias("production")
        return rec["version"] if rec else None

    def _build(self, version: str) -> Active:
        """Fetch (verified), load, filter and warm one version; raises on any failure."""
        folder = self._registry().load(version, self.settings.model_cache(self.dataset))
        return self._build_from(Path(folder), version)

    def _build_from(self, folder: Path, version: str) -> Active:
        model = load_model(self.settings, self.dataset, folder, version)
        self._snapshot = snapshot_target(self.settings, self.dataset)
        catalogue = read_catalogue(self.settings, self.dataset, model)
        active = self._with_catalogue(model, catalogue)
        self._warm(active)
        return active

    def _with_catalogue(self, model: LoadedModel, catalogue: Catalogue) -> Active:
        avail = catalogue.available
        popular = [i for i in model.trending if avail[i]]
        return Active(model, model.feature_service or SERVING_SERVICE, catalogue, popular)

    def _warm(self, active: Active) -> None:
        """Score a few users (through the store when it answers) before the swap: the first
        requests after it pay no lazy initialisation, and a model that cannot score is refused
        while the old one still serves."""
        users = list(active.catalogue.sample_users[: self.settings.serving.warm_users])
        m = active.model
        probes: list[OnlineFeatures] = []
        for u in users:
            try:
                probes.append(self.reader.features(u, self.reader.service(active.service_name)))
            except Exception:
                break  # the store is down: synthetic probes below still warm the model
        recent = [m.ids[i] for i in active.popular[:3]]
        times = [_now_us() - 60_000_000 * (3 - j) for j in range(len(recent))]
        probes.append(OnlineFeatures(recent, ["view"] * len(recent), times))
        probes.append(OnlineFeatures())
        for f in probes:
            scored = m.score(f, _now_us())
            s = m.mask(scored, f)
            if not torch.isfinite(s[1:]).any() and len(m.ids) > 1 and f.items:
                raise ValueError(f"model {m.version} scores no item finite")
            self._top(active, s, 5)
        if len(m.ids) > 2:
            m.similar(m.ids[1], 3)

    def _swap(self, active: Active, why: str) -> None:
        old = self.active
        self.active = active  # the one assignment: requests in flight keep their object
        self.load_error = None
        self.metrics.model.info({"version": active.version, "dataset": self.dataset,
                                 "feature_service": active.service_name})
        self.metrics.model_loaded.set(active.swapped_at)
        log.warning("serving model %s (%s)%s", active.version, why,
                    f", was {old.version}" if old else "")

    def start(self, poll: bool = True) -> None:
        """Load production now (a failure is kept for /readyz, not raised) and start polling."""
        self.check(why="startup")
        _freeze_heap()
        if poll and self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="model-reload", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.reader.close()

    def reload(self, why: str = "admin reload", timeout_s: float = 300.0) -> dict:
        """`check` on the reload thread (so loading and warming run at its lower priority,
        never on a request's thread), waited for; in place when nothing polls."""
        if self._thread is None or not self._thread.is_alive():
            return self.check(why)
        fut: cf.Future = cf.Future()
        self._requests.put((fut, why))
        self._wake.set()
        return fut.result(timeout=timeout_s)

    def _poll(self) -> None:
        """The reload thread: a check every `reload_seconds`, or at once when asked. Linux
        lets one thread lower its own priority: loading and warming a model (a second of CPU)
        then yields the cores to the requests being answered meanwhile."""
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RELOAD_NICE)
        while True:
            self._wake.wait(self.settings.serving.reload_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            asked = []
            while not self._requests.empty():
                asked.append(self._requests.get())
            try:
                out = self.check(why=asked[0][1] if asked else "registry poll")
            except Exception as e:  # never let the reload thread die
                log.exception("model reload check failed")
                for fut, _ in asked:
                    fut.set_exception(e)
                continue
            for fut, _ in asked:
                fut.set_result(out)
        while not self._requests.empty():  # stopping: nobody waits in vain
            self._requests.get()[0].set_exception(RuntimeError("the service is stopping"))

    def check(self, why: str = "reload") -> dict:
        """Load production when it moved (or nothing is loaded), refresh the catalogue when
        the warehouse snapshot was republished; {previous, version, changed, error}."""
        with self._reload_lock:
            before = self.active.version if self.active else None
            try:
                version = self.production_version()
            except Exception as e:
                return self._failed(before, f"registry unreadable: {_line(e)}")
            if version is None:
                self.load_error = ("no production model registered yet: run `make demo` or "
                                   "`shoprec models promote VERSION`")
                return {"previous": before, "version": before, "changed": False,
                        "error": self.load_error}
            if self.active is None or version != self.active.version:
                try:
                    active = self._build(version)
                except Exception as e:
                    return self._failed(before, f"version {version} not loaded: {_line(e)}")
                self._swap(active, why)
                self.metrics.reloads.labels("swapped").inc()
                _freeze_heap()
                return {"previous": before, "version": version, "changed": True, "error": None}
            target = snapshot_target(self.settings, self.dataset)
            if target != self._snapshot:  # the warehouse was rebuilt: re-read its catalogue
                self._snapshot = target
                m = self.active.model
                self.active = self._with_catalogue(m, read_catalogue(self.settings,
                                                                     self.dataset, m))
            return {"previous": before, "version": before, "changed": False, "error": None}

    def _failed(self, before: str | None, error: str) -> dict:
        log.error("model reload: %s%s", error,
                  f" (still serving {before})" if before else " (no model to serve)")
        self.metrics.reloads.labels("failed").inc()
        if self.active is None:
            self.load_error = error
        return {"previous": before, "version": before, "changed": False, "error": error}

    def current(self) -> Active:
        active = self.active
        if active is None:
            raise NoModel(self.load_error or "no model loaded yet")
        return active

    # ------------------------------------------------------------------ answering
    def _top(self, active: Active, scores: torch.Tensor, k: int) -> list[tuple[int, float]]:
        s = scores.masked_fill(~active.catalogue.available, float("-inf"))
        top = torch.topk(s, min(k, s.numel()))
        return [(i, v) for i, v in zip(top.indices.tolist(), top.values.tolist(), strict=True)
                if v != float("-inf")]

    def _items(self, m: LoadedModel, ranked, reason) -> list[Item]:
        return [Item(m.ids[i], m.titles[i] or None, m.category[i] or None, round(float(v), 6),
                     reason(i)) for i, v in ranked]

    def _popular(self, active: Active, user_id: str, k: int, strategy: str,
                 cause: str | None = None) -> Answer:
        m = active.model
        pop = m.popularity[0]
        ranked = [(i, float(pop[i])) for i in active.popular[:k]]
        items = self._items(m, ranked, lambda i: m.reason(i, None, 0))
        self.metrics.recommendations.labels(strategy).inc()
        return Answer(user_id, items, strategy, active.version, cause)

    def fallback(self, active: Active, user_id: str, k: int, cause: str, detail: str) -> Answer:
        log.warning("fallback user=%r cause=%s model=%s: %s", user_id, cause, active.version,
                    detail)
        self.metrics.fallbacks.labels(cause).inc()
        return self._popular(active, user_id, k, FALLBACK, cause)

    def recommend(self, user_id: str, k: int) -> Answer:
        """The answer for one user (the lookup waited for on this thread)."""
        active = self.current()
        t0 = time.perf_counter()
        try:
            f = self.reader.features(user_id, self.reader.service(active.service_name))
        except Exception as e:
            return self._unavailable(active, user_id, k, e)
        return self._answer(active, user_id, k, f, t0)

    async def recommend_async(self, user_id: str, k: int) -> Answer:
        """`recommend` for the event loop: the lookup is awaited (it runs on the store's own
        threads), the scoring runs here. No thread hop of its own: on a loaded core every hop
        is a GIL hand-over that can wait a switch interval (5 ms)."""
        active = self.current()
        t0 = time.perf_counter()
        try:
            f = await self.reader.features_async(user_id,
                                                 self.reader.service(active.service_name))
        except Exception as e:
            return self._unavailable(active, user_id, k, e)
        return self._answer(active, user_id, k, f, t0)

    def _unavailable(self, active: Active, user_id: str, k: int, e: Exception) -> Answer:
        if isinstance(e, StoreUnavailable):
            self.metrics.breaker_open.set(int(self.reader.breaker.state != "closed"))
            return self.fallback(active, user_id, k, e.cause, e.detail)
        # the feature service missing from Feast's registry, ...
        return self.fallback(active, user_id, k, "store_error", _line(e))

    def _answer(self, active: Active, user_id: str, k: int, f: OnlineFeatures,
                t0: float) -> Answer:
        m = active.model
        self.metrics.breaker_open.set(0)
        self.metrics.lookup.observe(time.perf_counter() - t0)
        if not f.known:
            return self._popular(active, user_id, k, COLD_START)
        try:
            now = max(_now_us(), max(f.times_us, default=0))
            scored = m.score(f, now)
            ranked = self._top(active, m.mask(scored, f), k)
            reasons = m.reasons([i for i, _ in ranked], scored, now)
            items = self._items(m, ranked, reasons.__getitem__)
        except Exception as e:
            return self.fallback(active, user_id, k, "model_error",
                                 f"{type(e).__name__}: {_line(e)}")
        self.metrics.recommendations.labels(PERSONALIZED).inc()
        return Answer(user_id, items, PERSONALIZED, active.version)

    def similar(self, item_id: str, k: int) -> tuple[Active, list[Item]]:
        """Items nearest to `item_id` by the model's vectors; KeyError when unknown."""
        active = self.current()
        m = active.model
        avail = active.catalogue.available
        near = [(i, v) for i, v in m.similar(item_id, min(len(m.ids), k + 50)) if avail[i]][:k]
        title = m.titles[m.index[item_id]] or item_id
        return active, self._items(m, near, lambda i: f"similar to {title}")

    def push(self, events: list[Event]) -> tuple[int, str | None]:
        """Push accepted events to the live sequences: (pushed, why not when stale)."""
        try:
            return self.reader.push(events), None
        except StoreUnavailable as e:
            log.warning("live push skipped for %d event(s) (%s): they are in the spool; live "
                        "features stale", len(events), e)
            return 0, str(e)

    def ready(self) -> tuple[bool, dict]:
        active = self.active
        if active is None:
            return False, {"model": None, "error": self.load_error or "no model loaded yet",
                           "online_store": "unknown"}
        try:
            ok = self.reader.ping(self.reader.service(active.service_name))
        except Exception:
            ok = False
        return ok, {"model": active.version, "online_store": "reachable" if ok else
                    "unreachable", "breaker": self.reader.breaker.state}


def _freeze_heap() -> None:
    """Move every object alive now (Feast's registry, torch, pandas, the model: over a million)
    out of the collector's reach: otherwise each full collection, every second or two under
    load, walks them all and stalls requests for tens of milliseconds. What a request allocates
    is still collected as usual. A full collection of this heap takes ~165 ms (measured), so
    a reload does not unfreeze: what a replaced model held is freed by reference counting, and
    only reference cycles within it (none of its tensors or id lists) would stay."""
    gc.collect(1)
    gc.freeze()


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def event_of(e: Any) -> Event:
    """An accepted event (a dict or an object with the contract's fields) as a push."""
    get = (lambda k: e.get(k)) if isinstance(e, dict) else (lambda k: getattr(e, k, None))
    ts = get("event_timestamp")
    if isinstance(ts, str):
        ts = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    elif ts is not None and not isinstance(ts, dt.datetime) and hasattr(ts, "to_pydatetime"):
        ts = ts.to_pydatetime()
    if isinstance(ts, dt.datetime) and ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return Event(str(get("user_id")), str(get("item_id")), str(get("event_type")),
                 ts or dt.datetime.now(dt.UTC))
