"""Schemas of the warehouse tables that more than one stage reads or writes.

Dates are UTC calendar days (`ds`, DateType); timestamps are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# Customer attributes with history: one row per version, valid from `valid_from`
# (inclusive) until the next version's valid_from of the same customer.
RAW_CUSTOMERS = StructType(
    [
        StructField("customer_id", LongType(), False),
        StructField("valid_from", DateType(), False),
        StructField("signup_date", DateType(), False),
        StructField("segment", StringType(), True),  # consumer | smb | enterprise
        StructField("region", StringType(), True),  # north | south | east | west
        StructField("email_opt_in", BooleanType(), True),
    ]
)

# One row per purchase; partitioned by ds = to_date(event_time) in UTC.
RAW_TRANSACTIONS = StructType(
    [
        StructField("transaction_id", StringType(), False),
        StructField("customer_id", LongType(), False),
        StructField("event_time", TimestampType(), False),
        StructField("quantity", IntegerType(), False),
        StructField("amount", DoubleType(), False),
        StructField("ds", DateType(), False),
    ]
)

# Rejected input rows, partitioned by ds = the day of the ingest run.
QUARANTINE = StructType(
    [
        StructField("source_file", StringType(), False),
        StructField("target_table", StringType(), False),
        StructField("row_number", LongType(), True),
        StructField("column", StringType(), True),
        StructField("rule", StringType(), False),
        StructField("message", StringType(), False),
        StructField("raw_record", StringType(), True),  # the input row as JSON text
        StructField("ingest_id", StringType(), False),
        StructField("ingested_at", TimestampType(), False),
        StructField("ds", DateType(), False),
    ]
)


@dataclass(frozen=True)
class EntityKey:
    """The entity key column of a project: its name and type (int64 or string)."""

    name: str
    type: str = "int64"

    @property
    def spark_type(self) -> DataType:
        return LongType() if self.type == "int64" else StringType()

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.int64() if self.type == "int64" else pa.string()


_PREDICTION_COLUMNS = [
    StructField("ds", DateType(), False),
    StructField("score", DoubleType(), False),
    StructField("percentile", DoubleType(), False),  # rank within the day, (0, 1]
    StructField("model_name", StringType(), False),
    StructField("model_version", StringType(), False),
    StructField("model_role", StringType(), False),  # champion | challenger
    StructField("mlflow_run_id", StringType(), False),
    StructField("features_version", LongType(), False),  # Delta version of the features read
    StructField("scored_at", TimestampType(), False),
    StructField("flow_run_id", StringType(), True),
    # Champion vs challenger: the experiment of the night (null: none) and the arm the entity
    # is in, on both roles' rows; the generation serves the row whose model_role is the arm.
    StructField("experiment", StringType(), True),
    StructField("arm", StringType(), True),
]


def predictions_schema(key: EntityKey) -> StructType:
    """Nightly scores, partitioned by ds (the features' as-of date), keyed by the entity."""
    return StructType([StructField(key.name, key.spark_type, False), *_PREDICTION_COLUMNS])


# The purchase example's predictions (tests and benchmarks build rows of it).
PREDICTIONS = predictions_schema(EntityKey("customer_id"))
