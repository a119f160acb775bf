"""The online Client against a real redis-server: hits, fallback with a real booster, defaults,
the circuit breaker, and batch/online parity for 10k customers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
import xgboost as xgb
from pyspark.sql import DataFrame, SparkSession

from scorehouse.features import transforms
from scorehouse.features.registry import feature_names, feature_sql, no_history_vector, to_matrix
from scorehouse.localstack import RedisServer
from scorehouse.online import Client, MlflowChampion, StaticModel
from scorehouse.publish.sequence import PublishRequest, publish
from scorehouse.schemas import RAW_CUSTOMERS, RAW_TRANSACTIONS
from scorehouse.serving import keys
from scorehouse.settings import Settings, load_settings

DS = date(2026, 1, 15)


def make_settings(url: str, **env: str) -> Settings:
    return load_settings(
        environ={
            "SCOREHOUSE_SPARK__PROFILE": "test",
            "SCOREHOUSE_REDIS__URL": url,
            "SCOREHOUSE_REDIS__NAMESPACE": "sh",
            "SCOREHOUSE_SERVING__DEFAULT_SCORE": "0.05",
            **env,
        }
    )


def feature_table(n: int, seed: int) -> pd.DataFrame:
    """Realistic-looking features: counts as ints, amounts with many digits, missing ratios."""
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for name in feature_names():
        if name.startswith(
            ("txn_count", "active_days", "quantity", "lifetime", "tenure", "days_since")
        ):
            data[name] = rng.poisson(5, n).astype(float)
        elif name.endswith("_code"):
            data[name] = rng.integers(-1, 4, n).astype(float)
        else:
            values = rng.gamma(2.0, 37.3, n)
            values[rng.random(n) < 0.2] = np.nan
            data[name] = values
    return pd.DataFrame({"customer_id": np.arange(n, dtype=np.int64), **data})


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    pdf = feature_table(4000, seed=11)
    matrix = to_matrix({n: pdf[n].to_numpy() for n in feature_names()})
    logits = 0.3 * np.nan_to_num(matrix[:, 1]) - 0.01 * np.nan_to_num(matrix[:, 9]) + 0.5
    label = (np.random.default_rng(2).random(len(pdf)) < 1 / (1 + np.exp(-logits))).astype(float)
    dtrain = xgb.DMatrix(matrix, label=label, missing=np.nan, feature_names=feature_names())
    return xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 1},
        dtrain,
        num_boost_round=20,
    )


def batch_scores(spark: SparkSession, features: DataFrame, booster: xgb.Booster) -> pd.DataFrame:
    """Batch scoring as the nightly job does it: mapInArrow, to_matrix, inplace_predict."""
    raw = booster.save_raw("ubj")
    names = feature_names()

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = xgb.Booster(model_file=bytearray(raw))
        for batch in batches:
            matrix = to_matrix({n: batch.column(n) for n in names}, names)
            predicted = np.asarray(model.inplace_predict(matrix, missing=np.nan), dtype=np.float64)
            yield pa.RecordBatch.from_pydict(
                {"customer_id": batch.column("customer_id"), "score": pa.array(predicted)}
            )

    return (
        features.mapInArrow(score, "customer_id long, score double")
        .toPandas()
        .sort_values("customer_id")
        .reset_index(drop=True)
    )


@pytest.fixture(scope="module")
def published(
    spark: SparkSession, redis_server: RedisServer, booster: xgb.Booster
) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Module-scoped: 10k customers, scores + features published once (tests restore what they delete)."""
    client = redis_server.client()
    client.flushall()
    cfg = make_settings(redis_server.url)
    pdf = feature_table(10_000, seed=5)
    features = spark.createDataFrame(pdf)
    scores = batch_scores(spark, features, booster)
    publish(
        spark,
        cfg,
        PublishRequest(
            ds=DS,
            scores=spark.createDataFrame(scores),
            features=features,
            model_name="propensity",
            model_version="7",
        ),
    )
    generation = client.get("sh:current").decode()
    yield generation, pdf, scores
    client.flushall()


