"""Tables written by the project read back identically in deltalake, DuckDB and Polars."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import duckdb_extension_delta
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    DateType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)
from pyspark.testing import assertDataFrameEqual

from scorehouse.storage.warehouse import Warehouse

D1, D2, D3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)
T = datetime(2026, 1, 1, 10, 30, 15, 123456, tzinfo=UTC)  # microseconds must survive

SCHEMA = StructType(
    [
        StructField("customer_id", LongType(), False),
        StructField("ds", DateType(), False),
        StructField("score", DoubleType(), True),
        StructField("segment", StringType(), True),
        StructField("scored_at", TimestampType(), True),
    ]
)


@pytest.fixture
def wh(spark: SparkSession, tmp_path: Path) -> Warehouse:
    return Warehouse(spark, tmp_path / "warehouse")


@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    """DuckDB with the delta extension loaded from its installed package: no network."""
    package = Path(duckdb_extension_delta.__file__).parent
    (extension,) = package.glob("extensions/*/delta.duckdb_extension")
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    con.execute(f"LOAD '{extension}'")
    con.execute("SET TimeZone = 'UTC'")
    return con


def as_spark(spark: SparkSession, table: pa.Table, schema: StructType = SCHEMA) -> DataFrame:
    """Another reader's Arrow result as a Spark DataFrame in the table's column order."""
    columns = [table.column(name).to_pylist() for name in schema.names]
    return spark.createDataFrame(list(zip(*columns, strict=True)), schema)


def readers(
    duck: duckdb.DuckDBPyConnection, uri: str, version: int | None = None
) -> dict[str, pa.Table]:
    """The table as each outside reader reads it (latest, or as of `version`)."""
    at = "" if version is None else f", version={int(version)}"
    return {
        "deltalake": DeltaTable(uri, version=version).to_pyarrow_table(),
        "polars": pl.read_delta(uri, version=version).to_arrow(),
        "polars-lazy": pl.scan_delta(uri, version=version).collect().to_arrow(),
        "duckdb": duck.sql(f"SELECT * FROM delta_scan('{uri}'{at})").fetch_arrow_table(),
    }


def batch(spark: SparkSession, data: list[tuple[Any, ...]]) -> DataFrame:
    return spark.createDataFrame(data, SCHEMA)


def test_outside_readers_see_the_same_rows_at_every_version(
    spark: SparkSession, wh: Warehouse, duck: duckdb.DuckDBPyConnection
) -> None:
    v0 = batch(spark, [(1, D1, 0.1, "smb", T), (2, D2, None, None, None), (3, D2, 0.3, "x", T)])
    v1_extra = batch(spark, [(4, D3, 0.4, "consumer", T)])
    rerun = batch(spark, [(5, D2, 0.5, "enterprise", T)])
    wh.append("preds", v0, partition_by=["ds"])
    wh.append("preds", v1_extra)
    wh.overwrite("preds", rerun, replace_partitions={"ds": [D2]})
    uri = wh.uri("preds")
    expected = {
        0: v0,
        1: v0.unionByName(v1_extra),
        2: batch(
            spark,
            [(1, D1, 0.1, "smb", T), (4, D3, 0.4, "consumer", T), (5, D2, 0.5, "enterprise", T)],
        ),
    }
    for version, frame in expected.items():
        assertDataFrameEqual(wh.read("preds", version=version), frame)
        for name, table in readers(duck, uri, version).items():
            assert table.num_rows == frame.count(), name
            assertDataFrameEqual(as_spark(spark, table), frame)
    for name, table in readers(duck, uri).items():
        assertDataFrameEqual(as_spark(spark, table), expected[2])
        assert name and table.schema.field("ds").type == pa.date32()
    # The log's statistics are what lets them count without reading data.
    assert duck.sql(f"SELECT count(*) FROM delta_scan('{uri}')").fetchone() == (3,)
    assert DeltaTable(uri).count() == 3


def test_outside_readers_after_optimize_and_vacuum(
    spark: SparkSession, wh: Warehouse, duck: duckdb.DuckDBPyConnection
) -> None:
    frames = [
        batch(spark, [(i, D1, i / 10, "a", T), (i + 100, D2, None, "b", None)]) for i in range(3)
    ]
    wh.append("preds", frames[0], partition_by=["ds"])
    for frame in frames[1:]:
        wh.append("preds", frame)
    expected = frames[0].unionByName(frames[1]).unionByName(frames[2])
    spark_written = _data_file_schemas(wh.uri("preds"))
    wh.optimize("preds")
    wh.vacuum("preds", retention_hours=0)
    assertDataFrameEqual(wh.read("preds"), expected)
    for table in readers(duck, wh.uri("preds")).values():
        assertDataFrameEqual(as_spark(spark, table), expected)
    # deltalake's rewrite keeps what the table promises: protocol (1,2), Hive `ds=`
    # folders, and files typed like Spark's (the arrow scoring reader relies on that).
    protocol = DeltaTable(wh.uri("preds")).protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
    assert {p.parent.name for p in Path(wh.uri("preds")).rglob("*.parquet")} == {
        "ds=2026-01-01",
        "ds=2026-01-02",
    }
    assert _data_file_schemas(wh.uri("preds")) == spark_written


def _data_file_schemas(uri: str) -> set[pa.Schema]:
    """The distinct Arrow schemas of the table's live data files, metadata dropped."""
    return {pq.read_schema(u).remove_metadata() for u in DeltaTable(uri).file_uris()}


