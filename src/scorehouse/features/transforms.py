"""Pure feature transforms: DataFrames in, DataFrames out, by way of sql/features/*.sql."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DateType, StructField, StructType

from scorehouse.sqlfiles import run_sql

DAYS_SCHEMA = StructType([StructField("ds", DateType(), False)])


def day_range(start: date, end: date) -> list[date]:
    """Every day from start to end, both included."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def days_frame(spark: SparkSession, days: Sequence[date]) -> DataFrame:
    return spark.createDataFrame([(d,) for d in days], DAYS_SCHEMA)


def daily_rollups(transactions: DataFrame, days: Sequence[date]) -> DataFrame:
    """customer_daily rows of `days` from raw transactions."""
    spark = transactions.sparkSession
    return run_sql(
        spark,
        "features/customer_daily",
        {"transactions": transactions, "days": days_frame(spark, days)},
    )


def entities(customers: DataFrame, days: Sequence[date]) -> DataFrame:
    """The entity space of each day with the attribute version valid on it."""
    spark = customers.sparkSession
    return run_sql(
        spark,
        "features/customer_entities",
        {"customers": customers, "days": days_frame(spark, days)},
    )


def state_for_days(daily: DataFrame, customers: DataFrame, days: Sequence[date]) -> DataFrame:
    """Feature state for every entity on each of `days`, from all rollups up to the last day."""
    spark = daily.sparkSession
    return run_sql(
        spark,
        "features/customer_state_range",
        {
            "daily": daily,
            "entities": entities(customers, days),
            "days": days_frame(spark, days),
        },
    )


def next_day_state(
    previous_state: DataFrame, daily: DataFrame, customers: DataFrame, ds: date
) -> DataFrame:
    """Feature state on `ds` from the state on the day before, five days of rollups
    and the customer versions (only those that change on `ds` are used)."""
    spark = daily.sparkSession
    return run_sql(
        spark,
        "features/customer_state_next_day",
        {"previous_state": previous_state, "daily": daily, "customers": customers},
        ds=ds,
    )


def leaving_days(ds: date) -> list[date]:
    """The rollup days the next-day step reads: ds itself and the days leaving each window."""
    return [ds] + [ds - timedelta(days=w) for w in (7, 30, 90, 365)]


def features_from_state(state: DataFrame) -> DataFrame:
    """The features table rows: state columns plus the derived public features."""
    return run_sql(state.sparkSession, "features/customer_features", {"state": state})
