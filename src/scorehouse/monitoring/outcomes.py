"""Realized outcomes: once the label horizon of a night's predictions has passed, how well
did they rank and how well were they calibrated, per model version and role (champion,
challenger). The feedback loop's measurement: the nightly records it and alerts on a drop
against the model's own test AUC."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from scorehouse.features.registry import entity_key, feature_sql
from scorehouse.features.training_set import horizon_labels
from scorehouse.monitoring.experiment import Standing, compare_arms, standing
from scorehouse.settings import Settings
from scorehouse.storage.location import table_uri
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training import metrics as m
from scorehouse.training.registry import test_auc

log = logging.getLogger(__name__)

ARM_COLUMNS = ("experiment", "arm")  # of the predictions table

OUTCOMES = StructType(
    [
        StructField("ds", DateType(), False),  # the night the predictions were made
        StructField("model_role", StringType(), False),
        StructField("model_version", StringType(), False),
        StructField("rows", LongType(), False),
        StructField("positives", LongType(), False),
        StructField("positive_rate", DoubleType(), False),
        StructField("mean_score", DoubleType(), False),
        StructField("roc_auc", DoubleType(), True),  # null with a single class
        StructField("ece", DoubleType(), False),
        StructField("test_roc_auc", DoubleType(), True),  # the version's, at training
        StructField("alert", BooleanType(), False),
        StructField("horizon_days", LongType(), False),
        StructField("computed_at", TimestampType(), False),
        StructField("flow_run_id", StringType(), True),
    ]
)


def _arm_fields(arm: str) -> list[StructField]:
    return [
        StructField(f"{arm}_version", StringType(), False),
        StructField(f"{arm}_rows", LongType(), False),
        StructField(f"{arm}_positives", LongType(), False),
        StructField(f"{arm}_positive_rate", DoubleType(), False),
        StructField(f"{arm}_mean_score", DoubleType(), False),
        StructField(f"{arm}_roc_auc", DoubleType(), True),
        StructField(f"{arm}_roc_auc_se", DoubleType(), True),  # Hanley-McNeil
        StructField(f"{arm}_ece", DoubleType(), False),
    ]


def _test_fields(prefix: str) -> list[StructField]:
    # Challenger minus champion, relative lift, z and two-sided p (null: nothing to test).
    return [
        StructField(f"{prefix}_{k}", DoubleType(), True) for k in ("diff", "lift", "z", "p_value")
    ]


# One row per night and experiment: each arm's served rows (model_role = arm) against their
# realized labels, and the tests of the difference (monitoring/experiment.py).
EXPERIMENT_OUTCOMES = StructType(
    [
        StructField("ds", DateType(), False),
        StructField("experiment", StringType(), False),
        *_arm_fields("champion"),
        *_arm_fields("challenger"),
        *_test_fields("rate"),
        *_test_fields("auc"),
        StructField("horizon_days", LongType(), False),
        StructField("computed_at", TimestampType(), False),
        StructField("flow_run_id", StringType(), True),
    ]
)


def matured_day(settings: Settings, ds: date) -> date:
    """The prediction day whose label horizon ends on `ds`."""
    return ds - timedelta(days=settings.model.horizon_days)


def per_model(frame: pd.DataFrame, expected: dict[str, float | None], drop: float) -> pd.DataFrame:
    """One row per (model_role, model_version) of `frame` (label, score, model_role,
    model_version): rows, positives, positive rate, mean score, AUC, ECE, and whether the
    AUC fell more than `drop` below the version's test AUC (`expected`)."""
    out = []
    for (role, version), part in frame.groupby(["model_role", "model_version"]):
        y, p = part["label"].to_numpy(), part["score"].to_numpy()
        auc = m.roc_auc(y, p) if 0 < y.sum() < len(y) else None
        test_auc = expected.get(str(version))
        alert = auc is not None and test_auc is not None and test_auc - auc > drop
        out.append(
            {
                "model_role": str(role),
                "model_version": str(version),
                "rows": len(y),
                "positives": int(y.sum()),
                "positive_rate": float(y.mean()),
                "mean_score": float(np.mean(p)),
                "roc_auc": auc,
                "ece": m.expected_calibration_error(y, p),
                "test_roc_auc": test_auc,
                "alert": bool(alert),
            }
        )
    return pd.DataFrame(out)


