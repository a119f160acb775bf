"""The HTTP service on a real uvicorn (loopback, free port) and the publish/lookup CLI path."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
import xgboost as xgb
from pyspark.sql import SparkSession

from scorehouse.cli import main as cli_main
from scorehouse.features.registry import feature_names, no_history_vector
from scorehouse.localstack import free_port
from scorehouse.schemas import PREDICTIONS
from scorehouse.serving import Client, StaticModel
from scorehouse.serving.service import create_app
from scorehouse.settings import Settings, load_settings
from scorehouse.tables import Warehouse

DS = date(2026, 1, 15)


@pytest.fixture
def cfg(settings: Settings, redis_url: str) -> Settings:
    env = {
        "SCOREHOUSE_HOME": str(settings.home),
        "SCOREHOUSE_WAREHOUSE": str(settings.warehouse),
        "SCOREHOUSE_SPARK__PROFILE": "test",
        "SCOREHOUSE_REDIS__URL": redis_url,
        "SCOREHOUSE_SERVING__DEFAULT_SCORE": "0.05",
    }
    return load_settings(environ=env)


def write_predictions(spark: SparkSession, cfg: Settings, n: int) -> pd.DataFrame:
    """A predictions partition with a champion and a challenger, as scoring writes it."""
    rng = np.random.default_rng(4)
    now = datetime(2026, 1, 16, 2, tzinfo=UTC)
    rows = []
    for role, version in (("champion", "7"), ("challenger", "8")):
        scores = rng.random(n)
        for i in range(n):
            rows.append(
                (i, DS, float(scores[i]), 0.5, "propensity", version, role, "run", 3, now, None)
            )
    Warehouse.from_settings(spark, cfg).append(
        cfg.tables.predictions, spark.createDataFrame(rows, PREDICTIONS), partition_by=["ds"]
    )
    frame = pd.DataFrame(rows, columns=PREDICTIONS.names)
    return frame[frame.model_role == "champion"].reset_index(drop=True)


def test_publish_date_and_lookup_cli_return_the_tables_champion_scores(
    spark: SparkSession,
    cfg: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    champion = write_predictions(spark, cfg, 1200)
    env = {
        "SCOREHOUSE_WAREHOUSE": str(cfg.warehouse),
        "SCOREHOUSE_HOME": str(cfg.home),
        "SCOREHOUSE_SPARK__PROFILE": "test",
        "SCOREHOUSE_REDIS__URL": cfg.redis.url,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli_main(["publish", "--date", "2026-01-15"]) == 0
    assert "published 1200 scores" in capsys.readouterr().out
    assert cli_main(["lookup", "--no-fallback", "0", "1199", "5000"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["source"] for line in lines] == ["cache", "cache", "default"]
    assert lines[0]["score"] == pytest.approx(champion.score[0], abs=5e-10)
    assert lines[1]["score"] == pytest.approx(champion.score[1199], abs=5e-10)
    assert lines[0]["model_version"] == "7" and lines[0]["ds"] == "2026-01-15"
    assert cli_main(["publish", "rollback"]) == 1  # nothing before it: a clear error, exit 1
    assert "no previous generation" in capsys.readouterr().err


@pytest.fixture
def service(spark: SparkSession, cfg: Settings) -> Iterator[tuple[str, xgb.Booster]]:
    """uvicorn on a free loopback port, serving a published generation with a real booster."""
    from scorehouse.serving import loader

    rng = np.random.default_rng(8)
    names = feature_names()
    features = pd.DataFrame(
        {"customer_id": np.arange(2000), **{n: rng.poisson(3, 2000).astype(float) for n in names}}
    )
    matrix = features[names].to_numpy(dtype=np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(matrix, label=(matrix[:, 0] > 3).astype(float), feature_names=names),
        num_boost_round=10,
    )
    scores = pd.DataFrame(
        {
            "customer_id": np.arange(1000),
            "score": booster.inplace_predict(matrix[:1000]).astype(float),
        }
    )
    loader.publish(
        spark,
        cfg,
        ds=DS,
        scores=spark.createDataFrame(scores),
        features=spark.createDataFrame(features),
        model_name="propensity",
        model_version="7",
    )
    app = create_app(cfg, client=Client(cfg, model=StaticModel("7", booster)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", booster
    server.should_exit = True
    thread.join(timeout=10)


def test_http_lookups_hits_fallbacks_batch_health_and_metrics(
    service: tuple[str, xgb.Booster],
) -> None:
    base, booster = service
    with httpx.Client(base_url=base, timeout=5) as http:
        hit = http.get("/v1/scores/10")
        assert hit.status_code == 200 and hit.json()["source"] == "cache"
        assert hit.json()["model_version"] == "7" and hit.json()["ds"] == "2026-01-15"

        miss = http.get("/v1/scores/1500")  # features stored, score not: fallback
        assert miss.json()["source"] == "fallback"
        new = http.get("/v1/scores/999999")  # no features at all: no-history vector
        expected = float(booster.inplace_predict(no_history_vector())[0])
        assert new.json()["source"] == "fallback" and new.json()["score"] == pytest.approx(
            expected, abs=1e-7
        )

        batch = http.post("/v1/scores:batch", json={"ids": [1, "2", 1500, "cust-x"]})
        assert batch.status_code == 200
        assert [r["source"] for r in batch.json()["results"]] == [
            "cache",
            "cache",
            "cache",
            "fallback",
        ]

        bad = http.get("/v1/scores/%20")
        assert bad.status_code == 422 and "invalid entity id" in bad.json()["detail"]
        assert http.post("/v1/scores:batch", json={"ids": []}).status_code == 422
        assert http.post("/v1/scores:batch", json={"ids": list(range(1001))}).status_code == 422

        health = http.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        metrics = http.get("/metrics").text
        assert 'scorehouse_lookups_total{source="cache"}' in metrics
        assert 'scorehouse_lookups_total{source="fallback"}' in metrics
        assert "scorehouse_invalid_ids_total 1.0" in metrics


def test_http_lookup_body_is_the_clients_result_and_the_route_stays_documented(
    service: tuple[str, xgb.Booster], cfg: Settings
) -> None:
    base, _ = service
    with httpx.Client(base_url=base, timeout=5) as http, Client(cfg) as client:
        response = http.get("/v1/scores/10")
        expected = client.get(10).to_dict()
        body = response.json()
        schema = http.get("/openapi.json").json()
    assert response.headers["content-type"] == "application/json"
    # staleness_s is measured at lookup time; everything else must be identical.
    assert isinstance(body.pop("staleness_s"), float)
    expected.pop("staleness_s")
    assert body == expected
    assert "get" in schema["paths"]["/v1/scores/{entity_id}"]
    assert "post" in schema["paths"]["/v1/scores:batch"]
    # The app's startup moved the objects alive then out of the collector's passes.
    assert gc.get_freeze_count() > 0
