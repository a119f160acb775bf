"""Warehouse tables on real Spark and real Delta logs (deltalake engine here)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DateType, DoubleType, LongType, StringType, StructField, StructType
from pyspark.testing import assertDataFrameEqual

from scorehouse.errors import ValidationError
from scorehouse.spark import has_delta_jars
from scorehouse.tables import Warehouse

D1, D2, D3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)

SCHEMA = StructType(
    [
        StructField("customer_id", LongType(), False),
        StructField("ds", DateType(), False),
        StructField("score", DoubleType(), True),
        StructField("model", StringType(), True),
    ]
)


def rows(spark: SparkSession, data: list[tuple], schema: StructType = SCHEMA) -> DataFrame:
    return spark.createDataFrame(data, schema)


@pytest.fixture(params=["deltalake", "native"])
def wh(request: pytest.FixtureRequest, spark: SparkSession, tmp_path: Path) -> Warehouse:
    """The same behaviour is required of both engines; native needs delta-spark's jars."""
    if request.param == "native" and not has_delta_jars(spark):
        pytest.skip("delta-spark jars are not on the classpath (no Maven access here)")
    return Warehouse(spark, tmp_path / "warehouse", engine=request.param)


@pytest.fixture
def dl_wh(spark: SparkSession, tmp_path: Path) -> Warehouse:
    """The deltalake-commit engine, for checks of its own files and log entries."""
    return Warehouse(spark, tmp_path / "warehouse", engine="deltalake")


def data_files(table_dir: str) -> set[str]:
    """Every Parquet file under the table folder, staging included, relative to it."""
    return {p.relative_to(table_dir).as_posix() for p in Path(table_dir).rglob("*.parquet")}


def test_append_creates_table_and_returns_versions(spark: SparkSession, wh: Warehouse) -> None:
    first = rows(spark, [(1, D1, 0.1, "m"), (2, D1, 0.2, "m")])
    second = rows(spark, [(3, D2, 0.3, "m")])
    assert not wh.exists("preds")
    assert wh.append("preds", first, partition_by=["ds"]) == 0
    assert wh.exists("preds")
    assert wh.append("preds", second) == 1
    assert wh.version("preds") == 1
    assertDataFrameEqual(wh.read("preds"), first.unionByName(second))
    assert wh.schema("preds").names == SCHEMA.names
    assert wh.partition_values("preds") == [D1, D2]


def test_read_keeps_column_order_and_date_partitions(spark: SparkSession, wh: Warehouse) -> None:
    df = rows(spark, [(1, D1, 0.5, "m")])
    wh.append("preds", df, partition_by=["ds"])
    back = wh.read("preds")
    assert back.columns == SCHEMA.names  # Spark would put the partition column last
    assert back.first()["ds"] == D1  # type: ignore[index]
    assert wh.partition_columns("preds") == ["ds"]


def test_overwrite_whole_table(spark: SparkSession, wh: Warehouse) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, "a"), (2, D2, 0.2, "a")]), partition_by=["ds"])
    new = rows(spark, [(9, D3, 0.9, "b")])
    assert wh.overwrite("preds", new) == 1
    assertDataFrameEqual(wh.read("preds"), new)
    assert wh.partition_values("preds") == [D3]


def test_rerun_replaces_only_that_day(spark: SparkSession, wh: Warehouse) -> None:
    wh.append(
        "preds",
        rows(spark, [(1, D1, 0.1, "a"), (2, D2, 0.2, "a"), (3, D2, 0.3, "a"), (4, D3, 0.4, "a")]),
        partition_by=["ds"],
    )
    rerun = rows(spark, [(2, D2, 0.25, "b")])
    assert wh.overwrite("preds", rerun, replace_partitions={"ds": [D2]}) == 1
    expected = rows(spark, [(1, D1, 0.1, "a"), (2, D2, 0.25, "b"), (4, D3, 0.4, "a")])
    assertDataFrameEqual(wh.read("preds"), expected)
    # Rerunning the same day again changes nothing.
    wh.overwrite("preds", rerun, replace_partitions={"ds": [D2]})
    assertDataFrameEqual(wh.read("preds"), expected)


