"""The churn example end to end up to the training set: its seeded generator, its files
through the real ingest (string account ids), next-day builds equal to the range
statement, a row per known account, and a training set with both labels."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from home_settings import home_env
from scorehouse.data.ingest import IngestResult, ingest_file
from scorehouse.features import transforms
from scorehouse.features.build import build_features
from scorehouse.features.registry import feature_sql
from scorehouse.features.training_set import build_training_set
from scorehouse.paths import EXAMPLES_DIR
from scorehouse.settings import Settings, load_settings
from scorehouse.storage.warehouse import Warehouse

CHURN = EXAMPLES_DIR / "churn"
ACCOUNTS, DAYS, SEED = 300, 120, 11
END = date(2026, 3, 31)
START = END - timedelta(days=DAYS - 1)
NOW = datetime(2026, 4, 1, 6, 0, tzinfo=UTC)  # the ingest's clock: the files are not future


def _generate() -> Callable[..., dict[str, Path]]:
    spec = importlib.util.spec_from_file_location("churn_generate", CHURN / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate  # type: ignore[no-any-return]


generate = _generate()


def test_the_generator_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    def files(folder: str, seed: int) -> dict[str, bytes]:
        written = generate(tmp_path / folder, accounts=200, days=60, seed=seed, end=END)
        return {source: path.read_bytes() for source, path in written.items()}

    first = files("a", 5)
    assert set(first) == {"accounts", "usage"}
    assert files("b", 5) == first
    again = files("c", 6)
    assert again["accounts"] != first["accounts"] and again["usage"] != first["usage"]


def test_the_generator_writes_plan_upgrades_cancellations_and_string_ids(tmp_path: Path) -> None:
    written = generate(tmp_path, accounts=ACCOUNTS, days=DAYS, seed=SEED, end=END)
    accounts = pd.read_csv(written["accounts"])
    usage = pd.read_csv(written["usage"])
    assert accounts.account_id.str.fullmatch(r"acc-[0-9a-f]{10}").all()
    assert accounts.account_id.nunique() == ACCOUNTS
    versions = accounts.groupby("account_id").plan.agg(list)
    upgraded = versions[versions.str.len() > 1]
    assert len(upgraded) > 0
    assert all(v in (["free", "pro"], ["pro", "team"]) for v in upgraded)
    cancels = usage[usage.event_type == "cancel"]
    assert cancels.account_id.is_unique
    # a few percent of the accounts a month
    assert 0.01 < len(cancels) / ACCOUNTS / (DAYS / 30) < 0.1
    # nothing after a cancellation
    last_use = usage.groupby("account_id").event_time.max()
    assert (last_use[cancels.account_id].to_numpy() == cancels.event_time.to_numpy()).all()
    assert usage.event_time.str[:10].between(str(START), str(END)).all()


def test_the_demo_runs_the_example_generator_and_ingests_the_accounts_first(
    tmp_path: Path,
) -> None:
    from scorehouse.demo import _count_argument, _generator, _ingest_order, example_names
    from scorehouse.project.load import load_project

    assert {"churn", "purchase_propensity"} <= set(example_names())
    made = _generator(CHURN)
    assert _count_argument(made) == "accounts"
    files = made(tmp_path, accounts=5, days=3, seed=1, end=END)
    assert _ingest_order(load_project(CHURN), files) == ["accounts", "usage"]


@pytest.fixture(scope="module")
def churn(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, Path], dict[str, IngestResult]]]:
    """The example's files ingested into a fresh home, SCOREHOUSE_PROJECT on the example."""
    tmp = tmp_path_factory.mktemp("churn")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCOREHOUSE_PROJECT", str(CHURN))
        settings = load_settings(environ=home_env(tmp / "home"))
        files = generate(tmp / "files", accounts=ACCOUNTS, days=DAYS, seed=SEED, end=END)
        results = {
            source: ingest_file(spark, settings, table=source, path=files[source], now=NOW)
            for source in ("accounts", "usage")
        }
        yield settings, files, results


def test_the_generated_files_ingest_without_rejects(churn: Any) -> None:
    settings, files, results = churn
    assert settings.warehouse.name == "churn"
    for source, result in results.items():
        lines = len(pd.read_csv(files[source]))
        assert (result.rows_read, result.rows_appended, result.rows_rejected) == (lines, lines, 0)