def realized(spark: SparkSession, settings: Settings, scored: date) -> pd.DataFrame | None:
    """Each prediction of `scored` with its realized label (the training label's rule), or
    None when there are no predictions that day or their horizon is not over."""
    wh = Warehouse.from_settings(spark, settings)
    sql = feature_sql()
    assert sql.project.label is not None
    horizon = settings.model.horizon_days
    table = settings.tables.predictions
    if not wh.exists(table) or scored not in wh.partition_values(table):
        return None
    raw_days = wh.partition_values(sql.raw_table(sql.project.label.source))
    if not raw_days or raw_days[-1] < scored + timedelta(days=horizon):
        return None
    labelled = horizon_labels(spark, settings, [scored], horizon)
    key = entity_key().name
    day = wh.read(table, partitions={"ds": [scored]})
    # Tables from before experiments have no arm columns: no arms, every row the role's.
    arms = [
        F.col(c) if c in day.columns else F.lit(None).cast("string").alias(c) for c in ARM_COLUMNS
    ]
    predictions = day.select(
        key, "model_role", "model_version", F.col("score").cast("double"), *arms
    )
    joined = predictions.join(labelled.select(key, "label"), key, "inner")
    return joined.select("model_role", "model_version", "score", "label", *ARM_COLUMNS).toPandas()


def record_outcomes(
    spark: SparkSession,
    settings: Settings,
    scored: date,
    flow_run_id: str | None = None,
) -> pd.DataFrame | None:
    """Measure the predictions of `scored` against what happened and replace that day's
    rows in `tables.outcomes`; None when nothing can be measured yet."""
    frame = realized(spark, settings, scored)
    if frame is None or frame.empty:
        return None
    expected = {str(v): test_auc(settings, str(v)) for v in frame["model_version"].unique()}
    table = per_model(frame, expected, settings.monitoring.realized_auc_drop)
    table.insert(0, "ds", scored)
    table["horizon_days"] = settings.model.horizon_days
    table["computed_at"] = datetime.now(tz=UTC).replace(tzinfo=None)
    table["flow_run_id"] = flow_run_id
    _replace_day(spark, settings, settings.tables.outcomes, table, OUTCOMES, scored)
    record_arms(spark, settings, frame, table.iloc[0].to_dict())
    for r in table.itertuples():
        log.log(
            logging.WARNING if r.alert else logging.INFO,
            "outcomes of %s, %s v%s: AUC %s (test %s), positive rate %.3f, ECE %.3f%s",
            scored, r.model_role, r.model_version, r.roc_auc, r.test_roc_auc,
            r.positive_rate, r.ece, " ALERT" if r.alert else "",
        )  # fmt: skip
    return table


def _replace_day(
    spark: SparkSession,
    settings: Settings,
    name: str,
    table: pd.DataFrame,
    schema: StructType,
    scored: date,
) -> None:
    """Replace day `scored` of table `name` with `table`'s rows."""
    rows = spark.createDataFrame(table[schema.fieldNames()], schema)
    wh = Warehouse.from_settings(spark, settings)
    if wh.exists(name):
        wh.overwrite(name, rows, partition_by=["ds"], replace_partitions={"ds": [scored]})
    else:
        wh.append(name, rows, partition_by=["ds"])


def record_arms(
    spark: SparkSession, settings: Settings, frame: pd.DataFrame, run: dict[str, object]
) -> pd.DataFrame | None:
    """The night's champion vs challenger comparison into `tables.experiment_outcomes` (`run`:
    ds, horizon_days, computed_at, flow_run_id); None when the night had no experiment."""
    row = compare_arms(frame)
    if row is None:
        return None
    keys = ("ds", "horizon_days", "computed_at", "flow_run_id")
    table = pd.DataFrame([{**row, **{k: run[k] for k in keys}}])
    name = settings.tables.experiment_outcomes
    scored = run["ds"]
    assert isinstance(scored, date)
    _replace_day(spark, settings, name, table, EXPERIMENT_OUTCOMES, scored)
    log.info(
        "experiment %s on %s: AUC champion %s, challenger %s (p %s), positive rate %.4f vs %.4f",
        row["experiment"], run["ds"], row["champion_roc_auc"], row["challenger_roc_auc"],
        row["auc_p_value"], row["champion_positive_rate"], row["challenger_positive_rate"],
    )  # fmt: skip
    return table


def experiment_standing(settings: Settings) -> Standing | None:
    """Where the configured experiment's challenger stands over its matured nights (the
    rows of its latest challenger in `tables.experiment_outcomes`, read with deltalake: no
    Spark); None without an experiment or without a matured night yet."""
    from deltalake import DeltaTable

    cfg = settings.experiment
    uri = table_uri(settings, settings.tables.experiment_outcomes)
    if cfg.name is None or not DeltaTable.is_deltatable(uri):
        return None
    days = DeltaTable(uri).to_pandas(filters=[("experiment", "=", cfg.name)])
    if days.empty:
        return None
    latest = days.sort_values("ds")["challenger_version"].iloc[-1]
    days = days[days["challenger_version"] == latest].sort_values("ds")
    return standing(days, cfg.min_rows_per_arm, cfg.alpha)
