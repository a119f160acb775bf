"""Warehouse tables on real Spark and real Delta logs: Spark writes, deltalake commits."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DateType, DoubleType, LongType, StringType, StructField, StructType
from pyspark.testing import assertDataFrameEqual

from scorehouse.errors import ValidationError
from scorehouse.storage.commit import commit_lock
from scorehouse.storage.staging import STAGING_DIR
from scorehouse.storage.warehouse import Warehouse

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


@pytest.fixture
def wh(spark: SparkSession, tmp_path: Path) -> Warehouse:
    return Warehouse(spark, tmp_path / "warehouse")


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
    assert [h["scorehouse.operation"] for h in history] == [
        "replace_partitions",
        "append",
        "append",
    ]


# --------------------------------------------------------------------------- concurrency


def test_a_commit_waits_for_the_table_lock(spark: SparkSession, wh: Warehouse) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, "a")]), partition_by=["ds"])
    table_dir = Path(wh.uri("preds"))
    done: list[int] = []
    with commit_lock(table_dir):
        writer = threading.Thread(
            target=lambda: done.append(wh.append("preds", rows(spark, [(2, D1, 0.2, "a")])))
        )
        writer.start()
        deadline = time.monotonic() + 120
        # Wait until Spark has staged the files: only the commit is left, and it must wait.
        while not list((table_dir / STAGING_DIR).rglob("*.parquet")):
            assert time.monotonic() < deadline and writer.is_alive()
            time.sleep(0.1)
        time.sleep(1.0)
        assert writer.is_alive() and not done
        assert wh.version("preds") == 0
    writer.join(120)
    assert done == [1]
    assert not (table_dir / STAGING_DIR).exists()


def race(writes: dict[str, Callable[[], int]]) -> dict[str, int]:
    """Start all writes at the same instant in threads; their returned versions by name."""
    barrier = threading.Barrier(len(writes))
    versions: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(name: str, write: Callable[[], int]) -> None:
        try:
            barrier.wait()
            versions[name] = write()
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in writes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    if errors:
        raise errors[0]
    return versions


def test_racing_overwrite_and_append_land_in_a_serial_order(
    spark: SparkSession, wh: Warehouse
) -> None:
    initial = rows(spark, [(1, D1, 0.1, "old"), (9, D2, 0.9, "old")])
    replacement = rows(spark, [(2, D1, 0.2, "overwrite")])
    extra = rows(spark, [(3, D1, 0.3, "append")])
    kept = rows(spark, [(9, D2, 0.9, "old")])
    wh.append("preds", initial, partition_by=["ds"])
    for _ in range(3):
        wh.overwrite("preds", initial)
        versions = race(
            {
                "overwrite": lambda: wh.overwrite(
                    "preds", replacement, replace_partitions={"ds": [D1]}
                ),
                "append": lambda: wh.append("preds", extra),
            }
        )
        # The commit order decides what a serial execution would have produced.
        if versions["append"] < versions["overwrite"]:
            expected = replacement.unionByName(kept)
        else:
            expected = replacement.unionByName(extra).unionByName(kept)
        assert abs(versions["append"] - versions["overwrite"]) == 1
        assertDataFrameEqual(wh.read("preds"), expected)


# --------------------------------------------------------------------------- maintenance


def _small_appends(spark: SparkSession, wh: Warehouse) -> DataFrame:
    batches = [
        rows(spark, [(i * 10 + 1, D1, 0.1 * i, "a"), (i * 10 + 2, D2, 0.2 * i, "b")])
        for i in range(4)
    ]
    wh.append("preds", batches[0], partition_by=["ds"])
    for batch in batches[1:]:
        wh.append("preds", batch)
    expected = batches[0]
    for batch in batches[1:]:
        expected = expected.unionByName(batch)
    return expected


def test_optimize_compacts_files_and_keeps_the_data(spark: SparkSession, wh: Warehouse) -> None:
    expected = _small_appends(spark, wh)
    before = wh.version("preds")
    files_before = len(DeltaTable(wh.uri("preds")).file_uris())
    assert files_before >= 8
    version = wh.optimize("preds", partitions={"ds": [D1]})
    assert version == before + 1
    d2_files = DeltaTable(wh.uri("preds")).file_uris(file_pruning_predicate=[("ds", "=", D2)])
    assert len(d2_files) >= 4  # D2 was not asked for
    wh.optimize("preds")
    table = DeltaTable(wh.uri("preds"))
    assert len(table.file_uris()) == 2  # one per partition
    assertDataFrameEqual(wh.read("preds"), expected)
    assertDataFrameEqual(wh.read("preds", version=before), expected)
    assert table.to_pyarrow_table().num_rows == 8
    # Nothing left to compact: no commit.
    assert wh.optimize("preds") == wh.version("preds")
    log = Path(wh.uri("preds")) / "_delta_log" / f"{wh.version('preds'):020d}.json"
    actions = [json.loads(line) for line in log.read_text().splitlines()]
    changes = [a[k]["dataChange"] for a in actions for k in ("add", "remove") if k in a]
    assert changes and not any(changes)  # a rewrite, not new data for streaming readers


def test_optimize_cannot_select_the_null_partition(spark: SparkSession, wh: Warehouse) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, None)]), partition_by=["model"])
    wh.append("preds", rows(spark, [(2, D1, 0.2, None)]))
    with pytest.raises(ValidationError, match=r"preds: a null partition value"):
        wh.optimize("preds", partitions={"model": [None]})
    assert wh.version("preds") == 1
    assert wh.optimize("preds") == 2  # the whole table, null partition included
    assert len(DeltaTable(wh.uri("preds")).file_uris()) == 1


def test_vacuum_removes_only_unreferenced_files_after_retention(
    spark: SparkSession, wh: Warehouse
) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, "a"), (2, D2, 0.2, "a")]), partition_by=["ds"])
    old_files = data_files(wh.uri("preds"))
    latest = rows(spark, [(3, D1, 0.3, "b")])
    wh.overwrite("preds", latest)
    live = {
        Path(p).relative_to(wh.uri("preds")).as_posix()
        for p in DeltaTable(wh.uri("preds")).file_uris()
    }
    assert old_files.isdisjoint(live)
    # A writer's staged file is not part of the table yet: vacuum must leave it alone.
    staged = Path(wh.uri("preds")) / STAGING_DIR / "inflight" / "ds=2026-01-09" / "part-0.parquet"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"PAR1")
    assert wh.vacuum("preds") == []  # removed just now: inside the 7-day retention
    assert set(wh.vacuum("preds", retention_hours=0, dry_run=True)) == old_files
    assert old_files <= data_files(wh.uri("preds"))
    assert set(wh.vacuum("preds", retention_hours=0)) == old_files
    assert data_files(wh.uri("preds")) == live | {staged.relative_to(wh.uri("preds")).as_posix()}
    assert (Path(wh.uri("preds")) / "_scorehouse_commit.lock").exists()
    assertDataFrameEqual(wh.read("preds"), latest)


def test_vacuum_clears_staging_left_by_a_dead_writer(spark: SparkSession, wh: Warehouse) -> None:
    wh.append("preds", rows(spark, [(1, D1, 0.1, "a")]), partition_by=["ds"])
    table_dir = Path(wh.uri("preds"))
    dead = table_dir / STAGING_DIR / "dead" / "ds=2026-01-01" / "part-0.parquet"
    live = table_dir / STAGING_DIR / "live" / "ds=2026-01-01" / "part-0.parquet"
    for path in (dead, live):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"PAR1")
    two_days_ago = time.time() - 48 * 3600
    os.utime(table_dir / STAGING_DIR / "dead", (two_days_ago, two_days_ago))
    removed = wh.vacuum("preds")
    assert removed == [dead.relative_to(table_dir).as_posix()]
    assert not dead.exists() and live.exists()
    assertDataFrameEqual(wh.read("preds"), rows(spark, [(1, D1, 0.1, "a")]))
