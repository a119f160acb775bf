"""Validation of user files against the raw-table contracts: pure DataFrame transforms.

A file flows through `prepare` (mapping, row numbers, raw record) → `check_values`
(per-column rules) → `check_known_customers` → `check_duplicates`, and is then split
into `valid_rows` (the contract schema) and `quarantine_rows` (QUARANTINE schema, one
row per broken rule). Rules and messages are listed in docs/data.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    ByteType,
    DataType,
    DateType,
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

from scorehouse.data.generate import REGIONS, SEGMENTS
from scorehouse.errors import ValidationError
from scorehouse.schemas import QUARANTINE, RAW_CUSTOMERS, RAW_TRANSACTIONS

Target = Literal["transactions", "customers"]

# Rule names as they appear in the quarantine table and the summary.
MALFORMED = "malformed"
MISSING_VALUE = "missing_value"
WRONG_TYPE = "wrong_type"
NON_POSITIVE = "non_positive"
IN_FUTURE = "in_future"
ABOVE_MAX = "above_max"
NOT_UTF8 = "not_utf8"
INVALID_VALUE = "invalid_value"
BEFORE_SIGNUP = "before_signup"
UNKNOWN_CUSTOMER = "unknown_customer"
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


@dataclass(frozen=True)
class ColumnSpec:
    """One contract column as a file provides it."""

    name: str
    dtype: DataType
    nullable: bool = False
    in_file: bool = True  # False: may be absent from the file (then derived or null)
    # The largest value accepted. Amounts are summed in integer cents (a BIGINT) by the
    # feature build, so an absurd but finite value would overflow every later rebuild.
    maximum: float | None = None


@dataclass(frozen=True)
class Contract:
    """What a file for one raw table must hold, and the table's schema."""

    target: Target
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...]  # a second row with the same key is a duplicate
    schema: StructType

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)


# At these bounds a customer needs ~90 million purchases at the maximum before a window
# sum in cents (BIGINT, 9.2e18) could overflow.
MAX_AMOUNT = 1e9
MAX_QUANTITY = 1_000_000

TRANSACTIONS = Contract(
    target="transactions",
    columns=(
        ColumnSpec("transaction_id", StringType()),
        ColumnSpec("customer_id", LongType()),
        ColumnSpec("event_time", TimestampType()),
        ColumnSpec("quantity", IntegerType(), maximum=MAX_QUANTITY),
        ColumnSpec("amount", DoubleType(), maximum=MAX_AMOUNT),
    ),
    key=("transaction_id",),
    schema=RAW_TRANSACTIONS,
)

CUSTOMERS = Contract(
    target="customers",
    columns=(
        ColumnSpec("customer_id", LongType()),
        ColumnSpec("signup_date", DateType()),
        ColumnSpec("segment", StringType(), nullable=True),
        ColumnSpec("region", StringType(), nullable=True),
        ColumnSpec("email_opt_in", BooleanType(), nullable=True),
        # Absent or empty: the version starts at sign-up.
        ColumnSpec("valid_from", DateType(), nullable=True, in_file=False),
    ),
    key=("customer_id", "valid_from"),
    schema=RAW_CUSTOMERS,
)