def test_next_day_builds_equal_the_range_statement_and_cover_every_known_account(
    spark: SparkSession, churn: Any
) -> None:
    settings, files, _ = churn
    day1, day2 = END - timedelta(days=1), END
    assert build_features(spark, settings, day1).mode == "range"
    assert build_features(spark, settings, day2).mode == "next-day"
    wh = Warehouse.from_settings(spark, settings)
    sql = feature_sql()
    built = wh.read(settings.tables.features, partitions={"ds": [day1, day2]})
    daily = transforms.daily_rollups(
        sql, "usage", wh.read(sql.raw_table("usage")), transforms.day_range(START, day2)
    )
    ranged = transforms.features_from_state(
        sql,
        transforms.state_for_days(
            sql, {"usage": daily}, wh.read(sql.raw_table("accounts")), [day1, day2]
        ),
    )
    assertDataFrameEqual(built, ranged.select(*built.columns))
    accounts = pd.read_csv(files["accounts"])
    for ds in (day1, day2):
        known = set(accounts.account_id[accounts.created_on <= str(ds)])
        got = [r.account_id for r in built.where(F.col("ds") == ds).select("account_id").collect()]
        assert len(got) == len(set(got)) and set(got) == known


def test_the_training_set_has_both_labels(spark: SparkSession, churn: Any) -> None:
    settings, _, _ = churn
    build = build_training_set(
        spark, settings, START + timedelta(days=40), END - timedelta(days=30)
    )
    assert 0 < build.positives < build.rows
    rows = Warehouse.from_settings(spark, settings).read(settings.tables.training_set)
    labels = {r.label: r.n for r in rows.groupBy("label").agg(F.count("*").alias("n")).collect()}
    assert set(labels) == {0, 1}
    assert labels[1] == build.positives


def test_online_fallback_scores_equal_batch_scores_for_every_account(
    spark: SparkSession, churn: Any, redis_server: Any
) -> None:
    """Batch scoring (the nightly's score_batch) and the fallback (the stored feature vector
    of a string id, decoded and scored on a miss) agree on every account to 1e-6."""
    import numpy as np
    import pyarrow as pa
    import xgboost as xgb

    from scorehouse.features.registry import feature_names, to_matrix
    from scorehouse.publish.sequence import PublishRequest, publish
    from scorehouse.scoring.batch import score_batch
    from scorehouse.serving.client import Client
    from scorehouse.serving.fallback import StaticModel

    settings, _, _ = churn
    cfg = load_settings(environ=home_env(settings.home, SCOREHOUSE_REDIS__URL=redis_server.url))
    build_features(spark, cfg, END)
    names = feature_names()
    wh = Warehouse.from_settings(spark, cfg)
    features = wh.read(cfg.tables.features, partitions={"ds": [END]}).select("account_id", *names)
    pdf = features.toPandas()
    matrix = to_matrix(pdf, names)
    label = (np.nan_to_num(matrix[:, names.index("active_days_30d")]) < 3).astype(float)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(matrix, label=label, missing=np.nan, feature_names=names),
        num_boost_round=20,
    )
    batch = score_batch(
        pa.RecordBatch.from_pandas(pdf), [("champion", booster, names)], "account_id"
    )
    scores = pd.DataFrame(
        {"account_id": batch.column(0).to_pylist(), "score": batch.column(1).to_numpy()}
    )
    redis_server.client().flushall()
    info = publish(
        spark,
        cfg,
        PublishRequest(
            ds=END,
            scores=spark.createDataFrame(scores),
            features=features,
            model_name="churn",
            model_version="1",
        ),
    )
    ids = scores.account_id.tolist()
    raw = redis_server.client()
    with Client(cfg, model=StaticModel("1", booster)) as client:
        hits = client.get_many(ids)
        assert {r.source for r in hits} == {"cache"}
        raw.delete(*raw.keys(f"sh:{info.generation}:s:*"))  # every lookup misses now
        misses = client.get_many(ids)
    assert {r.source for r in misses} == {"fallback"}
    batch_scores = scores.score.to_numpy(dtype=np.float64)
    assert np.abs(np.array([r.score for r in hits]) - batch_scores).max() <= 1e-6
    assert np.abs(np.array([r.score for r in misses]) - batch_scores).max() <= 1e-6
