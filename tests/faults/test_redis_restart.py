"""A redis-server killed with SIGKILL in the middle of a publish, then restarted from its
last snapshot: readers find the previous generation, a retry finishes, nothing is orphaned."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from home_settings import home_env
from redis_support import SLOW_LOAD, kill_mid_load
from scorehouse.errors import RedisLoadError
from scorehouse.localstack import RedisServer
from scorehouse.publish.generations import count_entries
from scorehouse.publish.sequence import PublishRequest, publish
from scorehouse.serving import Client
from scorehouse.settings import Settings, load_settings

IDS = list(range(6000))


def _scores(spark: SparkSession, value: float) -> DataFrame:
    return spark.createDataFrame([(i, value) for i in IDS], "customer_id long, score double")


def _settings(settings: Settings, url: str, **extra: str) -> Settings:
    return load_settings(environ=home_env(settings.home, SCOREHOUSE_REDIS__URL=url, **extra))


def test_redis_killed_mid_publish_and_restarted_serves_the_last_generation_and_a_retry_finishes(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", persistence=True, maxmemory="256mb").start()
    try:
        cfg = _settings(settings, server.url)
        old = publish(spark, cfg, PublishRequest(ds=date(2026, 1, 15), scores=_scores(spark, 0.25), model_name="m", model_version="1"))  # fmt: skip
        server.client().save()  # what the restarted server will load
        slow = _settings(settings, server.url, **SLOW_LOAD)
        killer = kill_mid_load(server)
        with pytest.raises(RedisLoadError, match=f"readers still see {old.generation}"):
            publish(spark, slow, PublishRequest(ds=date(2026, 1, 16), scores=_scores(spark, 0.75), model_name="m", model_version="1"))  # fmt: skip
        killer.join()
        assert not server.ping()

        server.start()  # same port and folder: the last snapshot comes back
        client = server.client()
        with Client(cfg, fallback=False) as app:
            found = app.get_many(IDS[::250])
        assert {(s.source, s.score, s.generation) for s in found} == {
            ("cache", 0.25, old.generation)
        }

        done = publish(spark, cfg, PublishRequest(ds=date(2026, 1, 16), scores=_scores(spark, 0.75), model_name="m", model_version="1"))  # fmt: skip
        assert client.get("sh:current") == done.generation.encode()
        assert count_entries(client, f"sh:{done.generation}:s:*") == len(IDS)
        named = {k.decode().split(":")[1] for k in client.scan_iter(match="sh:*:*")}
        assert named <= {done.generation, old.generation}
    finally:
        server.stop()
