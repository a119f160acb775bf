"""`Warehouse`: the Delta tables under one root folder, read and written through Spark.

Runs on the driver. Writes: Spark writes Parquet into a staging folder inside the table
(`staging`), the driver checks the files and commits them with deltalake (`commit`).
Reads: deltalake lists the files of a snapshot, Spark's Parquet reader reads them with
the table's schema. deltalake is never called inside Spark tasks (it breaks after
`fork`). See docs/tables.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from scorehouse.errors import ValidationError
from scorehouse.settings import Settings
from scorehouse.storage import compaction, staging
from scorehouse.storage.commit import StagedWrite, commit, commit_lock
from scorehouse.storage.location import warehouse_root
from scorehouse.storage.partitions import (
    Partitions,
    parse_partition_value,
    partition_predicate,
    row_filters,
)
from scorehouse.storage.schema import check_partition_columns, check_schema, spark_schema

Mode = Literal["append", "overwrite"]


class Warehouse:
    """Delta tables under one root folder; a table is a directory name under it."""

    def __init__(self, spark: SparkSession, root: str | Path) -> None:
        self.spark = spark
        self.root = warehouse_root(root)

    @classmethod
    def from_settings(cls, spark: SparkSession, settings: Settings) -> Warehouse:
        """The warehouse at `settings.warehouse`."""
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
        return row_filters(df, partitions, ds_between, part_cols)

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

    def _partitioning(
        self, table: str, partition_by: Sequence[str]
    ) -> tuple[StructType | None, list[str]]:
        """The table's schema (None when new) and partition columns; `partition_by` must match."""
        if not self.exists(table):
            return None, list(partition_by)
        snapshot = self._delta(table)
        existing = list(snapshot.metadata().partition_columns)
        if partition_by and list(partition_by) != existing:
            raise ValidationError(
                f"table {table}: partitioned by {existing}, not {list(partition_by)}"
            )
        return spark_schema(snapshot), existing

    @staticmethod
    def _check_replace(
        table: str, partition_cols: list[str], replace_partitions: Partitions | None
    ) -> None:
        if replace_partitions is None:
            return
        if not partition_cols:
            raise ValidationError(f"table {table}: replace_partitions on an unpartitioned table")
        for column, values in replace_partitions.items():
            if column not in partition_cols:
                raise ValidationError(
                    f"table {table}: replace_partitions names {column!r}, not a partition "
                    f"column ({partition_cols})"
                )
            if not list(values):
                raise ValidationError(f"table {table}: replace_partitions[{column!r}] is empty")

    def _plan(
        self,
        table: str,
        df: DataFrame,
        partition_by: Sequence[str],
        replace_partitions: Partitions | None,
        allow_new_columns: bool,
    ) -> tuple[StructType, list[str], DataFrame]:
        """Check df against the table; the target schema, partition columns and df to write."""
        current, partition_cols = self._partitioning(table, partition_by)
        target = check_schema(table, current, df.schema, allow_new_columns=allow_new_columns)
        check_partition_columns(table, target, partition_cols)
        self._check_replace(table, partition_cols, replace_partitions)
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
        mode: Mode,
        partition_by: Sequence[str],
        replace_partitions: Partitions | None,
        allow_new_columns: bool,
        plain_columns: Sequence[str] = (),
    ) -> int:
        target, partition_cols, prepared = self._plan(
            table, df, partition_by, replace_partitions, allow_new_columns
        )
        stage = self.staging_dir(table)
        try:
            files = staging.write_stage(
                self.spark, prepared, stage, partition_cols, target, plain_columns
            )
            self._check_staged(table, files, target, partition_cols, replace_partitions)
            write = StagedWrite(
                table,
                Path(self.uri(table)),
                stage,
                files,
                mode,
                partition_cols,
                replace_partitions,
                allow_new_columns,
            )
            return commit(write, prepared.schema)
        finally:
            staging.discard_stage(stage)

    def staging_dir(self, table: str) -> Path:
        """A new, empty-to-be staging folder inside the table (for files written elsewhere)."""
        return staging.new_stage(Path(self.uri(table)))

    def commit_parquet(
        self,
        table: str,
        stage: Path,
        *,
        mode: Mode = "append",
        replace_partitions: Partitions | None = None,
    ) -> int:
        """Commit Parquet files that other code wrote under `stage` (Hive layout) to an
        existing table, with the same checks as a Spark write; `stage` is removed after.

        For writers that build files without Spark's writer (pyarrow in the tasks). Every
        file must hold exactly the table's non-partition columns, in the table's types
        (deltalake's transaction does not check that itself). Returns the new version.
        """
        try:
            snapshot = self._delta(table)
            target = spark_schema(snapshot)
            partition_cols = list(snapshot.metadata().partition_columns)
            files = staging.staged_files(stage, partition_cols, target)
            staging.check_file_columns(table, stage, files, target, partition_cols)
            self._check_staged(table, files, target, partition_cols, replace_partitions)
            write = StagedWrite(
                table, Path(self.uri(table)), stage, files, mode, partition_cols, replace_partitions
            )
            return commit(write, target)
        finally:
            staging.discard_stage(stage)

    @staticmethod
    def _check_staged(
        table: str,
        files: Sequence[staging.StagedFile],
        schema: StructType,
        partition_cols: Sequence[str],
        replace_partitions: Partitions | None,
    ) -> None:
        """Data rules only the written files can tell: NOT NULL and partition bounds."""
        staging.check_not_null(table, files, schema, partition_cols)
        if replace_partitions is not None:
            staging.check_bounds(table, files, replace_partitions)

    # ----------------------------------------------------------------- maintenance

    def optimize(
        self,
        table: str,
        *,
        partitions: Partitions | None = None,
        target_file_bytes: int = compaction.DEFAULT_TARGET_FILE_BYTES,
    ) -> int:
        """Compact small files (per partition) in a rewrite commit; returns the version."""
        self._delta(table)  # a clear error when the table does not exist
        return compaction.compact(table, Path(self.uri(table)), partitions, target_file_bytes)

    def vacuum(self, table: str, *, retention_hours: int = 168, dry_run: bool = False) -> list[str]:
        """Delete files no longer referenced by versions newer than the retention.

        Returns the deleted (or, with dry_run, deletable) paths relative to the table.
        A retention below the 7-day default is the caller's explicit choice.
        """
        if retention_hours < 0:
            raise ValueError("retention_hours must be >= 0")
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
        deleted = [*deleted, *staging.stale_staging(table_dir, delete=not dry_run)]
        return sorted(deleted)  # on-disk names, relative to the table
