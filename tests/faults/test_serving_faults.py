"""Faults at the serving edge: a valid id never gets a 5xx, a bad id always gets a 4xx.

Real redis-server, the real FastAPI app on uvicorn on a free loopback port; the generation is published with the helpers of tests/component/test_serving_service.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pyspark.sql import SparkSession

from component.test_serving_service import publish_generation, running, service_env
from scorehouse.cli import main as cli_main
from scorehouse.localstack import RedisServer
from scorehouse.serving import Client, StaticModel
from scorehouse.serving.service import create_app
from scorehouse.settings import Settings, load_settings

GARBAGE_IDS = [
    "abc",
    "-5",
    "17.0",
    "+17",
    "017",
    "1e3",
    "9223372036854775808",  # 2^63
    "99999999999999999999999",
    "%20",
    "9" * 300,
    "é",
]


@pytest.fixture
def cfg(settings: Settings, redis_url: str) -> Settings:
    return load_settings(environ=service_env(settings, redis_url))


def test_with_redis_stopped_valid_ids_get_200_and_the_declared_default(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        cfg = load_settings(
            environ={**service_env(settings, server.url), "SCOREHOUSE_SERVING__TIMEOUT_MS": "200"}
        )
        booster = publish_generation(spark, cfg)
        app = create_app(cfg, client=Client(cfg, model=StaticModel("7", booster)))
        with running(app) as base, httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/v1/scores/10").json()["source"] == "cache"
            server.stop()
            for entity in ["10", "1500", "999999", "10", "10"]:  # the breaker opens on the way
                response = http.get(f"/v1/scores/{entity}")
                assert response.status_code == 200
                body = response.json()
                assert (body["source"], body["score"]) == ("default", 0.05)
                assert body["reason"].startswith("redis")
            assert body["reason"] == "redis circuit open"
            batch = http.post("/v1/scores:batch", json={"ids": [10, "1500"]})
            assert batch.status_code == 200
            assert {r["source"] for r in batch.json()["results"]} == {"default"}
            assert http.get("/v1/scores/abc").status_code == 422
            assert http.get("/healthz").status_code == 503  # the probe says degraded
    finally:
        server.stop()


@pytest.mark.parametrize("entity_id", GARBAGE_IDS)
def test_a_garbage_id_gets_422_with_a_clear_message_and_no_redis_read(
    cfg: Settings, redis_server: RedisServer, entity_id: str
) -> None:
    raw = redis_server.client()
    reads = _calls(raw, "hget") + _calls(raw, "get")
    with running(create_app(cfg)) as base:
        response = httpx.get(f"{base}/v1/scores/{entity_id}")
    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid entity id: ")
    assert _calls(raw, "hget") + _calls(raw, "get") == reads


@pytest.mark.parametrize("path", ["/v1/scores/../x", "/v1/scores/..%2Fx", "/v1/scores/"])
def test_a_path_like_or_empty_id_gets_a_4xx(cfg: Settings, path: str) -> None:
    with running(create_app(cfg)) as base:
        assert 400 <= httpx.get(base + path).status_code < 500


def test_a_model_answering_nan_gives_the_default_not_a_500(
    spark: SparkSession, cfg: Settings
) -> None:
    publish_generation(spark, cfg)
    client = Client(cfg, model=StaticModel("7", NanBooster()))  # type: ignore[arg-type]
    with running(create_app(cfg, client=client)) as base:
        response = httpx.get(f"{base}/v1/scores/1500")
    assert response.status_code == 200
    body = response.json()
    assert (body["source"], body["score"]) == ("default", 0.05)
    assert "non-finite" in body["reason"]


@pytest.mark.parametrize("entity_id", ["abc", "-5", "017", "9223372036854775808"])
def test_the_lookup_cli_refuses_a_garbage_id_in_one_line_with_exit_2(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    entity_id: str,
) -> None:
    # No server on the URL: the id is refused before any Redis I/O.
    for key, value in service_env(settings, "redis://127.0.0.1:1/0").items():
        monkeypatch.setenv(key, value)
    assert cli_main(["lookup", "1", entity_id]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: invalid entity id: ") and err.count("\n") == 1


class NanBooster:
    """A model that answers NaN (a broken export); the rest of the Booster API it needs."""

    def copy(self) -> NanBooster:
        return self

    def set_param(self, params: dict[str, Any]) -> None:
        pass

    def inplace_predict(self, matrix: np.ndarray, missing: float) -> np.ndarray:
        return np.full(len(matrix), np.nan)


def _calls(raw: Any, command: str) -> int:
    return int(raw.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
