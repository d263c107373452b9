"""The HTTP service: `create_app(settings)` → FastAPI, run by uvicorn (`shoprec serve`).

Routers per concern: recommendations (and similar items, sample users), events, operations
(health, readiness, metrics), admin (reload, behind a bearer token), and the demo page at `/`.
The state lives in `serving.runtime.Service`, built and started in the lifespan: the production
model is loaded (and polled for) there, never on a request.

Endpoints answer 200 for every recommendation the service can give (personalized, cold start or
fallback) and 4xx with one clear message for bad input: ids (the contract's 1..256 printable
characters, as POST /events checks them), `k` in 1..100, event payloads against the contract
(422).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from serving.metrics import LatencyMiddleware, Metrics
from serving.runtime import NoModel, Service, event_of
from shoprec.config import Settings, get_settings

log = logging.getLogger("shoprec.serving")
STATIC = Path(__file__).resolve().parent / "static"
MAX_K = 100


# ----------------------------------------------------------------------------- schemas
class RecommendedItem(BaseModel):
    item_id: str
    title: str | None
    category: str | None
    score: float
    reason: str


class Recommendations(BaseModel):
    user_id: str
    strategy: str  # personalized | cold_start | fallback
    model_version: str
    fallback_cause: str | None = None  # store_timeout | store_error | store_busy |
    # breaker_open | model_error
    items: list[RecommendedItem]


class SimilarItems(BaseModel):
    item_id: str
    model_version: str
    items: list[RecommendedItem]


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int
    pushed: int
    live_features: str  # fresh | stale (the online store is down: events kept in the spool)
    detail: str | None = None
    forgotten: int = 0  # events of users forgotten (shoprec privacy forget): dropped


class Reload(BaseModel):
    previous: str | None
    version: str | None
    changed: bool
    error: str | None = None


# ----------------------------------------------------------------------------- validation
def check_id(value: str, what: str) -> str:
    """A path id under the rule POST /events applies to ids (serving.events.id_problem: 1..256
    printable characters, no leading or trailing spaces); else 422 naming the field and rule."""
    from serving.events import id_problem

    problem = id_problem(value)
    if problem:
        raise HTTPException(422, f"{what}: {problem}")
    return value


async def get_service(request: Request) -> Service:
    # async: a plain `def` dependency costs every request a hop to the thread pool
    return request.app.state.service


def require_admin(request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> None:
    """403 while no admin token is configured; 401 for a missing or wrong bearer token."""
    token = request.app.state.settings.serving.admin_token
    if token is None or not token.get_secret_value():
        raise HTTPException(403, "admin endpoints are disabled: no admin token is configured "
                                 "(SHOPREC_SERVING__ADMIN_TOKEN)")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.get_secret_value().encode()):
        raise HTTPException(401, "admin endpoints need Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})


Svc = Annotated[Service, Depends(get_service)]
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many items (1..100).")]


def answer_json(a) -> bytes:
    """A `serving.runtime.Answer` as the `Recommendations` schema's JSON."""
    return json.dumps({
        "user_id": a.user_id, "strategy": a.strategy, "model_version": a.model_version,
        "fallback_cause": a.fallback_cause, "items": [vars(i) for i in a.items]},
        separators=(",", ":"), ensure_ascii=False).encode()


