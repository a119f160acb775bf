"""Delta `stats` of a data file (numRecords, minValues, maxValues, nullCount), read from
its Parquet footer, for the add actions of a commit.

Driver only: footers are read after Spark has written the files.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql.types import BinaryType, DataType, DateType, StringType, StructType, TimestampType

from scorehouse.storage.schema import INTEGRAL

# Delta truncates string statistics; longer strings get none rather than a wrong max.
MAX_STRING_STAT = 32


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
    if isinstance(data_type, INTEGRAL) and isinstance(value, int):
        return value
    if isinstance(data_type, DateType) and isinstance(value, date):
        return value.isoformat()
    if isinstance(data_type, TimestampType) and isinstance(value, datetime):
        return _ms(value, ceil=is_max)
    if isinstance(data_type, StringType) and isinstance(value, str):
        return value if len(value) <= MAX_STRING_STAT else None
    # Floats (NaN ordering), decimals, binary and nested values: no min/max.
    return None


class _Columns:
    """Per-column min, max and null count accumulated over row groups."""

    def __init__(self) -> None:
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}
        self.nulls: dict[str, int] = {}
        self.no_range: set[str] = set()
        self.no_nulls: set[str] = set()

    def add(self, name: str, column: Any, data_type: DataType, group_rows: int) -> None:
        stats = column.statistics
        if stats is None or stats.null_count is None:
            self.no_range.add(name)
            self.no_nulls.add(name)
            return
        self.nulls[name] = self.nulls.get(name, 0) + stats.null_count
        if not stats.has_min_max:
            if group_rows > stats.null_count:
                self.no_range.add(name)
            return  # an all-null row group does not widen the range
        low = _stat_value(stats.min, data_type, is_max=False)
        high = _stat_value(stats.max, data_type, is_max=True)
        if low is None or high is None:
            self.no_range.add(name)
            return
        self.mins[name] = low if name not in self.mins else min(self.mins[name], low)
        self.maxs[name] = high if name not in self.maxs else max(self.maxs[name], high)

    def stats(self, num_rows: int) -> dict[str, Any]:
        result: dict[str, Any] = {"numRecords": num_rows}
        ranged = [name for name in self.mins if name not in self.no_range]
        if ranged:
            result["minValues"] = {name: self.mins[name] for name in ranged}
            result["maxValues"] = {name: self.maxs[name] for name in ranged}
        counted = {name: n for name, n in self.nulls.items() if name not in self.no_nulls}
        if counted:
            result["nullCount"] = counted
        return result


def file_stats(metadata: pq.FileMetaData, schema: StructType) -> dict[str, Any]:
    """Delta `stats` (numRecords, minValues, maxValues, nullCount) from a Parquet footer.

    A column gets min/max only when every row group has a safe value for it, and a null
    count only when every row group reports one: missing stats are fine, wrong ones not.
    """
    types = {f.name: f.dataType for f in schema if not isinstance(f.dataType, BinaryType)}
    columns = _Columns()
    for rg in range(metadata.num_row_groups):
        group = metadata.row_group(rg)
        for ci in range(group.num_columns):
            column = group.column(ci)
            name = column.path_in_schema
            if name in types:  # nested leaves are skipped
                columns.add(name, column, types[name], group.num_rows)
    return columns.stats(metadata.num_rows)
