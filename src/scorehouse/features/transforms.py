"""Pure feature transforms: DataFrames in, DataFrames out, by way of the statements
`scorehouse.features.compile` derives from the project's declarations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from string import Template

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DateType, StructField, StructType

from scorehouse.features.compile import FeatureSql
from scorehouse.sqlfiles import run_statement

DAYS_SCHEMA = StructType([StructField("ds", DateType(), False)])


def day_range(start: date, end: date) -> list[date]:
    """Every day from start to end, both included."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def days_frame(spark: SparkSession, days: Sequence[date]) -> DataFrame:
    return spark.createDataFrame([(d,) for d in days], DAYS_SCHEMA)


def _run(
    spark: SparkSession, text: str, name: str, views: Mapping[str, DataFrame], **dates: date
) -> DataFrame:
    return run_statement(spark, Template(text), name, dict(views), **dates)


def _daily_views(daily: Mapping[str, DataFrame]) -> dict[str, DataFrame]:
    return {f"daily_{source}": frame for source, frame in daily.items()}


def daily_rollups(
    sql: FeatureSql, source: str, events: DataFrame, days: Sequence[date]
) -> DataFrame:
    """The rollup rows of `source` for `days` from its raw events."""
    spark = events.sparkSession
    return _run(
        spark,
        sql.daily_sql(source),
        f"rollups of {source}",
        {"events": events, "days": days_frame(spark, days)},
    )


def entities(sql: FeatureSql, attributes: DataFrame, days: Sequence[date]) -> DataFrame:
    """The entity space of each day with the attribute version valid on it."""
    spark = attributes.sparkSession
    return _run(
        spark,
        sql.entities_sql(),
        "entities",
        {"attributes": attributes, "days": days_frame(spark, days)},
    )


def state_for_days(
    sql: FeatureSql, daily: Mapping[str, DataFrame], attributes: DataFrame, days: Sequence[date]
) -> DataFrame:
    """Feature state for every entity on each of `days`, from all rollups up to the last day."""
    spark = attributes.sparkSession
    views = {
        **_daily_views(daily),
        "entities": entities(sql, attributes, days),
        "days": days_frame(spark, days),
    }
    return _run(spark, sql.range_sql(), "range build", views)


def next_day_state(
    sql: FeatureSql,
    previous_state: DataFrame,
    daily: Mapping[str, DataFrame],
    attributes: DataFrame,
    ds: date,
) -> DataFrame:
    """Feature state on `ds` from the state on the day before, the rollups of
    `leaving_days` and the attribute versions (only those that change on `ds` are used)."""
    views = {**_daily_views(daily), "previous_state": previous_state, "attributes": attributes}
    return _run(attributes.sparkSession, sql.next_day_sql(), "next-day build", views, ds=ds)


def leaving_days(sql: FeatureSql, source: str, ds: date) -> list[date]:
    """The rollup days of `source` the next-day step reads: ds and the days leaving each window."""
    return [ds - timedelta(days=o) for o in sql.leaving_days(source)]


def features_from_state(sql: FeatureSql, state: DataFrame) -> DataFrame:
    """The features table rows: state columns plus the declared features."""
    return _run(state.sparkSession, sql.features_sql(), "features", {"state": state})
