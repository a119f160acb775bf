"""Feature builds through the warehouse: the next-day path (staged, checked, committed)
against the range statement, a failed check that commits nothing, and the profile read
from the written files' footers against the aggregated one."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from scorehouse.errors import ValidationError
from scorehouse.features import transforms
from scorehouse.features.build import build_features
from scorehouse.features.checks import feature_profile, footer_profile
from scorehouse.features.registry import feature_sql, plain_encoded_columns
from scorehouse.schemas import RAW_CUSTOMERS, RAW_TRANSACTIONS
from scorehouse.settings import Settings
from scorehouse.storage.staging import STAGING_DIR
from scorehouse.storage.warehouse import Warehouse

DAY1 = date(2026, 3, 1)
DAY2 = date(2026, 3, 2)
DAY3 = date(2026, 3, 3)
CUSTOMERS = [
    (1, date(2025, 12, 1), date(2025, 12, 1), "consumer", "north", True),
    (1, DAY2, date(2025, 12, 1), "smb", "north", False),  # new attributes from DAY2
    (2, date(2026, 1, 15), date(2026, 1, 15), "smb", "west", False),
    (3, DAY2, DAY2, "enterprise", "east", True),  # signs up on DAY2
    (4, date(2025, 3, 2), date(2025, 3, 2), "consumer", "south", None),
]
EVENTS = [
    (1, date(2025, 3, 2), 1, 4.0),  # leaves the 365-day window on DAY2
    (1, date(2026, 2, 20), 1, 12.5),
    (2, DAY1, 1, 99.99),
    (1, DAY2, 2, 30.0),
    (3, DAY2, 3, 45.0),
    (4, DAY3, 2, 8.0),
]


@pytest.fixture
def raw(spark: SparkSession, settings: Settings) -> Warehouse:
    wh = Warehouse.from_settings(spark, settings)
    wh.overwrite("raw_customers", spark.createDataFrame(CUSTOMERS, RAW_CUSTOMERS))
    tx = [
        (f"t{i}", c, datetime(d.year, d.month, d.day, 10), q, a, d)
        for i, (c, d, q, a) in enumerate(EVENTS)
    ]
    wh.overwrite(
        "raw_transactions",
        spark.createDataFrame(tx, RAW_TRANSACTIONS),
        partition_by=["ds"],
    )
    return wh


def _staging_left(wh: Warehouse, table: str) -> list[str]:
    stage = Path(wh.uri(table)) / STAGING_DIR
    return sorted(p.name for p in stage.iterdir()) if stage.exists() else []


def test_next_day_builds_equal_the_range_statement(
    spark: SparkSession, settings: Settings, raw: Warehouse
) -> None:
    assert build_features(spark, settings, DAY1).mode == "range"
    for ds in (DAY2, DAY3):
        build = build_features(spark, settings, ds)
        assert (build.mode, build.rows) == ("next-day", 4)
    tables = settings.tables
    built = raw.read(tables.features, partitions={"ds": [DAY2, DAY3]})
    expected = _from_scratch(raw, settings, [DAY2, DAY3])
    assertDataFrameEqual(built, expected.select(*built.columns))
    assert _staging_left(raw, tables.features) == []


def _from_scratch(wh: Warehouse, settings: Settings, days: list[date]) -> DataFrame:
    sql = feature_sql()
    history = transforms.day_range(date(2025, 3, 1), days[-1])
    daily = transforms.daily_rollups(sql, "transactions", wh.read("raw_transactions"), history)
    return transforms.features_from_state(
        sql,
        transforms.state_for_days(sql, {"transactions": daily}, wh.read("raw_customers"), days),
    )


def test_late_rows_for_built_days_rebuild_every_snapshot_that_counted_them(
    spark: SparkSession, settings: Settings, raw: Warehouse
) -> None:
    tables = settings.tables
    build_features(spark, settings, DAY1, DAY3)
    # Two purchases of customer 2 on DAY1 arrive after DAY1..DAY3 were built.
    late = [(f"late{i}", 2, datetime(2026, 3, 1, 15 + i), 1, 10.0, DAY1) for i in range(2)]
    raw.append(
        "raw_transactions",
        spark.createDataFrame(late, raw.schema("raw_transactions")),
        partition_by=["ds"],
    )
    build = build_features(spark, settings, DAY3)  # the nightly's rerun of DAY3
    assert (build.restated_from, build.built) == (DAY1, [DAY1, DAY2, DAY3])
    built = raw.read(tables.features, partitions={"ds": [DAY1, DAY2, DAY3]})
    expected = _from_scratch(raw, settings, [DAY1, DAY2, DAY3])
    assertDataFrameEqual(built, expected.select(*built.columns))
    counts = {r.ds: r.lifetime_txn_count for r in built.where("customer_id = 2").collect()}
    assert counts == {DAY1: 3, DAY2: 3, DAY3: 3}
    # Nothing changed since: the next build restates nothing.
    assert build_features(spark, settings, DAY3).built == [DAY3]


def test_a_failed_check_commits_nothing(
    spark: SparkSession, settings: Settings, raw: Warehouse
) -> None:
    tables = settings.tables
    build_features(spark, settings, DAY1)
    version = raw.version(tables.features)
    # A customer known since February recorded after DAY1 was built: the snapshot of
    # DAY1 (the next day's starting point) lacks them, and the row count check says so.
    late = spark.createDataFrame(
        [(5, date(2026, 2, 1), date(2026, 2, 1), "smb", "east", True)], RAW_CUSTOMERS
    )
    raw.append("raw_customers", late)
    with pytest.raises(ValidationError) as err:
        build_features(spark, settings, DAY2)
    assert f"features build {DAY2} rejected, nothing committed to {tables.features}" in str(
        err.value
    )
    assert f"row count on {DAY2}: 4 rows for 5 entities (must be equal)" in str(err.value)
    assert raw.version(tables.features) == version
    assert raw.partition_values(tables.features) == [DAY1]
    assert _staging_left(raw, tables.features) == []
    # Rebuilding from the day the late version applies to repairs the chain.
    assert build_features(spark, settings, DAY1, DAY2).rows == 9


def test_a_range_violation_in_a_next_day_build_commits_nothing(
    spark: SparkSession, settings: Settings, raw: Warehouse
) -> None:
    tables = settings.tables
    build_features(spark, settings, DAY1)
    version = raw.version(tables.features)
    # A return booked as a negative quantity (written around ingest, which rejects it).
    refund = [("r1", 2, datetime(2026, 3, 2, 9), -7, 5.0, DAY2)]
    raw.append("raw_transactions", spark.createDataFrame(refund, RAW_TRANSACTIONS))
    with pytest.raises(ValidationError) as err:
        build_features(spark, settings, DAY2)
    assert "quantity_7d: must be >= 0 (min -6.0)" in str(err.value)
    assert "quantity_365d: must be >= 0 (min -6.0)" in str(err.value)
    assert raw.version(tables.features) == version
    assert raw.partition_values(tables.features) == [DAY1]
    assert _staging_left(raw, tables.features) == []


def test_the_profile_from_the_written_footers_equals_the_aggregated_one(
    spark: SparkSession, settings: Settings, raw: Warehouse, tmp_path: Path
) -> None:
    features = _from_scratch(raw, settings, [DAY1, DAY2, DAY3])
    # several files and row groups per day, so that the footers' statistics are merged
    features.repartition(3).write.option("parquet.block.size", 1024).partitionBy("ds").parquet(
        str(tmp_path / "out")
    )
    footers = [pq.read_metadata(path) for path in (tmp_path / "out").glob("ds=*/*.parquet")]
    assert footer_profile(footers) == feature_profile(features)


def test_every_build_writes_the_registry_plain_columns_without_a_dictionary(
    spark: SparkSession, settings: Settings, raw: Warehouse
) -> None:
    # 100 more customers without purchases: their spend columns are all 0, so Parquet would
    # keep a dictionary for them (as it does for the counts) unless told not to.
    quiet = [(100 + i, date(2025, 6, 1), date(2025, 6, 1), "smb", "east", True) for i in range(100)]
    raw.overwrite("raw_customers", spark.createDataFrame(CUSTOMERS + quiet, RAW_CUSTOMERS))
    build_features(spark, settings, DAY1)  # the table's first build: Warehouse.overwrite
    build_features(spark, settings, DAY2)  # next day: staged, checked, committed
    plain = set(plain_encoded_columns())
    assert {"customer_id", "spend_90d", "spend_365d", "__spend_90d"} <= plain
    for ds in (DAY1, DAY2):
        files = list((Path(raw.uri(settings.tables.features)) / f"ds={ds}").glob("*.parquet"))
        assert files
        with_dictionary: set[str] = set()
        for path in files:
            footer = pq.read_metadata(path)
            for g in range(footer.num_row_groups):
                for c in range(footer.num_columns):
                    chunk = footer.row_group(g).column(c)
                    if chunk.has_dictionary_page:
                        with_dictionary.add(chunk.path_in_schema)
        assert not with_dictionary & plain, ds
        assert {"txn_count_90d", "txn_count_365d"} <= with_dictionary, ds
