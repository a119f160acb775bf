"""Every publish leaves a row in `publications` naming the generation Redis serves and the
Delta versions it was loaded from, queryable next to the predictions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession

from component.test_serving_service import DS, cfg, write_predictions  # noqa: F401
from scorehouse.orchestration import steps
from scorehouse.publish.generations import live_generation
from scorehouse.scoring.analyst import register_views
from scorehouse.settings import Settings
from scorehouse.storage.warehouse import Warehouse


def test_a_publish_records_the_live_generation_and_its_sources(
    spark: SparkSession,
    cfg: Settings,  # noqa: F811
) -> None:
    write_predictions(spark, cfg, 300)
    wh = Warehouse.from_settings(spark, cfg)
    predictions_version = wh.version(cfg.tables.predictions)
    began = datetime.now(UTC).replace(microsecond=0)

    first = steps.run_step("publish", cfg, {"ds": DS, "flow_run_id": "run-1"}, spark)
    again = steps.run_step(
        "publish", cfg, {"ds": DS, "flow_run_id": "run-2"}, spark
    )  # skipped: already live

    live, info = live_generation(cfg)
    assert info is not None and live == first["generation"] and again["skipped"]
    assert first["predictions_version"] == predictions_version
    [row] = [r.asDict() for r in wh.read(cfg.tables.publications).collect()]
    loaded = row.pop("loaded_at")
    assert row == {
        "ds": DS,
        "generation": live,
        "model_name": "propensity",
        "model_version": "7",
        "predictions_version": predictions_version,
        "features_version": None,  # no features table: scores only
        "count": 300,
        "flow_run_id": "run-1",
    }
    # Spark hands back naive timestamps in the session's zone (UTC).
    assert began <= loaded.replace(tzinfo=UTC) <= began + timedelta(minutes=5)

    # An analyst's view: the scores Redis serves now, from the warehouse.
    assert "publications" in register_views(spark, cfg)
    served = spark.sql(
        """
        SELECT count(*) AS n FROM predictions p
        JOIN (SELECT * FROM publications ORDER BY loaded_at DESC LIMIT 1) g
          ON p.ds = g.ds AND p.model_version = g.model_version
        WHERE p.model_role = 'champion'
        """
    ).first()
    assert served is not None and served.n == 300
