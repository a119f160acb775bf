"""Ingest a user's CSV/Parquet file into a raw table through validation (the I/O edge).

Valid rows are appended to the raw table, rejected ones to the quarantine table. When
the rejected share is over `ingest.max_reject_share` nothing is committed anywhere:
the error message carries the per-rule counts and example row numbers instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from scorehouse.data import validation as v
from scorehouse.errors import ValidationError
from scorehouse.schemas import QUARANTINE
from scorehouse.settings import Settings
from scorehouse.tables import Warehouse


@dataclass(frozen=True)
class RuleCount:
    column: str | None
    rule: str
    rows: int
    example_rows: list[int]


@dataclass(frozen=True)
class IngestResult:
    """What one ingest read, appended, skipped and rejected."""

    source_file: str
    target_table: str
    ingest_id: str
    rows_read: int
    rows_appended: int
    rows_already_loaded: int
    rows_rejected: int
    table_version: int | None  # None: nothing appended
    quarantine_version: int | None  # None: nothing rejected
    rules: list[RuleCount] = field(default_factory=list)

    @property
    def reject_share(self) -> float:
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0


def infer_format(path: Path, fmt: str | None) -> str:
    """`csv` or `parquet`: the one given, else from the file name."""
    if fmt:
        if fmt not in ("csv", "parquet"):
            raise ValidationError(f"{path}: unsupported format {fmt!r} (use csv or parquet)")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".csv" in suffixes or ".txt" in suffixes:
        return "csv"
    raise ValidationError(
        f"{path}: cannot tell the format from the name; pass --format csv|parquet"
    )


def read_file(spark: SparkSession, path: Path, fmt: str) -> DataFrame:
    """The file as read: CSV as text columns with a corrupt-record column, Parquet as typed."""
    if not path.exists():
        raise ValidationError(f"{path}: no such file")
    if fmt == "parquet":
        return spark.read.parquet(str(path))
    header = spark.read.option("header", True).option("inferSchema", False).csv(str(path)).columns
    if not header:
        raise ValidationError(f"{path}: empty file (a header row is required)")
    return (
        spark.read.schema(v.all_string_schema(header))
        .option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", v.CORRUPT_COLUMN)
        .option("nullValue", "")
        .csv(str(path))
    )


def _rejection_error(result: IngestResult, limit: float) -> ValidationError:
    lines = [
        f"{result.source_file}: {result.rows_rejected} of {result.rows_read} rows "
        f"({result.reject_share:.1%}) broke rules, more than ingest.max_reject_share "
        f"{limit:.1%}; nothing was committed to {result.target_table} or quarantine"
    ]
    lines += [_rule_line(r) for r in result.rules]
    return ValidationError("\n".join(lines))


def _rule_line(rule: RuleCount) -> str:
    examples = ", ".join(str(n) for n in rule.example_rows)
    return f"  {rule.column or '(row)'} / {rule.rule}: {rule.rows} rows (e.g. rows {examples})"


def ingest_file(
    spark: SparkSession,
    settings: Settings,
    *,
    table: str,
    path: str | Path,
    fmt: str | None = None,
    mapping: Mapping[str, str] | None = None,
    now: datetime | None = None,
    ingest_id: str | None = None,
) -> IngestResult:
    """Validate `path` against the `table` contract (transactions|customers) and load it.

    `now` (UTC) is the reference for timestamps in the future and the quarantine rows'
    time. Raises ValidationError, committing nothing, when too many rows are rejected.
    """
    contract = v.contract_for(table)
    source = Path(path)
    source_file = str(source.resolve())
    now = (now or datetime.now(UTC)).astimezone(UTC)
    ingest_id = ingest_id or uuid.uuid4().hex
    wh = Warehouse.from_settings(spark, settings)
    target_table = getattr(settings.tables, table)

    raw = read_file(spark, source, infer_format(source, fmt))
    prepared = v.prepare(
        v.with_row_numbers(raw), contract, source_file=source_file, mapping=mapping
    )
    checked = v.check_values(prepared, contract, now=now)
    if contract.target == "transactions":
        customers = settings.tables.customers
        known = (
            wh.read(customers).select("customer_id", "valid_from")
            if wh.exists(customers)
            else spark.createDataFrame([], "customer_id long, valid_from date")
        )
        checked = v.check_known_customers(checked, known)
    existing = wh.read(target_table) if wh.exists(target_table) else None
    checked = v.check_duplicates(checked, contract, existing, table=target_table).persist()
    try:
        totals = checked.agg(
            F.count(F.lit(1)).alias("read"),
            v.rejected_count().alias("rejected"),
            F.sum(F.col(v.ALREADY_LOADED).cast("long")).alias("loaded"),
        ).first()
        assert totals is not None
        rows_read, rejected, loaded = totals["read"], totals["rejected"] or 0, totals["loaded"] or 0
        quarantine = v.quarantine_rows(
            checked,
            source_file=source_file,
            target_table=target_table,
            ingest_id=ingest_id,
            ingested_at=now,
        )
        rules = [
            RuleCount(r["column"], r["rule"], r["rows"], list(r["example_rows"]))
            for r in v.reject_summary(quarantine).collect()
        ]
        result = IngestResult(
            source_file=source_file,
            target_table=target_table,
            ingest_id=ingest_id,
            rows_read=rows_read,
            rows_appended=rows_read - rejected - loaded,
            rows_already_loaded=loaded,
            rows_rejected=rejected,
            table_version=None,
            quarantine_version=None,
            rules=rules,
        )
        limit = settings.ingest.max_reject_share
        if result.reject_share > limit:
            raise _rejection_error(result, limit)
        table_version = quarantine_version = None
        if result.rows_appended:
            partition_by = ["ds"] if contract.target == "transactions" else []
            _ensure_table(wh, target_table, contract.schema, partition_by)
            table_version = wh.append(
                target_table, v.valid_rows(checked, contract), partition_by=partition_by
            )
        if rejected:
            _ensure_table(wh, settings.tables.quarantine, QUARANTINE, ["ds"])
            quarantine_version = wh.append(
                settings.tables.quarantine, quarantine, partition_by=["ds"]
            )
    finally:
        checked.unpersist()
    return replace(result, table_version=table_version, quarantine_version=quarantine_version)


def _ensure_table(wh: Warehouse, table: str, schema: StructType, partition_by: list[str]) -> None:
    """Create a missing table from the contract schema first, so its NOT NULL flags hold.

    (Columns computed by Spark expressions are all nullable; a table created from them
    would lose the contract's flags.)
    """
    if not wh.exists(table):
        wh.append(table, wh.spark.createDataFrame([], schema), partition_by=partition_by)


def format_summary(result: IngestResult) -> str:
    """The text the CLI prints: counts, then rejected rows per column and rule."""
    lines = [
        f"ingest {result.source_file} -> {result.target_table} (ingest id {result.ingest_id})",
        f"  read {result.rows_read} rows: appended {result.rows_appended}"
        + (f" (version {result.table_version})" if result.table_version is not None else "")
        + f", already loaded {result.rows_already_loaded}, rejected {result.rows_rejected}"
        + f" ({result.reject_share:.1%})"
        + (
            f" -> quarantine (version {result.quarantine_version})"
            if result.quarantine_version is not None
            else ""
        ),
    ]
    lines += [_rule_line(r) for r in result.rules]
    return "\n".join(lines)
