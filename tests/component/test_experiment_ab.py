"""Champion vs challenger on real components: the arm rule in Spark SQL, a published
generation serving each entity its arm's score (Client and the key contract agree), and the
per-arm outcomes written and pooled into a verdict."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from scorehouse.cli import main as cli_main
from scorehouse.errors import RedisLoadError
from scorehouse.monitoring.outcomes import experiment_standing, record_arms
from scorehouse.publish.plan import arm_column
from scorehouse.publish.sequence import publish_date
from scorehouse.schemas import PREDICTIONS
from scorehouse.scoring.batch import Assignment
from scorehouse.serving import Client, keys
from scorehouse.serving.generation import Experiment
from scorehouse.settings import Settings, load_settings
from scorehouse.storage.warehouse import Warehouse

DS = date(2026, 1, 15)
NAME = "spring-promo"


def experiment_settings(settings: Settings, redis_url: str, share: float) -> Settings:
    return load_settings(
        environ={
            "SCOREHOUSE_HOME": str(settings.home),
            "SCOREHOUSE_WAREHOUSE": str(settings.warehouse),
            "SCOREHOUSE_SPARK__PROFILE": "test",
            "SCOREHOUSE_REDIS__URL": redis_url,
            "SCOREHOUSE_EXPERIMENT__NAME": NAME,
            "SCOREHOUSE_EXPERIMENT__CHALLENGER_SHARE": str(share),
            "SCOREHOUSE_EXPERIMENT__MIN_ROWS_PER_ARM": "500",
        }
    )


def test_spark_sql_arm_equals_the_python_rule(spark: SparkSession):
    ids = ["0", "28", "4999123", "9223372036854775807", "cust-ab", "é", "日本-42", "x" * 200]
    frame = spark.createDataFrame([(i,) for i in ids], "id string")
    crc = F.crc32(F.concat(F.lit(f"{NAME}:"), F.col("id")).cast("binary"))
    arm = arm_column("id", Experiment(NAME, 0.5, 5000, "8"))
    for row in frame.select("id", crc.alias("crc"), arm.alias("arm")).collect():
        assert row.crc == zlib.crc32(f"{NAME}:{row.id}".encode())
        assert row.arm == keys.experiment_arm(NAME, row.id, 5000)


def write_predictions(spark: SparkSession, cfg: Settings, n: int, slots: int) -> pd.DataFrame:
    """Both roles' rows of ids 0..n-1 with the arms scoring writes (Assignment.arms); returns
    (customer_id, champion, challenger, arm)."""
    rng = np.random.default_rng(5)
    ids = np.arange(n)
    arms = Assignment(NAME, slots).arms(pa.array(ids)).to_pylist()
    scores = {"champion": rng.random(n), "challenger": rng.random(n)}
    now = datetime(2026, 1, 16, 2, tzinfo=UTC)
    rows = [
        (int(i), DS, float(scores[role][i]), 0.5, "propensity", version, role, "run", 3, now,
         None, NAME, arms[i])
        for role, version in (("champion", "7"), ("challenger", "8"))
        for i in ids
    ]  # fmt: skip
    frame = spark.createDataFrame(rows, PREDICTIONS).repartition(2)
    Warehouse.from_settings(spark, cfg).append(cfg.tables.predictions, frame, partition_by=["ds"])
    return pd.DataFrame({"customer_id": ids, **scores, "arm": arms})


def test_a_generation_serves_each_entity_its_arms_score(
    spark: SparkSession, settings: Settings, redis_url: str
):
    cfg = experiment_settings(settings, redis_url, 0.3)
    expected = write_predictions(spark, cfg, 1500, keys.challenger_slots(0.3))
    info = publish_date(spark, cfg, DS)
    assert info.experiment == Experiment(NAME, 0.3, 3000, "8")
    assert info.count == 1500 and info.model_version == "7"
    assert info.stats["load_path"] == "files"  # the load tasks kept the served rows themselves
    with Client(cfg, fallback=False) as client:
        results = client.get_many(expected.customer_id.tolist())
    served = np.where(expected.arm == "challenger", expected.challenger, expected.champion)
    assert [r.arm for r in results] == expected.arm.tolist()
    assert [r.model_version for r in results] == [
        "8" if a == "challenger" else "7" for a in expected.arm
    ]
    np.testing.assert_allclose([r.score for r in results], served, atol=5e-10)
    assert 0.25 < (expected.arm == "challenger").mean() < 0.35
    # An app with the key contract only: the metadata, the arm rule and one HGET.
    plain = redis.Redis.from_url(redis_url, decode_responses=True)
    meta = plain.hgetall(keys.meta_key(cfg.redis.namespace, info.generation))
    for row in expected.head(40).itertuples():
        arm = keys.experiment_arm(
            meta["experiment"], row.customer_id, int(meta["experiment_slots"])
        )
        slot = keys.slot_of(row.customer_id, int(meta["bucket_size"]), 0)
        raw = plain.hget(
            keys.score_key(cfg.redis.namespace, info.generation, slot.bucket), slot.field
        )
        assert arm == row.arm
        assert keys.decode_score(raw) == pytest.approx(getattr(row, arm), abs=5e-10)


def test_a_day_scored_with_another_share_is_refused(
    spark: SparkSession, settings: Settings, redis_url: str
):
    cfg = experiment_settings(settings, redis_url, 0.2)
    write_predictions(spark, cfg, 300, keys.challenger_slots(0.3))
    with pytest.raises(RedisLoadError, match="not in the arm that experiment 'spring-promo'"):
        publish_date(spark, cfg, DS)


def realized_night(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """One night's realized predictions: the challenger's scores carry more signal."""
    arms = Assignment(NAME, 3000).arms(pa.array(np.arange(n))).to_pylist()
    label = (rng.random(n) < 0.3).astype(int)
    frames = []
    for role, version, signal in (("champion", "7", 0.4), ("challenger", "8", 1.2)):
        score = 1 / (1 + np.exp(-(signal * label + rng.normal(size=n))))
        frames.append(pd.DataFrame({"model_role": role, "model_version": version, "score": score,
                                    "label": label, "arm": arms, "experiment": NAME}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_per_arm_outcomes_accumulate_into_a_verdict(
    spark: SparkSession,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    cfg = experiment_settings(settings, "redis://127.0.0.1:1/0", 0.3)
    rng = np.random.default_rng(11)
    for day in range(3):
        run = {"ds": DS + timedelta(days=day), "horizon_days": 30,
               "computed_at": datetime(2026, 3, 1), "flow_run_id": None}  # fmt: skip
        frame = realized_night(rng, 2000)
        table = record_arms(spark, cfg, frame, run)
        assert table is not None
        served = frame[frame.model_role == frame.arm]
        assert table.challenger_rows[0] == (served.arm == "challenger").sum()
    standing = experiment_standing(cfg)
    assert standing is not None
    assert (standing.days, standing.challenger_version, standing.champion_versions) == (
        3,
        "8",
        ("7",),
    )
    assert standing.first_ds == DS and standing.last_ds == DS + timedelta(days=2)
    assert standing.rows["champion"] + standing.rows["challenger"] == 6000
    assert standing.roc_auc["challenger"] > standing.roc_auc["champion"]
    assert standing.verdict == "earned"
    for key, value in (("HOME", cfg.home), ("WAREHOUSE", cfg.warehouse),
                       ("EXPERIMENT__NAME", NAME), ("EXPERIMENT__MIN_ROWS_PER_ARM", 500)):  # fmt: skip
        monkeypatch.setenv(f"SCOREHOUSE_{key}", str(value))
    assert cli_main(["models", "experiment", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["standing"]["verdict"] == "earned" and shown["standing"]["days"] == 3
    assert shown["standing"]["auc"]["p_value"] == pytest.approx(standing.auc.p_value)
    assert cli_main(["models", "experiment"]) == 0
    assert "verdict: earned" in capsys.readouterr().out
