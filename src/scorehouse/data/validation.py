"""Validation of user files against a source's contract: pure DataFrame transforms.

A file flows through `prepare` (mapping, row numbers, raw record) → `check_values`
(the per-column rules of the source's pandera schema, as Spark row masks) →
`check_known_entities` (events) → `check_duplicates`, and is then split into
`valid_rows` (the raw table's schema) and `quarantine_rows` (QUARANTINE schema, one row
per broken rule). Rules and messages are listed in docs/data.md.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pandera.api.checks import Check
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ByteType,
    DataType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    NullType,
    NumericType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from scorehouse.data.contracts import (
    ALLOWED,
    BEFORE_KNOWN_FROM,
    CHECKS,
    GREATER_THAN,
    MAX,
    MIN,
    NOT_IN_FUTURE,
    SourceContract,
)
from scorehouse.errors import ValidationError
from scorehouse.schemas import QUARANTINE

__all__ = ["ALLOWED", "BEFORE_KNOWN_FROM", "GREATER_THAN", "MAX", "MIN", "NOT_IN_FUTURE"]

# Rule names as they appear in the quarantine table and the summary; the declared
# column rules are named by their declaration keyword (imported above).
MALFORMED = "malformed"
MISSING_VALUE = "missing_value"
WRONG_TYPE = "wrong_type"
NOT_UTF8 = "not_utf8"
UNKNOWN_ENTITY = "unknown_entity"
DUPLICATE = "duplicate"

CORRUPT_COLUMN = "_corrupt_record"
ROW_NUMBER = "_row_number"
RAW_RECORD = "_raw_record"
VIOLATIONS = "_violations"
ALREADY_LOADED = "_already_loaded"

VIOLATION = StructType(
    [
        StructField("column", StringType(), True),
        StructField("rule", StringType(), False),
        StructField("message", StringType(), False),
    ]
)

_DECIMAL = DecimalType(38, 6)
# A pandera built-in check as a Spark comparison: (the statistic holding the bound, the
# comparison a valid value passes).
_COMPARISONS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "greater_than": ("min_value", operator.gt),
    "greater_than_or_equal_to": ("min_value", operator.ge),
    "less_than": ("max_value", operator.lt),
    "less_than_or_equal_to": ("max_value", operator.le),
}
_TOO_LOW = {MIN: "is below the minimum", GREATER_THAN: "is not greater than"}


def _col(name: str) -> Column:
    return F.col(f"`{name}`")


def with_row_numbers(df: DataFrame, column: str = ROW_NUMBER) -> DataFrame:
    """Add the 1-based position of each record in the input (file order, header excluded)."""
    # monotonically_increasing_id is (partition << 33) + position within the partition;
    # per-partition counts turn it into a global position without Python rows (one
    # extra pass over the input, like zipWithIndex, but all in the JVM).
    tagged = df.withColumn("_pid", F.spark_partition_id()).withColumn(
        "_mid", F.monotonically_increasing_id()
    )
    counts: dict[int, int] = {
        r["_pid"]: r["count"] for r in tagged.groupBy("_pid").count().collect()
    }
    n_partitions = max(counts, default=-1) + 1
    offsets: list[int] = []
    total = 0
    for pid in range(n_partitions):
        offsets.append(total)
        total += counts.get(pid, 0)
    offset = F.element_at(
        F.array(*[F.lit(o).cast("long") for o in offsets or [0]]), F.col("_pid") + 1
    )
    position = F.col("_mid") - F.shiftleft(F.col("_pid").cast("long"), 33)
    return tagged.withColumn(column, (position + offset + 1).cast("long")).drop("_pid", "_mid")


def prepare(
    df: DataFrame,
    contract: SourceContract,
    *,
    source_file: str,
    mapping: Mapping[str, str] | None = None,
) -> DataFrame:
    """Rename mapped columns, check the required ones exist, keep each row's raw JSON.

    `df` is the file as read (CSV: all strings plus `_corrupt_record`) with `_row_number`.
    The result has `_row_number`, `_raw_record`, `_corrupt_record` and one column per
    contract column, values still as read.
    """
    mapping = dict(mapping or {})
    names = contract.columns
    what = contract.source_name
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ValidationError(
            f"{source_file}: --map names {', '.join(unknown)}, not columns of the "
            f"{what} contract ({', '.join(names)})"
        )
    file_columns = [c for c in df.columns if c not in (ROW_NUMBER, CORRUPT_COLUMN)]
    absent_sources = sorted(s for s in mapping.values() if s not in file_columns)
    if absent_sources:
        raise ValidationError(
            f"{source_file}: mapped column(s) {', '.join(absent_sources)} not in the file "
            f"(columns: {', '.join(file_columns)})"
        )
    source = {name: mapping.get(name, name) for name in names}
    missing = [
        f"{name}" + (f" (mapped from {source[name]})" if name in mapping else "")
        for name in names
        if name not in contract.defaults and source[name] not in file_columns
    ]
    if missing:
        raise ValidationError(
            f"{source_file}: required column(s) {', '.join(missing)} missing for "
            f"{what} (columns: {', '.join(file_columns)}); "
            "map yours with --map TARGET=SOURCE"
        )
    corrupt = _col(CORRUPT_COLUMN) if CORRUPT_COLUMN in df.columns else F.lit(None).cast("string")
    raw = F.to_json(F.struct(*[_col(c) for c in file_columns]), {"ignoreNullFields": "false"})
    return df.select(
        _col(ROW_NUMBER),
        F.when(corrupt.isNotNull(), F.to_json(F.struct(corrupt.alias(CORRUPT_COLUMN))))
        .otherwise(raw)
        .alias(RAW_RECORD),
        corrupt.alias(CORRUPT_COLUMN),
        *[(_col(source[n]) if source[n] in file_columns else F.lit(None)).alias(n) for n in names],
    )


def _typed(value: Column, dtype: DataType) -> Column:
    """The value as `dtype`, or null where it does not convert exactly."""
    if isinstance(dtype, (IntegerType, LongType)):
        # "2.0" is a fine quantity; "2.5" is not (a plain cast would truncate it).
        exact = value.try_cast(_DECIMAL)
        return F.when(exact == F.floor(exact), exact.try_cast(dtype))
    if isinstance(dtype, DoubleType):
        number = value.try_cast(DoubleType())
        return F.when(~F.isnan(number) & (F.abs(number) < float("inf")), number)
    return value.try_cast(dtype)


def _violation(column: str | None, rule: str, message: Column) -> Column:
    return F.struct(
        F.lit(column).cast("string").alias("column"),
        F.lit(rule).alias("rule"),
        message.alias("message"),
    )


def _shown(value: Column) -> Column:
    return F.coalesce(value.cast("string"), F.lit("null"))


def check_values(df: DataFrame, contract: SourceContract) -> DataFrame:
    """Type each contract column and attach `_violations` (array of column/rule/message).

    A malformed CSV record gets that one violation and nothing else; otherwise each
    column is checked for presence, type, then every check of its pandera column, and
    the schema's row checks (valid_from not before known_from) run on the typed row.
    """
    checks: list[Column] = []
    typed: dict[str, Column] = {}
    for name, column in contract.schema.columns.items():
        dtype = contract.spark_type(name)
        original = _col(name)
        source_type = df.schema[name].dataType
        is_text = isinstance(source_type, StringType)
        text = F.trim(original.cast("string"))
        present = original.isNotNull() & (text != "")
        if is_text or _compatible(source_type, dtype):
            value = _typed(F.when(present, text if is_text else original), dtype)
            wrong = F.format_string(f"'%s' is not a valid {dtype.simpleString()}", text)
        else:
            # A typed file column of another kind (a boolean quantity, a string in a
            # numeric column) is refused whole: casting it would invent values (True -> 1).
            value = F.lit(None).cast(dtype)
            wrong = F.lit(
                f"the file's column is {source_type.simpleString()}, not {dtype.simpleString()}"
            )
        value = _canonical(value, column.checks)
        typed[name] = value
        if not column.nullable and name not in contract.defaults:
            checks.append(
                F.when(
                    ~present, _violation(name, MISSING_VALUE, F.lit("required value is missing"))
                )
            )
        if is_text:
            checks.append(_utf8_check(name, original))
        checks.append(F.when(present & value.isNull(), _violation(name, WRONG_TYPE, wrong)))
        checks.extend(_column_check(name, check, value) for check in column.checks)
    checks.extend(_row_check(check, typed) for check in contract.schema.checks)
    for name, fallback in contract.defaults.items():
        typed[name] = F.coalesce(typed[name], typed[fallback])
    malformed = F.array(
        _violation(
            None, MALFORMED, F.lit("the record does not parse as CSV with the header's columns")
        )
    )
    found = F.filter(F.array(*checks), lambda v: v.isNotNull())
    return df.select(
        _col(ROW_NUMBER),
        _col(RAW_RECORD),
        *[value.alias(name) for name, value in typed.items()],
        F.when(_col(CORRUPT_COLUMN).isNotNull(), malformed).otherwise(found).alias(VIOLATIONS),
    )


def _canonical(value: Column, checks: Sequence[Check]) -> Column:
    """A column with an `allowed` vocabulary: the value in the vocabulary's spelling when
    it matches one case-insensitively (so "SMB" loads as "smb"), else as given."""
    for check in checks:
        if check.name == ALLOWED:
            allowed = [str(a) for a in (check.statistics or {})["allowed_values"]]
            spelling = F.create_map(*[F.lit(x) for a in allowed for x in (a.lower(), a)])
            return F.coalesce(F.element_at(spelling, F.lower(value)), value)
    return value


def _bound_text(bound: object) -> str:
    if isinstance(bound, datetime):
        return bound.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(bound, float):
        return f"{bound:g}"
    return str(bound)


def _column_check(name: str, check: Check, value: Column) -> Column:
    """One check of a pandera column as a Spark violation (null where the value passes
    or is null: nullability is its own rule)."""
    rule = check.name
    if rule not in CHECKS:
        raise ValidationError(f"column {name}: check {rule!r} has no Spark translation")
    builtin = CHECKS[rule].__name__
    if builtin == "isin":
        allowed = [str(a) for a in (check.statistics or {})["allowed_values"]]
        return F.when(
            ~value.isin(*allowed),
            _violation(
                name, rule, F.format_string(f"'%s' is not one of {', '.join(allowed)}", value)
            ),
        )
    statistic, passes = _COMPARISONS[builtin]
    bound = (check.statistics or {})[statistic]
    shown = _bound_text(bound)
    if rule == NOT_IN_FUTURE:
        what = "time" if isinstance(bound, datetime) else "date"
        text = f"is after the ingest {what} {shown}"
    elif rule == MAX:
        text = f"is above the maximum {shown}"
    else:
        text = f"{_TOO_LOW.get(rule, 'breaks ' + rule)} {shown}"
    lit = F.lit(bound)
    if isinstance(bound, datetime):
        lit = lit.cast(TimestampType())
    return F.when(
        ~passes(value, lit),
        _violation(name, rule, F.format_string(f"%s {text}", _shown(value))),
    )


def _row_check(check: Check, typed: Mapping[str, Column]) -> Column:
    """A row-level check of the pandera schema as a Spark violation."""
    if check.name != BEFORE_KNOWN_FROM:
        raise ValidationError(f"row check {check.name!r} has no Spark translation")
    stats = check.statistics or {}
    column, known_from = stats["column"], stats["known_from"]
    value, known = typed[column], typed[known_from]
    return F.when(
        value < known,
        _violation(
            column,
            BEFORE_KNOWN_FROM,
            F.format_string(f"{column} %s is before {known_from} %s", _shown(value), _shown(known)),
        ),
    )


def _compatible(source: DataType, target: DataType) -> bool:
    """Whether a typed (Parquet) column can hold values of the contract's type."""
    if isinstance(source, NullType):  # a contract column absent from the file
        return True
    if isinstance(target, (IntegerType, LongType, DoubleType)):
        return isinstance(source, NumericType)
    if isinstance(target, TimestampType):
        return isinstance(source, (TimestampType, TimestampNTZType))
    if isinstance(target, StringType):
        return isinstance(source, (IntegerType, LongType, ShortType, ByteType))
    return type(source) is type(target)