def test_rows_outside_replaced_partitions_commit_nothing(
    spark: SparkSession, wh: Warehouse
) -> None:
    original = rows(spark, [(1, D1, 0.1, "a"), (2, D2, 0.2, "a")])
    wh.append("preds", original, partition_by=["ds"])
    bad = rows(spark, [(2, D2, 0.5, "b"), (3, D3, 0.5, "b")])
    with pytest.raises(ValidationError, match=r"preds.*ds=2026-01-03"):
        wh.overwrite("preds", bad, replace_partitions={"ds": [D2]})
    assert wh.version("preds") == 0
    assertDataFrameEqual(wh.read("preds"), original)
    assert not (Path(wh.uri("preds")) / "ds=2026-01-03").exists()


def test_empty_frame_removes_replaced_partitions(spark: SparkSession, wh: Warehouse) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, "a"), (2, D2, 0.2, "a")]), partition_by=["ds"])
    wh.overwrite("preds", rows(spark, []), replace_partitions={"ds": [D2, D3]})
    assertDataFrameEqual(wh.read("preds"), rows(spark, [(1, D1, 0.1, "a")]))
    assert wh.partition_values("preds") == [D1]


def test_read_as_of_version_and_with_filters(spark: SparkSession, wh: Warehouse) -> None:
    v0 = rows(spark, [(1, D1, 0.1, "a"), (2, D2, 0.2, "a")])
    wh.append("preds", v0, partition_by=["ds"])
    wh.append("preds", rows(spark, [(3, D3, 0.3, "a")]))
    wh.overwrite("preds", rows(spark, [(5, D1, 0.5, "b")]), replace_partitions={"ds": [D1]})
    assertDataFrameEqual(wh.read("preds", version=0), v0)
    assert wh.partition_values("preds", version=1) == [D1, D2, D3]
    assertDataFrameEqual(
        wh.read("preds", partitions={"ds": [D1, D3]}),
        rows(spark, [(5, D1, 0.5, "b"), (3, D3, 0.3, "a")]),
    )
    assertDataFrameEqual(
        wh.read("preds", version=1, ds_between=(D2, D3)),
        rows(spark, [(2, D2, 0.2, "a"), (3, D3, 0.3, "a")]),
    )
    # A filter on a data column is applied to rows, not only to files.
    assertDataFrameEqual(
        wh.read("preds", partitions={"model": ["b"]}), rows(spark, [(5, D1, 0.5, "b")])
    )


def test_read_of_no_matching_files_is_empty_with_schema(spark: SparkSession, wh: Warehouse) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, "a")]), partition_by=["ds"])
    empty = wh.read("preds", partitions={"ds": [D3]})
    assert empty.count() == 0
    assert empty.schema.names == SCHEMA.names


def test_from_settings_roots_tables_in_the_warehouse(spark: SparkSession, settings) -> None:  # type: ignore[no-untyped-def]
    wh = Warehouse.from_settings(spark, settings)
    assert wh.uri("features") == str(Path(settings.warehouse).resolve() / "features")
    wh.append("features", rows(spark, [(1, D1, 0.1, "a")]), partition_by=["ds"])
    assert DeltaTable(wh.uri("features")).protocol().min_writer_version == 2


# --------------------------------------------------------------------------- schema


