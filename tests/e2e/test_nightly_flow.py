"""The whole nightly path on small data: real Spark, Delta, MLflow, Redis and Prefect flows.

One session fixture (conftest.py) generates the data and runs weekly_train once; every test
then works on its own copy of that home (warehouse + MLflow store) and its own Redis.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from nightly_support import END, TRAIN_AS_OF, live, nightly_env
from scorehouse.features import transforms
from scorehouse.features.registry import feature_sql
from scorehouse.monitoring.drift import DriftError
from scorehouse.serving import Client
from scorehouse.settings import Settings, load_settings
from scorehouse.storage.warehouse import Warehouse

NIGHTLY_STEPS = ["features", "checks", "score", "publish", "verify", "cleanup", "outcomes"]


def _artifact(key: str) -> str:
    """The newest artifact of `key` (the Prefect test server is shared by every e2e module,
    and other tests run the same night)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
        )
    assert found, f"no artifact {key}"
    return str(found[0].data)


def test_weekly_train_runs_the_gate_and_reports(trained: tuple[Path, dict[str, Any]]) -> None:
    result = trained[1]
    assert list(result["timings"]) == ["training-set", "train", "gate"]
    assert result["training"]["alias"] == "champion"
    assert result["gate"] == {
        "version": result["training"]["version"],
        "promoted": True,
        "reason": result["training"]["reason"],
        "champion": result["training"]["version"],
    }
    markdown = _artifact(f"weekly-train-{TRAIN_AS_OF}")
    assert f"v{result['training']['version']} → **champion**" in markdown
    assert result["training"]["run_id"] in markdown


