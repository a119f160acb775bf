"""scorehouse against the real Feast, on the same generated data, in one run.

    .venv/bin/python bench/feast_peer.py --rows 1000000
    .venv/bin/python bench/feast_peer.py --quick      # 20k rows, one run each: a check

Feast is installed in a virtualenv of its own outside the repository (`--feast-venv`,
default ~/.cache/scorehouse-bench/feast-venv; made and filled on first use with
`feast[spark,redis]` and the project's own pyspark release, so both sides run the same
Spark on the same Java). Feast runs in a subprocess of that venv's Python
(bench/peers/feast_side.py), which times its own work; its Spark session and `apply` are
not timed, and neither is scorehouse's session start. Versions go into the result.

1. Training set (`--rows` labelled rows: `--rows / --as-of-dates` customers on each of
   `--as-of-dates` as-of days `--every` days apart, TTL `--ttl` days). The data are
   bench/pit_join.py's (same generator, cached in --work-dir): a snapshots table with the
   real features table's columns, ~10 % of (customer, day) snapshots missing, so some rows
   take an older snapshot and some none. scorehouse: `point_in_time_join` (what
   `scorehouse training-set` runs) from the Delta tables, written through `Warehouse`.
   Feast: the same rows as Parquet (Hive `ds=` layout, declared as the source's date
   partition column), `get_historical_features` on the Spark offline store with the same
   TTL, written as Parquet. Both outputs are compared row for row, all columns.
2. Redis (`--rows` entities, one score each, then one feature vector each, on one day):
   `scorehouse publish` of that day (`publish_date`, the default settings) against Feast's
   `materialize` (default engine, Redis online store) of a scores view, then of a
   feature-vector view, each into its own empty redis-server on a free loopback port,
   both started with the project's redis.conf. Wall time, entities/s, Redis bytes per
   entity (INFO used_memory), then single-entity reads: Feast's `get_online_features`
   against scorehouse's `Client.get` (scores) and an HGET by the key contract (vectors:
   the Client returns scores only). The values read back are compared too.

How the two are aligned (peers/compare.py): Feast's point-in-time join takes, per labelled
row, the feature row with the latest event timestamp in [ts - ttl, ts]; scorehouse takes the
snapshot of the latest day in [as_of - ttl_days, as_of]. Every as-of day and snapshot day
becomes its midnight UTC on the Feast side (both Spark sessions and the subprocess run in
UTC), and Feast's TTL is ttl_days exactly, so the windows hold the same days. Ties: Feast
breaks ties between rows of one entity and timestamp only by a created-timestamp column and
returns every tied row otherwise; scorehouse's snapshots hold one row per (entity, day),
so there are none here. Feast returns no snapshot date: its source gets a `feature_ds`
column (a copy of ds), requested as a feature, so the chosen snapshot itself is compared.
Feast keeps rows without a feature row in the TTL with nulls, as `point_in_time_join`
does (`scorehouse training-set` then drops or defaults them: `features.on_stale`).
Online values: scorehouse stores a score as an integer scaled by 1e9 and a vector as
float32 text; Feast keeps the Parquet's Float64/Int64 values, so scores compare within
half a step and vectors as float32.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyspark
import redis
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import harness
from peers.compare import score_mismatches, vector_mismatches
from pit_join import LABELS_TABLE, SNAPSHOTS_TABLE, _hash, _value, features_schema, timed_write
from pit_join import setup as pit_setup
from redis_load import latency_percentiles, prediction_rows
from scorehouse.features import training_set
from scorehouse.features.registry import feature_names
from scorehouse.localstack import RedisServer, find_binary
from scorehouse.publish.sequence import publish_date
from scorehouse.serving import keys
from scorehouse.serving.client import Client
from scorehouse.settings import Settings
from scorehouse.spark import get_spark, profile_path, read_profile
from scorehouse.storage.warehouse import Warehouse

BENCH = Path(__file__).parent
RESULTS = harness.RESULTS / "feast_peer.json"
PEER = BENCH / "peers" / "feast_side.py"
DEFAULT_VENV = Path.home() / ".cache" / "scorehouse-bench" / "feast-venv"
PUBLISH_DAY = date(2026, 6, 1)
NO_VECTORS = "bench_no_vectors"  # a features table that never exists: a scores-only publish


def feast_python(venv: Path, version: str | None) -> Path:
    """The Python of Feast's venv, made and filled first when Feast is not importable."""
    python = venv / "bin" / "python"
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run(
        [python, "-c", "import feast, pyspark, redis"], capture_output=True
    ).returncode:
        feast = f"feast[spark,redis]=={version}" if version else "feast[spark,redis]"
        print(f"installing {feast} into {venv} (minutes, once)", flush=True)
        # The project's pyspark: one Spark release on both sides (and one pip need not
        # build from source again when the project's is in its wheel cache).
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", feast, f"pyspark=={pyspark.__version__}"],
            check=True,
        )
    return python


