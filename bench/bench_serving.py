"""Serving: `GET /recommendations/{user}?k=20` of a real `shoprec serve` (uvicorn) process on
loopback, on the small shop (~5k items) and a 50k-item catalogue, over Feast's SQLite and Redis
online stores; against the bare Feast lookup of the same features and a bare FastAPI no-op
endpoint measured the same way; `POST /events` → changed recommendation; where one request's
time goes.

    python -m bench.bench_serving            # small and large (= all)
    python -m bench.bench_serving small      # or: large, all

Each catalogue is built in a fresh temp SHOPREC_HOME through the CLI (simulate → validate →
transform → features materialize → `train --max-minutes 1`); the run is registered and promoted
directly (`Registry.register` + `promote`, no gates: a one-minute model stands in for production
here, its quality is not the point). Redis is a `redis-server --save ''` of this script on a free
port (never the shared one on 6379). BENCH_SERVING_HOME_SMALL / _LARGE name a home to build in
and keep (or one this script built before: its steps are skipped), instead of a temp one.

Load: an open-loop generator (`bench/httpload.py`: asyncio, keep-alive sockets, prebuilt
requests; async httpx cost ~2.4 ms of CPU per request and capped one core near 420 req/s; its
own process, pinned to one core; the servers and Redis pinned to the other) offers fixed
arrival schedules of rising rates, each step a bounded number of requests; latency runs from
each request's scheduled send time to its answer (a generator or server that falls behind pays
for it). "Max sustained" = the highest offered rate whose step had p99 <= 25 ms and 0 errors
(errors: any non-200, transport error or timeout, and any `fallback` answer); two failing steps
in a row end the search.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import datetime as dt
import json
import os
import pstats
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.report import run_measured, write_section
from shoprec.children import Child

BIN = Path(sys.executable).parent / "shoprec"
ROOT = Path(__file__).resolve().parent.parent
DATASET = "shop"
P99_BUDGET_MS = 25.0
FLOOR_RATE = 200  # req/s at which both catalogues must hold the p99 budget with 0 errors
FLOOR_SHARE = 0.40  # small catalogue's max sustained / the bare endpoint's
FLOOR_EVENT_MS = 50.0  # POST /events → changed recommendation, p99
RATES = (50, 100, 200, 250, 300, 350, 400, 500, 600, 700, 800, 1000, 1200, 1400, 1700, 2000,
         2500, 3000, 3500, 4000, 5000, 6000)
STEP_SECONDS = 4.0  # each step offers rate x this many requests ...
STEP_MIN, STEP_MAX = 300, 6000  # ... within these bounds
REQUEST_TIMEOUT_S = 2.0
EVENT_TRIALS = 200
LOAD_USERS = 3000
LOOKUPS = 2000
SPAN_USERS = 500
EVENT_SPAN_USERS = 100
LARGE_DAYS = 10  # the large scale's 50k items, 10 days of events (7 at least: the time split)
SIM_ARGS = {"large": ["--scale", "large", "--days", str(LARGE_DAYS)]}
GENERATOR_LAG_MS = 5.0  # a step whose sends start this late (p99) is bounded by the generator


# ------------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cores() -> tuple[int | None, int | None]:
    """(server core, load generator core); None, None on a machine with one core."""
    avail = sorted(os.sched_getaffinity(0))
    return (avail[0], avail[1]) if len(avail) >= 2 else (None, None)


def pinned(cmd: list[str], core: int | None) -> list[str]:
    if core is None:
        return cmd
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin the processes to their cores")
    return ["taskset", "-c", str(core), *cmd]


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without any SHOPREC_* of the caller's, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SHOPREC_")}, **extra}


def Proc(cmd: list[str], env: dict[str, str], log: Path) -> Child:  # noqa: N802
    """A process of this benchmark (server, redis, load generator), stopped by its own pid."""
    return Child(cmd, env, log, cwd=ROOT)


@contextlib.contextmanager
def serving(home: Path, env: dict[str, str], logs: Path, name: str, core: int | None):
    """`shoprec serve` on a free port, pinned to `core`, ready (/readyz 200) → (base URL,
    pid)."""
    port = free_port()
    p = Proc(pinned([sys.executable, "-m", "shoprec.cli", "serve", "--port", str(port)], core),
             clean_env({"SHOPREC_HOME": str(home), **env}), logs / f"serve-{name}.log")
    try:
        p.wait_http(f"http://127.0.0.1:{port}/readyz", 300)
        yield f"http://127.0.0.1:{port}", p.proc.pid
    finally:
        p.stop()


@contextlib.contextmanager
def bare_server(logs: Path, core: int | None):
    """The bare no-op app (`bare_app` below) in its own uvicorn process, as `shoprec serve` runs
    uvicorn (one worker, default loop and parser, warnings only, no access log)."""
    port = free_port()
    p = Proc(pinned([sys.executable, "-m", "uvicorn", "bench.bench_serving:bare_app", "--factory",
                     "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                     "--no-access-log"], core), clean_env({}), logs / "bare.log")
    try:
        p.wait_http(f"http://127.0.0.1:{port}/noop", 300)
        yield f"http://127.0.0.1:{port}", p.proc.pid
    finally:
        p.stop()


@contextlib.contextmanager
def own_redis(logs: Path, core: int | None):
    """A redis-server of this benchmark on a free port, no persistence, pinned to `core` →
    (port, pid)."""
    from shoprec.children import redis_server

    with redis_server(pinned([], core), logs / "redis.log") as (port, proc):
        yield port, proc.pid


def bare_app():
    """The baseline: FastAPI's no-op endpoints (async and plain def), nothing else."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/noop")
    async def noop() -> dict:
        return {"ok": True}

    @app.get("/noop-def")
    def noop_def() -> dict:
        return {"ok": True}

    return app


