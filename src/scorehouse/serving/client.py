"""`Client`: read scores by entity id, with the online fallback and a default that never raises.

A lookup reads the cached pointer's generation (the pointer is re-read at most every
`pointer_ttl_ms`) and pipelines one HGET per id. A miss is scored on the spot: the stored
feature vector (or the no-history vector for an unknown id) through the fallback model, by
default the MLflow champion, so the Client, the HTTP service and `scorehouse lookup` give one
answer for one id. A lookup never writes: generations are written only by the publisher, so
anonymous reads cannot fill Redis or change what a generation holds. Any fault (Redis down or
slow, no model, a bad vector) yields the configured default score with source="default";
circuit breakers stop a dead dependency from costing a timeout on every request. Only an
invalid id raises (`keys.InvalidEntityId`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from scorehouse.features.registry import entity_key, feature_names, no_history_vector
from scorehouse.serving import keys
from scorehouse.serving.connection import AnyRedis, RedisParams
from scorehouse.serving.fallback import MlflowChampion, ModelProvider, feature_matrix, predict
from scorehouse.serving.generation import GenerationInfo
from scorehouse.settings import Settings

log = logging.getLogger(__name__)

Source = Literal["cache", "fallback", "default"]


@dataclass(frozen=True)
class Score:
    """What a lookup returns; `reason` says why a default was returned."""

    entity_id: str
    score: float
    source: Source
    model_version: str | None = None
    ds: date | None = None
    staleness_days: int | None = None
    staleness_s: float | None = None
    generation: str | None = None
    reason: str | None = None
    # The experiment arm whose model gave a cached score (None: no experiment, or not cached).
    arm: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "score": self.score,
            "source": self.source,
            "model_version": self.model_version,
            "ds": self.ds.isoformat() if self.ds else None,
            "staleness_days": self.staleness_days,
            "staleness_s": None if self.staleness_s is None else round(self.staleness_s, 3),
            "generation": self.generation,
            "reason": self.reason,
            "arm": self.arm,
        }


class CircuitBreaker:
    """Open after `threshold` consecutive failures; after `cooldown_s` let one call try again."""

    def __init__(
        self,
        threshold: int = 3,
        cooldown_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        if self.opened_at is None:  # closed: no lock on the hot path (one attribute read)
            return True
        with self._lock:
            if self.opened_at is None:
                return True
            if self.clock() - self.opened_at >= self.cooldown_s:
                self.opened_at = self.clock()  # one trial per cooldown
                return True
            return False

    def success(self) -> None:
        if not self.failures and self.opened_at is None:  # nothing to reset: no lock
            return
        with self._lock:
            self.failures = 0
            self.opened_at = None

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold:
                self.opened_at = self.clock()


@dataclass(frozen=True)
class _Live:
    generation: str
    info: GenerationInfo
    read_at: float


class Client:
    """Score lookups against the live generation. Thread-safe; one per process is enough.

    `model` scores misses (default: `MlflowChampion(settings)`); `fallback=False` answers a
    miss with the default score instead. `id_type` is the entity key's type (default: the
    project's): with "int64" only canonical non-negative int64 ids are valid
    (`keys.checked_id`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model: ModelProvider | None = None,
        fallback: bool = True,
        id_type: keys.IdType | None = None,
        redis_client: AnyRedis | None = None,
        pointer_ttl_ms: int = 1000,
        breaker_threshold: int = 3,
        breaker_cooldown_s: float = 2.0,
    ) -> None:
        if id_type is None:
            id_type = "string" if entity_key().type == "string" else "int64"
        if id_type not in keys.ID_TYPES:
            raise ValueError(f"id_type must be one of {keys.ID_TYPES}, got {id_type!r}")
        if model is not None and not fallback:
            raise ValueError("a fallback model was given with fallback=False")
        self.settings = settings
        self.ns = settings.redis.namespace
        self.default_score = settings.serving.default_score
        self.id_type = id_type
        self.model: ModelProvider | None = None
        if fallback:
            self.model = model if model is not None else MlflowChampion(settings)
        self.pointer_ttl_s = pointer_ttl_ms / 1000
        timeout = settings.serving.timeout_ms / 1000
        self._params = RedisParams.from_settings(settings.redis, socket_timeout=timeout, retries=0)
        self._redis = redis_client
        self._direct: _Direct | None = None
        self._live: _Live | None = None
        self._lock = threading.Lock()
        self.redis_breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_s)
        self.model_breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_s)
        self._names = tuple(feature_names())
        self._no_history = no_history_vector()
        self._booster: tuple[str, Any, Any] | None = None

    # --- public API ---------------------------------------------------------------------

    def get(self, entity_id: object) -> Score:
        """One score; raises only `keys.InvalidEntityId`."""
        return self.get_many([entity_id])[0]

    def get_many(self, entity_ids: Iterable[object]) -> list[Score]:
        """Scores in input order (one pipelined round trip for the hits)."""
        ids = [keys.checked_id(e, self.id_type) for e in entity_ids]
        if not ids:
            return []
        if not self.redis_breaker.allow():
            return [self._default(i, "redis circuit open") for i in ids]
        try:
            live = self._current()
            if live is None:
                self.redis_breaker.success()
                return [self._default(i, "no generation published") for i in ids]
            slots = [self._slot(live.info, i) for i in ids]
            raw = self._hget_slots(
                functools.partial(keys.score_key, self.ns, live.generation), slots
            )
            scores = [None if value is None else keys.decode_score(value) for value in raw]
            self.redis_breaker.success()
        except Exception as exc:  # a fault must never reach the caller
            return self._redis_failed(exc, ids)
        results: list[Score | None] = [
            None if score is None else self._cached(i, score, live.info)
            for i, score in zip(ids, scores, strict=True)
        ]
        misses = [n for n, r in enumerate(results) if r is None]
        if misses:
            for n, score in zip(
                misses,
                self._fallback(live, [ids[n] for n in misses], [slots[n] for n in misses]),
                strict=True,
            ):
                results[n] = score
        return [r for r in results if r is not None]

    def generation(self) -> GenerationInfo | None:
        """Metadata of the live generation (cached like the pointer); None if none or down."""
        try:
            live = self._current()
        except Exception:
            return None
        return live.info if live else None

    def ping(self) -> bool:
        try:
            return bool(self._conn().ping())
        except Exception:
            return False

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        if self._redis is not None:
            self._redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------

    def _conn(self) -> AnyRedis:
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    self._redis = self._params.connect()
        return self._redis

    def _wire(self) -> _Direct | None:
        """The direct HGET path on a single server; None on a cluster (routed by slot)."""
        direct = self._direct
        if direct is None:
            conn = self._conn()
            if not isinstance(conn, redis.Redis):
                return None
            with self._lock:
                if self._direct is None:
                    self._direct = _Direct(conn)
                direct = self._direct
        return direct

    def _hget_slots(
        self, key_of: Callable[[str], str], slots: Sequence[keys.Slot | None]
    ) -> list[Any]:
        """The field of each slot in the hash `key_of(bucket)` in one round trip, None where
        there is no slot."""
        wanted = [(key_of(slot.bucket), slot.field) for slot in slots if slot is not None]
        direct = self._wire()
        if not wanted:
            fetched: list[Any] = []
        elif direct is not None:
            fetched = direct.hgets(wanted)
        else:
            pipe = self._conn().pipeline(transaction=False)
            for key, field in wanted:
                pipe.hget(key, field)
            fetched = pipe.execute()
        replies = iter(fetched)
        return [next(replies) if slot is not None else None for slot in slots]

    def _redis_failed(self, exc: Exception, ids: Sequence[str]) -> list[Score]:
        self.redis_breaker.failure()
        self._live = None
        log.warning("redis lookup failed: %s", _short(exc))
        return [self._default(i, f"redis: {_short(exc)}") for i in ids]

    def _current(self) -> _Live | None:
        live = self._live
        now = time.monotonic()
        if live is not None and now - live.read_at < self.pointer_ttl_s:
            return live
        conn = self._conn()
        raw = conn.get(keys.pointer_key(self.ns))
        if raw is None:
            self._live = None
            return None
        generation = raw.decode() if isinstance(raw, bytes) else str(raw)
        if live is not None and live.generation == generation:
            info = live.info
        else:
            meta = conn.hgetall(keys.meta_key(self.ns, generation))
            if not meta:
                raise LookupError(f"generation {generation} has no metadata")
            info = GenerationInfo.from_meta(generation, meta)
        self._live = _Live(generation, info, now)
        return self._live

    def _slot(self, info: GenerationInfo, entity_id: str) -> keys.Slot | None:
        try:
            return keys.slot_of_canonical(entity_id, info.bucket_size, info.string_buckets)
        except keys.InvalidEntityId:
            return None  # a string id in a generation without string buckets: a miss

    def _fallback(self, live: _Live, ids: list[str], slots: list[keys.Slot | None]) -> list[Score]:
        info = live.info
        if self.model is None:
            return [self._default(i, "fallback disabled", info) for i in ids]
        if not self.model_breaker.allow():
            return [self._default(i, "model circuit open", info) for i in ids]
        try:
            if info.feature_names and info.feature_names != self._names:
                raise ValueError("the generation's feature order differs from the registry")
            version, booster = self._single_threaded(*self.model.current())
            vectors = self._hget_slots(
                functools.partial(keys.features_key, self.ns, live.generation), slots
            )
            scores = predict(booster, feature_matrix(vectors, len(self._names), self._no_history))
            if not np.isfinite(scores).all():  # NaN is no score, and no valid JSON either
                raise ValueError("the model returned a non-finite score")
            self.model_breaker.success()
        except Exception as exc:
            self.model_breaker.failure()
            log.warning("fallback failed: %s", _short(exc))
            return [self._default(i, f"fallback: {_short(exc)}", info) for i in ids]
        return [
            self._score(i, float(s), "fallback", info, version)
            for i, s in zip(ids, scores, strict=True)
        ]

    def _single_threaded(self, version: str, booster: Any) -> tuple[str, Any]:
        # One-row predictions gain nothing from OpenMP threads and lose milliseconds to
        # thread wake-ups on a busy host; keep a single-threaded copy per model version.
        cached = self._booster
        if cached is None or cached[0] != version or cached[1] is not booster:
            single = booster.copy()
            single.set_param({"nthread": 1})
            cached = self._booster = (version, booster, single)
        return version, cached[2]

    def _score(
        self,
        entity_id: str,
        score: float,
        source: Source,
        info: GenerationInfo,
        version: str | None,
    ) -> Score:
        days, seconds = _staleness(info)
        return Score(entity_id, score, source, version, info.ds, days, seconds, info.generation)

    def _cached(self, entity_id: str, score: float, info: GenerationInfo) -> Score:
        """A score read from the generation; with an experiment, the arm that served it and
        that arm's model version (the publisher wrote the arm's score, docs/redis-keys.md)."""
        hit = self._score(entity_id, score, "cache", info, info.model_version)
        experiment = info.experiment
        if experiment is None:
            return hit
        arm = keys.experiment_arm(experiment.name, entity_id, experiment.slots)
        if arm == "challenger":
            return replace(hit, arm=arm, model_version=experiment.challenger_version)
        return replace(hit, arm=arm)

    def _default(self, entity_id: str, reason: str, info: GenerationInfo | None = None) -> Score:
        if info is None:
            return Score(entity_id, self.default_score, "default", reason=reason)
        days, seconds = _staleness(info)
        return Score(
            entity_id,
            self.default_score,
            "default",
            info.model_version,
            info.ds,
            days,
            seconds,
            info.generation,
            reason,
        )


