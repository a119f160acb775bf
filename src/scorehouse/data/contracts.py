"""Ingest contracts, derived from a project's source declarations.

`pandera_schema(project, source)` is the one definition of the per-column rules of a
source: a pandera (polars) schema with each column's type and nullability, one named
check per declared rule (`min`, `greater_than`, `max`, `allowed`, `not_in_future`), the
attributes' `valid_from >= known_from` rule and the `unique` columns. Ingest turns that
schema into Spark row masks (`scorehouse.data.validation`), so a file is held to exactly
what pandera would check on the same rows, and the schema validates a polars frame as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.api.checks import Check
from pandera.api.polars.types import PolarsData
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from scorehouse.errors import ValidationError
from scorehouse.project.spec import ColumnContract, Project, Source

# Rule names of the declared checks: the declaration's own keywords.
MIN = "min"
GREATER_THAN = "greater_than"
MAX = "max"
ALLOWED = "allowed"
NOT_IN_FUTURE = "not_in_future"
BEFORE_KNOWN_FROM = "before_known_from"

# declaration keyword -> the pandera built-in check that enforces it
CHECKS: dict[str, Callable[..., Check]] = {
    MIN: Check.greater_than_or_equal_to,
    GREATER_THAN: Check.greater_than,
    MAX: Check.less_than_or_equal_to,
    ALLOWED: Check.isin,
    NOT_IN_FUTURE: Check.less_than_or_equal_to,
}

POLARS_TYPES: dict[str, pl.DataType] = {
    "int64": pl.Int64(),
    "int32": pl.Int32(),
    "double": pl.Float64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us", "UTC"),
}
SPARK_TYPES: dict[type[pl.DataType], DataType] = {
    pl.Int64: LongType(),
    pl.Int32: IntegerType(),
    pl.Float64: DoubleType(),
    pl.String: StringType(),
    pl.Boolean: BooleanType(),
    pl.Date: DateType(),
    pl.Datetime: TimestampType(),
}


def _column_checks(name: str, decl: ColumnContract, now: datetime) -> list[Check]:
    bounds: list[tuple[str, Any]] = [
        (MIN, decl.min),
        (GREATER_THAN, decl.greater_than),
        (MAX, decl.max),
        (ALLOWED, decl.allowed),
    ]
    if decl.not_in_future:
        if decl.type not in ("date", "timestamp"):
            raise ValidationError(f"column {name}: not_in_future needs a date or timestamp")
        bounds.append((NOT_IN_FUTURE, now.date() if decl.type == "date" else now))
    return [
        CHECKS[rule](value, name=rule, error=f"{name}: {rule} {value}")
        for rule, value in bounds
        if value is not None
    ]


def _known_from_check(valid_from: str, known_from: str) -> Check:
    def holds(data: PolarsData) -> pl.LazyFrame:
        later = pl.col(valid_from) >= pl.col(known_from)
        return data.lazyframe.select(
            later | pl.col(valid_from).is_null() | pl.col(known_from).is_null()
        )

    return Check(
        holds,
        name=BEFORE_KNOWN_FROM,
        error=f"{valid_from} is before {known_from}",
        statistics={"column": valid_from, "known_from": known_from},
    )


def unique_columns(project: Project, source_name: str) -> list[str]:
    """What identifies a row of the source: its `unique` columns; for attributes without
    them (key, valid_from); for events without them every column (a repeated identical
    event is one event loaded twice)."""
    source = project.sources[source_name]
    if source.unique:
        return list(source.unique)
    if source.kind == "attributes":
        assert source.valid_from is not None
        return [source.key or project.entity.key, source.valid_from]
    return list(source.columns)


def pandera_schema(
    project: Project, source_name: str, *, now: datetime | None = None
) -> pa.DataFrameSchema:
    """The pandera schema of one declared source: the rows its raw table may hold.

    `now` (UTC, default the current time) is the bound of `not_in_future` columns (their
    date, for date columns).
    """
    source = source_of(project, source_name)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    columns = {
        name: pa.Column(
            POLARS_TYPES[decl.type],
            checks=_column_checks(name, decl, now),
            nullable=decl.nullable,
            description=decl.description or None,
        )
        for name, decl in source.columns.items()
    }
    checks = []
    if source.kind == "attributes" and source.known_from and source.valid_from:
        checks.append(_known_from_check(source.valid_from, source.known_from))
    return pa.DataFrameSchema(
        columns,
        checks=checks,
        unique=unique_columns(project, source_name),
        name=source_name,
        description=source.description or None,
    )


def source_of(project: Project, source_name: str) -> Source:
    try:
        return project.sources[source_name]
    except KeyError:
        declared = ", ".join(project.sources)
        raise ValidationError(
            f"unknown source {source_name!r}: the project {project.name} declares {declared}"
        ) from None


def spark_type(column: pa.Column) -> DataType:
    """The Spark type of a schema column."""
    return SPARK_TYPES[column.dtype.type.base_type()]


@dataclass(frozen=True)
class SourceContract:
    """What a file for one source must hold: the pandera schema and what ingest derives."""

    source_name: str
    source: Source
    schema: pa.DataFrameSchema
    table: str  # the raw table
    entity_key: str  # the entity key column in this source

    @property
    def columns(self) -> list[str]:
        return list(self.schema.columns)

    @property
    def key(self) -> list[str]:
        """The columns whose repetition is a duplicate."""
        unique = self.schema.unique
        return [unique] if isinstance(unique, str) else list(unique or [])

    @property
    def defaults(self) -> dict[str, str]:
        """Columns a file may leave out or empty, and the column that fills them
        (attributes: a version without valid_from starts when the entity is known)."""
        s = self.source
        return {s.valid_from: s.known_from} if s.valid_from and s.known_from else {}

    def spark_type(self, name: str) -> DataType:
        return spark_type(self.schema.columns[name])

    @property
    def table_schema(self) -> StructType:
        """The raw table's columns: the declared ones, then `ds` (events: the UTC day of
        the timestamp). Ingest adds `ingest_id`."""
        fields = [
            StructField(name, spark_type(col), bool(col.nullable))
            for name, col in self.schema.columns.items()
        ]
        if self.source.kind == "events":
            fields.append(StructField("ds", DateType(), False))
        return StructType(fields)


def contract_for(
    project: Project, source_name: str, *, table: str | None = None, now: datetime | None = None
) -> SourceContract:
    """The contract of a declared source (`table`: its raw table, default raw_<source>)."""
    source = source_of(project, source_name)
    return SourceContract(
        source_name=source_name,
        source=source,
        schema=pandera_schema(project, source_name, now=now),
        table=table or source.table or f"raw_{source_name}",
        entity_key=source.key or project.entity.key,
    )
