"""Delta tables of the warehouse: one interface, two engines.

`deltalake` engine (default here, where no Delta jars can be downloaded): Spark writes
Parquet (Hive `col=value` layout, zstd) into a staging folder inside the table, the
driver checks the files, moves them into place and commits them to a real Delta table
with deltalake's transaction API. Reads list the files of a snapshot with deltalake and
hand them to Spark's Parquet reader with the table's schema.

`native` engine (when delta-spark's jars are on the classpath): `format("delta")`.

Both engines enforce the table schema before writing and serialize commits to one
table with a file lock. deltalake is only ever called in the driver process (it
panics after `fork`, so never inside UDFs or executors). See docs/tables.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import pyarrow.parquet as pq
from deltalake import DeltaTable, Field, Schema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    create_table_with_add_actions,
)
from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    ByteType,
    DataType,
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    MapType,
    NullType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from scorehouse.errors import ConflictError, ValidationError
from scorehouse.settings import Settings
from scorehouse.spark import has_delta_jars

log = logging.getLogger(__name__)

Engine = Literal["auto", "deltalake", "native"]
Partitions = Mapping[str, Sequence[Any]]

STAGING_DIR = "_scorehouse_staging"
LOCK_FILE = "_scorehouse_commit.lock"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
COMMIT_RETRIES = 5
# A staging folder this old belongs to a writer that died; vacuum removes it.
STALE_STAGING_HOURS = 24
# Delta truncates string statistics; longer strings get none rather than a wrong max.
MAX_STRING_STAT = 32
DEFAULT_TARGET_FILE_BYTES = 128 * 1024 * 1024
_INTEGRAL = (ByteType, ShortType, IntegerType, LongType)
# Types that Spark can write as a Hive partition directory and read back exactly.
_PARTITION_TYPES = (*_INTEGRAL, StringType, DateType, BooleanType)


# --------------------------------------------------------------------------- helpers


def without_dictionary(writer: DataFrameWriter, columns: Sequence[str]) -> DataFrameWriter:
    """`writer` with Parquet dictionary encoding off for `columns` (a per-write option)."""
    for column in columns:
        writer = writer.option(f"parquet.enable.dictionary#{column}", "false")
    return writer


def format_partition_value(value: Any) -> str | None:
    """A Python value as Delta's partition-value string (None for a null partition)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        raise ValidationError("timestamp partition columns are not supported; use a date")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def parse_partition_value(text: str | None, data_type: DataType) -> Any:
    """Delta's partition-value string back to a Python value of the column's Spark type."""
    if text is None or (text == "" and not isinstance(data_type, StringType)):
        return None
    if isinstance(data_type, DateType):
        return date.fromisoformat(text)
    if isinstance(data_type, _INTEGRAL):
        return int(text)
    if isinstance(data_type, BooleanType):
        return text.lower() == "true"
    return text


def parse_partition_path(rel_path: str) -> dict[str, str | None]:
    """Partition values of a Hive-layout file path (`a=1/b=x/part-0.parquet`), unescaped."""
    values: dict[str, str | None] = {}
    for part in rel_path.split("/")[:-1]:
        key, sep, raw = part.partition("=")
        if not sep:
            raise ValueError(f"{rel_path!r} is not a Hive partition path")
        # Spark escapes special characters in directory names as %XX.
        text = unquote(raw)
        values[unquote(key)] = None if text == HIVE_NULL else text
    return values


def _normalized(data_type: DataType) -> DataType:
    """The type with every nullability flag set and metadata dropped (for comparisons)."""
    if isinstance(data_type, StructType):
        return StructType([StructField(f.name, _normalized(f.dataType), True) for f in data_type])
    if isinstance(data_type, ArrayType):
        return ArrayType(_normalized(data_type.elementType), True)
    if isinstance(data_type, MapType):
        return MapType(_normalized(data_type.keyType), _normalized(data_type.valueType), True)
    return data_type


def same_type(left: DataType, right: DataType) -> bool:
    """True when two Spark types are equal apart from nullability."""
    return _normalized(left) == _normalized(right)


def _unsupported_type(data_type: DataType) -> str | None:
    """Why a type cannot be stored in a protocol (1,2) Delta table, or None."""
    if isinstance(data_type, NullType):
        return "has no type (a bare NULL literal: cast it)"
    if isinstance(data_type, TimestampNTZType):
        return "is timestamp_ntz, which needs a newer Delta protocol: use a UTC timestamp"
    if isinstance(data_type, StructType):
        for field in data_type:
            reason = _unsupported_type(field.dataType)
            if reason:
                return reason
    if isinstance(data_type, ArrayType):
        return _unsupported_type(data_type.elementType)
    if isinstance(data_type, MapType):
        return _unsupported_type(data_type.keyType) or _unsupported_type(data_type.valueType)
    return None