def test_compaction_keeps_evolved_columns_and_special_partitions(
    spark: SparkSession, wh: Warehouse, duck: duckdb.DuckDBPyConnection
) -> None:
    schema = StructType(
        [StructField("id", LongType(), False), StructField("segment", StringType(), True)]
    )
    wider = StructType([*schema.fields, StructField("extra", DoubleType(), True)])
    values = ["a b%c/d", "plain", None]
    wh.append(
        "odd",
        spark.createDataFrame([(i, v) for i, v in enumerate(values)], schema),
        partition_by=["segment"],
    )
    wh.append("odd", spark.createDataFrame([(10 + i, v) for i, v in enumerate(values)], schema))
    newer = spark.createDataFrame([(20 + i, v, 0.5) for i, v in enumerate(values)], wider)
    wh.append("odd", newer, allow_new_columns=True)
    expected = wh.read("odd").cache()
    assert expected.count() == 9
    before = wh.version("odd")
    assert wh.optimize("odd") == before + 1
    assert len(DeltaTable(wh.uri("odd")).file_uris()) == 3  # one per partition
    assertDataFrameEqual(wh.read("odd"), expected)
    assertDataFrameEqual(
        wh.read("odd", partitions={"segment": ["a b%c/d"]}),
        expected.where("segment = 'a b%c/d'"),
    )
    assert wh.partition_values("odd", "segment") == ["a b%c/d", "plain", None]
    for table in readers(duck, wh.uri("odd")).values():
        assertDataFrameEqual(as_spark(spark, table, wider), expected)
    expected.unpersist()


def test_partition_values_with_special_characters_round_trip(
    spark: SparkSession, wh: Warehouse, duck: duckdb.DuckDBPyConnection
) -> None:
    schema = StructType(
        [StructField("id", LongType(), False), StructField("segment", StringType(), True)]
    )
    # Spark escapes '%' and '/' in directory names; the log must still point at the files.
    data = spark.createDataFrame([(1, "a b%c/d"), (2, "plain"), (3, None)], schema)
    wh.append("odd", data, partition_by=["segment"])
    assert wh.partition_values("odd", "segment") == ["a b%c/d", "plain", None]
    assertDataFrameEqual(wh.read("odd"), data)
    assertDataFrameEqual(
        wh.read("odd", partitions={"segment": ["a b%c/d"]}),
        spark.createDataFrame([(1, "a b%c/d")], schema),
    )
    for table in readers(duck, wh.uri("odd")).values():
        assertDataFrameEqual(as_spark(spark, table, schema), data)