def test_hits_come_from_the_cache_with_version_date_and_staleness(
    published: tuple[str, pd.DataFrame, pd.DataFrame], redis_server: RedisServer
) -> None:
    generation, _, scores = published
    with Client(make_settings(redis_server.url)) as client:
        result = client.get(1234)
        assert result.source == "cache" and result.generation == generation
        assert result.score == pytest.approx(scores.score[1234], abs=5e-10)
        assert result.model_version == "7" and result.ds == DS
        assert result.staleness_days == (date.today() - DS).days
        assert result.staleness_s is not None and 0 <= result.staleness_s < 600
        many = client.get_many([5, "17", 9999])
        assert [r.entity_id for r in many] == ["5", "17", "9999"]
        assert [r.score for r in many] == pytest.approx(
            list(scores.score[[5, 17, 9999]]), abs=5e-10
        )


def test_a_miss_is_scored_from_stored_features_and_never_written(
    published: tuple[str, pd.DataFrame, pd.DataFrame],
    redis_server: RedisServer,
    booster: xgb.Booster,
) -> None:
    generation, _, scores = published
    raw = redis_server.client()
    slot = keys.slot_of(4321, make_settings(redis_server.url).redis.bucket_size, 0)
    key = keys.score_key("sh", generation, slot.bucket)
    saved = raw.hget(key, slot.field)
    raw.hdel(key, slot.field)
    try:
        with Client(make_settings(redis_server.url), model=StaticModel("7", booster)) as client:
            for _ in range(2):
                result = client.get(4321)
                assert result.source == "fallback" and result.model_version == "7"
                assert abs(result.score - scores.score[4321]) <= 1e-6
        assert raw.hget(key, slot.field) is None
    finally:
        raw.hset(key, slot.field, saved)


def test_misses_never_write_into_the_generation(
    published: tuple[str, pd.DataFrame, pd.DataFrame],
    redis_server: RedisServer,
    booster: xgb.Booster,
) -> None:
    # Anonymous reads of random ids once filled Redis to maxmemory and left a generation
    # with more scores than predictions (a rerun's verify then failed).
    generation, _, _ = published
    raw = redis_server.client()
    before = _writes(raw), raw.dbsize()
    unknown = np.random.default_rng(1).integers(10_000, 2**40, 500).tolist()
    with Client(make_settings(redis_server.url), model=StaticModel("7", booster)) as client:
        results = client.get_many(unknown) + client.get_many(range(0, 10_000, 37))
    assert {r.source for r in results[:500]} == {"fallback"}
    assert (_writes(raw), raw.dbsize()) == before
    stored = sum(raw.hlen(k) for k in raw.scan_iter(keys.score_pattern("sh", generation)))
    assert stored == 10_000 == int(raw.hget(keys.meta_key("sh", generation), "count"))


def _writes(raw: redis.Redis) -> int:
    """Write commands the server has run so far (INFO commandstats)."""
    stats = raw.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
        for name in ("hset", "hsetnx", "hmset", "set", "del", "hdel", "unlink")
    )


def test_a_customer_without_features_gets_the_no_history_score(
    published: tuple[str, pd.DataFrame, pd.DataFrame],
    redis_server: RedisServer,
    booster: xgb.Booster,
) -> None:
    generation, _, _ = published
    expected = float(booster.inplace_predict(no_history_vector(), missing=np.nan)[0])
    with Client(make_settings(redis_server.url), model=StaticModel("8", booster)) as client:
        result = client.get(10_000_123)
        assert result.source == "fallback" and result.score == pytest.approx(expected, abs=1e-7)
        assert result.model_version == "8"
    # A newer champion's score is returned but not written into version 7's generation.
    slot = keys.slot_of(10_000_123, make_settings(redis_server.url).redis.bucket_size, 0)
    assert (
        redis_server.client().hget(keys.score_key("sh", generation, slot.bucket), slot.field)
        is None
    )