# ---------------------------------------------------------------------- load generator (child)
def run_loadgen(spec: dict, logs: Path, core: int | None) -> dict:
    """The load generator in its own interpreter pinned to `core`: `spec` in, results out."""
    tag = spec["tag"]
    spec_path, out_path = logs / f"loadgen-{tag}.json", logs / f"loadgen-{tag}.out.json"
    spec_path.write_text(json.dumps(spec))
    p = Proc(pinned([sys.executable, "-m", "bench.bench_serving", "_loadgen", str(spec_path),
                     str(out_path)], core), clean_env({}), logs / f"loadgen-{tag}.log")
    try:
        rc = p.proc.wait(timeout=3600)
    finally:
        p.stop()
    if rc != 0 or not out_path.exists():
        raise SystemExit(f"load generator {tag} failed ({rc}):\n{p.output()}")
    sys.stderr.write(p.output()[-1500:])
    return json.loads(out_path.read_text())


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads) so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time the whole machine spent busy so far (every core; /proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _pct(xs, q) -> float | None:
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if len(xs) else None


async def _steps(spec: dict) -> dict:
    from bench.httpload import Client

    rng = np.random.default_rng(spec.get("seed", 0))
    client = Client.for_url(spec["url"], REQUEST_TIMEOUT_S)
    requests = [client.request_bytes("GET", p) for p in spec["paths"]]
    steps = []
    try:
        now = time.perf_counter  # (uvloop's loop.time() counts whole milliseconds)

        async def one(request: bytes, t_sched: float, out: list, i: int) -> None:
            t_sent = now()
            try:
                status, body = await client.send(request)
                err = None if status == 200 else f"http {status}"
                if err is None and b'"strategy":"fallback"' in body:
                    err = "fallback"
                kind = ("cold_start" if b'"strategy":"cold_start"' in body else None)
            except Exception as e:  # timeouts, refused connections, ...
                err, kind = type(e).__name__, None
            out[i] = (now() - t_sched, t_sent - t_sched, err, kind)

        async def step(rate: int, n: int) -> dict:
            order = rng.integers(0, len(requests), n)
            out: list = [None] * n
            tasks = []
            start = now() + 0.05
            load = os.getloadavg()[0]
            cpu0 = time.process_time()
            srv0 = cpu_seconds(spec["pids"])
            busy0 = busy_seconds()
            for i in range(n):
                t = start + i / rate
                delay = t - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(requests[order[i]], t, out, i)))
            await asyncio.gather(*tasks)
            wall = max(now() - start, 1e-9)
            cpu_ms = (time.process_time() - cpu0) * 1000 / n
            srv_s = cpu_seconds(spec["pids"]) - srv0
            srv_ms = srv_s * 1000 / n
            # cores' worth of CPU that neither the servers nor this generator used: other work
            other = (busy_seconds() - busy0 - srv_s - cpu_ms * n / 1000) / wall
            lat = [o[0] * 1000 for o in out]
            errors: dict[str, int] = {}
            for o in out:
                if o[2]:
                    errors[o[2]] = errors.get(o[2], 0) + 1
            p99 = _pct(lat, 99)
            return {"rate": rate, "n": n, "achieved": n / wall, "p50": _pct(lat, 50),
                    "p95": _pct(lat, 95), "p99": p99, "max": max(lat),
                    "lag_p99": _pct([o[1] * 1000 for o in out], 99), "errors": errors,
                    "cold_start": sum(o[3] == "cold_start" for o in out), "load1": load,
                    "gen_cpu_ms": cpu_ms, "server_cpu_ms": srv_ms, "other_cores": other,
                    "ok": p99 <= P99_BUDGET_MS and not errors}

        await step(spec.get("warm_rate", 100), spec.get("warm", 400))  # warm-up, not reported
        await asyncio.sleep(1)
        failed = 0
        for rate in spec["rates"]:
            n = int(min(max(rate * STEP_SECONDS, STEP_MIN), STEP_MAX))
            s = await step(rate, n)
            steps.append(s)
            sys.stderr.write(f"{spec['tag']}: {rate} req/s p99 {s['p99']:.1f} ms errors "
                             f"{s['errors']} lag p99 {s['lag_p99']:.1f} ms load {s['load1']:.2f}\n")
            failed = 0 if s["ok"] else failed + 1
            if failed >= 2:
                break
            await asyncio.sleep(1.5)  # the server drains before the next step
    finally:
        client.close()
    passing = [s["rate"] for s in steps if s["ok"]]
    return {"steps": steps, "max_sustained": max(passing, default=0)}


