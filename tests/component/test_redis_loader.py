"""Publishing into a real redis-server: load → verify → flip, retries, rollback, cleanup, refusals."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
from pyspark.sql import DataFrame, SparkSession

from home_settings import home_env
from redis_support import SLOW_LOAD, kill_mid_load
from scorehouse.cli import main
from scorehouse.errors import RedisLoadError
from scorehouse.features.registry import feature_names, to_matrix
from scorehouse.localstack import RedisServer
from scorehouse.publish import generations, plan, writer
from scorehouse.publish.sequence import PublishRequest, publish, publish_date
from scorehouse.serving import keys
from scorehouse.serving.connection import RedisParams
from scorehouse.settings import Settings, load_settings

DS = date(2026, 1, 15)
N = 2500
B = load_settings(environ={}).redis.bucket_size  # the default bucket width


def make_settings(url: str, **env: str) -> Settings:
    return load_settings(
        environ={
            "SCOREHOUSE_SPARK__PROFILE": "test",
            "SCOREHOUSE_REDIS__URL": url,
            "SCOREHOUSE_REDIS__NAMESPACE": "sh",
            **env,
        }
    )


def scores_frame(spark: SparkSession, ids: list[object], scores: np.ndarray) -> DataFrame:
    return spark.createDataFrame(pd.DataFrame({"customer_id": ids, "score": scores}))


def features_frame(
    spark: SparkSession, ids: list[object], seed: int = 1
) -> tuple[DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    names = feature_names()
    data = {name: np.round(rng.random(len(ids)) * 100, 3) for name in names}
    pdf = pd.DataFrame({"customer_id": ids, **data})
    pdf.loc[::5, names[-1]] = np.nan  # missing values must stay missing
    return spark.createDataFrame(pdf), pdf


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def cfg(redis_url: str) -> Settings:
    return make_settings(redis_url)


def read_all_scores(
    client: redis.Redis,
    generation: str,
    ids: list[object],
    string_buckets: int = 0,
    bucket_size: int = B,
) -> list[float | None]:
    pipe = client.pipeline(transaction=False)
    for entity in ids:
        slot = keys.slot_of(entity, bucket_size, string_buckets)
        pipe.hget(keys.score_key("sh", generation, slot.bucket), slot.field)
    return [None if raw is None else keys.decode_score(raw) for raw in pipe.execute()]


def test_publish_loads_every_score_and_vector_then_flips(
    spark: SparkSession, cfg: Settings, client: redis.Redis
) -> None:
    ids = list(range(N))
    scores = np.random.default_rng(0).random(N)
    feats, pdf = features_frame(spark, ids)
    info = publish(
        spark,
        cfg,
        PublishRequest(
            ds=DS,
            scores=scores_frame(spark, ids, scores),
            features=feats,
            model_name="propensity",
            model_version="3",
        ),
    )
    assert client.get("sh:current") == info.generation.encode()
    assert info.generation.startswith("20260115-3-")
    meta = {k.decode(): v.decode() for k, v in client.hgetall(f"sh:{info.generation}:meta").items()}
    assert meta["ds"] == "2026-01-15" and meta["model_version"] == "3" and meta["status"] == "live"
    assert int(meta["count"]) == N and int(meta["features_count"]) == N and meta["loaded_at"]
    assert meta["features"] == ",".join(feature_names()) and meta["bucket_size"] == str(B)
    assert (meta["project"], meta["entity_key"]) == ("purchase_propensity", "customer_id:int64")
    got = np.array(read_all_scores(client, info.generation, ids), dtype=float)
    assert np.abs(got - scores).max() <= 0.5e-9 + 1e-15
    # Every feature vector equals the batch path's float32 input bit for bit.
    names = feature_names()
    expected = to_matrix({n: pdf[n].to_numpy() for n in names}, names)
    pipe = client.pipeline(transaction=False)
    for entity in ids:
        pipe.hget(f"sh:{info.generation}:f:{{{entity // B}}}", str(entity % B))
    vectors = np.vstack([keys.decode_features(raw, len(names)) for raw in pipe.execute()])
    assert np.array_equal(vectors, expected, equal_nan=True)
    # Score buckets stay compact.
    assert client.object("encoding", f"sh:{info.generation}:s:{{0}}") == b"listpack"
    assert client.hlen(f"sh:{info.generation}:s:{{0}}") == B


def test_string_and_integer_ids_follow_the_documented_rule(
    spark: SparkSession, cfg: Settings, client: redis.Redis
) -> None:
    ids: list[object] = ["7", "1234", "cust-ab", "00123", "-5", "é-ü", "9223372036854775808", "0"]
    scores = np.linspace(0.1, 0.8, len(ids))
    info = publish(
        spark,
        cfg,
        PublishRequest(
            ds=DS, scores=scores_frame(spark, ids, scores), model_name="m", model_version="1"
        ),
    )
    assert info.string_buckets == 1
    got = read_all_scores(client, info.generation, ids, info.string_buckets)
    assert got == pytest.approx(list(scores), abs=1e-9)
    slot = keys.slot_of(1234, B, 0)
    assert client.hget(f"sh:{info.generation}:s:{{{slot.bucket}}}", slot.field) is not None
    assert client.hget(f"sh:{info.generation}:s:{{x0}}", "cust-ab") is not None


def test_spark_bucketing_equals_the_python_rule(spark: SparkSession) -> None:
    ids = [
        "0",
        "999",
        "1000",
        "4999123",
        "cust-ab",
        "00123",
        "-5",
        "é",
        "9223372036854775807",
        "9223372036854775808",
    ]
    rows = plan.with_slots(
        spark.createDataFrame([(i,) for i in ids], "customer_id string"), 1000, 13
    ).collect()
    assert {(r.customer_id, r.bucket, r.field) for r in rows} == {
        (i, keys.slot_of(i, 1000, 13).bucket, keys.slot_of(i, 1000, 13).field) for i in ids
    }


def test_republishing_the_same_content_changes_nothing(
    spark: SparkSession, cfg: Settings, client: redis.Redis
) -> None:
    df = scores_frame(spark, list(range(100)), np.full(100, 0.5))
    first = publish(spark, cfg, PublishRequest(ds=DS, scores=df, model_name="m", model_version="1"))
    again = publish(spark, cfg, PublishRequest(ds=DS, scores=df, model_name="m", model_version="1"))
    assert again.generation == first.generation
    assert generations.list_generations(client, "sh") == [first.generation]


def test_rollback_returns_to_the_previous_generation_and_cleanup_keeps_two(
    spark: SparkSession, cfg: Settings, client: redis.Redis
) -> None:
    ids = list(range(1500))
    gens = []
    for day, value in ((15, 0.1), (16, 0.2), (17, 0.3)):
        df = scores_frame(spark, ids, np.full(len(ids), value))
        gens.append(
            publish(
                spark,
                cfg,
                PublishRequest(ds=date(2026, 1, day), scores=df, model_name="m", model_version="1"),
            )
        )
    g1, g2, g3 = (g.generation for g in gens)
    assert gens[2].previous == g2
    assert generations.list_generations(client, "sh") == [g2, g3]
    assert client.keys(f"sh:{g1}:*") == []  # removed with SCAN + UNLINK
    assert read_all_scores(client, g3, [5])[0] == pytest.approx(0.3)

    back = generations.rollback(cfg)
    assert back.generation == g2 and client.get("sh:current") == g2.encode()
    assert client.hget(f"sh:{g3}:meta", "status") == b"rolled_back"
    with pytest.raises(RedisLoadError, match="no previous generation"):
        generations.rollback(cfg)


def test_interrupted_load_leaves_readers_on_the_old_generation_and_a_retry_finishes(
    spark: SparkSession, redis_url: str, client: redis.Redis
) -> None:
    ids = list(range(6000))
    old = publish(
        spark,
        make_settings(redis_url),
        PublishRequest(
            ds=DS,
            scores=scores_frame(spark, ids, np.full(6000, 0.25)),
            model_name="m",
            model_version="1",
        ),
    )
    slow = make_settings(redis_url, **SLOW_LOAD)
    new_df = scores_frame(spark, ids, np.full(6000, 0.75))

    def run_out_of_memory_mid_load() -> None:
        # The server fills up halfway: writes fail with OOM, as they would for real.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            old_buckets = 6000 // B
            if client.zcard("sh:generations") == 2 and len(client.keys("sh:*:s:*")) > (
                old_buckets + max(1, old_buckets // 3)
            ):
                client.config_set("maxmemory", str(client.info("memory")["used_memory"]))
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=run_out_of_memory_mid_load)
    watcher.start()
    with pytest.raises(RedisLoadError, match="readers still see " + old.generation):
        publish(
            spark,
            slow,
            PublishRequest(ds=date(2026, 1, 16), scores=new_df, model_name="m", model_version="1"),
        )
    watcher.join()
    # The partial generation is removed at once (at maxmemory it would block the retry);
    # keys a still-running task writes after that are swept by the next publish.
    assert client.zrange("sh:generations", 0, -1) == [old.generation.encode()]
    client.config_set("maxmemory", "512mb")
    assert client.get("sh:current") == old.generation.encode()
    assert set(read_all_scores(client, old.generation, ids)) == {0.25}

    done = publish(
        spark,
        make_settings(redis_url),
        PublishRequest(ds=date(2026, 1, 16), scores=new_df, model_name="m", model_version="1"),
    )
    assert client.get("sh:current") == done.generation.encode() and done.previous == old.generation
    assert set(read_all_scores(client, done.generation, ids)) == {0.75}
    assert generations.count_entries(client, f"sh:{done.generation}:s:*") == 6000
    owners = {k.decode().split(":")[1] for k in client.scan_iter(match="sh:*:*")}
    assert owners == {old.generation, done.generation}  # nothing of the failed load is left


def test_duplicate_ids_fail_verification_without_flipping(
    spark: SparkSession, cfg: Settings, client: redis.Redis
) -> None:
    df = scores_frame(spark, [1, 2, 2, 3], np.array([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(RedisLoadError, match="3 scores in Redis for 4 rows"):
        publish(spark, cfg, PublishRequest(ds=DS, scores=df, model_name="m", model_version="1"))
    assert client.get("sh:current") is None


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("maxmemory-policy", "allkeys-lru", "needs 'noeviction'"),
        ("hash-max-listpack-entries", "64", f"hash-max-listpack-entries 64 < bucket size {B}"),
        ("maxmemory", "used+200000", "not enough memory"),
    ],
)
def test_unsafe_server_settings_are_refused_before_loading(
    spark: SparkSession, cfg: Settings, client: redis.Redis, setting: str, value: str, message: str
) -> None:
    if value.startswith("used+"):  # room for the lock and metadata, not for 50k scores
        value = str(client.info("memory")["used_memory"] + int(value[5:]))
    client.config_set(setting, value)
    df = scores_frame(spark, list(range(50_000)), np.full(50_000, 0.5))
    with pytest.raises(RedisLoadError, match=message):
        publish(spark, cfg, PublishRequest(ds=DS, scores=df, model_name="m", model_version="1"))
    assert client.get("sh:current") is None
    assert client.keys("sh:*:s:*") == []


def test_unreadable_config_warns_or_refuses_and_never_logs_the_password(
    spark: SparkSession, redis_url: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-loader-pw"
    client.acl_setuser(
        "loader",
        enabled=True,
        passwords=[f"+{secret}"],
        keys=["sh:*"],
        commands=["+@all", "-config"],
    )
    cfg = make_settings(
        redis_url, SCOREHOUSE_REDIS__USERNAME="loader", SCOREHOUSE_REDIS__PASSWORD=secret
    )
    df = scores_frame(spark, list(range(10)), np.full(10, 0.5))
    with pytest.raises(RedisLoadError, match="cannot read hash-max-listpack-entries"):
        publish(
            spark,
            cfg,
            PublishRequest(ds=DS, scores=df, model_name="m", model_version="1", strict_config=True),
        )
    with caplog.at_level(logging.DEBUG):
        info = publish(
            spark, cfg, PublishRequest(ds=DS, scores=df, model_name="m", model_version="1")
        )
    assert info.status == "live"
    assert "cannot read hash-max-listpack-entries" in caplog.text
    assert secret not in caplog.text and secret not in repr(RedisParams.from_settings(cfg.redis))


def test_a_publish_waits_out_a_live_publishers_lock_then_refuses(
    spark: SparkSession,
    cfg: Settings,
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(generations, "LOCK_TTL_S", 1.0)
    monkeypatch.setattr(generations, "LOCK_RENEW_S", 0.2)
    held = generations.PublishLock(client, keys.lock_key("sh"))
    df = scores_frame(spark, list(range(10)), np.full(10, 0.5))
    try:
        started = time.monotonic()
        with pytest.raises(
            RedisLoadError, match="another publish holds sh:lock and keeps it alive"
        ):
            publish(spark, cfg, PublishRequest(ds=DS, scores=df, model_name="m", model_version="1"))
        # It waited past the TTL: the holder's heartbeat kept the lock meanwhile.
        assert time.monotonic() - started > 1.0
        assert client.pttl("sh:lock") > 0
    finally:
        held.release()
    assert client.get("sh:lock") is None
    assert client.get("sh:current") is None


def test_a_dead_publishers_lock_expires_and_the_next_publish_goes_through(
    spark: SparkSession,
    cfg: Settings,
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(generations, "LOCK_TTL_S", 1.0)
    client.set("sh:lock", "a-killed-publisher", px=1000)  # no heartbeat renews it
    df = scores_frame(spark, list(range(10)), np.full(10, 0.5))
    info = publish(spark, cfg, PublishRequest(ds=DS, scores=df, model_name="m", model_version="1"))
    assert info.status == "live"
    assert client.get("sh:lock") is None  # released by the publish that took it


def _reader_loop(
    url: str, ids: list[int], stop: threading.Event, out: Callable[[str, int], None]
) -> None:
    reader = redis.Redis.from_url(url)
    while not stop.is_set():
        generation = reader.get("sh:current")
        if generation is None:
            continue
        pipe = reader.pipeline(transaction=False)
        for entity in ids:
            pipe.hget(f"sh:{generation.decode()}:s:{{{entity // B}}}", str(entity % B))
        values = pipe.execute()
        out("reads", len(values))
        if any(v is None for v in values):
            out("missing", sum(v is None for v in values))
        elif len(set(values)) > 1:
            out("mixed", 1)


def test_flip_is_atomic_for_concurrent_readers(
    spark: SparkSession, cfg: Settings, redis_url: str
) -> None:
    ids = list(range(5000))
    publish(
        spark,
        cfg,
        PublishRequest(
            ds=DS,
            scores=scores_frame(spark, ids, np.full(5000, 0.25)),
            model_name="m",
            model_version="1",
        ),
    )
    counts = {"reads": 0, "missing": 0, "mixed": 0}
    lock = threading.Lock()

    def out(name: str, n: int) -> None:
        with lock:
            counts[name] += n

    stop = threading.Event()
    sample = ids[::97]  # ids across every bucket, read as one batch per pointer read
    readers = [
        threading.Thread(target=_reader_loop, args=(redis_url, sample, stop, out)) for _ in range(2)
    ]
    for thread in readers:
        thread.start()
    try:
        for day, value in ((16, 0.75), (17, 0.5)):
            publish(
                spark,
                cfg,
                PublishRequest(
                    ds=date(2026, 1, day),
                    scores=scores_frame(spark, ids, np.full(5000, value)),
                    model_name="m",
                    model_version="1",
                ),
            )
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert counts["reads"] > 1000
    assert counts["missing"] == 0 and counts["mixed"] == 0


def _spec(url: str, generation: str, **overrides: object) -> plan.LoadSpec:
    base = plan.LoadSpec(RedisParams(url), "sh", generation, "s", 1000, None, False)
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_writer_sends_short_commands_across_arrow_batches_and_every_value_lands(
    redis_url: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "COMMAND_FIELDS", 300)
    # Ids 500..3499 sorted, cut into Arrow batches of 700 rows: buckets 1 and 2 span batches.
    ids = np.arange(500, 3500, dtype=np.int64)
    scores = np.random.default_rng(4).random(len(ids))
    table = pa.table({"customer_id": ids, "score": scores})
    stats = next(
        writer.load_batches(
            iter(table.to_batches(max_chunksize=700)),
            _spec(redis_url, "G1", integer_ids=True),
        )
    )
    # Per batch of 700 ids (500-1199 | 1200-1899 | 1900-2599 | 2600-3299 | 3300-3499), one
    # command per bucket run and per 300 fields: 2+1 | 3 | 1+2 | 2+1 | 1.
    assert stats.to_pydict()["rows"] == [3000] and stats.to_pydict()["commands"] == [13]
    assert read_all_scores(client, "G1", ids.tolist(), bucket_size=1000) == pytest.approx(
        keys.encode_scores(scores) / keys.SCORE_SCALE, abs=0
    )
    assert [client.hlen(f"sh:G1:s:{{{b}}}") for b in range(5)] == [500, 1000, 1000, 500, 0]


def test_writer_with_spark_computed_slots_stores_string_ids(
    spark: SparkSession, redis_url: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "COMMAND_FIELDS", 2)
    ids = ["cust-ab", "7", "é-ü", "00123", "-5"]
    frame = plan.with_slots(scores_frame(spark, ids, np.linspace(0.1, 0.5, 5)), 1000, 3)
    pdf = frame.orderBy("bucket").select("bucket", "field", "score").toPandas()
    batches = pa.Table.from_pandas(pdf, preserve_index=False).to_batches(max_chunksize=2)
    next(writer.load_batches(iter(batches), _spec(redis_url, "G2")))
    assert read_all_scores(client, "G2", ids, string_buckets=3, bucket_size=1000) == pytest.approx(
        list(np.linspace(0.1, 0.5, 5)), abs=1e-9
    )


def test_an_error_reply_fails_the_load_and_the_pointer_stays(
    spark: SparkSession, cfg: Settings, client: redis.Redis
) -> None:
    ids = list(range(3000))
    old = publish(spark, cfg, PublishRequest(ds=DS, scores=scores_frame(spark, ids, np.full(3000, 0.25)), model_name="m", model_version="1"))  # fmt: skip
    generation = keys.generation_id(date(2026, 1, 16), "1", "clash")
    client.set(keys.score_key("sh", generation, "1"), "not a hash")  # HSET answers WRONGTYPE
    with pytest.raises(RedisLoadError, match="WRONGTYPE.*readers still see " + old.generation):
        publish(
            spark,
            cfg,
            PublishRequest(
                ds=date(2026, 1, 16),
                scores=scores_frame(spark, ids, np.full(3000, 0.75)),
                model_name="m",
                model_version="1",
                attempt="clash",
            ),
        )
    assert client.get("sh:current") == old.generation.encode()
    # The failed generation is removed whole, the key in the way included.
    assert list(client.scan_iter(match=f"sh:{generation}:*")) == []
    # The error is read back even when it is not in the last batch of a task.
    client.set(keys.score_key("sh", generation, "1"), "not a hash")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        next(
            writer.load_batches(
                iter(pa.table({"customer_id": np.arange(3000), "score": np.full(3000, 0.5)})
                     .to_batches(max_chunksize=500)),
                _spec(cfg.redis.url, generation, integer_ids=True),
            )
        )  # fmt: skip


def test_writer_resends_unanswered_batches_after_a_dropped_connection(
    redis_url: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    ids = np.arange(6000, dtype=np.int64)
    scores = np.random.default_rng(8).random(len(ids))
    batches = pa.table({"customer_id": ids, "score": scores}).to_batches(max_chunksize=500)
    spec = _spec(redis_url, "G3", integer_ids=True, keys_per_second_per_task=6000.0)
    killed: list[int] = []

    def drop_the_loader_connections() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            if client.exists("sh:G3:s:{2}"):  # a third of the way in
                killed.append(client.client_kill_filter(_type="normal", skipme=True))
            time.sleep(0.005)

    killer = threading.Thread(target=drop_the_loader_connections)
    killer.start()
    with caplog.at_level(logging.WARNING):
        stats = next(writer.load_batches(iter(batches), spec)).to_pydict()
    killer.join()
    assert killed and killed[0] >= 1
    assert "connection to Redis lost during the load" in caplog.text
    assert stats["rows"] == [6000]
    assert read_all_scores(client, "G3", ids.tolist(), bucket_size=1000) == pytest.approx(
        keys.encode_scores(scores) / keys.SCORE_SCALE, abs=0
    )


def test_a_load_capped_at_one_connection_lands_every_score(
    spark: SparkSession, redis_url: str, client: redis.Redis
) -> None:
    ids = list(range(3000))
    scores = np.random.default_rng(5).random(3000)
    capped = make_settings(redis_url, SCOREHOUSE_REDIS__LOAD_CONNECTIONS="1")
    frame = scores_frame(spark, ids, scores).repartition(4)
    info = publish(
        spark, capped, PublishRequest(ds=DS, scores=frame, model_name="m", model_version="1")
    )
    assert info.stats["load_tasks"] == 1
    got = np.array(read_all_scores(client, info.generation, ids), dtype=float)
    assert np.abs(got - scores).max() <= 0.5e-9 + 1e-15
    assert generations.count_entries(client, f"sh:{info.generation}:s:*") == 3000


# --- the load tasks read the tables' Parquet files themselves (publish_date) -------------


def write_day(
    spark: SparkSession, cfg: Settings, ds: date, ids: np.ndarray, seed: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """Champion + challenger predictions and feature vectors of `ids` (in that order, shuffled
    over 3 files per table), as scoring and the feature build write them; returns the
    champion scores and the features."""
    from scorehouse.schemas import PREDICTIONS
    from scorehouse.storage.warehouse import Warehouse

    rng = np.random.default_rng(seed)
    champion, challenger = rng.random(len(ids)), rng.random(len(ids))
    now = datetime(2026, 1, 16, 2, tzinfo=UTC)
    rows = [
        (int(i), ds, float(s), 0.5, "propensity", version, role, "run", 3, now, None, None, None)
        for role, version, scores in (("champion", "7", champion), ("challenger", "8", challenger))
        for i, s in zip(ids, scores, strict=True)
    ]
    wh = Warehouse.from_settings(spark, cfg)
    frame = spark.createDataFrame(rows, PREDICTIONS)
    wh.append(cfg.tables.predictions, frame.repartition(3), partition_by=["ds"])
    _, features = features_frame(spark, ids.tolist(), seed)
    features["ds"] = ds
    wh.append(
        cfg.tables.features, spark.createDataFrame(features).repartition(3), partition_by=["ds"]
    )
    return champion, features.drop(columns="ds")


def test_publish_date_loads_from_the_tables_files_in_bucket_runs(
    spark: SparkSession, settings: Settings, redis_url: str, client: redis.Redis
) -> None:
    cfg = make_settings(redis_url, SCOREHOUSE_WAREHOUSE=str(settings.warehouse))
    ids = np.random.default_rng(2).permutation(3000)  # 12 buckets, every file out of order
    champion, features = write_day(spark, cfg, DS, ids, seed=3)
    write_day(spark, cfg, date(2026, 1, 16), ids, seed=4)  # another day: not loaded
    info = publish_date(spark, cfg, DS)
    assert info.stats["load_path"] == "files" and info.stats["load_rows"] == 3000
    got = np.array(read_all_scores(client, info.generation, ids.tolist()), dtype=float)
    assert np.abs(got - champion).max() <= 0.5e-9 + 1e-15  # the champion's, not the challenger's
    # Each task sorts its rows: per bucket it holds, one HSET per 100 fields (at most 2 for a
    # bucket's 250), not one per out-of-order row (~3000).
    assert info.stats["commands"] <= info.stats["load_tasks"] * 12 * 2
    names = feature_names()
    pipe = client.pipeline(transaction=False)
    for entity in ids.tolist():
        slot = keys.slot_of(entity, B, 0)
        pipe.hget(keys.features_key("sh", info.generation, slot.bucket), slot.field)
    vectors = np.vstack([keys.decode_features(raw, len(names)) for raw in pipe.execute()])
    expected = to_matrix({n: features[n].to_numpy() for n in names}, names)
    assert np.array_equal(vectors, expected, equal_nan=True)
    assert client.get("sh:current") == info.generation.encode()


def test_file_batches_stream_files_in_id_order_and_sort_the_rest(tmp_path: object) -> None:
    import pyarrow.parquet as pq

    from scorehouse.scoring.reader import Slice

    folder = str(tmp_path)
    ids = np.arange(10_000, dtype=np.int64)
    roles = np.where(ids % 3 == 0, "challenger", "champion")
    pq.write_table(
        pa.table({"customer_id": ids, "score": ids / 1e4, "model_role": roles}),
        f"{folder}/sorted.parquet",
        row_group_size=4000,
    )
    shuffled = np.random.default_rng(1).permutation(ids)
    pq.write_table(
        pa.table({"customer_id": shuffled, "score": shuffled / 1e4}), f"{folder}/shuffled.parquet"
    )
    types = {"customer_id": pa.int64(), "score": pa.float64(), "model_role": pa.string()}

    def batches(name: str, groups: int, role: str | None) -> list[pa.RecordBatch]:
        pieces = [
            Slice(f"{folder}/{name}", g, 0, 4000 if groups > 1 else 10_000) for g in range(groups)
        ]
        pieces[-1] = replace(pieces[-1], length=10_000 - 4000 * (groups - 1))
        source = plan.FileSource(None, types, role)  # type: ignore[arg-type]
        return list(writer._file_batches(pieces, source, ("score",)))

    streamed = batches("sorted.parquet", 3, "champion")
    kept = pa.Table.from_batches(streamed).column("customer_id").to_numpy()
    assert np.array_equal(kept, ids[ids % 3 != 0])
    assert len(streamed) >= 3  # passed on as read, not gathered
    # A file out of id order: its rows come back sorted (bucket runs); the role column absent
    # from the file reads as nulls and keeps no row.
    ordered = pa.Table.from_batches(batches("shuffled.parquet", 1, None))
    assert np.array_equal(ordered.column("customer_id").to_numpy(), ids)
    assert np.array_equal(ordered.column("score").to_numpy(), ids / 1e4)
    assert batches("shuffled.parquet", 1, "champion") == []


# --- the latency guard (redis.reader_latency_target_ms) ----------------------------------

# Keeps Redis busy for ARGV[1] µs: every other client waits behind it, as behind a busy host.
_BUSY = """
local s = redis.call('TIME')
while true do
  local t = redis.call('TIME')
  if (t[1] - s[1]) * 1000000 + (t[2] - s[2]) >= tonumber(ARGV[1]) then return 1 end
