"""Redis generation administration (driver side): the pointer, the registry, removal.

Readers only ever follow `{ns}:current`; `flip` changes it in one compare-and-set after a
generation is complete and verified. Generations are registered in `{ns}:generations`
with a metadata hash each; old ones are removed with SCAN + UNLINK in batches, and one
publisher at a time holds `{ns}:lock` (`PublishLock`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

from redis.exceptions import RedisError, ResponseError

from scorehouse.errors import RedisLoadError, ValidationError
from scorehouse.serving import keys
from scorehouse.serving.connection import AnyRedis, RedisParams, masters
from scorehouse.serving.generation import GenerationInfo, _text
from scorehouse.settings import Settings

log = logging.getLogger(__name__)

# The lock expires soon after its publisher dies, and a new publisher waits that long for
# it: a retry right after a killed publish goes through. A heartbeat thread keeps the lock
# while the publisher lives.
LOCK_TTL_S = 15.0
LOCK_RENEW_S = 3.0
LOCK_POLL_S = 0.2
# Compare-and-set of the pointer: flip only if it still names what we verified against.
_FLIP = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


def current_generation(client: AnyRedis, ns: str) -> str | None:
    value = client.get(keys.pointer_key(ns))
    return _text(value) if value is not None else None


def read_generation(client: AnyRedis, ns: str, generation: str) -> GenerationInfo | None:
    meta = client.hgetall(keys.meta_key(ns, generation))
    return GenerationInfo.from_meta(generation, meta) if meta else None


def list_generations(client: AnyRedis, ns: str) -> list[str]:
    """Generations registered in `{ns}:generations`, oldest first."""
    return [_text(g) for g in client.zrange(keys.generations_key(ns), 0, -1)]


def scan_keys(
    client: AnyRedis, pattern: str, count: int = 1000
) -> Iterator[tuple[Any, list[bytes]]]:
    """(master, batch of keys) for every key matching `pattern` on every master."""
    for node in masters(client):
        cursor = 0
        while True:
            cursor, found = node.scan(cursor=cursor, match=pattern, count=count)
            if found:
                yield node, found
            if cursor == 0:
                break


def remove_generation(
    client: AnyRedis, ns: str, generation: str, batch: int = 1000, pause_s: float = 0.0
) -> int:
    """UNLINK every key of a generation in batches (memory is freed in the background)."""
    if current_generation(client, ns) == generation:
        raise RedisLoadError(f"refusing to remove the live generation {generation}")
    removed = 0
    for node, found in scan_keys(client, keys.generation_pattern(ns, generation), count=batch):
        pipe = node.pipeline(transaction=False)
        for key in found:  # single-key UNLINKs: cluster keys of one batch span many slots
            pipe.unlink(key)
        removed += sum(int(n) for n in pipe.execute())
        if pause_s:
            time.sleep(pause_s)
    client.zrem(keys.generations_key(ns), generation)
    return removed


def count_entries(client: AnyRedis, pattern: str) -> int:
    """Sum of HLEN over the buckets matching `pattern`."""
    total = 0
    for node, found in scan_keys(client, pattern):
        pipe = node.pipeline(transaction=False)
        for key in found:
            pipe.hlen(key)
        total += sum(int(n) for n in pipe.execute())
    return total


def flip(client: AnyRedis, ns: str, expected: str | None, new: str) -> None:
    """Point readers at `new` if the pointer still names `expected` (one atomic command)."""
    ok = client.eval(_FLIP, 1, keys.pointer_key(ns), expected or "", new)  # type: ignore[union-attr]
    if int(ok) != 1:
        raise RedisLoadError(
            f"{keys.pointer_key(ns)} changed during the load (expected {expected!r}); not flipped"
        )


def rollback(settings: Settings, client: AnyRedis | None = None) -> GenerationInfo:
    """Point readers back at the previous generation (kept by the last publish)."""
    ns = settings.redis.namespace
    client = client or RedisParams.from_settings(settings.redis).connect()
    live = current_generation(client, ns)
    if live is None:
        raise RedisLoadError(f"nothing to roll back: {keys.pointer_key(ns)} is not set")
    info = read_generation(client, ns, live)
    previous = info.previous if info else None
    target = read_generation(client, ns, previous) if previous else None
    if previous is None or target is None or target.status not in ("previous", "ready"):
        raise RedisLoadError(f"no previous generation to roll back to from {live}")
    entries = count_entries(client, keys.score_pattern(ns, previous))
    if entries < target.count:
        raise RedisLoadError(
            f"previous generation {previous} is incomplete ({entries} of {target.count} entries)"
        )
    flip(client, ns, live, previous)
    client.hset(keys.meta_key(ns, live), "status", "rolled_back")
    client.hset(keys.meta_key(ns, previous), "status", "live")
    log.info("rolled back %s -> %s", live, previous)
    return GenerationInfo.from_meta(previous, client.hgetall(keys.meta_key(ns, previous)))


def cleanup(client: AnyRedis, ns: str, keep: int) -> list[str]:
    """Remove every generation except the live one and its `keep - 1` predecessors."""
    live = current_generation(client, ns)
    kept: list[str] = []
    generation = live
    while generation and len(kept) < keep:
        kept.append(generation)
        info = read_generation(client, ns, generation)
        generation = info.previous if info else None
    removed = []
    for generation in list_generations(client, ns) + _unregistered(client, ns):
        if generation not in kept and generation not in removed:
            remove_generation(client, ns, generation)
            removed.append(generation)
    if removed:
        log.info("removed old generations %s (kept %s)", removed, kept)
    return removed


def _unregistered(client: AnyRedis, ns: str) -> list[str]:
    """Generations that own keys but are not in `{ns}:generations`: a failed load removes
    its generation at once, and a load task still running then may write a few more keys."""
    registered = set(list_generations(client, ns))
    found: set[str] = set()
    for _, batch in scan_keys(client, f"{ns}:*:*"):
        found |= {_text(key).split(":")[1] for key in batch}
    return sorted(found - registered)


def live_generation(settings: Settings) -> tuple[str | None, GenerationInfo | None]:
    """The generation readers follow now and its metadata (None, None before any publish)."""
    client = RedisParams.from_settings(settings.redis).connect()
    try:
        ns = settings.redis.namespace
        live = current_generation(client, ns)
        return live, read_generation(client, ns, live) if live else None
    finally:
        client.close()


def refuse_older(settings: Settings, ds: date) -> None:
    """Raise ValidationError (a refusal: retrying cannot help) when the live generation
    holds a newer day than `ds`: loading `ds` would turn every reader back to older scores."""
    live, info = live_generation(settings)
    if info is not None and info.ds > ds:
        raise ValidationError(
            f"publish {ds}: the live generation {live} holds {info.ds}, a newer day; readers "
            f"would go back to older scores. Pass --allow-older to publish {ds} anyway, or "
            "`scorehouse publish rollback` to return to the previous generation"
        )


# --- the publish lock --------------------------------------------------------------------


class PublishLock:
    """`{ns}:lock` (redis-py's Lock): one publisher at a time, kept by a heartbeat while
    this process lives and expiring LOCK_TTL_S after it dies."""

    def __init__(self, client: AnyRedis, key: str) -> None:
        # thread_local=False: the heartbeat thread renews the token the publisher took.
        self.lock = client.lock(
            key,
            timeout=LOCK_TTL_S,
            sleep=LOCK_POLL_S,
            blocking_timeout=LOCK_TTL_S + 2 * LOCK_POLL_S,
            thread_local=False,
        )
        try:
            taken = self.lock.acquire()
        except ResponseError as exc:
            raise RedisLoadError(f"cannot take the publish lock {key}: {exc}") from exc
        if not taken:
            raise RedisLoadError(
                f"another publish holds {key} and keeps it alive; run this one once that "
                "publish has finished"
            )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="publish-lock", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(LOCK_RENEW_S):
            # Errors are the publish's to report (a lost connection fails its next command);
            # the heartbeat only keeps trying.
            with contextlib.suppress(RedisError):
                self.lock.reacquire()

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(RedisError):
            self.lock.release()
