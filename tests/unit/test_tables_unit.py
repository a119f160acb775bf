"""Pure helpers of scorehouse.storage: no Spark session, no Delta table."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    NullType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from scorehouse.errors import ValidationError
from scorehouse.storage.commit import build_add_action
from scorehouse.storage.partitions import (
    format_partition_value,
    parse_partition_path,
    parse_partition_value,
    partition_predicate,
)
from scorehouse.storage.schema import check_schema, same_type
from scorehouse.storage.stats import file_stats

TABLE = StructType(
    [
        StructField("customer_id", LongType(), False),
        StructField("ds", DateType(), False),
        StructField("score", DoubleType(), True),
    ]
)


@pytest.mark.parametrize(
    ("value", "text", "spark_type"),
    [
        (date(2026, 1, 31), "2026-01-31", DateType()),
        (42, "42", LongType()),
        (True, "true", BooleanType()),
        ("a b%c/d", "a b%c/d", StringType()),
        (None, None, DateType()),
    ],
)
def test_partition_values_round_trip(value: object, text: str | None, spark_type) -> None:  # type: ignore[no-untyped-def]
    assert format_partition_value(value) == text
    assert parse_partition_value(text, spark_type) == value


def test_timestamp_partition_values_are_refused() -> None:
    with pytest.raises(ValidationError, match="timestamp partition"):
        format_partition_value(datetime(2026, 1, 1, tzinfo=UTC))


def test_partition_path_is_unescaped_like_spark_escapes_it() -> None:
    assert parse_partition_path("ds=2026-01-01/seg=a b%25c%2Fd/part-0.parquet") == {
        "ds": "2026-01-01",
        "seg": "a b%c/d",
    }
    assert parse_partition_path("seg=__HIVE_DEFAULT_PARTITION__/part-0.parquet") == {"seg": None}
    assert parse_partition_path("part-0.parquet") == {}
    with pytest.raises(ValueError, match="not a Hive partition path"):
        parse_partition_path("nokey/part-0.parquet")


def test_same_type_ignores_nullability_only() -> None:
    assert same_type(ArrayType(LongType(), False), ArrayType(LongType(), True))
    inner_a = StructType([StructField("x", LongType(), False)])
    inner_b = StructType([StructField("x", LongType(), True)])
    assert same_type(inner_a, inner_b)
    assert not same_type(inner_a, StructType([StructField("x", IntegerType(), True)]))
    assert not same_type(LongType(), IntegerType())


def test_check_schema_accepts_same_types_and_keeps_table_order() -> None:
    incoming = StructType([TABLE["score"], TABLE["ds"], StructField("customer_id", LongType())])
    assert check_schema("t", TABLE, incoming) == TABLE


def test_check_schema_rejects_type_change_naming_table_and_column() -> None:
    incoming = StructType([*TABLE.fields[:2], StructField("score", StringType())])
    with pytest.raises(ValidationError, match=r"table t: column 'score' has type string .* double"):
        check_schema("t", TABLE, incoming)
    # Widening is a type change as well: the writer must cast on purpose.
    narrow = StructType([StructField("customer_id", IntegerType()), *TABLE.fields[1:]])
    with pytest.raises(ValidationError, match="'customer_id'"):
        check_schema("t", TABLE, narrow)


def test_check_schema_new_columns_need_opt_in_and_join_nullable() -> None:
    incoming = StructType([*TABLE.fields, StructField("segment", StringType(), False)])
    with pytest.raises(ValidationError, match=r"'segment'.*allow_new_columns"):
        check_schema("t", TABLE, incoming)
    evolved = check_schema("t", TABLE, incoming, allow_new_columns=True)
    assert evolved.names == [*TABLE.names, "segment"]
    assert evolved["segment"].nullable


def test_check_schema_missing_columns_must_be_nullable() -> None:
    assert check_schema("t", TABLE, StructType(TABLE.fields[:2])) == TABLE
    with pytest.raises(ValidationError, match=r"'customer_id' is missing.*NOT NULL"):
        check_schema("t", TABLE, StructType(TABLE.fields[1:]))


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (StructField("x", NullType()), "bare NULL"),
        (StructField("x", TimestampNTZType()), "timestamp_ntz"),
        (StructField("SCORE", DoubleType()), "differ only in case"),
    ],
)
def test_check_schema_refuses_what_protocol_1_2_cannot_hold(
    field: StructField, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        check_schema("t", TABLE, StructType([*TABLE.fields, field]), allow_new_columns=True)


def test_check_schema_refuses_a_column_renamed_in_case() -> None:
    renamed = StructType([*TABLE.fields[:2], StructField("Score", DoubleType())])
    with pytest.raises(ValidationError, match=r"'Score' differs in case from the table's 'score'"):
        check_schema("t", TABLE, renamed)


def test_check_schema_of_a_new_table_is_the_frame_schema() -> None:
    assert check_schema("t", None, TABLE) == TABLE
    with pytest.raises(ValidationError, match="differ only in case"):
        check_schema("t", None, StructType([TABLE["ds"], StructField("DS", DateType())]))


def test_file_stats_from_a_parquet_footer(tmp_path: Path) -> None:
    path = tmp_path / "part-0.parquet"
    table = pa.table(
        {
            "id": pa.array([3, 1, None, 7], pa.int64()),
            "ts": pa.array(
                [
                    datetime(2026, 1, 1, 0, 0, 0, 1500, tzinfo=UTC),
                    datetime(2026, 1, 2, 0, 0, 0, 999, tzinfo=UTC),
                    None,
                    None,
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "score": pa.array([0.5, float("nan"), 1.0, None]),
            "name": pa.array(["b", "a", "x" * 40, None]),
        }
    )
    pq.write_table(table, path, row_group_size=2)  # stats must merge across row groups
    schema = StructType(
        [
            StructField("id", LongType()),
            StructField("ts", TimestampType()),
            StructField("score", DoubleType()),
            StructField("name", StringType()),
        ]
    )
    stats = file_stats(pq.read_metadata(path), schema)
    assert stats == {
        "numRecords": 4,
        # min rounds down and max up to whole milliseconds, so pruning never drops a row
        "minValues": {"id": 1, "ts": "2026-01-01T00:00:00.001Z"},
        "maxValues": {"id": 7, "ts": "2026-01-02T00:00:00.001Z"},
        # floats (NaN) and long strings (Delta truncates them) get no min/max at all
        "nullCount": {"id": 1, "ts": 2, "score": 1, "name": 1},
    }


def test_add_action_carries_relative_path_partitions_and_stats() -> None:
    action = build_add_action(
        "ds=2026-01-01/part-0.parquet",
        123,
        1_700_000_000_000,
        {"ds": "2026-01-01"},
        {"numRecords": 5},
    )
    assert action.path == "ds=2026-01-01/part-0.parquet"
    assert (action.size, action.modification_time) == (123, 1_700_000_000_000)
    assert action.partition_values == {"ds": "2026-01-01"}
    assert action.data_change is True
    assert json.loads(action.stats) == {"numRecords": 5}
    rewrite = build_add_action("p.parquet", 1, 0, {}, {"numRecords": 0}, data_change=False)
    assert rewrite.data_change is False


def test_partition_predicate_prunes_only_partition_columns() -> None:
    filters = partition_predicate(
        {"ds": [date(2026, 1, 1)], "score": [1.0]},
        (date(2026, 1, 1), date(2026, 1, 7)),
        ["ds"],
    )
    assert filters == [
        ("ds", "in", ["2026-01-01"]),
        ("ds", ">=", "2026-01-01"),
        ("ds", "<=", "2026-01-07"),
    ]
    assert partition_predicate(None, (date(2026, 1, 1), date(2026, 1, 2)), []) == []
