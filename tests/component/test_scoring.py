"""Nightly scoring end to end on local[2]: real Delta tables via Warehouse, real MLflow
(SQLite) with small real XGBoost models as champion and challenger, real CLI."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from scorehouse import cli
from scorehouse.errors import ValidationError
from scorehouse.features.registry import to_matrix
from scorehouse.monitoring.drift import DriftError
from scorehouse.schemas import PREDICTIONS, EntityKey
from scorehouse.scoring.score import ScoringRun, score_date
from scorehouse.settings import Settings, load_settings
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training.registry import CHALLENGER, CHAMPION, load_model
from scoring_support import features_frame, features_pdf, register_model, train_booster

CUSTOMERS = 300
D1 = date(2025, 6, 1)
D2 = D1 + timedelta(days=1)  # strongly drifted
D3 = D1 + timedelta(days=2)  # a broken snapshot: one customer twice
D4 = D1 + timedelta(days=3)  # drifted again, scored with --fail-on critical


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    home = tmp_path_factory.mktemp("scoring") / "home"
    values = {
        "home": str(home),
        "warehouse": str(home / "warehouse"),
        "spark": {"profile": "test"},
        "mlflow": {
            "tracking_uri": f"sqlite:///{home}/mlflow.db",
            "artifact_location": str(home / "mlartifacts"),
        },
    }
    home.mkdir(parents=True)
    config = home / "config.yaml"
    config.write_text(yaml.safe_dump(values))
    return load_settings(config, environ={}), config


@pytest.fixture(scope="module")
def settings(env: tuple[Settings, Path]) -> Settings:
    return env[0]


@pytest.fixture(scope="module")
def snapshots(spark: SparkSession, settings: Settings) -> dict[date, pd.DataFrame]:
    """Training set, champion + challenger, and the features snapshots of four days."""
    wh = Warehouse.from_settings(spark, settings)
    training = features_pdf(600, date(2025, 5, 1), seed=1)
    version = wh.overwrite("training_set", features_frame(spark, training))
    register_model(settings, train_booster(training), CHAMPION, "training_set", version)
    register_model(settings, train_booster(training, seed=9, rounds=5), CHALLENGER)
    broken = features_pdf(CUSTOMERS, D3, seed=4)
    broken.loc[1, "customer_id"] = broken.loc[0, "customer_id"]
    days = {
        D1: features_pdf(CUSTOMERS, D1, seed=2),
        D2: features_pdf(CUSTOMERS, D2, seed=3, shift=2.0),
        D3: broken,
        D4: features_pdf(CUSTOMERS, D4, seed=5, shift=2.0),
    }
    for ds, pdf in days.items():
        wh.overwrite(
            "features",
            features_frame(spark, pdf),
            partition_by=["ds"],
            replace_partitions={"ds": [ds]},
        )
    return days


@pytest.fixture(scope="module")
def first_runs(
    spark: SparkSession, settings: Settings, snapshots: dict[date, pd.DataFrame]
) -> dict[date, ScoringRun]:
    return {ds: score_date(spark, settings, ds, flow_run_id="flow-1") for ds in (D1, D2)}


def predictions(spark: SparkSession, settings: Settings, ds: date) -> pd.DataFrame:
    wh = Warehouse.from_settings(spark, settings)
    return (
        wh.read("predictions", partitions={"ds": [ds]})
        .toPandas()
        .sort_values(["model_role", "customer_id"])
        .reset_index(drop=True)
    )


def test_every_entity_gets_the_champions_score(spark, settings, snapshots, first_runs):
    run = first_runs[D1]
    champion = load_model(settings, CHAMPION)
    out = predictions(spark, settings, D1)
    rows = out[out.model_role == "champion"]
    assert run.rows == len(rows) == CUSTOMERS
    assert sorted(rows.customer_id) == sorted(snapshots[D1].customer_id)
    # Scores equal the booster's own predictions on to_matrix of the committed features.
    features = (
        Warehouse.from_settings(spark, settings)
        .read("features", partitions={"ds": [D1]})
        .toPandas()
        .sort_values("customer_id")
    )
    expected = champion.predict(to_matrix(features, champion.feature_names))
    np.testing.assert_allclose(rows.score.to_numpy(), expected, rtol=0, atol=1e-7)
    assert rows.percentile.max() == 1.0 and rows.percentile.min() > 0
    assert (rows.model_version == champion.version).all()
    assert (rows.mlflow_run_id == champion.run_id).all()
    assert (rows.features_version == run.features_version).all()
    assert (rows.flow_run_id == "flow-1").all()
    assert run.model_version == champion.version and run.run_id == champion.run_id


def test_predictions_table_keeps_the_contract(spark, settings, first_runs):
    schema = Warehouse.from_settings(spark, settings).schema("predictions")
    assert schema == PREDICTIONS


def test_challenger_is_scored_in_shadow(spark, settings, snapshots, first_runs):
    challenger = load_model(settings, CHALLENGER)
    out = predictions(spark, settings, D1)
    rows = out[out.model_role == "challenger"].sort_values("customer_id")
    assert first_runs[D1].challenger_version == challenger.version
    assert len(rows) == CUSTOMERS
    assert (rows.model_version == challenger.version).all()
    pdf = snapshots[D1].sort_values("customer_id")
    expected = challenger.predict(to_matrix(pdf, challenger.feature_names))
    np.testing.assert_allclose(rows.score.to_numpy(), expected, rtol=0, atol=1e-7)


def test_rerun_replaces_only_that_day(spark, settings, first_runs):
    before_d2 = predictions(spark, settings, D2)
    before_d1 = predictions(spark, settings, D1)
    rerun = score_date(spark, settings, D1, monitor=False)
    after_d1 = predictions(spark, settings, D1)
    assert rerun.predictions_version > first_runs[D2].predictions_version
    assert len(after_d1) == 2 * CUSTOMERS  # replaced, not appended
    assert (after_d1.scored_at > before_d1.scored_at.max()).all()
    pd.testing.assert_frame_equal(predictions(spark, settings, D2), before_d2)


def test_failed_output_check_commits_nothing(spark, settings, first_runs):
    wh = Warehouse.from_settings(spark, settings)
    versions = {t: wh.version(t) for t in ("predictions", "monitoring")}
    with pytest.raises(ValidationError, match="1 duplicates") as err:
        score_date(spark, settings, D3)
    assert "nothing committed" in str(err.value)
    assert {t: wh.version(t) for t in versions} == versions
    assert D3 not in wh.partition_values("predictions")


def test_monitoring_rows_against_training_and_previous_night(spark, settings, first_runs):
    wh = Warehouse.from_settings(spark, settings)
    rows = wh.read("monitoring", partitions={"ds": [D2]}).toPandas()
    names = load_model(settings, CHAMPION).feature_names
    features = rows[rows.kind == "feature"]
    assert sorted(features[features.baseline == "training"].name) == sorted(names)
    previous = features[features.baseline == "previous_day"]
    assert sorted(previous.name) == sorted(names)
    assert (previous.baseline_ds == D1).all()
    score = rows[rows.kind == "score"].set_index("baseline")
    assert sorted(score.index) == ["previous_day", "training"]
    assert score.loc["previous_day", "baseline_ds"] == D1
    # The champion's scores on its training rows: the reference built (and saved) on D1.
    assert score.loc["training", "baseline_rows"] == 600
    # The planted shift moves recency and frequency far beyond the critical level.
    by_name = features[features.baseline == "training"].set_index("name")
    assert by_name.loc["txn_count_30d", "level"] == "critical"
    assert by_name.loc["segment_code", "level"] == "ok"  # untouched by the shift
    run = first_runs[D2]
    assert run.drift_level == "critical"
    assert "txn_count_30d vs training" in run.drift_critical
    assert run.score_psi == pytest.approx(score.loc["previous_day", "psi"])
    assert run.score_psi_training == pytest.approx(score.loc["training", "psi"])
    assert run.monitoring_version == wh.version("monitoring")
    # The first night has no previous snapshot: training rows only, no score row.
    first = wh.read("monitoring", partitions={"ds": [D1]}).toPandas()
    assert set(first.baseline) == {"training"}


def test_fail_on_critical_stops_before_predictions(spark, settings, first_runs):
    wh = Warehouse.from_settings(spark, settings)
    before = wh.version("predictions")
    with pytest.raises(DriftError, match="critical"):
        score_date(spark, settings, D4, fail_on="critical")
    assert wh.version("predictions") == before
    # Monitoring rows are kept for diagnosis.
    monitored = wh.read("monitoring", partitions={"ds": [D4]})
    assert monitored.where(F.col("level") == "critical").count() > 0


def test_cli_score_fail_on_exit_code_and_sql(spark, settings, env, first_runs, capsys):
    config = str(env[1])
    code = cli.main(
        ["--config", config, "score", "--date", D4.isoformat(), "--fail-on", "critical"]
    )
    assert code == DriftError.exit_code == 3
    assert "predictions not committed" in capsys.readouterr().err
    code = cli.main(["--config", config, "score", "--date", D4.isoformat()])
    assert code == 0
    assert f"{D4}: {CUSTOMERS} entities scored" in capsys.readouterr().out
    query = (
        "SELECT model_role, COUNT(*) AS n FROM predictions "
        f"WHERE ds = DATE '{D4}' GROUP BY model_role ORDER BY model_role"
    )
    assert cli.main(["--config", config, "sql", query]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"\|champion\s*\|{CUSTOMERS}\|", out), out


def test_staged_file_with_wrong_types_is_refused(spark, settings, first_runs):
    """commit_parquet checks each file against the table (deltalake itself would not)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scorehouse.scoring.batch import predictions_file_schema

    wh = Warehouse.from_settings(spark, settings)
    before = wh.version("predictions")
    good = predictions_file_schema(EntityKey("customer_id"))
    wrong = good.set(good.get_field_index("score"), pa.field("score", pa.string()))
    stage = wh.staging_dir("predictions")
    folder = stage / f"ds={D1.isoformat()}"
    folder.mkdir(parents=True)
    row = {name: [None] for name in wrong.names} | {
        "customer_id": [1],
        "score": ["0.5"],
        "percentile": [1.0],
        "model_name": ["m"],
        "model_version": ["1"],
        "model_role": ["champion"],
        "mlflow_run_id": ["r"],
        "features_version": [0],
        "scored_at": [pd.Timestamp("2025-06-01", tz="UTC")],
    }
    pq.write_table(pa.table(row, schema=wrong), folder / "part-0.parquet")
    with pytest.raises(ValidationError, match=r"part-0.parquet.*score: string \(table: double\)"):
        wh.commit_parquet("predictions", stage, mode="overwrite", replace_partitions={"ds": [D1]})
    assert wh.version("predictions") == before
    assert not stage.exists()