def peer_versions(python: Path) -> dict[str, str]:
    code = (
        "import json, feast, pyspark, redis, sys; print(json.dumps({'feast': feast.__version__,"
        " 'pyspark': pyspark.__version__, 'redis_py': redis.__version__,"
        " 'python': sys.version.split()[0]}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run_peer(python: Path, job: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """Run bench/peers/feast_side.py with `job` in Feast's venv; its result."""
    job_file = work_dir / f"feast-{job['mode']}.json"
    job["result"] = str(work_dir / f"feast-{job['mode']}-result.json")
    job_file.write_text(json.dumps(job, indent=2))
    # The peer's Spark must run the peer venv's Python, not the one get_spark exported here.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_"))}
    env.update(TZ="UTC", PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python))
    subprocess.run([python, str(PEER), str(job_file)], check=True, env=env)
    return json.loads(Path(job["result"]).read_text())


def spark_conf(settings: Settings) -> dict[str, str]:
    """scorehouse's Spark profile with the bench's overrides: the peer's session gets it too."""
    conf = read_profile(profile_path(settings.spark.profile, settings.spark.conf_dir))
    conf.update(settings.spark.conf)
    conf["spark.app.name"] = "bench-feast-peer"
    return conf


def cached(marker: Path, key: dict[str, Any]) -> bool:
    return marker.exists() and json.loads(marker.read_text()).get("key") == key


# --- 1. training set ---------------------------------------------------------------------


def export_training_inputs(wh: Warehouse, info: dict[str, Any], out: Path) -> dict[str, str]:
    """The pit_join tables as Feast's Parquet sources: snapshots with `event_timestamp`
    (midnight UTC of ds) and `feature_ds` (= ds), in `ds=` partitions; the labels with
    the as-of day's midnight UTC as `event_timestamp`."""
    paths = {"snapshots": str(out / "snapshots"), "labels": str(out / "labels")}
    marker = out / "export.json"
    if not cached(marker, info):
        snapshots = wh.read(SNAPSHOTS_TABLE).withColumns(
            {"event_timestamp": F.to_timestamp("ds"), "feature_ds": F.col("ds")}
        )
        snapshots.write.mode("overwrite").partitionBy("ds").parquet(paths["snapshots"])
        labels = wh.read(LABELS_TABLE).select(
            "customer_id", F.to_timestamp("as_of").alias("event_timestamp"), "label"
        )
        labels.write.mode("overwrite").parquet(paths["labels"])
        marker.write_text(json.dumps({"key": info}))
    return paths


def feast_rows(frame: DataFrame, like: DataFrame) -> DataFrame:
    """Feast's output in the project's columns and types (event_timestamp → as_of day)."""
    renamed = frame.withColumn("as_of", F.to_date("event_timestamp"))
    return renamed.select(*[F.col(f.name).cast(f.dataType) for f in like.schema.fields])


