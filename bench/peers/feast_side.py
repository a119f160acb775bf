"""Feast's side of bench/feast_peer.py; run by the Python of Feast's own virtualenv.

    <feast-venv>/bin/python bench/peers/feast_side.py JOB.json

JOB.json (written by bench/feast_peer.py) names the mode, the Parquet inputs, the Spark
conf (the same profile as scorehouse's session), the Redis port and where the result JSON
goes. Only Feast's public API is called. Each timing covers Feast's own work: the Spark
session, the registry and `apply` are set up before the clock starts.

- `training_set`: `get_historical_features` (Spark offline store) for the labelled rows,
  the result written as Parquet through `to_spark_df()`, `runs` times.
- `materialize`: `materialize` (default engine, Redis online store) of the scores view, then
  of the feature-vector view, into an emptied Redis, `runs` times; Redis `used_memory`
  after each; then single-entity `get_online_features` for the sampled ids, each view.

This file imports nothing from scorehouse: the project's venv never has Feast and Feast's
venv never has scorehouse.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feast
import numpy as np
import pyspark
import redis
from feast import Entity, FeatureStore, FeatureView, Field, ValueType
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.repo_config import RepoConfig
from feast.types import Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp
from pyspark import SparkConf
from pyspark.sql import SparkSession

PROJECT = "scorehouse_bench"
# Spark column types → Feast field types (Feast maps dates to UNIX_TIMESTAMP too).
FEAST_TYPES = {
    "bigint": Int64,
    "int": Int32,
    "smallint": Int32,
    "tinyint": Int32,
    "double": Float64,
    "float": Float32,
    "boolean": Bool,
    "string": String,
    "date": UnixTimestamp,
    "timestamp": UnixTimestamp,
}


def spark_session(conf: dict[str, str]) -> SparkSession:
    """The session Feast's Spark offline store picks up (it reuses the active one)."""
    spark = SparkSession.builder.config(conf=SparkConf().setAll(list(conf.items()))).getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def feature_store(repo: Path, job: dict[str, Any]) -> FeatureStore:
    online: dict[str, Any] = {"type": "sqlite", "path": str(repo / "online.db")}
    if job.get("redis_port"):
        online = {"type": "redis", "connection_string": f"127.0.0.1:{job['redis_port']}"}
    config = RepoConfig(
        project=PROJECT,
        registry=str(repo / "registry.db"),
        provider="local",
        offline_store={"type": "spark", "spark_conf": job["spark_conf"]},
        online_store=online,
    )
    return FeatureStore(config=config)


def fields(spark: SparkSession, path: str, names: list[str]) -> list[Field]:
    """Feast fields for the named columns, typed from the Parquet files' schema."""
    types = dict(spark.read.parquet(path).dtypes)
    return [Field(name=n, dtype=FEAST_TYPES[types[n]]) for n in names]


def view(
    spark: SparkSession,
    name: str,
    path: str,
    names: list[str],
    ttl_days: int,
    *,
    online: bool,
    partition: str | None = None,
) -> FeatureView:
    source = SparkSource(
        name=f"{name}_source",
        path=path,
        file_format="parquet",
        timestamp_field="event_timestamp",
        date_partition_column=partition,
    )
    return FeatureView(
        name=name,
        entities=[CUSTOMER],
        ttl=timedelta(days=ttl_days),
        schema=fields(spark, path, names),
        source=source,
        online=online,
    )


CUSTOMER = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)


def training_set(spark: SparkSession, store: FeatureStore, job: dict[str, Any]) -> dict[str, Any]:
    names = job["features"]
    fv = view(
        spark,
        "customer_features",
        job["snapshots"],
        names,
        job["ttl_days"],
        online=False,
        partition="ds",
    )
    store.apply([CUSTOMER, fv])
    refs = [f"customer_features:{n}" for n in names]
    seconds = []
    for _ in range(job["runs"]):
        began = time.perf_counter()
        labels = spark.read.parquet(job["labels"])
        result = store.get_historical_features(entity_df=labels, features=refs)
        result.to_spark_df().write.mode("overwrite").parquet(job["output"])
        seconds.append(time.perf_counter() - began)
    return {"seconds": seconds}


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def percentiles(seconds: list[float]) -> dict[str, float]:
    micros = np.array(seconds) * 1e6
    return {
        "p50_us": float(np.percentile(micros, 50)),
        "p99_us": float(np.percentile(micros, 99)),
        "n": len(seconds),
    }


def materialize(spark: SparkSession, store: FeatureStore, job: dict[str, Any]) -> dict[str, Any]:
    ttl = job["ttl_days"]
    scores = view(spark, "scores", job["scores"], ["score"], ttl, online=True)
    vectors = view(spark, "features", job["vectors"], job["features"], ttl, online=True)
    store.apply([CUSTOMER, scores, vectors])
    day = datetime.fromisoformat(job["day"]).replace(tzinfo=UTC)
    start, end = day - timedelta(days=1), day + timedelta(days=1)
    client = redis.Redis(host="127.0.0.1", port=job["redis_port"])
    runs = []
    for _ in range(job["runs"]):
        client.flushall()
        base = used_memory(client)
        began = time.perf_counter()
        store.materialize(start, end, feature_views=["scores"])
        scored = time.perf_counter()
        after_scores = used_memory(client)
        store.materialize(start, end, feature_views=["features"])
        done = time.perf_counter()
        runs.append(
            {
                "scores_s": scored - began,
                "vectors_s": done - scored,
                "total_s": done - began,
                "scores_bytes": after_scores - base,
                "vectors_bytes": used_memory(client) - after_scores,
            }
        )
    reads: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for name, refs in (
        ("score", ["scores:score"]),
        ("vector", [f"features:{n}" for n in job["features"]]),
    ):
        ids = job["read_ids"]
        for entity_id in ids[: job["read_warmup"]]:
            store.get_online_features(features=refs, entity_rows=[{"customer_id": entity_id}])
        seconds, got = [], []
        for entity_id in ids:
            began = time.perf_counter()
            row = store.get_online_features(
                features=refs, entity_rows=[{"customer_id": entity_id}]
            ).to_dict()
            seconds.append(time.perf_counter() - began)
            got.append([row[r.split(":")[1]][0] for r in refs])
        reads[name] = percentiles(seconds)
        values[name] = got
    return {"runs": runs, "reads": reads, "values": values, "keys": client.dbsize()}


def main(argv: list[str]) -> None:
    job = json.loads(Path(argv[0]).read_text())
    spark = spark_session(job["spark_conf"])
    with tempfile.TemporaryDirectory(prefix="feast-repo-") as repo:
        store = feature_store(Path(repo), job)
        body = training_set if job["mode"] == "training_set" else materialize
        result = body(spark, store, job)
    result["versions"] = {
        "feast": feast.__version__,
        "pyspark": pyspark.__version__,
        "redis_py": redis.__version__,
        "python": sys.version.split()[0],
    }
    Path(job["result"]).write_text(json.dumps(result, indent=2, default=str))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