def _utf8_check(name: str, original: Column) -> Column:
    # Spark decodes a CSV file with its `encoding` (UTF-8 by default) and turns every byte
    # sequence it cannot decode into U+FFFD: two different ids would become one.
    return F.when(
        F.instr(original, "\ufffd") > 0,
        _violation(
            name,
            NOT_UTF8,
            F.lit(
                "holds bytes that are not valid in the file's encoding; re-encode the file "
                "as UTF-8 or pass --encoding"
            ),
        ),
    )


def _append(df: DataFrame, flagged: Column, violation: Column) -> DataFrame:
    return df.withColumn(
        VIOLATIONS,
        F.when(flagged, F.concat(_col(VIOLATIONS), F.array(violation))).otherwise(_col(VIOLATIONS)),
    )


def check_known_entities(
    df: DataFrame, known: DataFrame, *, key: str, timestamp: str, entity: str, table: str
) -> DataFrame:
    """Flag events whose (valid) `key` has no version in `known` (`key`, `valid_from`:
    the entity's attributes source, read from `table`), or that happened before the
    entity was known (its first valid_from).

    An event dated before its entity exists would count in a full rebuild of the
    features but not in the day-by-day build, which starts a new entity from an empty
    state on the day it becomes known: such rows are rejected here.
    """
    first = known.groupBy(F.col("key").alias("_known_id")).agg(
        F.min("valid_from").alias("_known_from")
    )
    joined = df.join(first, _col(key) == _col("_known_id"), "left")
    unknown = _col(key).isNotNull() & _col("_known_id").isNull()
    unknown_message = F.format_string(
        f"{key} %s is not in {table} (no {entity} with that key)", _col(key).cast("string")
    )
    early = F.to_date(_col(timestamp)) < _col("_known_from")
    early_message = F.format_string(
        f"{timestamp} %s is before {entity} %s is known (first valid_from %s)",
        _shown(_col(timestamp)),
        _col(key).cast("string"),
        _shown(_col("_known_from")),
    )
    flagged = _append(joined, unknown, _violation(key, UNKNOWN_ENTITY, unknown_message))
    flagged = _append(flagged, early, _violation(timestamp, BEFORE_KNOWN_FROM, early_message))
    return flagged.drop("_known_id", "_known_from")


