"""What the end-to-end nightly tests share: the generated history's shape, the run
environment of a home, and what Redis readers follow now."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import redis

from home_settings import home_env
from scorehouse.serving import keys
from scorehouse.settings import Settings

CUSTOMERS = 800
DAYS = 200
WARM_UP = 50  # as-of dates start once customers have some history
END = date(2026, 10, 31)
TRAIN_AS_OF = END - timedelta(days=4)


def nightly_env(home: Path, redis_url: str | None = None) -> dict[str, str]:
    env = home_env(
        home,
        SCOREHOUSE_MODEL__NUM_BOOST_ROUND="30",
        # A data error is never retried; a crash would be, without the wait.
        SCOREHOUSE_ORCHESTRATION__RETRY_DELAY_S="0",
    )
    if redis_url:
        env["SCOREHOUSE_REDIS__URL"] = redis_url
    return env


def live(settings: Settings) -> tuple[str, date, int]:
    """(generation, its ds, scores stored) that readers follow now."""
    client = redis.Redis.from_url(settings.redis.url)
    ns = settings.redis.namespace
    generation = client.get(keys.pointer_key(ns)).decode()
    ds = date.fromisoformat(client.hget(keys.meta_key(ns, generation), "ds").decode())
    stored = sum(
        client.hlen(key)
        for key in client.scan_iter(match=keys.score_pattern(ns, generation), count=1000)
    )
    client.close()
    return generation, ds, stored