def check_schema(
    table: str,
    current: StructType | None,
    incoming: StructType,
    *,
    allow_new_columns: bool = False,
) -> StructType:
    """The schema the table has after a commit of `incoming`, or ValidationError.

    Types must match exactly (nullability aside); new columns need `allow_new_columns`
    and join as nullable; columns missing from `incoming` must be nullable (read as null).
    """
    seen: dict[str, str] = {}
    for field in incoming:
        key = field.name.lower()
        if key in seen:
            raise ValidationError(
                f"table {table}: columns {seen[key]!r} and {field.name!r} differ only in case"
            )
        seen[key] = field.name
        reason = _unsupported_type(field.dataType)
        if reason:
            raise ValidationError(f"table {table}: column {field.name!r} {reason}")
    if current is None:
        return incoming
    by_name = {f.name.lower(): f for f in current}
    new_fields: list[StructField] = []
    for field in incoming:
        existing = by_name.get(field.name.lower())
        if existing is None:
            new_fields.append(field)
            continue
        if existing.name != field.name:
            raise ValidationError(
                f"table {table}: column {field.name!r} differs in case from the table's "
                f"{existing.name!r}"
            )
        if not same_type(existing.dataType, field.dataType):
            raise ValidationError(
                f"table {table}: column {field.name!r} has type "
                f"{field.dataType.simpleString()} but the table has "
                f"{existing.dataType.simpleString()}; cast it explicitly"
            )
    if new_fields and not allow_new_columns:
        names = ", ".join(repr(f.name) for f in new_fields)
        raise ValidationError(
            f"table {table}: new column(s) {names} not in the table schema; "
            "pass allow_new_columns=True to add them"
        )
    incoming_names = {f.name.lower() for f in incoming}
    for field in current:
        if field.name.lower() not in incoming_names and not field.nullable:
            raise ValidationError(
                f"table {table}: column {field.name!r} is missing and the table declares it "
                "NOT NULL"
            )
    # Delta cannot add a NOT NULL column to rows that already exist.
    evolved = [StructField(f.name, f.dataType, True, f.metadata) for f in new_fields]
    return StructType([*current.fields, *evolved])


def _ms(value: datetime, *, ceil: bool) -> str:
    """Delta's timestamp statistic (milliseconds, UTC); max rounds up so pruning stays safe."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    extra = value.microsecond % 1000
    value = value - timedelta(microseconds=extra)
    if ceil and extra:
        value += timedelta(milliseconds=1)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _stat_value(value: Any, data_type: DataType, *, is_max: bool) -> Any:
    """A Parquet min/max as Delta's JSON statistic, or None where it would be unsafe."""
    if isinstance(data_type, _INTEGRAL) and isinstance(value, int):
        return value
    if isinstance(data_type, DateType) and isinstance(value, date):
        return value.isoformat()
    if isinstance(data_type, TimestampType) and isinstance(value, datetime):
        return _ms(value, ceil=is_max)
    if isinstance(data_type, StringType) and isinstance(value, str):
        return value if len(value) <= MAX_STRING_STAT else None
    # Floats (NaN ordering), decimals, binary and nested values: no min/max.
    return None


def file_stats(metadata: pq.FileMetaData, schema: StructType) -> dict[str, Any]:
    """Delta `stats` (numRecords, minValues, maxValues, nullCount) from a Parquet footer.

    A column gets min/max only when every row group has a safe value for it, and a null
    count only when every row group reports one: missing stats are fine, wrong ones not.
    """
    types = {f.name: f.dataType for f in schema if not isinstance(f.dataType, BinaryType)}
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    no_range: set[str] = set()
    no_nulls: set[str] = set()
    for rg in range(metadata.num_row_groups):
        group = metadata.row_group(rg)
        for ci in range(group.num_columns):
            column = group.column(ci)
            name = column.path_in_schema
            if name not in types:  # nested leaves
                continue
            stats = column.statistics
            if stats is None or stats.null_count is None:
                no_range.add(name)
                no_nulls.add(name)
                continue
            nulls[name] = nulls.get(name, 0) + stats.null_count
            if not stats.has_min_max:
                if group.num_rows > stats.null_count:
                    no_range.add(name)
                continue  # an all-null row group does not widen the range
            low = _stat_value(stats.min, types[name], is_max=False)
            high = _stat_value(stats.max, types[name], is_max=True)
            if low is None or high is None:
                no_range.add(name)
                continue
            mins[name] = low if name not in mins else min(mins[name], low)
            maxs[name] = high if name not in maxs else max(maxs[name], high)
    result: dict[str, Any] = {"numRecords": metadata.num_rows}
    ranged = [name for name in mins if name not in no_range]
    if ranged:
        result["minValues"] = {name: mins[name] for name in ranged}
        result["maxValues"] = {name: maxs[name] for name in ranged}
    counted = {name: n for name, n in nulls.items() if name not in no_nulls}
    if counted:
        result["nullCount"] = counted
    return result