def test_type_change_is_rejected_naming_table_and_column(
    spark: SparkSession, wh: Warehouse
) -> None:
    original = rows(spark, [(1, D1, 0.1, "a")])
    wh.append("preds", original, partition_by=["ds"])
    files_before = data_files(wh.uri("preds"))
    as_text = StructType([*SCHEMA.fields[:2], StructField("score", StringType()), SCHEMA[3]])
    with pytest.raises(ValidationError, match=r"table preds: column 'score' has type string"):
        wh.append("preds", rows(spark, [(2, D1, "0.2", "a")], as_text))
    with pytest.raises(ValidationError, match=r"preds.*'score'"):
        wh.overwrite("preds", rows(spark, [(2, D1, "0.2", "a")], as_text))
    assert wh.version("preds") == 0
    assert data_files(wh.uri("preds")) == files_before
    assertDataFrameEqual(wh.read("preds"), original)


def test_new_column_needs_opt_in_then_old_rows_read_null(
    spark: SparkSession, wh: Warehouse
) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, "a")]), partition_by=["ds"])
    wider = StructType([*SCHEMA.fields, StructField("segment", StringType(), True)])
    new = rows(spark, [(2, D2, 0.2, "a", "smb")], wider)
    with pytest.raises(ValidationError, match=r"preds.*'segment'.*allow_new_columns"):
        wh.append("preds", new)
    assert wh.schema("preds").names == SCHEMA.names
    wh.append("preds", new, allow_new_columns=True)
    assert wh.schema("preds").names == [*SCHEMA.names, "segment"]
    assertDataFrameEqual(
        wh.read("preds"), rows(spark, [(1, D1, 0.1, "a", None), (2, D2, 0.2, "a", "smb")], wider)
    )
    # The narrower frame is still accepted: the missing nullable column reads null.
    wh.append("preds", rows(spark, [(3, D3, 0.3, "a")]))
    assert wh.read("preds", partitions={"ds": [D3]}).first()["segment"] is None  # type: ignore[index]


def test_nulls_in_a_not_null_column_are_rejected(spark: SparkSession, wh: Warehouse) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, "a")]), partition_by=["ds"])
    files_before = data_files(wh.uri("preds"))
    loose = StructType([StructField("customer_id", LongType(), True), *SCHEMA.fields[1:]])
    with pytest.raises(ValidationError, match=r"preds.*customer_id"):
        wh.append("preds", rows(spark, [(None, D1, 0.2, "a")], loose))
    assert wh.version("preds") == 0
    assert data_files(wh.uri("preds")) == files_before
    # The same nullable-typed frame without nulls is fine (nullability is not a type).
    wh.append("preds", rows(spark, [(2, D1, 0.2, "a")], loose))
    assert wh.read("preds").count() == 2


def test_missing_not_null_column_and_other_partitioning_are_rejected(
    spark: SparkSession, wh: Warehouse
) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, "a")]), partition_by=["ds"])
    with pytest.raises(ValidationError, match=r"preds.*'customer_id'.*NOT NULL"):
        wh.append("preds", rows(spark, [(D1, 0.1, "a")], StructType(SCHEMA.fields[1:])))
    with pytest.raises(ValidationError, match=r"partitioned by \['ds'\]"):
        wh.append("preds", rows(spark, [(2, D1, 0.2, "a")]), partition_by=["model"])
    with pytest.raises(ValidationError, match=r"replace_partitions names 'model'"):
        wh.overwrite("preds", rows(spark, []), replace_partitions={"model": ["a"]})
    assert wh.version("preds") == 0


# --------------------------------------------------------------------------- history


def test_history_lists_every_commit_newest_first(spark: SparkSession, wh: Warehouse) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, "a")]), partition_by=["ds"])
    wh.append("preds", rows(spark, [(2, D2, 0.2, "a")]))
    wh.overwrite("preds", rows(spark, [(3, D2, 0.3, "a")]), replace_partitions={"ds": [D2]})
    history = wh.history("preds")
    assert [h["version"] for h in history] == [2, 1, 0]
    assert all("timestamp" in h and "operation" in h for h in history)
    if wh.engine == "deltalake":
        assert [h["scorehouse.operation"] for h in history] == [
            "replace_partitions",
            "append",
            "append",
        ]
