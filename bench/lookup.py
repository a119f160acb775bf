"""Lookup latency on loopback: Client hits and fallbacks, HTTP hits and fallbacks.

    python bench/lookup.py --entities 100000 --requests 20000

Prints a table and writes bench/results/lookup.json. The generation is written with the key
contract directly (no Spark); the HTTP service runs in its own process (uvicorn), measured
with a keep-alive httpx client. Fallback runs use write_back=False so every request misses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import redis
import xgboost as xgb

from scorehouse.features.registry import feature_names
from scorehouse.localstack import RedisServer, free_port
from scorehouse.serving import Client, StaticModel, keys
from scorehouse.settings import Settings, load_settings

RESULTS = Path(__file__).parent / "results"
GENERATION = "20260115-1-bench"


def settings_for(url: str) -> Settings:
    return load_settings(environ={"SCOREHOUSE_REDIS__URL": url})


def write_generation(client: redis.Redis, entities: int, booster_path: Path) -> None:
    """Scores for the first half of the ids, feature vectors for all of them."""
    rng = np.random.default_rng(3)
    names = feature_names()
    matrix = rng.poisson(4, (entities, len(names))).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "nthread": 1},
        xgb.DMatrix(matrix, label=(matrix[:, 0] > 4).astype(float), feature_names=names),
        num_boost_round=100,
    )
    booster.save_model(booster_path)
    scores = keys.encode_scores(booster.inplace_predict(matrix).astype(float))
    vectors = keys.encode_feature_matrix(matrix)
    pipe = client.pipeline(transaction=False)
    for start in range(0, entities, 1000):
        bucket = str(start // 1000)
        stop = min(start + 1000, entities)
        if start < entities // 2:
            pipe.hset(
                keys.score_key("sh", GENERATION, bucket),
                mapping={str(i % 1000): int(scores[i]) for i in range(start, stop)},
            )
        pipe.hset(
            keys.features_key("sh", GENERATION, bucket),
            mapping={str(i % 1000): vectors[i] for i in range(start, stop)},
        )
        pipe.execute()
    client.hset(
        keys.meta_key("sh", GENERATION),
        mapping={"ds": "2026-01-15", "model_name": "bench", "model_version": "1", "count": entities // 2,
                 "bucket_size": 1000, "string_buckets": 0, "features": ",".join(names),
                 "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"), "status": "live"},
    )  # fmt: skip
    client.set(keys.pointer_key("sh"), GENERATION)


def percentiles(samples: list[float]) -> dict[str, float]:
    values = np.array(samples) * 1e6
    return {"p50_us": float(np.percentile(values, 50)), "p99_us": float(np.percentile(values, 99))}


def time_calls(call, ids: np.ndarray) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for entity in ids.tolist():
        start = time.perf_counter()
        call(entity)
        out.append(time.perf_counter() - start)
    return out


def serve(url: str, port: int, booster_path: Path) -> None:
    """Child process: the HTTP service with a fixed booster, no write-back."""
    import uvicorn

    from scorehouse.serving.service import create_app

    settings = settings_for(url)
    booster = xgb.Booster(model_file=str(booster_path))
    app = create_app(
        settings, client=Client(settings, model=StaticModel("1", booster), write_back=False)
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "lookup.json")
    parser.add_argument(
        "--serve", nargs=3, metavar=("URL", "PORT", "BOOSTER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), Path(args.serve[2]))
        return
    rng = np.random.default_rng(11)
    half = args.entities // 2
    hits = rng.integers(0, half, args.requests)
    misses = rng.integers(half, args.entities, max(1000, args.requests // 4))
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        booster_path = Path(tmp) / "model.ubj"
        write_generation(server.client(), args.entities, booster_path)
        settings = settings_for(server.url)
        booster = xgb.Booster(model_file=str(booster_path))
        client = Client(settings, model=StaticModel("1", booster), write_back=False)
        time_calls(client.get, hits[:2000])  # warm up
        result: dict[str, dict[str, float]] = {
            "client_hit": percentiles(time_calls(client.get, hits)),
            "client_fallback": percentiles(time_calls(client.get, misses)),
        }
        assert client.get(int(misses[0])).source == "fallback"
        port = free_port()
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", server.url, str(port), str(booster_path)]
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                time_calls(lambda e: http.get(f"/v1/scores/{e}"), hits[:2000])
                result["http_hit"] = percentiles(
                    time_calls(lambda e: http.get(f"/v1/scores/{e}"), hits)
                )
                result["http_fallback"] = percentiles(
                    time_calls(lambda e: http.get(f"/v1/scores/{e}"), misses)
                )
                assert http.get(f"/v1/scores/{int(misses[0])}").json()["source"] == "fallback"
        finally:
            child.terminate()
            child.wait(timeout=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"entities": args.entities, "requests": args.requests, **result}, indent=2)
    )
    print(f"{'path':<16} {'p50 µs':>10} {'p99 µs':>10}")
    for name, figures in result.items():
        print(f"{name:<16} {figures['p50_us']:>10.0f} {figures['p99_us']:>10.0f}")


if __name__ == "__main__":
    main()