def test_an_unknown_customer_scores_like_a_batch_customer_with_no_events(
    spark: SparkSession,
    published: tuple[str, pd.DataFrame, pd.DataFrame],
    redis_server: RedisServer,
) -> None:
    """The no-history vector is what the feature SQL gives a customer who signed up on ds,
    bought nothing and has no known attributes, so the fallback scores an unknown id exactly
    as the nightly batch scores that customer."""
    customers = spark.createDataFrame(
        [
            (1, DS, DS, None, None, None),  # new today, nothing known, no events
            (2, date(2025, 3, 1), date(2025, 3, 1), "smb", "west", True),  # buys
            (3, date(2025, 6, 1), date(2025, 6, 1), "consumer", "north", False),  # never bought
        ],
        RAW_CUSTOMERS,
    )
    transactions = spark.createDataFrame(
        [("t1", 2, datetime(2026, 1, 10, 9), 2, 30.5, date(2026, 1, 10))], RAW_TRANSACTIONS
    )
    sql = feature_sql()
    history = transforms.day_range(date(2025, 1, 1), DS)
    daily = {"transactions": transforms.daily_rollups(sql, "transactions", transactions, history)}
    features = transforms.features_from_state(
        sql, transforms.state_for_days(sql, daily, customers, [DS])
    )
    rows = features.select("customer_id", *feature_names()).toPandas().set_index("customer_id")
    names = feature_names()
    as_matrix = to_matrix({n: rows[n].to_numpy() for n in names}, names)
    assert np.array_equal(
        as_matrix[rows.index.get_loc(1)][None, :], no_history_vector(), equal_nan=True
    )
    # What an unknown id cannot know, compared with a long-standing customer who never bought.
    never = as_matrix[rows.index.get_loc(3)]
    default = no_history_vector()[0]
    differ = [
        n for i, n in enumerate(names) if not np.isclose(never[i], default[i], equal_nan=True)
    ]
    assert differ == ["tenure_days", "segment_code", "region_code"]

    # A model that uses exactly the features the no-history vector sets (tenure, codes,
    # recency missing or not), so a wrong default changes the score.
    train = feature_table(4000, seed=3)
    train.loc[train.index % 3 == 0, "days_since_last_purchase"] = np.nan
    train.loc[train.index % 5 == 0, ["segment_code", "region_code"]] = -1
    matrix = to_matrix({n: train[n].to_numpy() for n in names}, names)
    col = {n: i for i, n in enumerate(names)}
    logits = (
        1.0
        - 0.3 * matrix[:, col["tenure_days"]]
        + 0.8 * matrix[:, col["segment_code"]]
        + 1.5 * np.isnan(matrix[:, col["days_since_last_purchase"]])
    )
    label = (np.random.default_rng(9).random(len(train)) < 1 / (1 + np.exp(-logits))).astype(float)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 1},
        xgb.DMatrix(matrix, label=label, missing=np.nan, feature_names=names),
        num_boost_round=30,
    )
    batch = batch_scores(spark, features, booster).set_index("customer_id").score
    assert len(set(batch.round(6))) == 3  # the three customers score differently

    with Client(make_settings(redis_server.url), model=StaticModel("8", booster)) as client:
        result = client.get(10_000_777)  # in no generation, no stored features
    assert result.source == "fallback"
    assert abs(result.score - batch[1]) <= 1e-6


def test_faults_return_the_default_score_never_an_exception(
    published: tuple[str, pd.DataFrame, pd.DataFrame], redis_server: RedisServer
) -> None:
    class Broken:
        calls = 0

        def current(self) -> tuple[str, xgb.Booster]:
            Broken.calls += 1
            raise RuntimeError("registry unreachable")

    with Client(make_settings(redis_server.url), model=Broken(), breaker_cooldown_s=60) as client:
        for _ in range(5):
            result = client.get(20_000_001)
            assert result.source == "default" and result.score == 0.05
        assert Broken.calls == 3  # the breaker opened after three failures
        assert "circuit open" in (client.get(20_000_001).reason or "")
        assert client.get(1).source == "cache"  # hits do not need the model
    with Client(make_settings(redis_server.url), fallback=False) as client:
        assert client.get(20_000_001).reason == "fallback disabled"
    with pytest.raises(keys.InvalidEntityId):
        Client(make_settings(redis_server.url)).get("")