end
"""


@contextlib.contextmanager
def busy_redis(url: str, busy_us: int, pause_s: float) -> Iterator[None]:
    """A client that runs a `busy_us` script every `pause_s` while the block runs."""
    stop = threading.Event()
    busy = redis.Redis.from_url(url)

    def run() -> None:
        while not stop.is_set():
            busy.eval(_BUSY, 0, busy_us)
            time.sleep(pause_s)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        busy.close()


def test_the_latency_guard_slows_a_load_down_while_redis_answers_slowly(
    redis_url: str, client: redis.Redis
) -> None:
    ids = np.arange(60_000, dtype=np.int64)
    scores = np.random.default_rng(9).random(len(ids))
    table = pa.table({"customer_id": ids, "score": scores})

    def load(generation: str, target_s: float) -> dict[str, list[int]]:
        spec = _spec(redis_url, generation, integer_ids=True, latency_target_s=target_s)
        # Redis busy 8 ms of every ~10: a probe waits up to 8 ms for its PONG.
        with busy_redis(redis_url, 8000, 0.002):
            return next(writer.load_batches(iter(table.to_batches(10_000)), spec)).to_pydict()

    slowed = load("G7", 0.002)
    assert slowed["rows"] == [60_000]
    assert slowed["probes"][0] >= 10 and slowed["probes_over"][0] >= 2
    assert slowed["slowdowns"][0] >= 1 and slowed["throttled_ms"][0] > 0
    # The same slow server with a target it meets (1 s): never slowed down.
    relaxed = load("G8", 1.0)
    assert relaxed["probes"][0] >= 10 and relaxed["probes_over"][0] == 0
    assert relaxed["slowdowns"][0] == 0
    for generation in ("G7", "G8"):
        assert read_all_scores(client, generation, ids.tolist(), bucket_size=1000) == (
            pytest.approx(keys.encode_scores(scores) / keys.SCORE_SCALE, abs=0)
        )


def test_the_latency_guard_setting_reaches_the_load_tasks(
    spark: SparkSession, redis_url: str, client: redis.Redis
) -> None:
    ids = list(range(40_000))
    scores = np.random.default_rng(10).random(len(ids))
    guarded = make_settings(redis_url, SCOREHOUSE_REDIS__READER_LATENCY_TARGET_MS="1.5")
    info = publish(spark, guarded, PublishRequest(ds=DS, scores=scores_frame(spark, ids, scores), model_name="m", model_version="1"))  # fmt: skip
    assert info.stats["guard_probes"] > 0
    assert generations.count_entries(client, f"sh:{info.generation}:s:*") == len(ids)
    off = make_settings(redis_url, SCOREHOUSE_REDIS__READER_LATENCY_TARGET_MS="null")
    assert off.redis.reader_latency_target_ms is None


def test_redis_dying_mid_publish_is_one_line_that_names_what_readers_see(
    spark: SparkSession,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = np.arange(6000)
    with RedisServer(tmp_path / "redis") as server:  # its own server: this test kills it
        env = {
            **home_env(settings.home),
            "SCOREHOUSE_REDIS__URL": server.url,
            **SLOW_LOAD,
        }
        cfg = make_settings(server.url, SCOREHOUSE_HOME=str(settings.home))
        write_day(spark, cfg, DS, ids, seed=3)
        write_day(spark, cfg, date(2026, 1, 16), ids, seed=4)
        old = publish_date(spark, cfg, DS)
        killer = kill_mid_load(server)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        code = main(["publish", "--date", "2026-01-16"])
        killer.join()
        assert not server.ping()
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"readers still see {old.generation}; run the same publish again" in line
