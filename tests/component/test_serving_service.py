"""The HTTP service on a real uvicorn (loopback, free port) and the publish/lookup CLI path.

`service_env`, `publish_generation` and `running` are shared with tests/faults."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
import xgboost as xgb
from fastapi import FastAPI
from pyspark.sql import SparkSession

from scorehouse.cli import main as cli_main
from scorehouse.features.registry import feature_names, no_history_vector
from scorehouse.localstack import free_port
from scorehouse.schemas import PREDICTIONS
from scorehouse.serving import Client, StaticModel
from scorehouse.serving.service import create_app
from scorehouse.settings import Settings, load_settings
from scorehouse.storage.warehouse import Warehouse
from scoring_support import register_model

DS = date(2026, 1, 15)


def service_env(settings: Settings, redis_url: str) -> dict[str, str]:
    """The environment of a service on `redis_url` in the test's home (declared default 0.05)."""
    return {
        "SCOREHOUSE_HOME": str(settings.home),
        "SCOREHOUSE_WAREHOUSE": str(settings.warehouse),
        "SCOREHOUSE_SPARK__PROFILE": "test",
        "SCOREHOUSE_REDIS__URL": redis_url,
        "SCOREHOUSE_SERVING__DEFAULT_SCORE": "0.05",
    }


@pytest.fixture
def cfg(settings: Settings, redis_url: str) -> Settings:
    return load_settings(environ=service_env(settings, redis_url))


def write_predictions(spark: SparkSession, cfg: Settings, n: int) -> pd.DataFrame:
    """A predictions partition with a champion and a challenger, as scoring writes it."""
    rng = np.random.default_rng(4)
    now = datetime(2026, 1, 16, 2, tzinfo=UTC)
    rows = []
    for role, version in (("champion", "7"), ("challenger", "8")):
        scores = rng.random(n)
        for i in range(n):
            rows.append(
                (
                    i,
                    DS,
                    float(scores[i]),
                    0.5,
                    "propensity",
                    version,
                    role,
                    "run",
                    3,
                    now,
                    None,
                    None,
                    None,
                )  # flow_run_id, experiment, arm
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
    [row] = Warehouse.from_settings(spark, cfg).read(cfg.tables.publications).collect()
    assert (row.ds, row["count"], row.model_version, row.flow_run_id) == (DS, 1200, "7", None)
    assert cli_main(["lookup", "--no-fallback", "0", "1199", "5000"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["source"] for line in lines] == ["cache", "cache", "default"]
    assert lines[0]["score"] == pytest.approx(champion.score[0], abs=5e-10)
    assert lines[1]["score"] == pytest.approx(champion.score[1199], abs=5e-10)
    assert lines[0]["model_version"] == "7" and lines[0]["ds"] == "2026-01-15"
    assert cli_main(["publish", "rollback"]) == 1  # nothing before it: a clear error, exit 1
    assert "no previous generation" in capsys.readouterr().err


def publish_generation(spark: SparkSession, cfg: Settings) -> xgb.Booster:
    """Publish scores of ids 0-999 and feature vectors of ids 0-1999 (1000-1999 miss with
    stored features) as model version 7; returns the booster that computed the scores."""
    from scorehouse.publish.sequence import PublishRequest, publish

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
    publish(
        spark,
        cfg,
        PublishRequest(
            ds=DS,
            scores=spark.createDataFrame(scores),
            features=spark.createDataFrame(features),
            model_name="propensity",
            model_version="7",
        ),
    )
    return booster


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """`app` on uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def service(spark: SparkSession, cfg: Settings) -> Iterator[tuple[str, xgb.Booster]]:
    """uvicorn on a free loopback port, serving a published generation with a real booster."""
    booster = publish_generation(spark, cfg)
    with running(create_app(cfg, client=Client(cfg, model=StaticModel("7", booster)))) as base:
        yield base, booster


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

        batch = http.post("/v1/scores:batch", json={"ids": [1, "2", 1500, 999999]})
        assert batch.status_code == 200
        assert [r["source"] for r in batch.json()["results"]] == [
            "cache",
            "cache",
            "fallback",  # a miss is scored again, never written into the generation
            "fallback",
        ]
        assert batch.json()["results"][3]["score"] == new.json()["score"]

        bad = http.get("/v1/scores/%20")
        assert bad.status_code == 422 and "invalid entity id" in bad.json()["detail"]
        for ids in ([1, "cust-x"], [1, -5], [1, 2**63], [1, 17.0], [1, True]):
            assert http.post("/v1/scores:batch", json={"ids": ids}).status_code == 422, ids
        assert http.post("/v1/scores:batch", json={"ids": []}).status_code == 422
        assert http.post("/v1/scores:batch", json={"ids": list(range(1001))}).status_code == 422

        health = http.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        metrics = http.get("/metrics").text
        assert 'scorehouse_lookups_total{source="cache"}' in metrics
        assert 'scorehouse_lookups_total{source="fallback"}' in metrics
        assert "scorehouse_invalid_ids_total 4.0" in metrics  # pydantic refuses 17.0 and true


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


def test_an_unknown_id_gets_one_answer_from_the_client_http_and_the_cli(
    spark: SparkSession,
    cfg: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every reader built from the settings alone scores a miss with the MLflow champion."""
    booster = publish_generation(spark, cfg)
    version = register_model(cfg, booster, "champion")
    for key, value in service_env(cfg, cfg.redis.url).items():
        monkeypatch.setenv(key, value)
    ids = ["1500", "999999"]  # features stored but no score; in no generation at all

    with Client(cfg) as client:
        from_client = [r.to_dict() for r in client.get_many(ids)]
    with running(create_app(cfg)) as base, httpx.Client(base_url=base, timeout=30) as http:
        from_http = [http.get(f"/v1/scores/{i}").json() for i in ids]
    capsys.readouterr()
    assert cli_main(["lookup", *ids]) == 0
    from_cli = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    def answer(body: dict[str, object]) -> tuple[object, ...]:
        return body["entity_id"], body["score"], body["source"], body["model_version"]

    assert [answer(b) for b in from_client] == [answer(b) for b in from_http]
    assert [answer(b) for b in from_cli] == [answer(b) for b in from_http]
    assert {b["source"] for b in from_client} == {"fallback"}
    assert {b["model_version"] for b in from_client} == {version}
    expected = float(booster.inplace_predict(no_history_vector())[0])
    assert from_client[1]["score"] == pytest.approx(expected, abs=1e-7)
