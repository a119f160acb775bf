"""Table schemas: what a protocol (1,2) Delta table can hold and what a write may change.

Driver only. Delta's schema JSON is Spark's, so a table schema is a Spark StructType here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from deltalake import DeltaTable, Schema
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    ByteType,
    DataType,
    DateType,
    IntegerType,
    LongType,
    MapType,
    NullType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
)

from scorehouse.errors import ValidationError

INTEGRAL = (ByteType, ShortType, IntegerType, LongType)
# Types that Spark can write as a Hive partition directory and read back exactly.
PARTITION_TYPES = (*INTEGRAL, StringType, DateType, BooleanType)


def spark_schema(table: DeltaTable) -> StructType:
    """The Spark StructType of a Delta snapshot (Delta's schema JSON is Spark's)."""
    return StructType.fromJson(json.loads(table.schema().to_json()))


def delta_schema(schema: StructType) -> Schema:
    """A deltalake Schema from a Spark StructType."""
    return Schema.from_json(schema.json())


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
        reasons = (_unsupported_type(f.dataType) for f in data_type)
        return next((r for r in reasons if r), None)
    if isinstance(data_type, ArrayType):
        return _unsupported_type(data_type.elementType)
    if isinstance(data_type, MapType):
        return _unsupported_type(data_type.keyType) or _unsupported_type(data_type.valueType)
    return None


def _check_columns(table: str, incoming: StructType) -> None:
    """Column names unique regardless of case; every type storable."""
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


def _new_fields(table: str, current: StructType, incoming: StructType) -> list[StructField]:
    """Fields of `incoming` the table lacks; a known column must match name and type."""
    by_name = {f.name.lower(): f for f in current}
    new_fields: list[StructField] = []
    for field in incoming:
        existing = by_name.get(field.name.lower())
        if existing is None:
            new_fields.append(field)
        elif existing.name != field.name:
            raise ValidationError(
                f"table {table}: column {field.name!r} differs in case from the table's "
                f"{existing.name!r}"
            )
        elif not same_type(existing.dataType, field.dataType):
            raise ValidationError(
                f"table {table}: column {field.name!r} has type "
                f"{field.dataType.simpleString()} but the table has "
                f"{existing.dataType.simpleString()}; cast it explicitly"
            )
    return new_fields


def _check_missing(table: str, current: StructType, incoming: StructType) -> None:
    """Columns missing from `incoming` read as null, so they must be nullable."""
    incoming_names = {f.name.lower() for f in incoming}
    for field in current:
        if field.name.lower() not in incoming_names and not field.nullable:
            raise ValidationError(
                f"table {table}: column {field.name!r} is missing and the table declares it "
                "NOT NULL"
            )


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
    _check_columns(table, incoming)
    if current is None:
        return incoming
    new_fields = _new_fields(table, current, incoming)
    if new_fields and not allow_new_columns:
        names = ", ".join(repr(f.name) for f in new_fields)
        raise ValidationError(
            f"table {table}: new column(s) {names} not in the table schema; "
            "pass allow_new_columns=True to add them"
        )
    _check_missing(table, current, incoming)
    # Delta cannot add a NOT NULL column to rows that already exist.
    evolved = [StructField(f.name, f.dataType, True, f.metadata) for f in new_fields]
    return StructType([*current.fields, *evolved])


def check_partition_columns(table: str, schema: StructType, columns: Sequence[str]) -> None:
    """Every partition column is in the data, with a type Hive directories hold exactly."""
    for column in columns:
        if column not in schema.names:
            raise ValidationError(f"table {table}: partition column {column!r} not in data")
        if not isinstance(schema[column].dataType, PARTITION_TYPES):
            raise ValidationError(
                f"table {table}: partition column {column!r} has unsupported type "
                f"{schema[column].dataType.simpleString()}"
            )