def check_duplicates(
    df: DataFrame, contract: SourceContract, existing: DataFrame | None = None
) -> DataFrame:
    """Flag repeated keys among otherwise valid rows, and keys already in `existing`.

    Within the file the first valid occurrence wins. A row identical to one already in
    the table is marked `_already_loaded` (skipped, not rejected: reruns are no-ops); a
    row whose key is in the table with other values is a duplicate.
    """
    key = contract.key
    clean = F.size(_col(VIOLATIONS)) == 0
    ordered = Window.partitionBy(*[_col(k) for k in key], clean).orderBy(_col(ROW_NUMBER))
    first_row = F.first(_col(ROW_NUMBER)).over(ordered)
    key_text = F.concat_ws(", ", *[F.format_string(f"{k}=%s", _shown(_col(k))) for k in key])
    df = df.withColumn("_first_row", first_row)
    df = _append(
        df,
        clean & (_col("_first_row") != _col(ROW_NUMBER)),
        _violation(
            key[0],
            DUPLICATE,
            F.format_string(
                "%s repeats row %s of the file", key_text, _col("_first_row").cast("string")
            ),
        ),
    ).drop("_first_row")
    if existing is None:
        return df.withColumn(ALREADY_LOADED, F.lit(False))
    values = contract.columns
    table_rows = existing.select(
        *[_col(k) for k in key],
        F.struct(*[_col(v) for v in values]).alias("_existing"),
    ).dropDuplicates(key)
    joined = df.join(table_rows, on=key, how="left")
    clean = F.size(_col(VIOLATIONS)) == 0
    in_table = _col("_existing").isNotNull()
    same = F.struct(*[_col(v) for v in values]).eqNullSafe(_col("_existing"))
    joined = joined.withColumn(ALREADY_LOADED, clean & in_table & same)
    joined = _append(
        joined,
        clean & in_table & ~same,
        _violation(
            key[0],
            DUPLICATE,
            F.format_string(f"%s is already in {contract.table} with other values", key_text),
        ),
    )
    return joined.drop("_existing")