async def _events(spec: dict) -> dict:
    """POST one view for a user, then GET their recommendations until the list differs from the
    one before (at most 1 s): the time from the POST's start to that answer."""
    from bench.httpload import Client

    rng = np.random.default_rng(1)
    trials = []
    client = Client.for_url(spec["url"], 10.0)

    async def get(path: str) -> dict:
        status, body = await client.get(path)
        if status != 200:
            raise SystemExit(f"GET {path}: http {status}: {body[:300]!r}")
        return json.loads(body)

    try:
        cold = await get("/recommendations/bench-cold-start-probe?k=100")
        pool = [i["item_id"] for i in cold["items"]]
        for user in spec["users"]:
            before = await get(f"/recommendations/{user}?k=20")
            ids = [i["item_id"] for i in before["items"]]
            seen = set(spec.get("seen", {}).get(user, ()))
            fresh = [i for i in pool if i not in ids and i not in seen]
            item = fresh[int(rng.integers(0, len(fresh)))]
            event = {"event_id": f"bench-{uuid.uuid4().hex}", "user_id": user, "item_id": item,
                     "event_type": "view", "event_timestamp": dt.datetime.now(dt.UTC).isoformat(),
                     "session_id": f"bench-{user}"}
            body = json.dumps(event).encode()
            t0 = time.perf_counter()
            status, answer = await client.post("/events", body)
            t_post = time.perf_counter()
            posted = status == 202 and json.loads(answer).get("live_features") == "fresh"
            gets, changed, after = 0, False, before
            while not changed and time.perf_counter() - t0 < 1.0:
                after = await get(f"/recommendations/{user}?k=20")
                gets += 1
                changed = [i["item_id"] for i in after["items"]] != ids
            t1 = time.perf_counter()
            trials.append({"ms": (t1 - t0) * 1000, "post_ms": (t_post - t0) * 1000,
                           "posted": posted, "changed": changed, "gets": gets,
                           "before": before["strategy"], "after": after["strategy"]})
    finally:
        client.close()
    return {"trials": trials}


def loadgen_main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    run = _events if spec["mode"] == "events" else _steps
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    Path(out_path).write_text(json.dumps(result))


# ------------------------------------------------------------------------------ building
def prepare(home: Path, scale: str) -> dict:
    """A fresh home with the scale's warehouse, Feast (SQLite) and a promoted short-budget run."""
    env = {"SHOPREC_HOME": str(home)}
    secs = {}
    sim = SIM_ARGS.get(scale, ["--scale", scale])
    for label, cmd in (("simulate", ["data", "simulate", *sim]), ("validate", ["validate"]),
                       ("transform", ["transform"]), ("materialize", ["features", "materialize"]),
                       ("train", ["train", "--max-minutes", "1"])):
        secs[label] = run_measured([str(BIN), *cmd], clean_env(env))[0]
    from shoprec.config import Settings
    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings
    from training.runner import latest_run

    s = Settings(home=home)
    run = latest_run(s, DATASET)
    reg = Registry(store_from_settings(s), DATASET)
    version = reg.register(run / "export", run.name)
    reg.promote(version, by="bench_serving")
    meta = json.loads((run / "export" / "metadata.json").read_text())
    blend = run / "export" / "blend.json"
    return {"secs": secs, "version": version, "items": len(meta["items"]["ids"]),
            "blend": json.loads(blend.read_text()).get("kind") if blend.exists() else "none",
            "run": run.name}


def real_users(home: Path, n: int, seed: int) -> list[str]:
    """`n` random users with events in the warehouse snapshot (what serving was built from)."""
    import duckdb

    from shoprec.config import Settings

    path = Settings(home=home).internal_snapshot(DATASET)
    with duckdb.connect(str(path), read_only=True) as con:
        users = sorted(u for (u,) in con.execute(
            "select distinct user_id from marts.fct_events").fetchall())
    rng = np.random.default_rng(seed)
    return [users[i] for i in rng.choice(len(users), min(n, len(users)), replace=False)]


def settings_for(home: Path, redis_port: int | None):
    from shoprec.config import FeastSettings, Settings

    if redis_port is None:
        return Settings(home=home)
    return Settings(home=home, feast=FeastSettings(online_store="redis",
                                                   redis_connection=f"127.0.0.1:{redis_port}"))


# ------------------------------------------------------------------------------ in-process
@contextlib.contextmanager
def on_core(core: int | None):
    """This process on one core for an in-process measurement (the servers' core)."""
    before = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def feast_lookups(s, users: list[str]) -> dict:
    """The bare online lookup: the production model's feature service, one user per call,
    in-process Feast SDK (no thread pool, budget or breaker), after 50 warm-up calls."""
    import torch

    from feature_repo.names import SERVING_SERVICE, USER_KEY
    from serving.runtime import load_model
    from shoprec.features.store import get_store
    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings

    torch.set_num_threads(1)
    reg = Registry(store_from_settings(s), DATASET)
    version = reg.resolve("production")
    m = load_model(s, DATASET, Path(reg.load(version, s.model_cache(DATASET))), version)
    store = get_store(s, DATASET)
    service = store.get_feature_service(m.feature_service or SERVING_SERVICE)
    rng = np.random.default_rng(2)
    order = rng.integers(0, len(users), LOOKUPS + 50)
    times = []
    for k, i in enumerate(order):
        t0 = time.perf_counter()
        store.get_online_features(features=service, entity_rows=[{USER_KEY: users[i]}]).to_dict()
        if k >= 50:
            times.append((time.perf_counter() - t0) * 1000)
    return {"service": service.name, "p50": _pct(times, 50), "p95": _pct(times, 95),
            "p99": _pct(times, 99), "per_s": 1000 / float(np.mean(times)), "n": len(times)}