def build_add_action(
    rel_path: str,
    size: int,
    modification_time_ms: int,
    partition_values: Mapping[str, str | None],
    stats: Mapping[str, Any],
    *,
    data_change: bool = True,
) -> AddAction:
    """An AddAction for a file already in the table folder (path relative to the root)."""
    # deltalake URI-encodes the path into the log itself: pass the on-disk name as is.
    return AddAction(
        path=rel_path,
        size=size,
        partition_values=dict(partition_values),
        modification_time=modification_time_ms,
        data_change=data_change,
        stats=json.dumps(stats, separators=(",", ":")),
    )


def partition_predicate(
    partitions: Partitions | None,
    ds_between: tuple[date, date] | None,
    partition_columns: Sequence[str],
) -> list[tuple[str, str, Any]]:
    """deltalake tuple filters (a conjunction) for the partition-column parts of a read."""
    filters: list[tuple[str, str, Any]] = []
    for column, values in (partitions or {}).items():
        if column in partition_columns:
            filters.append((column, "in", [format_partition_value(v) for v in values]))
    if ds_between is not None and "ds" in partition_columns:
        start, end = ds_between
        filters.append(("ds", ">=", format_partition_value(start)))
        filters.append(("ds", "<=", format_partition_value(end)))
    return filters


def spark_schema(table: DeltaTable) -> StructType:
    """The Spark StructType of a Delta snapshot (Delta's schema JSON is Spark's)."""
    return StructType.fromJson(json.loads(table.schema().to_json()))


def delta_schema(schema: StructType) -> Schema:
    """A deltalake Schema from a Spark StructType."""
    return Schema.from_json(schema.json())


@dataclass(frozen=True)
class StagedFile:
    """A Parquet file Spark wrote into the staging folder, with what Delta needs of it."""

    rel_path: str  # relative to the staging folder, the same as to the table root later
    size: int
    num_records: int
    partition_values: dict[str, str | None]
    stats: dict[str, Any]


def _move_into_table(
    stage: Path,
    table_dir: Path,
    files: Sequence[StagedFile],
    moved: list[Path],
    *,
    data_change: bool,
) -> list[AddAction]:
    """Move staged files to their place in the table; `moved` records each one for clean-up."""
    actions = []
    for staged in files:
        dest = table_dir / staged.rel_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / staged.rel_path, dest)
        moved.append(dest)
        stat = dest.stat()
        actions.append(
            build_add_action(
                staged.rel_path,
                stat.st_size,
                int(stat.st_mtime * 1000),
                staged.partition_values,
                staged.stats,
                data_change=data_change,
            )
        )
    return actions


# --------------------------------------------------------------------------- locking


