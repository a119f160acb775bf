"""`scorehouse demo`: the whole path on embedded local defaults, timed stage by stage.

generate data → weekly training flow (training set → XGBoost → MLflow registry) →
nightly flow (features → scores → Redis) → lookups, with a project-run redis-server.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from scorehouse.settings import Settings


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    began = time.perf_counter()
    print(f"==> {name}", flush=True)
    yield
    timings[name] = round(time.perf_counter() - began, 1)
    print(f"    {name}: {timings[name]} s", flush=True)


def run_demo(
    settings: Settings, *, customers: int, days: int, seed: int, config: str | None = None
) -> dict[str, float]:
    """Run everything once for `customers` over `days` of history ending yesterday (UTC)."""
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    # When `scorehouse up` runs a Prefect server, the demo's runs go there (and show in
    # its UI); otherwise an ephemeral server keeps its state in a home of its own, so two
    # servers never write one SQLite file.
    from scorehouse.stack import http_ok, prefect_api_url

    if "PREFECT_API_URL" not in os.environ and http_ok(f"{prefect_api_url(settings)}/health"):
        os.environ["PREFECT_API_URL"] = prefect_api_url(settings)
        os.environ.setdefault("PREFECT_HOME", str((home / "prefect").resolve()))
    else:
        os.environ.setdefault("PREFECT_HOME", str((home / "prefect-ephemeral").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    from scorehouse import localstack
    from scorehouse.data.generate import write_generated
    from scorehouse.flows import nightly, weekly_train
    from scorehouse.serving import Client
    from scorehouse.spark import get_spark

    timings: dict[str, float] = {}
    end = datetime.now(tz=UTC).date() - timedelta(days=1)
    start = end - timedelta(days=days - 1)
    train_as_of = end - timedelta(days=1)
    began = time.perf_counter()

    with _stage(timings, "start redis-server"):
        port = urlparse(settings.redis.url).port or 6379
        redis = localstack.up(home / "redis", port)
    with _stage(timings, "start spark"):
        spark = get_spark(settings, app_name="scorehouse-demo")
    with _stage(timings, f"generate {customers} customers x {days} days"):
        generated = write_generated(
            spark, settings, customers=customers, start=start, days=days, seed=seed
        )
        print(
            f"    {generated.customer_rows} customer versions, {generated.transaction_rows} transactions"
        )
    with _stage(timings, "weekly_train flow (training set, XGBoost, MLflow, gate)"):
        # The first weeks of generated history give customers no past to learn from:
        # sample as-of dates only after a warm-up.
        warm_up = min(60, days // 3)
        trained = weekly_train(as_of=train_as_of, lookback_days=days - warm_up, config=config)
        t = trained["training"]
        print(
            f"    model {t['model_name']} v{t['version']} -> {t['alias']} (test AUC {t['test_roc_auc']:.4f}): {t['reason']}"
        )
    with _stage(timings, f"nightly flow for {end} (features, score, publish)"):
        result = nightly(ds=end, config=config)
        print(
            f"    {result['scoring']['rows']} predictions, Redis generation {result['publish'].get('generation')}"
        )
    spark.stop()  # frees the cores the lookups below are meant to show
    with _stage(timings, "lookups"):
        # A first lookup in a fresh process also connects and loads the model.
        patient = settings.model_copy(
            update={"serving": settings.serving.model_copy(update={"timeout_ms": 2000})}
        )
        with Client(patient) as client:  # the champion scores the unknown id, as HTTP does
            for score in client.get_many([1, 2, 3, customers + 10_000_000]):
                print("   ", json.dumps(score.to_dict()))
    timings["total"] = round(time.perf_counter() - began, 1)
    (home / "demo_timings.json").write_text(json.dumps(timings, indent=2))
    _print_where(settings, redis.url, end)
    return timings


def _print_where(settings: Settings, redis_url: str, ds: object) -> None:
    wh = Path(settings.warehouse).resolve()
    print(
        f"""
Done. Where everything is:
  Delta tables   {wh}/<table>   (raw_customers, raw_transactions, daily_transactions,
                 features, training_set, predictions, monitoring, step_runs,
                 publications)
                 scorehouse sql "SELECT * FROM predictions WHERE ds = '{ds}' ORDER BY score DESC LIMIT 10"
                 python -c "import polars as pl; print(pl.read_delta('{wh}/predictions'))"
  MLflow         {settings.mlflow.tracking_uri}
                 mlflow ui --backend-store-uri {settings.mlflow.tracking_uri}  → http://127.0.0.1:5000
  Redis          {redis_url}   (still running; key contract in docs/redis-keys.md)
                 scorehouse lookup 1 2 3
                 redis-cli -p {urlparse(redis_url).port} GET {settings.redis.namespace}:current
  Stage timings  {Path(settings.home).resolve()}/demo_timings.json
"""
    )
