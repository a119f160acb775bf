"""Partition values: Python values, Delta's partition strings, Hive paths, read filters.

Driver only (pure helpers and Spark plan building; no deltalake calls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DataType, DateType, StringType

from scorehouse.errors import ValidationError
from scorehouse.storage.schema import INTEGRAL

Partitions = Mapping[str, Sequence[Any]]
# deltalake tuple filters: (column, operator, value), a conjunction.
Filters = list[tuple[str, str, Any]]

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


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
    if isinstance(data_type, INTEGRAL):
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


def allowed_values(partitions: Partitions) -> dict[str, set[str | None]]:
    """Each column's wanted values as Delta partition strings."""
    return {
        column: {format_partition_value(v) for v in values} for column, values in partitions.items()
    }


def in_filters(partitions: Partitions) -> Filters:
    """deltalake `in` filters selecting exactly the partitions in `partitions`."""
    return [
        (column, "in", [format_partition_value(v) for v in values])
        for column, values in partitions.items()
    ]


def partition_predicate(
    partitions: Partitions | None,
    ds_between: tuple[date, date] | None,
    partition_columns: Sequence[str],
) -> Filters:
    """deltalake tuple filters (a conjunction) for the partition-column parts of a read."""
    wanted = {c: v for c, v in (partitions or {}).items() if c in partition_columns}
    filters = in_filters(wanted)
    if ds_between is not None and "ds" in partition_columns:
        start, end = ds_between
        filters.append(("ds", ">=", format_partition_value(start)))
        filters.append(("ds", "<=", format_partition_value(end)))
    return filters


def row_filters(
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
