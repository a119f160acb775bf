"""`Client`: read scores by entity id, with the online fallback and a default that never raises.

A lookup reads the cached pointer's generation (the pointer is re-read at most every
`pointer_ttl_ms`), pipelines one HGET per id, and on a miss reads the stored feature vector,
scores it in-process with the champion booster and writes the score back into the same
generation. Any fault (Redis down or slow, no model, a bad vector) yields the configured
default score with source="default"; circuit breakers stop a dead dependency from costing
a timeout on every request. Only an invalid id raises (`keys.InvalidEntityId`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from scorehouse.features.registry import feature_names, no_history_vector
from scorehouse.serving import keys
from scorehouse.serving.connection import AnyRedis, RedisParams
from scorehouse.serving.fallback import ModelProvider, feature_matrix, predict
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
        with self._lock:
            if self.opened_at is None:
                return True
            if self.clock() - self.opened_at >= self.cooldown_s:
                self.opened_at = self.clock()  # one trial per cooldown
                return True
            return False

    def success(self) -> None:
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
    """Score lookups against the live generation. Thread-safe; one per process is enough."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: ModelProvider | None = None,
        redis_client: AnyRedis | None = None,
        pointer_ttl_ms: int = 1000,
        write_back: bool = True,
        breaker_threshold: int = 3,
        breaker_cooldown_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.ns = settings.redis.namespace
        self.default_score = settings.serving.default_score
        self.model = model
        self.write_back = write_back
        self.pointer_ttl_s = pointer_ttl_ms / 1000
        timeout = settings.serving.timeout_ms / 1000
        self._params = RedisParams.from_settings(settings.redis, socket_timeout=timeout, retries=0)
        self._redis = redis_client
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
        ids = [keys.canonical_id(e) for e in entity_ids]
        if not ids:
            return []
        if not self.redis_breaker.allow():
            return [self._default(i, "redis circuit open") for i in ids]
        try:
            live = self._current()
            if live is None:
                self.redis_breaker.success()
                return [self._default(i, "no generation published") for i in ids]
            results = self._lookup(live, ids)
            self.redis_breaker.success()
            return results
        except Exception as exc:  # a fault must never reach the caller
            self.redis_breaker.failure()
            self._live = None
            log.warning("redis lookup failed: %s", _short(exc))
            return [self._default(i, f"redis: {_short(exc)}") for i in ids]

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
            return keys.slot_of(entity_id, info.bucket_size, info.string_buckets)
        except keys.InvalidEntityId:
            return None  # a string id in a generation without string buckets: a miss

    def _lookup(self, live: _Live, ids: Sequence[str]) -> list[Score]:
        info = live.info
        conn = self._conn()
        slots = [self._slot(info, i) for i in ids]
        raw = _hget_slots(conn, functools.partial(keys.score_key, self.ns, live.generation), slots)
        results: list[Score | None] = [
            None
            if value is None
            else self._score(i, keys.decode_score(value), "cache", info, info.model_version)
            for i, value in zip(ids, raw, strict=True)
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

    def _fallback(self, live: _Live, ids: list[str], slots: list[keys.Slot | None]) -> list[Score]:
        info = live.info
        if self.model is None:
            return [self._default(i, "no fallback model configured", info) for i in ids]
        if not self.model_breaker.allow():
            return [self._default(i, "model circuit open", info) for i in ids]
        try:
            if info.feature_names and info.feature_names != self._names:
                raise ValueError("the generation's feature order differs from the registry")
            version, booster = self._single_threaded(*self.model.current())
            vectors = _hget_slots(
                self._conn(),
                functools.partial(keys.features_key, self.ns, live.generation),
                slots,
            )
            scores = predict(booster, feature_matrix(vectors, len(self._names), self._no_history))
            self.model_breaker.success()
        except Exception as exc:
            self.model_breaker.failure()
            log.warning("fallback failed: %s", _short(exc))
            return [self._default(i, f"fallback: {_short(exc)}", info) for i in ids]
        if self.write_back and version == info.model_version:
            # Only the generation's own model may fill its gaps: a newer champion's scores
            # would mix two models under one generation label.
            self._write_back(live, slots, scores)
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

    def _write_back(self, live: _Live, slots: list[keys.Slot | None], scores: Any) -> None:
        try:
            pipe = self._conn().pipeline(transaction=False)
            for slot, score in zip(slots, scores, strict=True):
                if slot is not None:
                    pipe.hset(
                        keys.score_key(self.ns, live.generation, slot.bucket),
                        slot.field,
                        keys.encode_score(float(score)),
                    )
            pipe.execute()
        except Exception as exc:  # the score is still good; the next miss retries the write
            log.warning("fallback write-back failed: %s", _short(exc))

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


def _hget_slots(
    conn: AnyRedis, key_of: Callable[[str], str], slots: Sequence[keys.Slot | None]
) -> list[Any]:
    """The field of each slot in the hash `key_of(bucket)`, None where there is no slot.

    One id is a plain HGET: a pipeline object costs ~15 µs on the hot path.
    """
    if len(slots) == 1:
        only = slots[0]
        return [None if only is None else conn.hget(key_of(only.bucket), only.field)]
    pipe = conn.pipeline(transaction=False)
    for slot in slots:
        if slot is not None:
            pipe.hget(key_of(slot.bucket), slot.field)
    fetched = iter(pipe.execute())
    return [next(fetched) if slot is not None else None for slot in slots]


def _staleness(info: GenerationInfo) -> tuple[int, float | None]:
    now = datetime.now(UTC)
    days = (now.date() - info.ds).days
    loaded_at = _parse_loaded_at(info.loaded_at)
    return days, None if loaded_at is None else (now - loaded_at).total_seconds()


@functools.lru_cache(maxsize=16)
def _parse_loaded_at(text: str) -> datetime | None:
    # Parsed once per generation, not on every lookup.
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200]