def valid_rows(checked: DataFrame, contract: SourceContract) -> DataFrame:
    """Rows without violations that are not loaded yet, in the table's schema (events:
    with `ds`, the UTC day of the timestamp)."""
    rows = checked.where((F.size(_col(VIOLATIONS)) == 0) & ~_col(ALREADY_LOADED))
    if contract.source.timestamp:
        rows = rows.withColumn("ds", F.to_date(_col(contract.source.timestamp)))
    return rows.select(*[_col(f.name).cast(f.dataType) for f in contract.table_schema])


def quarantine_rows(
    checked: DataFrame,
    *,
    source_file: str,
    target_table: str,
    ingest_id: str,
    ingested_at: datetime,
) -> DataFrame:
    """One QUARANTINE row per broken rule of each rejected row."""
    at = F.lit(ingested_at).cast(TimestampType())
    exploded = checked.select(
        _col(ROW_NUMBER), _col(RAW_RECORD), F.explode(_col(VIOLATIONS)).alias("_v")
    )
    columns = {
        "source_file": F.lit(source_file),
        "target_table": F.lit(target_table),
        "row_number": _col(ROW_NUMBER),
        "column": F.col("_v.column"),
        "rule": F.col("_v.rule"),
        "message": F.col("_v.message"),
        "raw_record": _col(RAW_RECORD),
        "ingest_id": F.lit(ingest_id),
        "ingested_at": at,
        "ds": F.to_date(at),
    }
    return exploded.select(*[columns[f.name].cast(f.dataType).alias(f.name) for f in QUARANTINE])


def rejected_count() -> Column:
    """An aggregate over checked rows: how many broke at least one rule."""
    return F.sum((F.size(_col(VIOLATIONS)) > 0).cast("long"))


def reject_summary(quarantine: DataFrame) -> DataFrame:
    """Rejected rows per (column, rule), with the first few row numbers, largest first."""
    return (
        quarantine.groupBy("column", "rule")
        .agg(
            F.countDistinct("row_number").alias("rows"),
            F.slice(F.sort_array(F.collect_set("row_number")), 1, 5).alias("example_rows"),
        )
        .orderBy(F.desc("rows"), "column", "rule")
    )


def all_string_schema(columns: Sequence[str]) -> StructType:
    """How CSV files are read: every column as text, plus the corrupt-record column."""
    return StructType(
        [StructField(c, StringType(), True) for c in columns]
        + [StructField(CORRUPT_COLUMN, StringType(), True)]
    )
