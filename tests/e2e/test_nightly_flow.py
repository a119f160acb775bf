"""The whole nightly path on small data: real Spark, Delta, MLflow, Redis and Prefect flows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import redis
from prefect.testing.utilities import prefect_test_harness
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from scorehouse.data.generate import write_generated
from scorehouse.features import transforms
from scorehouse.serving import Client, keys
from scorehouse.settings import Settings, load_settings
from scorehouse.tables import Warehouse

CUSTOMERS = 800
DAYS = 200
WARM_UP = 50  # as-of dates start once customers have some history
END = date(2026, 10, 31)


@pytest.fixture(scope="module")
def prefect() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def e2e_settings(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The flows load settings from the environment, as a deployment would."""
    home = tmp_path / "home"
    env = {
        "SCOREHOUSE_HOME": str(home),
        "SCOREHOUSE_WAREHOUSE": str(home / "warehouse"),
        "SCOREHOUSE_SPARK__PROFILE": "test",
        "SCOREHOUSE_MLFLOW__TRACKING_URI": f"sqlite:///{home}/mlflow.db",
        "SCOREHOUSE_MLFLOW__ARTIFACT_LOCATION": str(home / "mlartifacts"),
        "SCOREHOUSE_REDIS__URL": redis_url,
        "SCOREHOUSE_MODEL__NUM_BOOST_ROUND": "30",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def test_nightly_path_end_to_end(
    spark: SparkSession, e2e_settings: Settings, prefect: None
) -> None:
    from scorehouse.flows import nightly, weekly_train

    settings = e2e_settings
    start = END - timedelta(days=DAYS - 1)
    write_generated(spark, settings, customers=CUSTOMERS, start=start, days=DAYS, seed=3)

    trained = weekly_train(as_of=END - timedelta(days=1), lookback_days=DAYS - WARM_UP)
    assert trained["training"]["alias"] == "champion"
    first = nightly(ds=END)

    wh = Warehouse.from_settings(spark, settings)
    predictions = wh.read(settings.tables.predictions, partitions={"ds": [END]})
    champion = predictions.where(F.col("model_role") == "champion")
    entities = transforms.entities(wh.read(settings.tables.customers), [END]).count()
    assert champion.count() == entities == first["scoring"]["rows"]
    assert champion.select("customer_id").distinct().count() == entities

    # Redis holds one value per prediction in the live generation.
    client = redis.Redis.from_url(settings.redis.url)
    ns = settings.redis.namespace
    generation = client.get(keys.pointer_key(ns)).decode()
    stored = sum(
        client.hlen(key)
        for key in client.scan_iter(match=keys.score_pattern(ns, generation), count=1000)
    )
    assert stored == entities

    # What a downstream app reads equals the Delta table's score.
    expected = {r.customer_id: r.score for r in champion.orderBy("customer_id").limit(50).collect()}
    with Client(settings) as lookup:
        results = lookup.get_many(list(expected))
    for result in results:
        assert result.source == "cache"
        assert result.ds == END
        assert abs(result.score - expected[int(result.entity_id)]) <= 1e-9

    # A rerun of the same night changes no row count and leaves one live generation.
    counts_before = {
        t: wh.read(t).count() for t in (settings.tables.features, settings.tables.predictions)
    }
    second = nightly(ds=END)
    counts_after = {
        t: wh.read(t).count() for t in (settings.tables.features, settings.tables.predictions)
    }
    assert counts_after == counts_before
    assert second["scoring"]["rows"] == first["scoring"]["rows"]
    live = client.get(keys.pointer_key(ns)).decode()
    stored = sum(
        client.hlen(key) for key in client.scan_iter(match=keys.score_pattern(ns, live), count=1000)
    )
    assert stored == entities