def _readable(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body")]
        parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg')}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- the app
def create_app(settings: Settings | None = None, *, poll: bool = True) -> FastAPI:
    """The service for `settings.dataset` (default: get_settings()); `poll` starts the thread
    that follows the registry's production alias."""
    s = settings or get_settings()
    metrics = Metrics()
    holder: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from serving.events import EventIntake

        # the store's threads take the GIL from the loop's scoring within 1 ms, not 5
        sys.setswitchinterval(s.serving.gil_switch_ms / 1000)
        service = Service(s, metrics=metrics)
        app.state.service = service
        holder["intake"] = EventIntake(s, service.dataset)
        service.start(poll=poll)
        if service.active is None:
            log.warning("serving without a model: %s", service.load_error)
        try:
            yield
        finally:
            service.stop()
            holder["intake"].close()

    app = FastAPI(title="Shoprec", lifespan=lifespan, version="1",
                  description="Real-time shop recommendations from Feast's online features and "
                              "the registry's production model.")
    app.state.settings = s
    app.add_middleware(LatencyMiddleware, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _readable(exc)}, status_code=422)

    # ------------------------------------------------------------------ recommendations
    recs = APIRouter(tags=["recommendations"])

    @recs.get("/recommendations/{user_id}", response_model=Recommendations)
    async def recommendations(user_id: str, svc: Svc, k: K = 20):
        """The hot path, on the event loop: the online lookup is awaited on the store's
        threads, scoring runs here, and the answer (built by the service, the same fields as
        `Recommendations`) is encoded once, not validated again."""
        check_id(user_id, "user_id")
        try:
            a = await svc.recommend_async(user_id, k)
        except NoModel as e:
            raise HTTPException(503, str(e)) from None
        return Response(answer_json(a), media_type="application/json")

    @recs.get("/items/{item_id}/similar", response_model=SimilarItems)
    def similar(item_id: str, svc: Svc, k: K = 10):
        check_id(item_id, "item_id")
        try:
            active, items = svc.similar(item_id, k)
        except NoModel as e:
            raise HTTPException(503, str(e)) from None
        except KeyError:
            raise HTTPException(404, f"item_id {item_id!r} is not in the catalogue of the "
                                     "model serving now") from None
        return SimilarItems(item_id=item_id, model_version=active.version,
                            items=[RecommendedItem(**vars(i)) for i in items])

    @recs.get("/users/sample")
    def sample_users(svc: Svc) -> dict:
        """A few users to try (the most active of the warehouse snapshot)."""
        active = svc.active
        return {"users": list(active.catalogue.sample_users) if active else []}

    # ------------------------------------------------------------------------ events
    events = APIRouter(tags=["events"])

    @events.post("/events", status_code=202, response_model=EventsAccepted)
    def post_events(svc: Svc, payload: Annotated[Any, Body(
            description="One event or a list of events of the data contract: event_id, "
                        "user_id, item_id, event_type (view, click, add_to_cart, purchase), "
                        "event_timestamp (UTC), session_id, optional price and quantity.")]):
        from serving.events import EventError

        try:
            accepted = holder["intake"].accept(payload)
        except EventError as e:
            svc.metrics.events.labels("rejected").inc()
            raise HTTPException(422, str(e)) from None
        new = list(accepted.events)
        dup = accepted.duplicates
        dup = dup if isinstance(dup, int) else len(dup)
        svc.metrics.events.labels("accepted").inc(len(new))
        svc.metrics.events.labels("duplicate").inc(dup)
        svc.metrics.events.labels("forgotten").inc(accepted.forgotten)
        pushed, why = svc.push([event_of(e) for e in new])
        if why is not None:
            svc.metrics.events.labels("stale").inc()
        return EventsAccepted(accepted=len(new), duplicates=dup, pushed=pushed,
                              live_features="stale" if why else "fresh", detail=why,
                              forgotten=accepted.forgotten)

    # -------------------------------------------------------------------- operations
    ops = APIRouter(tags=["operations"])

    @ops.get("/healthz")
    def healthz() -> dict:
        """The process answers."""
        return {"status": "ok"}

    @ops.get("/readyz")
    def readyz(svc: Svc):
        """200 when a model is loaded and the online store answers within its budget."""
        ok, state = svc.ready()
        return JSONResponse({"ready": ok, **state}, status_code=200 if ok else 503)

    @ops.get("/metrics")
    def prometheus() -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    # ------------------------------------------------------------------------- admin
    admin = APIRouter(prefix="/admin", tags=["admin"])

    @admin.post("/reload", response_model=Reload, dependencies=[Depends(require_admin)])
    def reload(svc: Svc):
        """Load the registry's production version now (when it moved) and swap it in."""
        return Reload(**svc.reload(why="admin reload"))

    # -------------------------------------------------------------------------- demo
    page = (STATIC / "index.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    for router in (recs, events, ops, admin):
        app.include_router(router)
    return app