def bench_training_set(
    spark: SparkSession, settings: Settings, python: Path, args: argparse.Namespace
) -> dict[str, Any]:
    wh = Warehouse.from_settings(spark, settings)
    shape = argparse.Namespace(
        customers=max(1, args.rows // args.as_of_dates),
        as_of_dates=args.as_of_dates,
        every=args.every,
        ttl=args.ttl,
        work_dir=args.work_dir,
    )
    info = pit_setup(spark, settings, shape)
    paths = export_training_inputs(wh, info, args.work_dir / "feast-training")
    ours = []
    for _ in range(args.runs):
        ours.append(
            timed_write(
                wh,
                "bench_feast_project",
                lambda: training_set.point_in_time_join(
                    wh.read(LABELS_TABLE), wh.read(SNAPSHOTS_TABLE)
                ),
            )[0]
        )
    output = str(args.work_dir / "feast-training" / "output")
    peer = run_peer(
        python,
        {
            "mode": "training_set",
            "spark_conf": spark_conf(settings),
            "features": ["feature_ds", *feature_names()],
            "ttl_days": args.ttl,
            "runs": args.runs,
            **paths,
            "output": output,
        },
        args.work_dir,
    )
    project = wh.read("bench_feast_project")
    feast = feast_rows(spark.read.parquet(output), project)
    only_ours, only_feast = project.exceptAll(feast).count(), feast.exceptAll(project).count()
    rows, feast_count = project.count(), feast.count()
    best, feast_best = min(ours), min(peer["seconds"])
    return {
        **{k: info[k] for k in ("key", "label_rows", "snapshot_rows", "snapshot_columns")},
        "rows": rows,
        "feast_rows": feast_count,
        "rows_with_features": project.where("feature_ds IS NOT NULL").count(),
        "rows_with_an_older_snapshot": project.where("feature_ds < as_of").count(),
        "mismatches": only_ours + only_feast,
        "only_in_scorehouse": only_ours,
        "only_in_feast": only_feast,
        "identical": only_ours == only_feast == 0 and rows == feast_count == info["label_rows"],
        "scorehouse_seconds": [round(x, 2) for x in ours],
        "feast_seconds": [round(x, 2) for x in peer["seconds"]],
        "feast_over_scorehouse_best": round(feast_best / best, 2),
    }


# --- 2. Redis -------------------------------------------------------------------------------


def setup_publish(spark: SparkSession, settings: Settings, n: int, out: Path) -> dict[str, str]:
    """`n` entities' scores and feature vectors of PUBLISH_DAY: the predictions and features
    tables of the warehouse, and the same rows as Parquet for Feast."""
    paths = {"scores": str(out / "scores"), "vectors": str(out / "vectors")}
    marker = out / "setup.json"
    key = {"entities": n, "day": PUBLISH_DAY.isoformat()}
    if cached(marker, key):
        return paths
    wh = Warehouse.from_settings(spark, settings)
    ids = spark.range(1, n + 1).select(
        F.col("id").alias("customer_id"), F.lit(PUBLISH_DAY).alias("ds")
    )
    names = set(feature_names())
    fields = [f for f in features_schema(spark).fields if f.name in names]
    scores = ids.select("customer_id", (_hash("customer_id", F.lit("score")) % 1_000_000) / 1e6)
    scores = scores.toDF("customer_id", "score")
    vectors = ids.select("customer_id", "ds", *[_value(f, i) for i, f in enumerate(fields)])
    wh.overwrite(
        settings.tables.predictions, prediction_rows(scores, PUBLISH_DAY), partition_by=["ds"]
    )
    wh.overwrite(settings.tables.features, vectors, partition_by=["ds"])
    at = F.to_timestamp(F.lit(PUBLISH_DAY))
    scores.withColumn("event_timestamp", at).write.mode("overwrite").parquet(paths["scores"])
    vectors.drop("ds").withColumn("event_timestamp", at).write.mode("overwrite").parquet(
        paths["vectors"]
    )
    marker.write_text(json.dumps({"key": key}))
    return paths


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def scorehouse_publishes(
    spark: SparkSession, settings: Settings, client: redis.Redis, runs: int
) -> list[dict[str, Any]]:
    """A scores-only publish, then scores and vectors, each into an emptied Redis; with the
    default settings, then once more with the readers' latency guard off (one setting)."""
    scores_only = settings.model_copy(
        update={"tables": settings.tables.model_copy(update={"features": NO_VECTORS})}
    )
    variants = [("scores", scores_only), ("scores_and_vectors", settings)]
    variants += [(f"{label}_unguarded", unguarded(s)) for label, s in variants]
    out = []
    for _ in range(runs):
        figures: dict[str, Any] = {}
        for label, run_settings in variants:
            client.flushall()
            base = used_memory(client)
            began = time.perf_counter()
            info = publish_date(spark, run_settings, PUBLISH_DAY)
            figures[f"{label}_s"] = time.perf_counter() - began
            figures[f"{label}_bytes"] = used_memory(client) - base
            figures[f"{label}_load_stage_entities_per_s"] = info.stats["entities_per_s"]
        out.append(figures)
    return out


def unguarded(settings: Settings) -> Settings:
    """`redis.reader_latency_target_ms: null`: a load that does not pace itself for readers."""
    redis_settings = settings.redis.model_copy(update={"reader_latency_target_ms": None})
    return settings.model_copy(update={"redis": redis_settings})


def scorehouse_reads(
    settings: Settings, client: redis.Redis, ids: list[int], warmup: int
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Single-entity reads: `Client.get` for a score, HGET + decode for a vector."""
    app = Client(settings, fallback=False)
    for entity_id in ids[:warmup]:
        app.get(entity_id)
    seconds, scores, misses = [], [], 0
    for entity_id in ids:
        began = time.perf_counter()
        score = app.get(entity_id)
        seconds.append(time.perf_counter() - began)
        scores.append(score.score)
        misses += score.source != "cache"
    app.close()
    ns = settings.redis.namespace
    generation = client.get(keys.pointer_key(ns)).decode()
    meta = client.hgetall(keys.meta_key(ns, generation))
    width, names = int(meta[b"bucket_size"]), meta[b"features"].decode().split(",")
    assert names == feature_names(), "the generation's vectors are not in registry order"

    def vector(entity_id: int) -> Any:
        slot = keys.slot_of(entity_id, width, 0)
        raw = client.hget(keys.features_key(ns, generation, slot.bucket), slot.field)
        return keys.decode_features(raw, len(names))[0]

    for entity_id in ids[:warmup]:
        vector(entity_id)
    vector_seconds, vectors = [], []
    for entity_id in ids:
        began = time.perf_counter()
        row = vector(entity_id)
        vector_seconds.append(time.perf_counter() - began)
        vectors.append(row.tolist())
    reads = {
        "score": {**latency_percentiles(seconds), "misses": misses},
        "vector": latency_percentiles(vector_seconds),
    }
    return reads, {"score": scores, "vector": vectors}


def bench_redis(
    spark: SparkSession, settings: Settings, python: Path, args: argparse.Namespace
) -> dict[str, Any]:
    n = args.rows
    paths = setup_publish(spark, settings, n, args.work_dir / "feast-redis")
    ids = np.random.default_rng(11).integers(1, n + 1, args.reads).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        ours_server = RedisServer(Path(tmp) / "scorehouse", maxmemory="8gb").start()
        feast_server = RedisServer(Path(tmp) / "feast", maxmemory="8gb").start()
        try:
            run_settings = harness.bench_settings(
                args.work_dir, args.driver_memory, SCOREHOUSE_REDIS__URL=ours_server.url
            )
            client = ours_server.client()
            ours = scorehouse_publishes(spark, run_settings, client, args.runs)
            reads, values = scorehouse_reads(run_settings, client, ids, args.read_warmup)
            ours_keys = client.dbsize()
            peer = run_peer(
                python,
                {
                    "mode": "materialize",
                    "spark_conf": spark_conf(settings),
                    "features": feature_names(),
                    "ttl_days": args.ttl,
                    "runs": args.runs,
                    "day": PUBLISH_DAY.isoformat(),
                    "redis_port": feast_server.port,
                    "read_ids": ids,
                    "read_warmup": args.read_warmup,
                    **paths,
                },
                args.work_dir,
            )
        finally:
            ours_server.stop()
            feast_server.stop()
    best = min(ours, key=lambda r: r["scores_and_vectors_s"])
    best_scores = min(r["scores_s"] for r in ours)
    feast_best = min(peer["runs"], key=lambda r: r["total_s"])
    feast_scores = min(r["scores_s"] for r in peer["runs"])
    tolerance = 0.5 / keys.SCORE_SCALE + 1e-12
    return {
        "entities": n,
        "scorehouse": {
            "runs": ours,
            "scores_entities_per_s": n / best_scores,
            "scores_and_vectors_entities_per_s": n / best["scores_and_vectors_s"],
            "unguarded_scores_entities_per_s": n / min(r["scores_unguarded_s"] for r in ours),
            "unguarded_scores_and_vectors_entities_per_s": n
            / min(r["scores_and_vectors_unguarded_s"] for r in ours),
            "scores_bytes_per_entity": best["scores_bytes"] / n,
            "scores_and_vectors_bytes_per_entity": best["scores_and_vectors_bytes"] / n,
            "reads": reads,
            "keys": ours_keys,
        },
        "feast": {
            "runs": peer["runs"],
            "scores_entities_per_s": n / feast_scores,
            "scores_and_vectors_entities_per_s": n / feast_best["total_s"],
            "scores_bytes_per_entity": feast_best["scores_bytes"] / n,
            "scores_and_vectors_bytes_per_entity": (
                feast_best["scores_bytes"] + feast_best["vectors_bytes"]
            )
            / n,
            "reads": peer["reads"],
            "keys": peer["keys"],
        },
        "scores_speedup": feast_scores / best_scores,
        "scores_and_vectors_speedup": feast_best["total_s"] / best["scores_and_vectors_s"],
        "unguarded_scores_speedup": feast_scores / min(r["scores_unguarded_s"] for r in ours),
        "unguarded_scores_and_vectors_speedup": feast_best["total_s"]
        / min(r["scores_and_vectors_unguarded_s"] for r in ours),
        "read_ids": len(ids),
        "score_mismatches": score_mismatches(
            [row[0] for row in peer["values"]["score"]], values["score"], tolerance
        ),
        "vector_mismatches": vector_mismatches(
            [list(v) for v in peer["values"]["vector"]], values["vector"]
        ),
    }


# --- report ----------------------------------------------------------------------------------


def print_report(result: dict[str, Any]) -> None:
    print(f"\nversions: {result['versions']}")
    ts = result.get("training_set")
    if ts:
        print(
            f"\ntraining set: {ts['rows']:,} labelled rows x {ts['snapshot_rows']:,} snapshot rows"
        )
        print(f"{'scorehouse point_in_time_join + write':40}", *ts["scorehouse_seconds"])
        print(f"{'Feast get_historical_features + write':40}", *ts["feast_seconds"])
        print(f"{'Feast / scorehouse (best of each)':40} {ts['feast_over_scorehouse_best']}x")
        print(
            f"rows identical: {ts['identical']} ({ts['mismatches']} mismatches: "
            f"{ts['only_in_scorehouse']} only in scorehouse's, {ts['only_in_feast']} only in Feast's)"
        )
    rd = result.get("redis")
    if rd:
        print(f"\nRedis: {rd['entities']:,} entities")
        print(f"{'':34}{'scorehouse':>14}{'Feast':>14}")
        for label, key, fmt in (
            ("scores: entities/s", "scores_entities_per_s", ",.0f"),
            ("scores + vectors: entities/s", "scores_and_vectors_entities_per_s", ",.0f"),
            ("scores: bytes/entity", "scores_bytes_per_entity", ".1f"),
            ("scores + vectors: bytes/entity", "scores_and_vectors_bytes_per_entity", ".1f"),
        ):
            print(f"{label:34}{rd['scorehouse'][key]:>14{fmt}}{rd['feast'][key]:>14{fmt}}")
        print(
            "guard off (redis.reader_latency_target_ms: null): "
            f"scores {rd['scorehouse']['unguarded_scores_entities_per_s']:,.0f}/s "
            f"({rd['unguarded_scores_speedup']:.1f}x Feast), scores + vectors "
            f"{rd['scorehouse']['unguarded_scores_and_vectors_entities_per_s']:,.0f}/s "
            f"({rd['unguarded_scores_and_vectors_speedup']:.1f}x)"
        )
        for kind in ("score", "vector"):
            ours, theirs = rd["scorehouse"]["reads"][kind], rd["feast"]["reads"][kind]
            cells = [f"{r['p50_us']:.0f} / {r['p99_us']:.0f}" for r in (ours, theirs)]
            print(f"{'one ' + kind + ': p50 / p99 us':34}{cells[0]:>14}{cells[1]:>14}")
        print(
            f"values read back: {rd['score_mismatches']} score and {rd['vector_mismatches']} "
            f"vector mismatches of {rd['read_ids']}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20k rows, one run: a check")
    parser.add_argument("--parts", default="training_set,redis")
    parser.add_argument("--as-of-dates", type=int, default=5)
    parser.add_argument("--every", type=int, default=7, help="days between as-of dates")
    parser.add_argument("--ttl", type=int, default=3, help="maximum feature age (days)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--reads", type=int, default=5000, help="single-entity reads, each side")
    parser.add_argument("--read-warmup", type=int, default=200)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--feast-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--feast-version", default=None, help="default: the newest release")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/scorehouse-bench-feast"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.runs, args.reads, args.read_warmup = 20_000, 1, 500, 50
        args.driver_memory = "2g"
    parts = [p for p in args.parts.split(",") if p]
    logging.basicConfig(level=logging.WARNING)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    python = feast_python(args.feast_venv, args.feast_version)
    redis_server = subprocess.run(
        [find_binary(), "--version"], capture_output=True, text=True
    ).stdout.split()
    result: dict[str, Any] = {
        "rows": args.rows,
        "runs": args.runs,
        "versions": {
            "peer": peer_versions(python),
            "scorehouse_pyspark": pyspark.__version__,
            "scorehouse_redis_py": redis.__version__,
            "redis_server": next((w[2:] for w in redis_server if w.startswith("v=")), "?"),
        },
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    settings = harness.bench_settings(args.work_dir, args.driver_memory)
    spark = get_spark(settings, app_name="bench-feast-peer")
    # Written after each part, so a part that fails (Feast's materialize can be killed for
    # memory at 1M vectors) keeps what the earlier one measured.
    if "training_set" in parts:
        result["training_set"] = bench_training_set(spark, settings, python, args)
        harness.write_result(args.out, result)
    if "redis" in parts:
        result["redis"] = bench_redis(spark, settings, python, args)
        harness.write_result(args.out, result)
    print_report(result)
    if not result.get("training_set", {"identical": True})["identical"]:
        raise SystemExit("training sets differ (see mismatches above)")


if __name__ == "__main__":
    harness.run(main)
