"""Staging: the Parquet files a write puts inside the table folder before its commit.

Spark's executors write the files with Spark's own Parquet writer; listing them, reading
their footers and checking them runs on the driver. A staging folder lives under
`<table>/_scorehouse_staging/<uuid>`, so moving a file into the table is a rename on
the same file system; Delta readers ignore `_` folders.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql.types import StructType

from scorehouse.errors import ValidationError
from scorehouse.storage.partitions import Partitions, allowed_values, parse_partition_path
from scorehouse.storage.stats import file_stats

STAGING_DIR = "_scorehouse_staging"
# A staging folder this old belongs to a writer that died; vacuum removes it.
STALE_STAGING_HOURS = 24


@dataclass(frozen=True)
class StagedFile:
    """A Parquet file Spark wrote into the staging folder, with what Delta needs of it."""

    rel_path: str  # relative to the staging folder, the same as to the table root later
    size: int
    num_records: int
    partition_values: dict[str, str | None]
    stats: dict[str, Any]


def new_stage(table_dir: Path) -> Path:
    """A new, empty-to-be staging folder inside the table."""
    return table_dir / STAGING_DIR / uuid.uuid4().hex


def without_dictionary(writer: DataFrameWriter, columns: Sequence[str]) -> DataFrameWriter:
    """`writer` with Parquet dictionary encoding off for `columns` (a per-write option)."""
    for column in columns:
        writer = writer.option(f"parquet.enable.dictionary#{column}", "false")
    return writer


def write_stage(
    spark: SparkSession,
    df: DataFrame,
    stage: Path,
    partition_cols: Sequence[str],
    schema: StructType,
    plain_columns: Sequence[str] = (),
) -> list[StagedFile]:
    """Spark writes df as Parquet under `stage`; returns the files with their footers."""
    # INT96 (Spark's default) is deprecated and not what other Delta readers expect.
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    writer = without_dictionary(
        df.write.mode("errorifexists").option("compression", "zstd"), plain_columns
    )
    if partition_cols:
        writer = writer.partitionBy(*partition_cols)
    writer.parquet(str(stage))
    return staged_files(stage, partition_cols, schema)


def staged_files(
    stage: Path, partition_cols: Sequence[str], schema: StructType
) -> list[StagedFile]:
    """The Parquet files under `stage` (Hive layout) with what a Delta add action needs."""
    files: list[StagedFile] = []
    for path in sorted(stage.rglob("*.parquet")):
        rel = path.relative_to(stage).as_posix()
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue
        metadata = pq.read_metadata(path)
        if metadata.num_rows == 0:  # Spark writes one empty file for an empty frame
            path.unlink()
            continue
        files.append(
            StagedFile(
                rel_path=rel,
                size=path.stat().st_size,
                num_records=metadata.num_rows,
                partition_values=parse_partition_path(rel) if partition_cols else {},
                stats=file_stats(metadata, schema),
            )
        )
    return files


def check_file_columns(
    table: str,
    stage: Path,
    files: Sequence[StagedFile],
    schema: StructType,
    partition_cols: Sequence[str],
) -> None:
    """Each staged file holds exactly the table's data columns, in the table's types."""
    from pyspark.sql.pandas.types import to_arrow_type

    expected = {
        f.name: to_arrow_type(f.dataType, timezone="UTC")
        for f in schema
        if f.name not in partition_cols
    }
    for staged in files:
        found = pq.read_schema(stage / staged.rel_path)
        have = {name: found.field(name).type for name in found.names}
        if have != expected:
            wrong = sorted(
                f"{n}: {have.get(n)} (table: {expected.get(n)})"
                for n in set(have) | set(expected)
                if have.get(n) != expected.get(n)
            )
            raise ValidationError(
                f"table {table}: file {staged.rel_path} does not match the table's columns: "
                + "; ".join(wrong)
            )


def check_not_null(
    table: str, files: Sequence[StagedFile], schema: StructType, partition_cols: Sequence[str]
) -> None:
    """No NOT NULL column has a null, by the footers' null counts and partition values."""
    required = [f.name for f in schema if not f.nullable]
    for staged in files:
        for column in required:
            if column in partition_cols:
                bad = staged.partition_values.get(column) is None
            else:
                bad = staged.stats.get("nullCount", {}).get(column, 0) > 0
            if bad:
                raise ValidationError(
                    f"table {table}: column {column!r} is NOT NULL but the data has nulls"
                )


def check_bounds(table: str, files: Sequence[StagedFile], replace_partitions: Partitions) -> None:
    """Every staged file lies inside `replace_partitions`."""
    allowed = allowed_values(replace_partitions)
    for staged in files:
        for column, values in allowed.items():
            value = staged.partition_values.get(column)
            if value not in values:
                raise ValidationError(
                    f"table {table}: data has rows with {column}={value} outside "
                    f"replace_partitions {sorted(v for v in values if v is not None)}"
                )


def discard_stage(stage: Path) -> None:
    """Removes a staging folder, and the staging root when no other writer is using it."""
    shutil.rmtree(stage, ignore_errors=True)
    with contextlib.suppress(OSError):
        stage.parent.rmdir()  # fails while another writer's folder is in it


def stale_staging(table_dir: Path, *, delete: bool) -> list[str]:
    """Files of staging folders left by writers that died (older than STALE_STAGING_HOURS).

    deltalake's vacuum skips `_` folders, so without this they would stay forever.
    """
    root = table_dir / STAGING_DIR
    if not root.is_dir():
        return []
    cutoff = time.time() - STALE_STAGING_HOURS * 3600
    found: list[str] = []
    for folder in root.iterdir():
        if folder.stat().st_mtime >= cutoff:
            continue  # possibly a live writer
        found.extend(p.relative_to(table_dir).as_posix() for p in folder.rglob("*") if p.is_file())
        if delete:
            shutil.rmtree(folder, ignore_errors=True)
    return found
