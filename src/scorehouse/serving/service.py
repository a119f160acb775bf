"""HTTP lookup service (`scorehouse serve`): FastAPI over one `Client`.

    GET  /v1/scores/{entity_id}   one score (422 for an id that names no entity)
    POST /v1/scores:batch         {"ids": [...]} → {"results": [...]}, at most MAX_BATCH ids
    GET  /healthz                 200 when Redis answers, else 503 (lookups still answer defaults)
    GET  /metrics                 Prometheus text

Handlers are `async def` and call the synchronous client directly: a hit is ~0.1 ms of
blocking I/O, cheaper than a thread-pool hop. Run one process per core for more.

Per-request cost is kept small because a lookup is tiny (a Redis round trip of ~0.1 ms;
`bench/lookup.py` times it, docs/performance.md): handlers return the JSON bytes
themselves (no response-model validation and encoding pass), metric children are bound
once, and the objects alive at startup are frozen out of the garbage collector, whose
full passes over FastAPI's, pydantic's and xgboost's objects otherwise stall a request
for milliseconds.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field, StrictInt, StrictStr

from scorehouse.serving import keys
from scorehouse.serving.client import Client, Source
from scorehouse.serving.fallback import ModelProvider
from scorehouse.settings import Settings

MAX_BATCH = 1000


class BatchRequest(BaseModel):
    # Strict: JSON `true` or `17.0` is no id (lax parsing would look up customer 1 or 17).
    ids: list[StrictInt | StrictStr] = Field(min_length=1, max_length=MAX_BATCH)


# Response models: they describe the responses in /openapi.json only. Handlers return
# `Score.to_dict()` bytes themselves, so no validation or encoding pass runs per request.
class ScoreResponse(BaseModel):
    """One score, as `Score.to_dict` gives it (docs/http-api.md)."""

    entity_id: str
    score: float = Field(ge=0, le=1)
    source: Source = Field(
        description="cache: the nightly batch; fallback: scored online; "
        "default: serving.default_score, see reason"
    )
    model_version: str | None = None
    ds: str | None = Field(None, description="the snapshot day of the live generation")
    staleness_days: int | None = None
    staleness_s: float | None = None
    generation: str | None = None
    reason: str | None = Field(None, description="why a default was returned")
    arm: Literal["champion", "challenger"] | None = Field(
        None,
        description="with a champion vs challenger experiment, the arm whose model gave a "
        "cached score (model_version is that model's)",
    )


# The 422 body for an id that names no entity is {"detail": "invalid entity id: ..."}; a body
# pydantic refuses (batch) gets FastAPI's usual list of errors.
_INVALID_ID: dict[int | str, dict[str, Any]] = {
    422: {"description": "An id that names no entity, or an invalid body"}
}


class BatchResponse(BaseModel):
    results: list[ScoreResponse] = Field(description="one score per id, in request order")


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
    redis_circuit: str
    model_circuit: str
    generation: str | None
    ds: str | None
    model_version: str | None


def create_app(
    settings: Settings, *, client: Client | None = None, model: ModelProvider | None = None
) -> FastAPI:
    """The service around `client` (default: `Client(settings, model=model)`, whose fallback is
    the MLflow champion unless `model` is given)."""
    if client is None:
        client = Client(settings, model=model)
    registry = CollectorRegistry()
    lookups = Counter(
        "scorehouse_lookups", "Scores returned, by source", ["source"], registry=registry
    )
    latency = Histogram(
        "scorehouse_lookup_seconds",
        "Lookup latency inside the service, by endpoint",
        ["endpoint"],
        buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
        registry=registry,
    )
    invalid = Counter(
        "scorehouse_invalid_ids", "Requests rejected for an invalid id", registry=registry
    )
    staleness = Gauge(
        "scorehouse_generation_staleness_days",
        "Days between the live generation's ds and today",
        registry=registry,
    )
    breaker = Gauge(
        "scorehouse_redis_circuit_open",
        "1 while the Redis circuit breaker is open",
        registry=registry,
    )

    # Children bound once: `labels()` per request is a locked dict lookup each time.
    by_source = {source: lookups.labels(source) for source in ("cache", "fallback", "default")}
    single_latency = latency.labels("single")
    batch_latency = latency.labels("batch")

    app = FastAPI(title="scorehouse scores", version="1", lifespan=_freeze_startup_objects)
    app.state.client = client

    def _invalid(exc: keys.InvalidEntityId) -> HTTPException:
        invalid.inc()
        return HTTPException(status_code=422, detail=f"invalid entity id: {exc}")

    def _one(entity_id: str) -> Response:
        start = time.perf_counter()
        try:
            result = client.get(entity_id)
        except keys.InvalidEntityId as exc:
            raise _invalid(exc) from None
        by_source[result.source].inc()
        body = _json(result.to_dict())
        single_latency.observe(time.perf_counter() - start)
        return Response(body, media_type="application/json")

    async def score_fast(request: Request) -> Response:
        return _one(request.path_params["entity_id"])

    # The hot path as a plain Starlette route, matched first: FastAPI's per-request
    # dependency solving and parameter validation cost about as much as the Redis round
    # trip itself (~0.1 ms, profiled). The FastAPI route below has the same behaviour and
    # only documents the endpoint in the OpenAPI schema.
    app.add_route("/v1/scores/{entity_id}", score_fast, methods=["GET"], include_in_schema=False)

    @app.get(
        "/v1/scores/{entity_id}",
        response_class=JSONResponse,
        response_model=ScoreResponse,
        responses=_INVALID_ID,
    )
    async def score(entity_id: str) -> Response:
        return _one(entity_id)

    @app.post(
        "/v1/scores:batch",
        response_class=JSONResponse,
        response_model=BatchResponse,
        responses=_INVALID_ID,
    )
    async def batch(request: BatchRequest) -> Response:
        start = time.perf_counter()
        try:
            results = client.get_many(request.ids)
        except keys.InvalidEntityId as exc:
            raise _invalid(exc) from None
        for result in results:
            by_source[result.source].inc()
        body = _json({"results": [r.to_dict() for r in results]})
        batch_latency.observe(time.perf_counter() - start)
        return Response(body, media_type="application/json")

    @app.get(
        "/healthz",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "Redis does not answer"}},
    )
    async def healthz() -> JSONResponse:
        redis_ok = client.ping()
        info = client.generation() if redis_ok else None
        body = {
            "status": "ok" if redis_ok and info else "degraded",
            "redis": redis_ok,
            "redis_circuit": client.redis_breaker.state,
            "model_circuit": client.model_breaker.state,
            "generation": info.generation if info else None,
            "ds": info.ds.isoformat() if info else None,
            "model_version": info.model_version if info else None,
        }
        return JSONResponse(body, status_code=200 if redis_ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        info = client.generation()
        if info is not None:
            staleness.set((datetime.now(UTC).date() - info.ds).days)
        breaker.set(1 if client.redis_breaker.state == "open" else 0)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _json(body: dict[str, Any]) -> bytes:
    """The bytes `JSONResponse` would send for `body` (compact, UTF-8)."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@asynccontextmanager
async def _freeze_startup_objects(app: FastAPI) -> AsyncIterator[None]:
    # Everything alive once the app starts (FastAPI, pydantic, xgboost, the routes) lives as
    # long as the process. A full collection walks all of it (~176k objects): 0.1-0.3 s on
    # a loaded 2-core host, stalling whatever lookup is in flight. Frozen objects are skipped
    # by every collection.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()  # an app stopped inside a longer-lived process (tests) gives them back


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Run the service with uvicorn (uvloop + httptools when installed)."""
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=host or settings.serving.host,
        port=port or settings.serving.port,
        loop="auto",
        http="auto",
        access_log=False,
    )
