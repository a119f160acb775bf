"""Publishing and lookups against a local 3-master Redis Cluster, and over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
import xgboost as xgb
from pyspark.sql import SparkSession
from redis.cluster import RedisCluster as ClusterClient

from scorehouse.features.registry import feature_names
from scorehouse.localstack import RedisCluster, RedisServer, make_test_certificates
from scorehouse.publish.generations import rollback
from scorehouse.publish.sequence import PublishRequest, publish
from scorehouse.serving import Client, StaticModel, keys
from scorehouse.serving.connection import RedisParams
from scorehouse.settings import Settings, load_settings


def make_settings(url: str, **env: str) -> Settings:
    return load_settings(
        environ={
            "SCOREHOUSE_SPARK__PROFILE": "test",
            "SCOREHOUSE_REDIS__URL": url,
            "SCOREHOUSE_REDIS__NAMESPACE": "sh",
            **env,
        }
    )


def frames(n: int) -> tuple[pd.DataFrame, pd.DataFrame, xgb.Booster]:
    rng = np.random.default_rng(21)
    names = feature_names()
    features = pd.DataFrame(
        {"customer_id": np.arange(n), **{c: rng.poisson(4, n).astype(float) for c in names}}
    )
    matrix = features[names].to_numpy(dtype=np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(matrix, label=(matrix[:, 2] > 4).astype(float), feature_names=names),
        num_boost_round=8,
    )
    scores = pd.DataFrame(
        {"customer_id": np.arange(n), "score": booster.inplace_predict(matrix).astype(float)}
    )
    return scores, features, booster


def test_publish_spreads_over_the_cluster_and_lookups_follow(
    spark: SparkSession, redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    # The first lookup discovers the cluster's slots; on a loaded 2-core machine that can
    # outlast the 50 ms serving timeout and turn every lookup into a default score.
    # Where the values land is what this test checks, not latency (bench/lookup.py does).
    cfg = make_settings(redis_cluster_url, SCOREHOUSE_SERVING__TIMEOUT_MS="2000")
    scores, features, booster = frames(30_000)
    ids_frame = spark.createDataFrame(scores)
    info = publish(
        spark,
        cfg,
        PublishRequest(
            ds=date(2026, 1, 15),
            scores=ids_frame,
            features=spark.createDataFrame(features),
            model_name="propensity",
            model_version="7",
        ),
    )
    cluster = ClusterClient(host="127.0.0.1", port=redis_cluster.servers[0].port)
    assert cluster.get("sh:current") == info.generation.encode()
    assert cluster.exists("sh:lock") == 0  # the publish lock's release script ran on its slot
    # 30,000 / bucket_size score + as many feature buckets land on every master, each pair
    # on one slot.
    buckets = 30_000 // cfg.redis.bucket_size
    per_master = [
        len(server.client().keys(f"sh:{info.generation}:s:*")) for server in redis_cluster.servers
    ]
    assert sum(per_master) == buckets and min(per_master) > 0
    for server in redis_cluster.servers:
        node = server.client()
        for key in node.keys(f"sh:{info.generation}:s:*"):
            assert node.exists(key.replace(b":s:", b":f:")) == 1

    client = Client(cfg, model=StaticModel("7", booster))
    results = client.get_many(range(0, 30_000, 997))
    assert {r.source for r in results} == {"cache"}
    assert [r.score for r in results] == pytest.approx(list(scores.score[::997]), abs=5e-10)
    slot = keys.slot_of(12345, cfg.redis.bucket_size, 0)
    bucket = keys.score_key("sh", info.generation, slot.bucket)
    stored = cluster.hget(bucket, slot.field)
    cluster.hdel(bucket, slot.field)
    fallback = client.get(12345)
    assert fallback.source == "fallback" and abs(fallback.score - scores.score[12345]) <= 1e-6
    assert client.get(12345).source == "fallback"  # a miss is never written back
    cluster.hset(bucket, slot.field, stored)  # complete again: the rollback below checks it

    second = publish(
        spark,
        cfg,
        PublishRequest(
            ds=date(2026, 1, 16), scores=ids_frame, model_name="propensity", model_version="7"
        ),
    )
    assert second.previous == info.generation
    assert rollback(cfg).generation == info.generation
    assert cluster.get("sh:current") == info.generation.encode()
    cluster.close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    directory = tmp_path_factory.mktemp("redis-tls")
    server = RedisServer(directory, tls=make_test_certificates(directory / "certs"))
    with server:
        yield server


def test_tls_publish_and_lookup(spark: SparkSession, tls_server: RedisServer) -> None:
    assert tls_server.tls is not None
    cfg = make_settings(
        f"redis://127.0.0.1:{tls_server.port}/0",
        SCOREHOUSE_REDIS__TLS="true",
        SCOREHOUSE_REDIS__TLS_CA_FILE=str(tls_server.tls.ca),
    )
    with pytest.raises(redis.exceptions.ConnectionError):  # the plain protocol is refused
        redis.Redis(host="127.0.0.1", port=tls_server.port, socket_timeout=1, retry=None).ping()
    scores, _, _ = frames(1500)
    info = publish(
        spark,
        cfg,
        PublishRequest(
            ds=date(2026, 1, 15),
            scores=spark.createDataFrame(scores),
            model_name="m",
            model_version="1",
        ),
    )
    result = Client(cfg).get(1499)
    assert result.source == "cache" and result.generation == info.generation
    assert result.score == pytest.approx(scores.score[1499], abs=5e-10)
    assert "TLS" in str(RedisParams.from_settings(cfg.redis))


def test_wrong_ca_is_rejected(tls_server: RedisServer, tmp_path: Path) -> None:
    other = make_test_certificates(tmp_path / "other")
    cfg = make_settings(
        f"rediss://127.0.0.1:{tls_server.port}/0", SCOREHOUSE_REDIS__TLS_CA_FILE=str(other.ca)
    )
    assert Client(cfg).get(1).source == "default"