SPANS = ("lookup", "model", "ranker", "rules", "reasons", "other", "response")
WRAPPED = {"lookup": ("reader", "features"), "model": ("model", "_scores"),
           "ranker": ("model", "ranker"), "rules": ("model", "mask"), "rules_top": ("svc", "_top"),
           "reasons": ("model", "reasons")}


class Request:
    """The real `Service.recommend`, timed per span by wrapping (on these instances only) the
    functions it calls: the online lookup (the reader: its thread pool, budget and breaker, and
    the parse into OnlineFeatures), the model's scores, the ranker, the rules (exclusions,
    catalogue filter, top k), the reasons; `other` is the rest of the call (the model's input
    tensors, repeat statistics, the Answer), `response` the endpoint's JSON (`answer_json`)."""

    def __init__(self, s):
        import torch

        from serving.runtime import Service

        torch.set_num_threads(1)
        # a lookup over the production budget (a loaded machine) is timed, not abandoned
        s = s.model_copy(update={"serving": s.serving.model_copy(
            update={"feature_timeout_ms": 2000.0})})
        self.svc = Service(s)
        self.svc.start(poll=False)
        self.active = self.svc.current()
        self.m = self.active.model
        self.times: dict[str, list[float]] = {}
        owners = {"reader": self.svc.reader, "model": self.m, "svc": self.svc}
        for span, (owner, name) in WRAPPED.items():
            fn = getattr(owners[owner], name)
            if fn is not None:
                setattr(owners[owner], name, self._timed(span.removesuffix("_top"), fn))

    def _timed(self, span: str, fn):
        pc = time.perf_counter

        def timed(*args, **kwargs):
            t0, c0 = pc(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.times[span][0] += (pc() - t0) * 1000
                self.times[span][1] += (time.process_time() - c0) * 1000
        return timed

    def close(self) -> None:
        self.svc.stop()

    def run(self, user: str, k: int = 20) -> tuple[dict, list[str]]:
        """One Service.recommend and its JSON: each span's (wall ms, CPU ms of this process)."""
        from serving.app import answer_json

        self.times = {name: [0.0, 0.0] for name in SPANS}
        t0, c0 = time.perf_counter(), time.process_time()
        a = self.svc.recommend(user, k)
        t1, c1 = time.perf_counter(), time.process_time()
        answer_json(a)
        self.times["response"] = [(time.perf_counter() - t1) * 1000,
                                  (time.process_time() - c1) * 1000]
        inner = [sum(self.times[n][j] for n in SPANS if n not in ("other", "response"))
                 for j in (0, 1)]
        self.times["other"] = [(t1 - t0) * 1000 - inner[0], (c1 - c0) * 1000 - inner[1]]
        return {n: tuple(v) for n, v in self.times.items()}, [i.item_id for i in a.items]

    @contextlib.contextmanager
    def on_this_thread(self):
        """Store calls made on the calling thread (so that a profiler sees Feast's functions)."""
        reader = self.svc.reader
        reader._call = lambda fn, timeout_s, what: fn()
        try:
            yield
        finally:
            del reader._call


def spans(s, users: list[str], profile: bool) -> dict:
    """Per-span p50/p99/mean over `users` (after 30 warm-up requests); the in-process total of
    Service.recommend for comparison; a cProfile of the same requests when `profile`."""
    req = Request(s)
    try:
        for u in users[:30]:
            req.run(u)
        per = {name: [] for name in SPANS}
        for u in users:
            sp, _ = req.run(u)
            for name in SPANS:
                per[name].append(sp[name])
        per["sum"] = [tuple(map(sum, zip(*x, strict=True)))
                      for x in zip(*(per[n] for n in SPANS), strict=True)]

        def stats(v: list[tuple[float, float]]) -> dict:
            wall, cpu = [x[0] for x in v], [x[1] for x in v]
            return {"p50": _pct(wall, 50), "p99": _pct(wall, 99), "mean": float(np.mean(wall)),
                    "cpu_p50": _pct(cpu, 50), "cpu_mean": float(np.mean(cpu))}

        out = {"spans": {n: stats(v) for n, v in per.items()}, "n": len(users),
               "ranker": req.m.ranker is not None, "items": len(req.m.ids) - 1}
        out["events"] = event_spans(req, s, users[-EVENT_SPAN_USERS:])
        if profile:
            prof = cProfile.Profile()
            with req.on_this_thread():
                prof.enable()
                for u in users:
                    req.run(u)
                prof.disable()
            out["profile"] = profile_table(prof, len(users))
        return out
    finally:
        req.close()


def event_spans(req: Request, s, users: list[str]) -> dict:
    """POST /events' two steps in-process, then the user's next recommendation: the intake
    (contract check, spool transaction fsync'd: EventIntake.accept) and the push into the live
    sequence (Service.push: Feast's push of the user's new sequence)."""
    from serving.events import EventIntake
    from serving.runtime import event_of

    m, pc = req.m, time.perf_counter
    pool = [m.ids[i] for i in req.active.popular[:100]]
    rng = np.random.default_rng(3)
    intake = EventIntake(s, DATASET, background=False)
    times: dict[str, list[float]] = {"accept": [], "push": [], "recommend": []}
    try:
        for u in users:
            event = {"event_id": f"bench-{uuid.uuid4().hex}", "user_id": u,
                     "item_id": pool[int(rng.integers(0, len(pool)))], "event_type": "view",
                     "event_timestamp": dt.datetime.now(dt.UTC).isoformat(),
                     "session_id": f"bench-{u}"}
            t0 = pc()
            accepted = intake.accept(event)
            t1 = pc()
            req.svc.push([event_of(e) for e in accepted.events])
            t2 = pc()
            req.svc.recommend(u, 20)
            t3 = pc()
            for name, dt_s in (("accept", t1 - t0), ("push", t2 - t1), ("recommend", t3 - t2)):
                times[name].append(dt_s * 1000)
    finally:
        intake.close()
    return {k: {"p50": _pct(v, 50), "p99": _pct(v, 99)} for k, v in times.items()}


def profile_table(prof: cProfile.Profile, n: int, top: int = 18) -> str:
    st = pstats.Stats(prof)
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    lines = ["| function | calls/request | own ms/request | with callees ms/request |",
             "|---|---|---|---|"]
    for (file, line, func), (_cc, nc, tt, ct, _callers) in rows:
        where = file
        for marker in ("site-packages/", str(ROOT) + "/"):
            if marker in where:
                where = where.split(marker, 1)[1]
        name = f"{where}:{line} {func}" if line else func
        lines.append(f"| `{name}` | {nc / n:.1f} | {tt * 1000 / n:.3f} | {ct * 1000 / n:.3f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the run
def measure_store(home: Path, scale: str, backend: str, logs: Path, server_core, load_core,
                  load_users: list[str], event_users: list[str], redis: tuple | None,
                  profile: bool) -> dict:
    env = {}
    redis_port, redis_pid = redis or (None, None)
    if redis_port is not None:
        env = {"SHOPREC_FEAST__ONLINE_STORE": "redis",
               "SHOPREC_FEAST__REDIS_CONNECTION": f"127.0.0.1:{redis_port}"}
    s = settings_for(home, redis_port)
    out: dict = {"load_before": os.getloadavg()[0]}
    with serving(home, env, logs, f"{scale}-{backend}", server_core) as (url, pid):
        paths = [f"/recommendations/{u}?k=20" for u in load_users]
        pids = [pid] if redis_pid is None else [pid, redis_pid]
        out["load"] = run_loadgen({"tag": f"{scale}-{backend}", "mode": "steps", "url": url,
                                   "paths": paths, "rates": RATES, "pids": pids}, logs,
                                  load_core)
        out["events"] = run_loadgen({"tag": f"{scale}-{backend}-events", "mode": "events",
                                     "url": url, "users": event_users,
                                     "seen": live_items(s, event_users)}, logs, load_core)
    with on_core(server_core):  # the server is stopped: its core is free
        out["feast"] = feast_lookups(s, load_users)
        out["spans"] = spans(s, load_users[:SPAN_USERS], profile)
    out["load_after"] = os.getloadavg()[0]
    return out


def live_items(s, users: list[str]) -> dict[str, list[str]]:
    """Each user's items in their online live sequence now: a trial views an item not among
    them (a second view of an item in the same session collapses into the first, and changes
    nothing; a home reused from an earlier run holds that run's views)."""
    from shoprec.features.live import LiveSequences
    from shoprec.features.store import get_store

    live = LiveSequences(get_store(s, DATASET), s, DATASET)
    return {u: sorted({item for _, item, _ in live.get(u)}) for u in users}


def measure_bare(logs: Path, server_core, load_core) -> dict:
    out = {}
    with bare_server(logs, server_core) as (url, pid):
        for path in ("/noop", "/noop-def"):
            out[path] = run_loadgen({"tag": f"bare{path.replace('/', '-')}", "mode": "steps",
                                     "url": url, "paths": [path], "rates": RATES,
                                     "pids": [pid]}, logs, load_core)
    return out


def measure_scale(scale: str, logs: Path, server_core, load_core) -> dict:
    keep = os.environ.get(f"BENCH_SERVING_HOME_{scale.upper()}")
    home = Path(keep) if keep else None
    tmp = None
    if home is None:  # the normal case: a fresh home (the variable reuses a prepared one)
        tmp = home = Path(tempfile.mkdtemp(prefix=f"shoprec-bench-serving-{scale}-"))
    try:
        if (home / "bench-serving.json").exists():
            built = json.loads((home / "bench-serving.json").read_text())
        else:
            built = prepare(home, scale)
            (home / "bench-serving.json").write_text(json.dumps(built))
        users = real_users(home, LOAD_USERS + EVENT_TRIALS, seed=0)
        load_users, event_users = users[:LOAD_USERS], users[LOAD_USERS:]
        res = {"built": built, "users": len(users)}
        res["sqlite"] = measure_store(home, scale, "sqlite", logs, server_core, load_core,
                                      load_users, event_users, None, profile=scale != "small")
        with own_redis(logs, server_core) as (port, redis_pid):
            t0 = time.perf_counter()
            run_measured([str(BIN), "features", "materialize"], clean_env({
                "SHOPREC_HOME": str(home), "SHOPREC_FEAST__ONLINE_STORE": "redis",
                "SHOPREC_FEAST__REDIS_CONNECTION": f"127.0.0.1:{port}"}))
            res["redis_materialize_s"] = time.perf_counter() - t0
            res["redis"] = measure_store(home, scale, "redis", logs, server_core, load_core,
                                         load_users, event_users, (port, redis_pid),
                                         profile=False)
        return res
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ the report
def _f(x: float | None, nd: int = 1) -> str:
    return "–" if x is None else f"{x:,.{nd}f}"


def _other(results: dict, bare: dict, scales: list[str]) -> str:
    steps = [s for b in bare.values() for s in b["steps"]] + [
        s for sc in scales for be in ("sqlite", "redis") for s in results[sc][be]["load"]["steps"]]
    other = [s["other_cores"] for s in steps if "other_cores" in s]
    if not other:
        return "not measured"
    return (f"median {_pct(other, 50):.2f}, max {max(other):.2f} cores of 2 "
            f"(over {len(other)} steps)")


def _share(a: float, b: float) -> str:
    return f"{a / b:.0%}" if b else "–"


def _step(load: dict, rate: int) -> dict | None:
    return next((s for s in load["steps"] if s["rate"] == rate), None)


def _errs(step: dict | None) -> str:
    if step is None:
        return "–"
    e = step["errors"]
    return str(sum(e.values())) + (f" ({', '.join(f'{k} {v}' for k, v in e.items())})" if e
                                   else "")


def report(results: dict, bare: dict, scales: list[str], loads: list[float]) -> str:
    bare_max = bare["/noop"]["max_sustained"]
    bare_def_max = bare["/noop-def"]["max_sustained"]
    rows, floors = [], []
    for scale in scales:
        r = results[scale]
        for backend in ("sqlite", "redis"):
            x = r[backend]
            st = _step(x["load"], FLOOR_RATE)
            mx = x["load"]["max_sustained"]
            ev = [t["ms"] for t in x["events"]["trials"] if t["changed"]]
            fe = x["feast"]
            rows.append(
                f"| {scale} ({r['built']['items']:,} items) | {backend} | "
                f"{_f(st and st['p50'], 2)} | {_f(st and st['p95'], 2)} | "
                f"{_f(st and st['p99'], 2)} | {_errs(st)} | {mx:,} | "
                f"{_share(mx, bare_max)} | {_share(mx, bare_def_max)} | {_f(fe['p50'], 2)} | "
                f"{_f(fe['p99'], 2)} | {fe['per_s']:,.0f} | {_share(mx, fe['per_s'])} | "
                f"{_f(_pct(ev, 99), 1)} |")
            ok200 = st is not None and st["ok"]
            floors.append(f"- p99 <= {P99_BUDGET_MS:g} ms at {FLOOR_RATE} req/s with 0 errors, "
                          f"{scale}/{backend}: p99 {_f(st and st['p99'], 2)} ms, errors "
                          f"{_errs(st)}: **{'met' if ok200 else 'MISSED'}**")
            if scale == "small":
                share = mx / bare_max if bare_max else 0.0
                floors.append(f"- small catalogue >= {FLOOR_SHARE:.0%} of the bare endpoint's max "
                              f"sustained ({bare_max:,} req/s), {backend}: {mx:,} req/s = "
                              f"{_share(mx, bare_max)}: "
                              f"**{'met' if bare_max and share >= FLOOR_SHARE else 'MISSED'}**")
            changed = sum(t["changed"] for t in x["events"]["trials"])
            n_ev = len(x["events"]["trials"])
            p99e = _pct(ev, 99)
            ok_ev = changed == n_ev and p99e is not None and p99e <= FLOOR_EVENT_MS
            floors.append(f"- POST /events → changed recommendation <= {FLOOR_EVENT_MS:g} ms p99, "
                          f"{scale}/{backend}: {_f(p99e, 1)} ms, changed in {changed}/{n_ev}: "
                          f"**{'met' if ok_ev else 'MISSED'}**")
    body = [
        "Every figure below was measured by this run; nothing is carried over. Load on loopback "
        "from an open-loop generator (asyncio with keep-alive sockets and prebuilt requests, "
        "`bench/httpload.py`, ~0.2 ms of CPU per request; in its own process pinned to one "
        "core; each server, and Redis, pinned to the other), latency from each request's "
        "scheduled send time to its answer. Max sustained = the highest offered rate (steps "
        f"{', '.join(map(str, RATES))} req/s, {STEP_SECONDS:g} s of arrivals each, "
        f"{STEP_MIN}..{STEP_MAX} requests) with p99 <= {P99_BUDGET_MS:g} ms and 0 errors (non-200, "
        "transport errors, timeouts of 2 s, and `fallback` answers); two failing steps end the "
        f"search. Users: {LOAD_USERS:,} random users with events in the warehouse, "
        "`GET /recommendations/{user}?k=20`.",
        "",
        "Models: `shoprec train --max-minutes 1` on each catalogue (small: the whole "
        "`--scale small` shop; large: `--scale large --days "
        f"{LARGE_DAYS}`, its 50k-item catalogue), registered and promoted with "
        "`Registry.register` + `promote` directly, **without the promotion gates** (a one-minute "
        "model stands in for production: its latency is measured here, not its quality). "
        + "; ".join(f"{sc}: {results[sc]['built']['items']:,} items, blend "
                    f"`{results[sc]['built']['blend']}`" for sc in scales) + ".",
        "",
        "Other work on the machine while the load steps ran (CPU that neither the server "
        "under test nor the generator used, from /proc/stat): "
        f"{_other(results, bare, scales)}. 1-min load average over the run: "
        f"{min(loads):.2f} .. {max(loads):.2f} (the benchmark's own server and generator make "
        "~1..2 of it).",
        "",
        f"| catalogue | online store | p50 ms @{FLOOR_RATE}/s | p95 ms @{FLOOR_RATE}/s | "
        f"p99 ms @{FLOOR_RATE}/s | errors @{FLOOR_RATE}/s | max sustained req/s | "
        "÷ bare async | ÷ bare def | Feast lookup p50 ms | Feast lookup p99 ms | "
        "Feast lookups/s | max ÷ lookups/s | POST /events → changed p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Bare FastAPI no-op endpoint (own uvicorn process, same pinning and generator): "
        f"`async def` max sustained {bare_max:,} req/s, plain `def` {bare_def_max:,} req/s (the "
        "recommendations endpoint is an `async def`: it awaits its lookup on the store's "
        "threads and scores on the event loop). Feast lookup = "
        "`get_online_features(features=<the model's feature service>, entity_rows=[one user])`"
        f".to_dict(), in-process SDK on the servers' core, the same users, {LOOKUPS:,} calls.",
        "",
        "**Floors** (this 2-core machine):",
        "",
        *floors,
        "",
        "### Steps",
        "",
        "p99 ms (errors) per offered rate; `*` = the generator's sends started > "
        f"{GENERATOR_LAG_MS:g} ms late (p99), i.e. the generator, not only the server, was at "
        "its limit; achieved = requests / wall time of the step.",
        "",
    ]
    series = [("bare `async def` /noop", bare["/noop"]), ("bare `def` /noop-def",
                                                          bare["/noop-def"])]
    for scale in scales:
        for backend in ("sqlite", "redis"):
            series.append((f"{scale} / {backend}", results[scale][backend]["load"]))
    rates = sorted({s["rate"] for _, ld in series for s in ld["steps"]})
    body.append("| server | " + " | ".join(f"{r}/s" for r in rates) + " |")
    body.append("|---" * (len(rates) + 1) + "|")
    for name, ld in series:
        cells = []
        for r in rates:
            s = _step(ld, r)
            if s is None:
                cells.append("")
                continue
            n_err = sum(s["errors"].values())
            mark = "*" if s["lag_p99"] > GENERATOR_LAG_MS else ""
            cells.append(f"{s['p99']:.1f}{mark}" + (f" ({n_err})" if n_err else "")
                         + ("" if s["ok"] else " ✗"))
        body.append(f"| {name} | " + " | ".join(cells) + " |")
    body += ["", "CPU time per request, median over the steps (from /proc: every thread of the "
             "server, plus redis-server's for Redis; the generator's own): 1000 / server CPU ms "
             "is what one core could serve if nothing else ran on it, a figure less sensitive "
             "to other work on the machine than the latencies.", "",
             "| server | server CPU ms/request | ⇒ req/s on one core | generator CPU ms/request |",
             "|---|---|---|---|"]
    for name, ld in series:
        srv = _pct([s["server_cpu_ms"] for s in ld["steps"]], 50)
        gen = _pct([s["gen_cpu_ms"] for s in ld["steps"]], 50)
        body.append(f"| {name} | {srv:.2f} | {1000 / max(srv, 1e-9):,.0f} | {gen:.2f} |")
    cpu = [s["gen_cpu_ms"] for _, ld in series for s in ld["steps"]]
    body += ["", f"So the generator, at {_pct(cpu, 50):.2f} ms of CPU per request, can offer at "
             f"most about {1000 / _pct(cpu, 50):,.0f} req/s from its one core."]
    first_fail = next((s for s in bare["/noop"]["steps"] if not s["ok"]), None)
    if first_fail is not None and first_fail["lag_p99"] > GENERATOR_LAG_MS:
        body += ["", f"**The bare endpoint's max sustained rate is bounded by the generator** "
                 f"(its sends at {first_fail['rate']} req/s started {first_fail['lag_p99']:.1f} ms "
                 "late, p99): the bare endpoint can do more, so the ratios to it are upper "
                 "bounds."]
    body += ["", "Achieved req/s at the max sustained step: " + "; ".join(
        f"{name} {s['achieved']:,.0f}" for name, ld in series
        if (s := _step(ld, ld["max_sustained"])) is not None) + "."]
    # events
    body += ["", "### POST /events → changed recommendation", "",
             f"{EVENT_TRIALS} trials per server, each a different user: GET their "
             "recommendations, POST one `view` of a popular item neither among them nor in "
             "their live sequence (a second view in one session changes nothing), then GET "
             "again (repeated until the list differs, at most 1 s); the time from the POST's "
             "start to the answer that shows the change. Sequential, from the generator's core.",
             "",
             "| catalogue | online store | p50 ms | p95 ms | p99 ms | max ms | changed | "
             "changed at the first GET | POST alone p50 ms | POST alone p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for scale in scales:
        for backend in ("sqlite", "redis"):
            tr = results[scale][backend]["events"]["trials"]
            ms = [t["ms"] for t in tr if t["changed"]]
            post = [t["post_ms"] for t in tr]
            body.append(f"| {scale} | {backend} | {_f(_pct(ms, 50), 1)} | {_f(_pct(ms, 95), 1)} "
                        f"| {_f(_pct(ms, 99), 1)} | {_f(max(ms, default=None), 1)} | "
                        f"{len(ms)}/{len(tr)} | {sum(t['gets'] == 1 and t['changed'] for t in tr)}"
                        f"/{len(tr)} | {_f(_pct(post, 50), 1)} | {_f(_pct(post, 99), 1)} |")
    body += ["", "The same steps in-process (on the servers' core, server stopped, "
             f"{EVENT_SPAN_USERS} other users): the intake (`EventIntake.accept`: contract "
             "check, spool transaction fsync'd), the push into the live sequence "
             "(`Service.push`: Feast push of the user's new sequence) and the next "
             "`Service.recommend`.", "",
             "| catalogue | store | accept p50 ms | accept p99 ms | push p50 ms | push p99 ms | "
             "recommend p50 ms | recommend p99 ms |", "|---|---|---|---|---|---|---|---|"]
    for scale in scales:
        for backend in ("sqlite", "redis"):
            e = results[scale][backend]["spans"]["events"]
            body.append(f"| {scale} | {backend} | " + " | ".join(
                f"{_f(e[k]['p50'], 2)} | {_f(e[k]['p99'], 2)}"
                for k in ("accept", "push", "recommend")) + " |")
    # where the time goes
    body += ["", "### Where one request's time goes", "",
             f"In-process, on the servers' core with the server stopped: the production model "
             f"loaded by `serving.runtime.Service` as the server loads it, {SPAN_USERS} of the "
             "same users, one at a time, through `Service.recommend` itself, timed per span by "
             "wrapping the functions it calls (`bench_serving.Request`): the lookup (the "
             "reader's pool, budget, breaker and parse), the model's scores, the ranker, the "
             "rules (exclusions, catalogue filter, top k), the reasons, `other` (the rest of "
             "the call: input tensors, repeat statistics, the answer) and `response` (the "
             "endpoint's JSON). HTTP p50 @50/s is the client's latency at the lowest step: the "
             "difference is uvicorn, FastAPI's routing and parameter checks, the event loop "
             "and loopback.", "",
             "Wall ms (p50) and CPU ms (mean, this process's every thread) per span; 'sum' is "
             "the whole request.",
             "", "| catalogue | store | " + " | ".join(SPANS + ("sum",))
             + " | HTTP p50 ms @50/s |",
             "|---" * (len(SPANS) + 4) + "|"]
    for scale in scales:
        for backend in ("sqlite", "redis"):
            x = results[scale][backend]
            sp = x["spans"]["spans"]
            s50 = _step(x["load"], 50)
            body.append(f"| {scale} | {backend} | " + " | ".join(
                f"{_f(sp[n]['p50'], 2)} / {_f(sp[n]['cpu_mean'], 2)}"
                for n in (*SPANS, "sum")) + f" | {_f(s50 and s50['p50'], 2)} |")
    for scale in scales:
        prof = results[scale]["sqlite"]["spans"].get("profile")
        if prof:
            body += ["", f"cProfile of the same {SPAN_USERS} requests, {scale} catalogue, SQLite "
                     "(the Feast lookup called on the profiled thread; the 18 functions with "
                     "the most time of their own; per request, so with cProfile's overhead):",
                     "", prof]
    return "\n".join(body) + "\n"


def main(which: str = "all") -> None:
    # SIGTERM unwinds like Ctrl-C: the servers, Redis and temp homes of this run are cleaned up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scales = ["small", "large"] if which == "all" else [which]
    server_core, load_core = cores()
    logs = Path(tempfile.mkdtemp(prefix="shoprec-bench-serving-logs-"))
    print(f"logs in {logs}", file=sys.stderr)
    loads = [os.getloadavg()[0]]
    results = {}
    bare = measure_bare(logs, server_core, load_core)
    for scale in scales:
        results[scale] = measure_scale(scale, logs, server_core, load_core)
    for scale in scales:
        for backend in ("sqlite", "redis"):
            x = results[scale][backend]
            loads += [x["load_before"], x["load_after"], *(s["load1"] for s in x["load"]["steps"])]
    loads += [s["load1"] for b in bare.values() for s in b["steps"]]
    loads.append(os.getloadavg()[0])
    (logs / "results.json").write_text(json.dumps({"results": results, "bare": bare},
                                                  default=str))
    name = "serving" if which == "all" else f"serving ({which})"
    write_section(name, f"python -m bench.bench_serving {which}",
                  report(results, bare, scales, loads))
    print(f"raw results: {logs / 'results.json'}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:2] == ["_loadgen"]:
        loadgen_main(sys.argv[2], sys.argv[3])
    else:
        main(*(sys.argv[1:2] or ["all"]))