@contextlib.contextmanager
def commit_lock(table_dir: Path, timeout_s: float = 600.0) -> Iterator[None]:
    """Exclusive per-table lock across threads and processes (flock on a file in the table).

    flock locks belong to the open file description, so two threads holding separate
    descriptors exclude each other as two processes do.
    """
    table_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(table_dir / LOCK_FILE, "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConflictError(
                        f"table {table_dir.name}: commit lock busy for {timeout_s:.0f} s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- warehouse


class Warehouse:
    """Delta tables under one root folder; a table is a directory name under it."""

    def __init__(self, spark: SparkSession, root: str | Path, engine: Engine = "auto") -> None:
        self.spark = spark
        text = str(root)
        if text.startswith("file://"):
            text = text[len("file://") :]
        if "://" in text:
            raise ValueError(f"warehouse root {root!r}: only local paths are supported")
        self.root = Path(text).expanduser().resolve()
        if engine == "auto":
            engine = "native" if has_delta_jars(spark) else "deltalake"
        if engine == "native" and not has_delta_jars(spark):
            raise ValueError("engine='native' needs the delta-spark jars on the classpath")
        self.engine: Literal["deltalake", "native"] = engine

    @classmethod
    def from_settings(cls, spark: SparkSession, settings: Settings) -> Warehouse:
        """The warehouse at `settings.warehouse`, engine chosen by the classpath."""
        return cls(spark, settings.warehouse)

    # ----------------------------------------------------------------- metadata

    def uri(self, table: str) -> str:
        """Absolute path of the table's folder."""
        if not table or "/" in table or table.startswith(("_", ".")) or table in {".", ".."}:
            raise ValueError(f"invalid table name {table!r}")
        return str(self.root / table)

    def exists(self, table: str) -> bool:
        """True when the folder holds a Delta table."""
        return DeltaTable.is_deltatable(self.uri(table))

    def _delta(self, table: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(self.uri(table), version=version)
        except TableNotFoundError:
            raise ValidationError(f"table {table} does not exist at {self.uri(table)}") from None
        except Exception as exc:
            if version is not None and "version" in str(exc).lower():
                raise ValidationError(f"table {table} has no version {version}: {exc}") from None
            raise

    def version(self, table: str) -> int:
        """The latest committed version."""
        return self._delta(table).version()

    def schema(self, table: str) -> StructType:
        """The table schema as a Spark StructType."""
        return spark_schema(self._delta(table))

    def partition_columns(self, table: str) -> list[str]:
        """The table's partition columns, in order."""
        return list(self._delta(table).metadata().partition_columns)

    def partition_values(
        self, table: str, column: str = "ds", version: int | None = None
    ) -> list[Any]:
        """Sorted distinct values of a partition column, from the log (no data scan)."""
        snapshot = self._delta(table, version)
        if column not in snapshot.metadata().partition_columns:
            raise ValidationError(f"table {table}: {column!r} is not a partition column")
        data_type = spark_schema(snapshot)[column].dataType
        values = {parse_partition_value(p.get(column), data_type) for p in snapshot.partitions()}
        present = sorted(v for v in values if v is not None)
        return [*present, None] if None in values else present

    def history(self, table: str) -> list[dict[str, Any]]:
        """Commit log entries, newest first (version, timestamp, operation, parameters...)."""
        entries = self._delta(table).history()
        return sorted(entries, key=lambda e: e["version"], reverse=True)

    # ----------------------------------------------------------------- reads

    def read(
        self,
        table: str,
        *,
        version: int | None = None,
        partitions: Partitions | None = None,
        ds_between: tuple[date, date] | None = None,
    ) -> DataFrame:
        """The table (latest or as of `version`), optionally restricted to partitions/days."""
        snapshot = self._delta(table, version)
        schema = spark_schema(snapshot)
        part_cols = list(snapshot.metadata().partition_columns)
        for column in partitions or {}:
            if column not in schema.names:
                raise ValidationError(f"table {table}: no column {column!r} to filter on")
        if self.engine == "native":
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            df = reader.load(self.uri(table))
        else:
            filters = partition_predicate(partitions, ds_between, part_cols)
            files = snapshot.file_uris(file_pruning_predicate=filters or None)
            if not files:
                return self.spark.createDataFrame([], schema)
            df = (
                self.spark.read.schema(schema)
                .option("basePath", self.uri(table))
                .parquet(*files)
                # Spark puts partition columns last; the table's order is the contract.
                .select(*[F.col(f"`{name}`") for name in schema.names])
            )
        return _row_filters(
            df, partitions, ds_between, [] if self.engine == "native" else part_cols
        )

    # ----------------------------------------------------------------- writes

    def append(
        self,
        table: str,
        df: DataFrame,
        *,
        partition_by: Sequence[str] = (),
        allow_new_columns: bool = False,
    ) -> int:
        """Add the rows of `df`; creates the table when missing. Returns the new version."""
        return self._write(table, df, "append", partition_by, None, allow_new_columns)

    def overwrite(
        self,
        table: str,
        df: DataFrame,
        *,
        partition_by: Sequence[str] = (),
        replace_partitions: Partitions | None = None,
        allow_new_columns: bool = False,
        plain_columns: Sequence[str] = (),
    ) -> int:
        """Replace the whole table, or exactly the partitions in `replace_partitions`.

        Rows of `df` outside `replace_partitions` are an error (nothing is committed);
        an empty `df` removes those partitions. `plain_columns` are written without a
        Parquet dictionary. Returns the new version.
        """
        return self._write(
            table,
            df,
            "overwrite",
            partition_by,
            replace_partitions,
            allow_new_columns,
            plain_columns,
        )

    def _plan(
        self,
        table: str,
        df: DataFrame,
        partition_by: Sequence[str],
        replace_partitions: Partitions | None,
        allow_new_columns: bool,
    ) -> tuple[StructType, list[str], DataFrame]:
        """Check df against the table; the target schema, partition columns and df to write."""
        current: StructType | None = None
        partition_cols = list(partition_by)
        if self.exists(table):
            snapshot = self._delta(table)
            current = spark_schema(snapshot)
            existing = list(snapshot.metadata().partition_columns)
            if partition_cols and partition_cols != existing:
                raise ValidationError(
                    f"table {table}: partitioned by {existing}, not {partition_cols}"
                )
            partition_cols = existing
        target = check_schema(table, current, df.schema, allow_new_columns=allow_new_columns)
        for column in partition_cols:
            if column not in target.names:
                raise ValidationError(f"table {table}: partition column {column!r} not in data")
            if not isinstance(target[column].dataType, _PARTITION_TYPES):
                raise ValidationError(
                    f"table {table}: partition column {column!r} has unsupported type "
                    f"{target[column].dataType.simpleString()}"
                )
        if replace_partitions is not None:
            if not partition_cols:
                raise ValidationError(
                    f"table {table}: replace_partitions on an unpartitioned table"
                )
            for column, values in replace_partitions.items():
                if column not in partition_cols:
                    raise ValidationError(
                        f"table {table}: replace_partitions names {column!r}, not a partition "
                        f"column ({partition_cols})"
                    )
                if not list(values):
                    raise ValidationError(f"table {table}: replace_partitions[{column!r}] is empty")
        present = set(df.columns)
        # Missing (nullable) columns are written as typed nulls so files match the table.
        columns = [
            F.col(f"`{f.name}`")
            if f.name in present
            else F.lit(None).cast(f.dataType).alias(f.name)
            for f in target
        ]
        return target, partition_cols, df.select(*columns)

    def _write(
        self,
        table: str,
        df: DataFrame,
        mode: Literal["append", "overwrite"],
        partition_by: Sequence[str],
        replace_partitions: Partitions | None,
        allow_new_columns: bool,
        plain_columns: Sequence[str] = (),
    ) -> int:
        target, partition_cols, prepared = self._plan(
            table, df, partition_by, replace_partitions, allow_new_columns
        )
        if self.engine == "native":
            return self._native_write(
                table,
                prepared,
                mode,
                partition_cols,
                replace_partitions,
                allow_new_columns,
                plain_columns,
            )
        table_dir = Path(self.uri(table))
        stage = self.staging_dir(table)
        try:
            files = self._stage(
                prepared, stage, partition_cols, target, plain_columns=plain_columns
            )
            self._check_staged(table, files, target, partition_cols, replace_partitions)
            with commit_lock(table_dir):
                return self._commit_staged(
                    table,
                    stage,
                    files,
                    prepared.schema,
                    mode,
                    partition_cols,
                    replace_partitions,
                    allow_new_columns,
                )
        finally:
            discard_stage(stage)

    def _stage(
        self,
        df: DataFrame,
        stage: Path,
        partition_cols: Sequence[str],
        schema: StructType,
        max_records_per_file: int | None = None,
        plain_columns: Sequence[str] = (),
    ) -> list[StagedFile]:
        """Spark writes df as Parquet under `stage`; returns the files with their footers."""
        # INT96 (Spark's default) is deprecated and not what other Delta readers expect.
        self.spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        writer = without_dictionary(
            df.write.mode("errorifexists").option("compression", "zstd"), plain_columns
        )
        if max_records_per_file:
            # A writer option, not a session conf: concurrent writers must not see it.
            writer = writer.option("maxRecordsPerFile", str(max_records_per_file))
        if partition_cols:
            writer = writer.partitionBy(*partition_cols)
        writer.parquet(str(stage))
        return _staged_files(stage, partition_cols, schema)

    def staging_dir(self, table: str) -> Path:
        """A new, empty-to-be staging folder inside the table (for files written elsewhere)."""
        return Path(self.uri(table)) / STAGING_DIR / uuid.uuid4().hex

    def commit_parquet(
        self,
        table: str,
        stage: Path,
        *,
        mode: Literal["append", "overwrite"] = "append",
        replace_partitions: Partitions | None = None,
    ) -> int:
        """Commit Parquet files that other code wrote under `stage` (Hive layout) to an
        existing table, with the same checks as a Spark write; `stage` is removed after.

        For writers that build files without Spark's writer (pyarrow in the tasks). Every
        file must hold exactly the table's non-partition columns, in the table's types
        (deltalake's transaction does not check that itself). Returns the new version.
        """
        table_dir = Path(self.uri(table))
        try:
            snapshot = self._delta(table)
            target = spark_schema(snapshot)
            partition_cols = list(snapshot.metadata().partition_columns)
            files = _staged_files(stage, partition_cols, target)
            _check_file_columns(table, stage, files, target, partition_cols)
            self._check_staged(table, files, target, partition_cols, replace_partitions)
            with commit_lock(table_dir):
                return self._commit_staged(
                    table,
                    stage,
                    files,
                    target,
                    mode,
                    partition_cols,
                    replace_partitions,
                    allow_new_columns=False,
                )
        finally:
            discard_stage(stage)

    def _check_staged(
        self,
        table: str,
        files: Sequence[StagedFile],
        schema: StructType,
        partition_cols: Sequence[str],
        replace_partitions: Partitions | None,
    ) -> None:
        """Data rules only the written files can tell: NOT NULL and partition bounds."""
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
        if replace_partitions is None:
            return
        allowed = {
            column: {format_partition_value(v) for v in values}
            for column, values in replace_partitions.items()
        }
        for staged in files:
            for column, values in allowed.items():
                value = staged.partition_values.get(column)
                if value not in values:
                    raise ValidationError(
                        f"table {table}: data has rows with {column}={value} outside "
                        f"replace_partitions {sorted(v for v in values if v is not None)}"
                    )

    def _commit_staged(
        self,
        table: str,
        stage: Path,
        files: Sequence[StagedFile],
        data_schema: StructType,
        mode: Literal["append", "overwrite"],
        partition_cols: list[str],
        replace_partitions: Partitions | None,
        allow_new_columns: bool,
    ) -> int:
        """Under the table lock: re-check against the latest snapshot, move, commit."""
        uri = self.uri(table)
        table_dir = Path(uri)
        current: StructType | None = None
        if DeltaTable.is_deltatable(uri):
            snapshot = DeltaTable(uri)
            current = spark_schema(snapshot)
            if list(snapshot.metadata().partition_columns) != partition_cols:
                raise ConflictError(f"table {table}: partitioning changed while writing")
        # A concurrent commit may have evolved the schema since _plan: check again.
        target = check_schema(table, current, data_schema, allow_new_columns=allow_new_columns)
        moved: list[Path] = []
        committed = False
        try:
            actions = _move_into_table(stage, table_dir, files, moved, data_change=True)
            operation = "append" if mode == "append" else "overwrite"
            if replace_partitions is not None:
                operation = "replace_partitions"
            properties = CommitProperties(custom_metadata={"scorehouse.operation": operation})
            if current is None:
                create_table_with_add_actions(
                    uri,
                    delta_schema(target),
                    actions,
                    mode="error",
                    partition_by=partition_cols or None,
                    commit_properties=properties,
                )
                committed = True
                return 0
            new_fields = [f for f in target if f.name not in current.names]
            if new_fields:
                # deltalake's write transaction ignores a wider schema: evolve it first.
                DeltaTable(uri).alter.add_columns(
                    [Field.from_json(json.dumps(f.jsonValue())) for f in new_fields]
                )
            filters = None
            if replace_partitions is not None:
                filters = [
                    (column, "in", [format_partition_value(v) for v in values])
                    for column, values in replace_partitions.items()
                ]
            for attempt in range(COMMIT_RETRIES):
                snapshot = DeltaTable(uri)
                try:
                    snapshot.create_write_transaction(
                        list(actions),
                        mode,
                        delta_schema(spark_schema(snapshot)),
                        partition_by=partition_cols or None,
                        partition_filters=filters,
                        commit_properties=properties,
                    )
                    committed = True
                    break
                except CommitFailedError as exc:
                    # Only writers outside this lock (other tools) can get here.
                    log.warning("table %s: commit conflict (attempt %d): %s", table, attempt, exc)
                    time.sleep(0.1 * (attempt + 1))
            if not committed:
                raise ConflictError(f"table {table}: commit failed {COMMIT_RETRIES} times")
            return DeltaTable(uri).version()
        finally:
            if not committed:
                for path in moved:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

    # ----------------------------------------------------------------- maintenance

    def optimize(
        self,
        table: str,
        *,
        partitions: Partitions | None = None,
        target_file_bytes: int = DEFAULT_TARGET_FILE_BYTES,
    ) -> int:
        """Compact small files (per partition) in a rewrite commit; returns the version."""
        if self.engine == "native":
            return self._native_optimize(table, partitions)
        snapshot = self._delta(table)
        schema = spark_schema(snapshot)
        part_cols = list(snapshot.metadata().partition_columns)
        actions = _add_actions(snapshot)
        wanted = {
            column: {format_partition_value(v) for v in values}
            for column, values in (partitions or {}).items()
        }
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for action in actions:
            values = action["partition_values"]
            if any(values.get(c) not in allowed for c, allowed in wanted.items()):
                continue
            if action["size_bytes"] >= target_file_bytes:
                continue
            key = tuple(values.get(c) for c in part_cols)
            groups.setdefault(key, []).append(action)
        chosen = [a for group in groups.values() if len(group) > 1 for a in group]
        if not chosen:
            return snapshot.version()
        uri = self.uri(table)
        table_dir = Path(uri)
        total_bytes = sum(a["size_bytes"] for a in chosen)
        total_rows = sum(a["num_records"] or 0 for a in chosen)
        rows_per_file = max(1, math.ceil(total_rows * target_file_bytes / max(total_bytes, 1)))
        df = (
            self.spark.read.schema(schema)
            .option("basePath", uri)
            .parquet(*[str(table_dir / a["path"]) for a in chosen])
            .select(*[F.col(f"`{n}`") for n in schema.names])
        )
        # One task per partition value, so each partition ends as few files as possible.
        df = df.repartition(*[F.col(f"`{c}`") for c in part_cols]) if part_cols else df.coalesce(1)
        stage = self.staging_dir(table)
        try:
            files = self._stage(df, stage, part_cols, schema, rows_per_file)
            with commit_lock(table_dir):
                latest = DeltaTable(uri)
                live = {a["path"] for a in _add_actions(latest)}
                if any(a["path"] not in live for a in chosen):
                    raise ConflictError(
                        f"table {table}: files changed while optimizing; nothing was committed"
                    )
                return self._commit_rewrite(table, latest, stage, files, chosen, part_cols)
        finally:
            discard_stage(stage)

    def _commit_rewrite(
        self,
        table: str,
        snapshot: DeltaTable,
        stage: Path,
        files: Sequence[StagedFile],
        removed: Sequence[dict[str, Any]],
        part_cols: list[str],
    ) -> int:
        """Commit compacted files replacing `removed`, both with data_change=False."""
        table_dir = Path(self.uri(table))
        now_ms = int(time.time() * 1000)
        actions: list[AddAction | RemoveAction] = [
            RemoveAction(
                path=a["path"],
                data_change=False,
                deletion_timestamp=now_ms,
                size=a["size_bytes"],
                partition_values=a["partition_values"],
            )
            for a in removed
        ]
        moved: list[Path] = []
        try:
            actions += _move_into_table(stage, table_dir, files, moved, data_change=False)
            snapshot.create_write_transaction(
                actions,
                "append",
                snapshot.schema(),
                partition_by=part_cols or None,
                commit_properties=CommitProperties(
                    custom_metadata={"scorehouse.operation": "optimize"}
                ),
            )
            moved = []
        finally:
            for path in moved:  # commit failed: the new files must not linger
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return DeltaTable(self.uri(table)).version()

    def vacuum(self, table: str, *, retention_hours: int = 168, dry_run: bool = False) -> list[str]:
        """Delete files no longer referenced by versions newer than the retention.

        Returns the deleted (or, with dry_run, deletable) paths relative to the table.
        A retention below the 7-day default is the caller's explicit choice.
        """
        if retention_hours < 0:
            raise ValueError("retention_hours must be >= 0")
        if self.engine == "native":
            return self._native_vacuum(table, retention_hours, dry_run)
        table_dir = Path(self.uri(table))
        self._delta(table)  # a clear error when the table does not exist
        with commit_lock(table_dir):
            # Loaded under the lock: a file committed after an older snapshot was taken
            # would look unreferenced to it and be deleted at retention 0.
            deleted = DeltaTable(str(table_dir)).vacuum(
                retention_hours=retention_hours,
                dry_run=dry_run,
                enforce_retention_duration=False,
            )
        deleted = [*deleted, *_stale_staging(table_dir, delete=not dry_run)]
        return sorted(deleted)  # on-disk names, relative to the table

    # ----------------------------------------------------------------- native engine

    def _native_write(
        self,
        table: str,
        df: DataFrame,
        mode: Literal["append", "overwrite"],
        partition_cols: Sequence[str],
        replace_partitions: Partitions | None,
        allow_new_columns: bool,
        plain_columns: Sequence[str] = (),
    ) -> int:
        """format("delta") write; delta-spark checks replaceWhere bounds and NOT NULL."""
        uri = self.uri(table)
        writer = without_dictionary(
            df.write.format("delta")
            .mode(mode)
            .option("mergeSchema", "true" if allow_new_columns else "false"),
            plain_columns,
        )
        if partition_cols:
            writer = writer.partitionBy(*partition_cols)
        if replace_partitions is not None:
            writer = writer.option("replaceWhere", _sql_predicate(replace_partitions, df.schema))
        with commit_lock(Path(uri)):
            for attempt in range(COMMIT_RETRIES):
                try:
                    writer.save(uri)
                    break
                except Exception as exc:
                    text = str(exc)
                    if "Concurrent" in type(exc).__name__ or "Concurrent" in text[:300]:
                        log.warning("table %s: conflict (attempt %d): %s", table, attempt, exc)
                        time.sleep(0.1 * (attempt + 1))
                        continue
                    if "replaceWhere" in text or "NOT NULL" in text or "schema" in text.lower():
                        raise ValidationError(f"table {table}: {text.splitlines()[0]}") from exc
                    raise
            else:
                raise ConflictError(f"table {table}: commit failed {COMMIT_RETRIES} times")
            return DeltaTable(uri).version()

    def _spark_delta_table(self, table: str) -> Any:
        from delta.tables import DeltaTable as SparkDeltaTable  # the cluster extra

        return SparkDeltaTable.forPath(self.spark, self.uri(table))

    def _native_optimize(self, table: str, partitions: Partitions | None) -> int:
        schema = self.schema(table)
        builder = self._spark_delta_table(table).optimize()
        if partitions:
            builder = builder.where(_sql_predicate(partitions, schema))
        with commit_lock(Path(self.uri(table))):
            builder.executeCompaction()
            return self.version(table)

    def _native_vacuum(self, table: str, retention_hours: int, dry_run: bool) -> list[str]:
        uri = self.uri(table)
        self.spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        location = uri.replace("`", "``")
        with commit_lock(Path(uri)):
            rows = self.spark.sql(
                f"VACUUM delta.`{location}` RETAIN {int(retention_hours)} HOURS DRY RUN"
            ).collect()
            if not dry_run:
                self._spark_delta_table(table).vacuum(float(retention_hours))
        return sorted(os.path.relpath(unquote(str(r[0]).removeprefix("file:")), uri) for r in rows)


def discard_stage(stage: Path) -> None:
    """Removes a staging folder, and the staging root when no other writer is using it."""
    shutil.rmtree(stage, ignore_errors=True)
    with contextlib.suppress(OSError):
        stage.parent.rmdir()  # fails while another writer's folder is in it


def _staged_files(
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
        values = parse_partition_path(rel) if partition_cols else {}
        files.append(
            StagedFile(
                rel_path=rel,
                size=path.stat().st_size,
                num_records=metadata.num_rows,
                partition_values=values,
                stats=file_stats(metadata, schema),
            )
        )
    return files


def _check_file_columns(
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


def _stale_staging(table_dir: Path, *, delete: bool) -> list[str]:
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


def _add_actions(snapshot: DeltaTable) -> list[dict[str, Any]]:
    """The live files of a snapshot: path (as in the log), size, records, partition strings."""
    import pyarrow as pa

    table = pa.table(snapshot.get_add_actions(flatten=False))
    rows = table.to_pylist()
    part_cols = list(snapshot.metadata().partition_columns)
    result = []
    for row in rows:
        raw = row.get("partition_values") or row.get("partition") or {}
        values = {c: format_partition_value(raw.get(c)) for c in part_cols}
        result.append(
            {
                # The log holds URI-encoded paths; actions and the disk use plain ones.
                "path": unquote(row["path"]),
                "size_bytes": row["size_bytes"],
                "num_records": row.get("num_records"),
                "partition_values": values,
            }
        )
    return result


def _sql_literal(value: Any, data_type: DataType) -> str:
    if value is None:
        return "NULL"
    if isinstance(data_type, DateType):
        return f"DATE'{format_partition_value(value)}'"
    if isinstance(data_type, (*_INTEGRAL, BooleanType, DecimalType)):
        return str(format_partition_value(value))
    text = str(value).replace("'", "\\'")
    return f"'{text}'"


def _sql_predicate(partitions: Partitions, schema: StructType) -> str:
    """`a IN (...) AND b IN (...)` for delta-spark's replaceWhere / optimize where."""
    parts = []
    for column, values in partitions.items():
        data_type = schema[column].dataType
        literals = ", ".join(_sql_literal(v, data_type) for v in values)
        parts.append(f"`{column}` IN ({literals})")
    return " AND ".join(parts)


def _row_filters(
    df: DataFrame,
    partitions: Partitions | None,
    ds_between: tuple[date, date] | None,
    pruned: Sequence[str],
) -> DataFrame:
    """Row filters for whatever file pruning could not do exactly (non-partition columns)."""
    for column, values in (partitions or {}).items():
        if column not in pruned:
            df = df.filter(F.col(f"`{column}`").isin(list(values)))
    if ds_between is not None and "ds" not in pruned:
        start, end = ds_between
        df = df.filter(F.col("ds").between(F.lit(start), F.lit(end)))
    return df