class _Direct:
    """HGETs written straight onto connections of a redis-py client's pool, replies read with
    its parser (hiredis where installed).

    redis-py's command path (pool lock, retry wrapper, event dispatch, metrics recorder, the
    reply callback) costs ~10 µs per call, a third of a loopback hit; `bench/lookup.py`
    times this path against a bare redis-py HGET (docs/performance.md). Connections are
    taken from the pool once and kept; after any error a connection is closed before reuse
    (unread replies must never be read by the next call), and the next send reconnects it.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.pool = client.connection_pool
        self.idle: list[Any] = []  # list.pop/append are atomic: no lock on the hot path

    def hgets(self, wanted: Sequence[tuple[str, str]]) -> list[Any]:
        try:
            conn = self.idle.pop()
        except IndexError:
            conn = self.pool.get_connection()
        packed = [b"".join([_hget_command(key, field) for key, field in wanted])]
        try:
            for attempt in range(2):
                try:
                    conn.send_packed_command(packed, check_health=False)
                    replies = [conn.read_response() for _ in wanted]
                    break
                except RedisConnectionError:
                    # A kept connection may have been closed by a restarted server: one
                    # retry on a new socket (HGET is idempotent); a dead server fails again.
                    conn.disconnect()
                    if attempt:
                        raise
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self.idle.append(conn)
        return replies

    def close(self) -> None:
        while self.idle:
            conn = self.idle.pop()
            conn.disconnect()
            self.pool.release(conn)


def _hget_command(key: str, field: str) -> bytes:
    k, f = key.encode(), field.encode()
    return b"*3\r\n$4\r\nHGET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(f), f)


def _staleness(info: GenerationInfo) -> tuple[int, float | None]:
    """Days since the generation's ds (UTC dates) and seconds since it was loaded."""
    now = time.time()
    ds_midnight, loaded = _epochs(info.ds, info.loaded_at)
    return int((now - ds_midnight) // 86400), None if loaded is None else now - loaded


@functools.lru_cache(maxsize=16)
def _epochs(ds: date, loaded_at: str) -> tuple[float, float | None]:
    # Computed once per generation, not on every lookup (datetime arithmetic per call
    # was a visible share of a ~40 µs hit).
    midnight = datetime(ds.year, ds.month, ds.day, tzinfo=UTC).timestamp()
    try:
        parsed = datetime.fromisoformat(loaded_at)
    except ValueError:
        return midnight, None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return midnight, parsed.timestamp()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200]