CONTRACTS: dict[str, Contract] = {"transactions": TRANSACTIONS, "customers": CUSTOMERS}
ALLOWED_VALUES: dict[str, tuple[str, ...]] = {"segment": SEGMENTS, "region": REGIONS}
_DECIMAL = DecimalType(38, 6)


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
    contract: Contract,
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
    names = [c.name for c in contract.columns]
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ValidationError(
            f"{source_file}: --map names {', '.join(unknown)}, not columns of the "
            f"{contract.target} contract ({', '.join(names)})"
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
        if contract.column(name).in_file and source[name] not in file_columns
    ]
    if missing:
        raise ValidationError(
            f"{source_file}: required column(s) {', '.join(missing)} missing for "
            f"{contract.target} (columns: {', '.join(file_columns)}); "
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


def check_values(df: DataFrame, contract: Contract, *, now: datetime) -> DataFrame:
    """Type each contract column and attach `_violations` (array of column/rule/message).

    A malformed CSV record gets that one violation and nothing else; otherwise each
    column is checked for presence, type, then its range rules.
    """
    checks: list[Column] = []
    typed: dict[str, Column] = {}
    now_ts = F.lit(now).cast(TimestampType())
    for spec in contract.columns:
        original = _col(spec.name)
        source_type = df.schema[spec.name].dataType
        is_text = isinstance(source_type, StringType)
        text = F.trim(original.cast("string"))
        present = original.isNotNull() & (text != "")
        if is_text or _compatible(source_type, spec.dtype):
            value = _typed(F.when(present, text if is_text else original), spec.dtype)
            wrong = F.format_string(f"'%s' is not a valid {spec.dtype.simpleString()}", text)
        else:
            # A typed file column of another kind (a boolean quantity, a string in a
            # numeric column) is refused whole: casting it would invent values (True -> 1).
            value = F.lit(None).cast(spec.dtype)
            wrong = F.lit(
                f"the file's column is {source_type.simpleString()}, "
                f"not {spec.dtype.simpleString()}"
            )
        if spec.name in ALLOWED_VALUES:
            value = F.lower(value)
        typed[spec.name] = value
        if not spec.nullable:
            checks.append(
                F.when(
                    ~present,
                    _violation(spec.name, MISSING_VALUE, F.lit("required value is missing")),
                )
            )
        if is_text:
            checks.append(_utf8_check(spec.name, original))
        checks.append(F.when(present & value.isNull(), _violation(spec.name, WRONG_TYPE, wrong)))
        checks.extend(_range_checks(spec, value, now_ts))
    if contract.target == "customers":
        signup, valid_from = typed["signup_date"], typed["valid_from"]
        checks.append(
            F.when(
                valid_from < signup,
                _violation(
                    "valid_from",
                    BEFORE_SIGNUP,
                    F.format_string(
                        "valid_from %s is before signup_date %s", _shown(valid_from), _shown(signup)
                    ),
                ),
            )
        )
        typed["valid_from"] = F.coalesce(valid_from, signup)
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


def _range_checks(spec: ColumnSpec, value: Column, now: Column) -> list[Column]:
    name = spec.name
    if name in ("quantity", "amount"):
        return [
            F.when(
                value <= 0,
                _violation(
                    name, NON_POSITIVE, F.format_string("%s is not greater than 0", _shown(value))
                ),
            ),
            *_max_check(spec, value),
        ]
    if isinstance(spec.dtype, TimestampType):
        return [
            F.when(
                value > now,
                _violation(
                    name,
                    IN_FUTURE,
                    F.format_string("%s is after the ingest time %s", _shown(value), _shown(now)),
                ),
            )
        ]
    if isinstance(spec.dtype, DateType):
        return [
            F.when(
                value > F.to_date(now),
                _violation(
                    name,
                    IN_FUTURE,
                    F.format_string(
                        "%s is after the ingest date %s", _shown(value), _shown(F.to_date(now))
                    ),
                ),
            )
        ]
    if name in ALLOWED_VALUES:
        allowed = ALLOWED_VALUES[name]
        return [
            F.when(
                ~value.isin(*allowed),
                _violation(
                    name,
                    INVALID_VALUE,
                    F.format_string(f"'%s' is not one of {', '.join(allowed)}", value),
                ),
            )
        ]
    return []


def _max_check(spec: ColumnSpec, value: Column) -> list[Column]:
    if spec.maximum is None:
        return []
    message = F.format_string(f"%s is above the maximum {spec.maximum:g}", _shown(value))
    return [F.when(value > F.lit(spec.maximum), _violation(spec.name, ABOVE_MAX, message))]


def _append(df: DataFrame, flagged: Column, violation: Column) -> DataFrame:
    return df.withColumn(
        VIOLATIONS,
        F.when(flagged, F.concat(_col(VIOLATIONS), F.array(violation))).otherwise(_col(VIOLATIONS)),
    )


def check_known_customers(df: DataFrame, customers: DataFrame) -> DataFrame:
    """Flag transactions whose (valid) customer_id is not in `customers` (customer_id,
    valid_from), or that happened before the customer was known (its first valid_from).

    A purchase dated before the customer exists would count in a full rebuild of the
    features but not in the day-by-day build, which starts a new customer from an empty
    state on the day it becomes known: such rows are rejected here.
    """
    known = customers.groupBy(F.col("customer_id").alias("_known_id")).agg(
        F.min("valid_from").alias("_known_from")
    )
    joined = df.join(known, _col("customer_id") == _col("_known_id"), "left")
    unknown = _col("customer_id").isNotNull() & _col("_known_id").isNull()
    unknown_message = F.format_string(
        "customer_id %s is not in the customers table", _col("customer_id").cast("string")
    )
    early = F.to_date(_col("event_time")) < _col("_known_from")
    early_message = F.format_string(
        "event_time %s is before customer %s is known (signup / first valid_from %s)",
        _shown(_col("event_time")),
        _col("customer_id").cast("string"),
        _shown(_col("_known_from")),
    )
    flagged = _append(joined, unknown, _violation("customer_id", UNKNOWN_CUSTOMER, unknown_message))
    flagged = _append(flagged, early, _violation("event_time", BEFORE_SIGNUP, early_message))
    return flagged.drop("_known_id", "_known_from")


def check_duplicates(
    df: DataFrame, contract: Contract, existing: DataFrame | None = None, *, table: str = ""
) -> DataFrame:
    """Flag repeated keys among otherwise valid rows, and keys already in `existing`.

    Within the file the first valid occurrence wins. A row identical to one already in
    the table is marked `_already_loaded` (skipped, not rejected: reruns are no-ops); a
    row whose key is in the table with other values is a duplicate.
    """
    key = list(contract.key)
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
    values = [c.name for c in contract.columns]
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
            F.format_string(
                f"%s is already in {table or contract.target} with other values", key_text
            ),
        ),
    )
    return joined.drop("_existing")


def valid_rows(checked: DataFrame, contract: Contract) -> DataFrame:
    """Rows without violations that are not loaded yet, in the table's schema."""
    rows = checked.where((F.size(_col(VIOLATIONS)) == 0) & ~_col(ALREADY_LOADED))
    if contract.target == "transactions":
        rows = rows.withColumn("ds", F.to_date("event_time"))
    return rows.select(*[_col(f.name).cast(f.dataType) for f in contract.schema])


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


def contract_for(target: str) -> Contract:
    """The contract of `transactions` or `customers`."""
    try:
        return CONTRACTS[target]
    except KeyError:
        raise ValidationError(f"unknown target {target!r}: use transactions or customers") from None


def all_string_schema(columns: Sequence[str]) -> StructType:
    """How CSV files are read: every column as text, plus the corrupt-record column."""
    return StructType(
        [StructField(c, StringType(), True) for c in columns]
        + [StructField(CORRUPT_COLUMN, StringType(), True)]
    )