def test_fallback_matches_batch_scores_for_ten_thousand_customers(
    published: tuple[str, pd.DataFrame, pd.DataFrame],
    redis_server: RedisServer,
    booster: xgb.Booster,
) -> None:
    generation, _, scores = published
    raw = redis_server.client()
    # Take the score buckets away (kept aside) so every lookup goes through the fallback.
    dumps = {key: raw.dump(key) for key in raw.keys(f"sh:{generation}:s:*")}
    raw.delete(*dumps)
    try:
        with Client(make_settings(redis_server.url), model=StaticModel("7", booster)) as client:
            results = []
            for start in range(0, 10_000, 1000):
                results += client.get_many(range(start, start + 1000))
        assert {r.source for r in results} == {"fallback"}
        online = np.array([r.score for r in results])
        assert np.abs(online - scores.score.to_numpy()).max() <= 1e-6
    finally:
        for key, payload in dumps.items():
            raw.restore(key, 0, payload, replace=True)


def test_a_dead_redis_costs_no_latency_once_the_breaker_opens(
    tmp_path: Path, booster: xgb.Booster
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        server.client().set("sh:current", "nothing-yet")
        cfg = make_settings(server.url, SCOREHOUSE_SERVING__TIMEOUT_MS="200")
        client = Client(cfg, model=StaticModel("1", booster), breaker_cooldown_s=0.5)
        assert client.get(1).reason == "redis: LookupError: generation nothing-yet has no metadata"
        client.redis_breaker.success()
        server.client().execute_command("CLIENT", "PAUSE", "3000", "ALL")  # a hung server: timeouts
        slow = []
        for _ in range(3):
            start = time.perf_counter()
            assert client.get(1).source == "default"
            slow.append(time.perf_counter() - start)
        assert min(slow) >= 0.15  # each paid the 200 ms timeout
        start = time.perf_counter()
        for _ in range(100):
            result = client.get(1)
        assert result.reason == "redis circuit open"
        assert (time.perf_counter() - start) / 100 < 0.001
        server.stop()  # dead: connection refused while half-open trials run
        time.sleep(0.6)
        assert client.get(1).source == "default"
    finally:
        server.stop()


def test_the_client_recovers_when_redis_comes_back(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    port = server.port
    server.client().set("sh:current", "G")
    server.client().hset(
        "sh:G:meta",
        mapping={
            "ds": "2026-01-15",
            "model_version": "3",
            "bucket_size": 1000,
            "loaded_at": "2026-01-16T00:00:00+00:00",
        },
    )
    server.client().hset("sh:G:s:{0}", "42", 500_000_000)
    client = Client(make_settings(server.url), breaker_cooldown_s=0.2, pointer_ttl_ms=0)
    assert client.get(42).score == 0.5
    server.stop()
    assert [client.get(42).source for _ in range(5)] == ["default"] * 5
    restarted = RedisServer(tmp_path / "redis2", port=port).start()
    try:
        restarted.client().set("sh:current", "G")
        restarted.client().hset(
            "sh:G:meta", mapping={"ds": "2026-01-15", "model_version": "3", "bucket_size": 1000}
        )
        restarted.client().hset("sh:G:s:{0}", "42", 250_000_000)
        time.sleep(0.3)
        result = client.get(42)
        assert (result.source, result.score) == ("cache", 0.25)
        assert client.redis_breaker.state == "closed"
    finally:
        restarted.stop()


def test_read_only_user_can_read_scores_but_not_write(
    published: tuple[str, pd.DataFrame, pd.DataFrame], redis_server: RedisServer
) -> None:
    generation, _, scores = published
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "reader", *keys.reader_acl_rules("sh", "reader-pw"))
    try:
        reader = redis.Redis(
            host="127.0.0.1", port=redis_server.port, username="reader", password="reader-pw"
        )
        pointer = reader.get("sh:current").decode()
        assert pointer == generation
        assert reader.hget(f"sh:{pointer}:meta", "model_version") == b"7"
        width = int(reader.hget(f"sh:{pointer}:meta", "bucket_size"))
        slot = keys.slot_of(1234, width, 0)  # as an app does: the width from the metadata
        key = keys.score_key("sh", pointer, slot.bucket)
        assert keys.decode_score(reader.hget(key, slot.field)) == pytest.approx(
            scores.score[1234], abs=5e-10
        )
        for write in (
            lambda: reader.set("sh:current", "x"),
            lambda: reader.hset(key, slot.field, 1),
            lambda: reader.unlink("sh:current"),
            lambda: reader.flushall(),
            lambda: reader.get("other:key"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                write()
        client = Client(
            make_settings(
                redis_server.url,
                SCOREHOUSE_REDIS__USERNAME="reader",
                SCOREHOUSE_REDIS__PASSWORD="reader-pw",
            )
        )
        assert client.get(1234).source == "cache"
    finally:
        admin.acl_deluser("reader")


def test_an_error_reply_never_leaves_a_reply_for_the_next_lookup(tmp_path: Path) -> None:
    # Lookups write HGETs straight onto kept connections: after an error reply in the middle
    # of a batch, the unread replies must not be read by the next lookup.
    with RedisServer(tmp_path / "redis") as server:
        admin = server.client()
        admin.set("sh:current", "G")
        admin.hset("sh:G:meta", mapping={"ds": "2026-01-15", "model_version": "3"})
        admin.hset("sh:G:s:{0}", mapping={"1": 100_000_000, "2": 200_000_000})
        admin.set("sh:G:s:{5}", "not a hash")  # HGET on it answers WRONGTYPE
        with Client(make_settings(server.url), fallback=False, breaker_threshold=100) as client:
            broken = client.get_many([5001, 1, 2])
            assert [(r.source, r.score) for r in broken] == [("default", 0.05)] * 3
            assert "WRONGTYPE" in (broken[0].reason or "")
            assert [(r.source, r.score) for r in client.get_many([2, 1])] == [
                ("cache", 0.2),
                ("cache", 0.1),
            ]
            assert client.get(5001).source == "default"
            assert (client.get(1).source, client.get(1).score) == ("cache", 0.1)
            assert client.get(999).source == "default"  # a miss with the fallback disabled


def test_the_default_fallback_is_the_mlflow_champion_and_can_be_disabled() -> None:
    cfg = make_settings("redis://127.0.0.1:1/0")
    assert isinstance(Client(cfg).model, MlflowChampion)
    assert Client(cfg, fallback=False).model is None
    with pytest.raises(ValueError, match="fallback=False"):
        Client(cfg, model=StaticModel("1", xgb.Booster()), fallback=False)


@pytest.mark.parametrize(
    "bad", ["abc", "-5", "17.0", "+17", "017", "../x", "9" * 300, -5, 2**63, np.int64(-3)]
)
def test_an_int64_client_refuses_ids_that_name_no_entity(bad: object) -> None:
    # Refused before any Redis I/O: the URL points at nothing.
    with (
        Client(make_settings("redis://127.0.0.1:1/0")) as client,
        pytest.raises(keys.InvalidEntityId),
    ):
        client.get_many([1, bad])


def test_a_string_id_client_looks_string_ids_up(
    published: tuple[str, pd.DataFrame, pd.DataFrame],
    redis_server: RedisServer,
    booster: xgb.Booster,
) -> None:
    cfg = make_settings(redis_server.url)
    with pytest.raises(ValueError, match="id_type"):
        Client(cfg, id_type="uuid")  # type: ignore[arg-type]
    with Client(cfg, model=StaticModel("7", booster), id_type="string") as client:
        results = client.get_many(["cust-x", "017", 17])
    assert [(r.entity_id, r.source) for r in results] == [
        ("cust-x", "fallback"),
        ("017", "fallback"),
        ("17", "cache"),
    ]