def test_an_experiment_records_each_entitys_arm_in_a_table_from_before_arms(
    spark, settings, snapshots, first_runs
):
    """A predictions table written before the experiment and arm columns existed gains them
    at the next commit (old rows read null); with an experiment both roles' rows carry the
    entity's arm by the key contract's rule."""
    from pyspark.sql.types import StructType

    from scorehouse.serving import keys
    from scorehouse.settings import ExperimentSettings

    wh = Warehouse.from_settings(spark, settings)
    old = predictions(spark, settings, D2).drop(columns=["ds", "experiment", "arm"])
    old_schema = [f for f in PREDICTIONS if f.name not in ("experiment", "arm")]
    frame = spark.createDataFrame(
        old.assign(ds=D2)[[f.name for f in old_schema]], StructType(old_schema)
    )
    wh.append("predictions_ab", frame, partition_by=["ds"])
    cfg = settings.model_copy(
        update={
            "tables": settings.tables.model_copy(update={"predictions": "predictions_ab"}),
            "experiment": ExperimentSettings(name="spring-promo", challenger_share=0.3),
        }
    )
    run = score_date(spark, cfg, D1, monitor=False)
    assert run.experiment == "spring-promo"
    assert wh.schema("predictions_ab") == PREDICTIONS
    rows = wh.read("predictions_ab").toPandas()
    d1, d2 = rows[rows.ds == D1], rows[rows.ds == D2]
    assert d2.arm.isna().all() and d2.experiment.isna().all()
    expected = [keys.experiment_arm("spring-promo", i, 3000) for i in d1.customer_id]
    assert d1.arm.tolist() == expected
    assert (d1.experiment == "spring-promo").all()
    assert set(d1.groupby("customer_id").arm.nunique()) == {1}  # one arm per entity