def test_nightly_path_end_to_end(spark: SparkSession, e2e_settings: Settings) -> None:
    from scorehouse.flows import nightly

    settings = e2e_settings
    first = nightly(ds=END)
    assert list(first["timings"]) == NIGHTLY_STEPS
    assert all(seconds > 0 for seconds in first["timings"].values())
    assert not any(first["steps"][s].get("skipped") for s in ("features", "score", "publish"))

    wh = Warehouse.from_settings(spark, settings)
    predictions = wh.read(settings.tables.predictions, partitions={"ds": [END]})
    champion = predictions.where(F.col("model_role") == "champion")
    entities = transforms.entities(feature_sql(), wh.read("raw_customers"), [END]).count()
    assert champion.count() == entities == first["scoring"]["rows"]
    assert first["steps"]["checks"]["rows"] == first["steps"]["checks"]["entities"] == entities
    assert champion.select("customer_id").distinct().count() == entities

    # Redis holds one value per prediction in the live generation, for END.
    generation, live_ds, stored = live(settings)
    assert (generation, live_ds, stored) == (first["publish"]["generation"], END, entities)
    assert first["steps"]["verify"] == {
        "generation": generation,
        "rows": entities,
        "seconds": first["steps"]["verify"]["seconds"],
    }

    # What a downstream app reads equals the Delta table's score.
    expected = {r.customer_id: r.score for r in champion.orderBy("customer_id").limit(50).collect()}
    with Client(settings) as lookup:
        results = lookup.get_many(list(expected))
    for result in results:
        assert result.source == "cache"
        assert result.ds == END
        assert abs(result.score - expected[int(result.entity_id)]) <= 1e-9

    # The run's artifact: counts, timings per step, model version, drift, MLflow run.
    markdown = _artifact(f"nightly-{END}")
    scoring = first["scoring"]
    assert f"entities scored: {entities:,}" in markdown
    assert f"v{scoring['model_version']}" in markdown
    assert scoring["run_id"] in markdown and f"experiment `{scoring['experiment_id']}`" in markdown
    assert f"level: **{scoring['drift_level']}**" in markdown
    for step in NIGHTLY_STEPS[:-1]:
        assert f"| {step} | done |" in markdown
    assert f"| outcomes | skipped (no predictions on {END - timedelta(days=30)}" in markdown

    # A rerun of the same night finds every output current: nothing is rewritten.
    versions = {t: wh.version(t) for t in (settings.tables.features, settings.tables.predictions)}
    second = nightly(ds=END)
    assert {s: bool(r.get("skipped")) for s, r in second["steps"].items()} == {
        "features": True,
        "checks": True,
        "score": True,
        "publish": True,
        "verify": False,
        "cleanup": False,
        "outcomes": True,  # nothing was scored 30 days before END in this home
    }
    assert {t: wh.version(t) for t in versions} == versions
    assert second["scoring"]["rows"] == entities
    assert live(settings) == (generation, END, entities)


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"path": self.path, "json": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on 127.0.0.1 that records what is posted to it."""
    received: ClassVar[list[dict[str, Any]]] = []
    handler = type("Hook", (_Webhook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/T0KEN-s3cret", received
    server.shutdown()
    server.server_close()


def test_failed_step_keeps_the_previous_generation_and_a_rerun_resumes(
    spark: SparkSession,
    e2e_settings: Settings,
    webhook: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scorehouse.flows import nightly

    settings = e2e_settings
    day = END - timedelta(days=1)
    before = nightly(ds=day)
    previous = live(settings)
    assert previous[:2] == (before["publish"]["generation"], day)

    # Any PSI counts as drift at "warn": scoring END stops before its predictions commit.
    url, received = webhook
    monkeypatch.setenv("SCOREHOUSE_ORCHESTRATION__WEBHOOK_URL", url)
    monkeypatch.setenv("SCOREHOUSE_MONITORING__PSI_WARN", "0")
    with pytest.raises(DriftError):
        nightly(ds=END, fail_on="warn")

    assert live(settings) == previous  # publish never ran: readers keep the previous night
    wh = Warehouse.from_settings(spark, settings)
    assert END not in wh.partition_values(settings.tables.predictions)
    assert len(received) == 1
    alert = received[0]
    assert alert["path"] == "/hooks/T0KEN-s3cret"
    assert {k: alert["json"][k] for k in ("flow", "failed_step", "ds")} == {
        "flow": "nightly",
        "failed_step": "score",
        "ds": END.isoformat(),
    }
    assert "drift on" in alert["json"]["error"] and alert["json"]["flow_run_id"]

    # The rerun (drift thresholds back to normal) resumes: the features of END are built
    # and checked already, scoring and publishing run now.
    monkeypatch.delenv("SCOREHOUSE_MONITORING__PSI_WARN")
    features_version = wh.version(settings.tables.features)
    rerun = nightly(ds=END)
    assert rerun["steps"]["features"]["skipped"] is True
    assert rerun["steps"]["checks"]["skipped"] is True
    assert not rerun["steps"]["score"]["skipped"] and not rerun["steps"]["publish"]["skipped"]
    assert wh.version(settings.tables.features) == features_version
    generation, live_ds, stored = live(settings)
    assert (generation, live_ds, stored) == (
        rerun["publish"]["generation"],
        END,
        rerun["scoring"]["rows"],
    )
    # no failure alert for a run that succeeded (a quality alert may report drift)
    assert [r for r in received if "failed_step" in r["json"]] == received[:1]


def test_a_night_whose_outcomes_disappoint_alerts_and_retrains(
    spark: SparkSession,
    e2e_settings: Settings,
    webhook: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scorehouse.flows import backfill, nightly

    settings = e2e_settings
    scored = END - timedelta(days=settings.model.horizon_days)
    backfill(start=scored, end=scored, what="both")
    # The planted shift: that night's ranking turned upside down (what a broken feature
    # pipeline or a changed population does to a model), visible once the labels mature.
    wh = Warehouse.from_settings(spark, settings)
    table = settings.tables.predictions
    night = wh.read(table, partitions={"ds": [scored]})
    flipped = night.withColumn("score", 1 - F.col("score")).localCheckpoint()
    wh.overwrite(table, flipped, partition_by=["ds"], replace_partitions={"ds": [scored]})
    url, received = webhook
    monkeypatch.setenv("SCOREHOUSE_ORCHESTRATION__WEBHOOK_URL", url)
    monkeypatch.setenv("SCOREHOUSE_MONITORING__RETRAIN_ON_ALERT", "true")

    result = nightly(ds=END)

    [champion] = [r for r in result["outcomes"]["models"] if r["model_role"] == "champion"]
    assert result["outcomes"]["scored_ds"] == scored.isoformat()
    assert champion["rows"] == night.where(F.col("model_role") == "champion").count()
    assert champion["roc_auc"] < champion["test_roc_auc"] - settings.monitoring.realized_auc_drop
    assert champion["alert"] is True
    [quality] = [r["json"] for r in received if r["json"].get("kind") == "quality"]
    assert quality["ds"] == END.isoformat()
    assert any(
        f"champion v{champion['model_version']} realized AUC" in p for p in quality["problems"]
    )
    retrained = result["retrained"]
    assert retrained["as_of"] == END.isoformat()
    assert retrained["gate"]["version"] == retrained["training"]["version"]
    stored = wh.read(settings.tables.outcomes).where(F.col("ds") == scored)
    assert stored.where(F.col("model_role") == "champion").first()["alert"] is True


def test_backfill_equals_building_day_by_day(
    spark: SparkSession, e2e_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scorehouse.flows import backfill
    from scorehouse.orchestration import steps

    settings = e2e_settings
    days = [END - timedelta(days=2), END - timedelta(days=1), END]
    # A second copy of the same home builds the same days one at a time, with the steps
    # the nightly runs: the first day from the rollups, the next ones advanced day by day.
    other = tmp_path / "other"
    shutil.copytree(settings.home, other)

    result = backfill(start=days[0], end=days[-1], what="both", publish_last=True)
    assert list(result["timings"]) == [
        "features",
        *[f"{step}-{d}" for d in days for step in ("checks", "score")],
        "publish",
        "verify",
        "cleanup",
    ]
    assert live(settings)[1] == END
    backfilled = Warehouse.from_settings(spark, settings)

    for key, value in nightly_env(other, settings.redis.url).items():
        monkeypatch.setenv(key, value)
    one_by_one = load_settings()
    for d in days:
        assert steps.run_step("features", one_by_one, {"start": d}, spark)["mode"] == (
            "range" if d == days[0] else "next-day"
        )
        steps.run_step("score", one_by_one, {"ds": d}, spark)
    nightly_wh = Warehouse.from_settings(spark, one_by_one)

    prediction_columns = ["ds", "customer_id", "model_role", "model_version", "score", "percentile"]
    for table, columns in (
        (settings.tables.features, None),
        (settings.tables.predictions, prediction_columns),
    ):
        a = backfilled.read(table, partitions={"ds": days})
        b = nightly_wh.read(table, partitions={"ds": days})
        if columns:
            a, b = a.select(*columns), b.select(*columns)
        assert a.count() > 0
        assertDataFrameEqual(a, b)
