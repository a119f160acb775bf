"""Ingest a user's CSV/Parquet file into a raw table through validation (the I/O edge).

The target is a source of the project; its contract is the pandera schema generated
from the source's declaration (`scorehouse.data.contracts`). Valid rows are appended to the raw table, rejected ones to the quarantine table. When
the rejected share is over `ingest.max_reject_share` nothing is committed anywhere:
the error message carries the per-rule counts and example row numbers instead.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, StructField, StructType

from scorehouse.data import validation as v
from scorehouse.data.contracts import SourceContract, contract_for, spark_type
from scorehouse.errors import ValidationError
from scorehouse.features.compile import FeatureSql
from scorehouse.features.registry import feature_sql
from scorehouse.locks import work_lock
from scorehouse.schemas import QUARANTINE
from scorehouse.settings import Settings
from scorehouse.storage.warehouse import Warehouse

log = logging.getLogger(__name__)

# Which ingest appended a raw row (null for generated data): `scorehouse retract` removes
# the rows of one ingest by it.
INGEST_ID = StructField("ingest_id", StringType(), True)


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


def read_file(spark: SparkSession, path: Path, fmt: str, encoding: str = "utf-8") -> DataFrame:
    """The file as read: CSV as text columns with a corrupt-record column, Parquet as typed."""
    if not path.exists():
        raise ValidationError(f"{path}: no such file")
    if fmt == "parquet":
        try:
            return spark.read.parquet(str(path))
        except Exception as exc:
            raise ValidationError(
                f"{path}: cannot be read as Parquet: {_first_line(exc)}"
            ) from None
    reader = spark.read.option("encoding", encoding)
    try:
        header = reader.option("header", True).option("inferSchema", False).csv(str(path)).columns
    except Exception as exc:
        raise ValidationError(f"{path}: cannot be read as CSV: {_first_line(exc)}") from None
    if not header:
        raise ValidationError(f"{path}: empty file (a header row is required)")
    return (
        reader.schema(v.all_string_schema(header))
        .option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", v.CORRUPT_COLUMN)
        .option("nullValue", "")
        .csv(str(path))
    )


@contextmanager
def readable_parquet(path: Path, fmt: str) -> Iterator[Path]:
    """`path`, or a copy with nanosecond timestamps turned into microseconds.

    pandas writes timestamp[ns] by default, which Spark refuses to read; the copy (made on
    the driver with pyarrow, in a temporary folder kept for the ingest) holds the same rows.
    """
    if fmt != "parquet" or not path.exists():
        yield path
        return
    try:
        dataset = pads.dataset(str(path), format="parquet")
    except Exception as exc:
        raise ValidationError(f"{path}: cannot be read as Parquet: {_first_line(exc)}") from None
    schema = dataset.schema
    nanos = [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
    if not nanos:
        yield path
        return
    micros = pa.schema(
        [f.with_type(pa.timestamp("us", f.type.tz)) if f.name in nanos else f for f in schema]
    )
    with tempfile.TemporaryDirectory(prefix="scorehouse-ingest-") as tmp:
        target = Path(tmp) / "data.parquet"
        table = dataset.to_table().cast(micros, safe=False)
        pq.write_table(table, target)
        log.info("%s: read %s as microsecond timestamps", path, ", ".join(nanos))
        yield target


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


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


@dataclass(frozen=True)
class IngestRequest:
    """One file to load: the target (a source of the project) and how to read it."""

    table: str
    path: Path
    fmt: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    encoding: str = "utf-8"


def ingest_file(
    spark: SparkSession,
    settings: Settings,
    *,
    table: str,
    path: str | Path,
    fmt: str | None = None,
    mapping: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
    now: datetime | None = None,
    ingest_id: str | None = None,
    project_dir: str | Path | None = None,
) -> IngestResult:
    """Validate `path` against the contract of the source `table` and load it into the
    source's raw table.

    `table` names a source of the project (`project_dir`, else SCOREHOUSE_PROJECT, the
    current directory or the purchase example: `transactions`, `customers`). `now`
    (UTC) is the bound of `not_in_future` columns and the quarantine rows' time. Raises
    ValidationError, committing nothing, when too many rows are rejected. One ingest per
    raw table runs at a time (a second waits): the same file loaded twice, even at once,
    appends its rows once.
    """
    request = IngestRequest(table, Path(path), fmt, dict(mapping or {}), encoding)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    sql = feature_sql(project_dir)
    # an unknown source fails before anything is read or locked
    contract = contract_for(sql.project, table, table=sql.raw_table(table), now=now)
    target_table = contract.table
    with work_lock(settings, f"ingest-{target_table}", f"an ingest into {target_table}"):
        return _ingest(spark, settings, request, contract, sql, now, ingest_id or uuid.uuid4().hex)


def _known_entities(spark: SparkSession, wh: Warehouse, sql: FeatureSql) -> tuple[DataFrame, str]:
    """(key, valid_from) of every version in the entity's attributes source, and its table."""
    project = sql.project
    entity = project.entity
    source = project.sources[entity.source]
    table = sql.raw_table(entity.source)
    key = source.key or entity.key
    assert source.valid_from is not None
    if wh.exists(table):
        known = wh.read(table).select(
            F.col(key).alias("key"), F.col(source.valid_from).alias("valid_from")
        )
    else:
        key_type = spark_type(contract_for(project, entity.source).schema.columns[key])
        known = spark.createDataFrame(
            [], StructType([StructField("key", key_type), StructField("valid_from", DateType())])
        )
    return known, table


def _checked_rows(
    spark: SparkSession,
    settings: Settings,
    request: IngestRequest,
    contract: SourceContract,
    sql: FeatureSql,
    source: Path,
) -> DataFrame:
    """Every row of the file, typed, with its violations and whether it is loaded already."""
    wh = Warehouse.from_settings(spark, settings)
    source_file = str(request.path.resolve())
    raw = read_file(spark, source, infer_format(request.path, request.fmt), request.encoding)
    prepared = v.prepare(
        v.with_row_numbers(raw), contract, source_file=source_file, mapping=request.mapping
    )
    checked = v.check_values(prepared, contract)
    timestamp = contract.source.timestamp
    if timestamp:
        known, entity_table = _known_entities(spark, wh, sql)
        checked = v.check_known_entities(
            checked,
            known,
            key=contract.entity_key,
            timestamp=timestamp,
            entity=sql.project.entity.name,
            table=entity_table,
        )
    existing = wh.read(contract.table) if wh.exists(contract.table) else None
    return v.check_duplicates(checked, contract, existing)


def _ingest(
    spark: SparkSession,
    settings: Settings,
    request: IngestRequest,
    contract: SourceContract,
    sql: FeatureSql,
    now: datetime,
    ingest_id: str,
) -> IngestResult:
    fmt = infer_format(request.path, request.fmt)
    with readable_parquet(request.path, fmt) as source:
        checked = _checked_rows(spark, settings, request, contract, sql, source).persist()
        try:
            try:
                result, quarantine = _summarize(checked, contract, request, now, ingest_id)
            except ValidationError:
                raise
            except Exception as exc:  # the JVM's own failure, said with the file it read
                raise ValidationError(
                    f"{request.path.resolve()}: cannot be read as {fmt}: {_first_line(exc)}"
                ) from None
            limit = settings.ingest.max_reject_share
            if result.reject_share > limit:
                raise _rejection_error(result, limit)
            return _commit(spark, settings, contract, checked, quarantine, result)
        finally:
            checked.unpersist()


def _summarize(
    checked: DataFrame,
    contract: SourceContract,
    request: IngestRequest,
    now: datetime,
    ingest_id: str,
) -> tuple[IngestResult, DataFrame]:
    target_table = contract.table
    source_file = str(request.path.resolve())
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
    return result, quarantine


def _commit(
    spark: SparkSession,
    settings: Settings,
    contract: SourceContract,
    checked: DataFrame,
    quarantine: DataFrame,
    result: IngestResult,
) -> IngestResult:
    wh = Warehouse.from_settings(spark, settings)
    table_version = quarantine_version = None
    if result.rows_appended:
        partition_by = ["ds"] if contract.source.kind == "events" else []
        schema = StructType([*contract.table_schema.fields, INGEST_ID])
        _ensure_table(wh, result.target_table, schema, partition_by)
        rows = v.valid_rows(checked, contract).withColumn(INGEST_ID.name, F.lit(result.ingest_id))
        table_version = wh.append(
            result.target_table, rows, partition_by=partition_by, allow_new_columns=True
        )
    if result.rows_rejected:
        _ensure_table(wh, settings.tables.quarantine, QUARANTINE, ["ds"])
        quarantine_version = wh.append(settings.tables.quarantine, quarantine, partition_by=["ds"])
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


@dataclass(frozen=True)
class Retraction:
    """Rows of one ingest removed from one raw table."""

    table: str
    rows: int
    days: list[date]  # the ds partitions rewritten (empty for an unpartitioned table)
    version: int


def retract_ingest(
    spark: SparkSession,
    settings: Settings,
    ingest_id: str,
    *,
    project_dir: str | Path | None = None,
) -> list[Retraction]:
    """Remove every row that the ingest `ingest_id` appended to the project's raw tables.

    The days rewritten count as late data: the next feature build rebuilds from the
    earliest of them. Raises ValidationError when no raw table holds a row of it.
    """
    wh = Warehouse.from_settings(spark, settings)
    sql = feature_sql(project_dir)
    tables = list(dict.fromkeys(sql.raw_table(s) for s in sql.project.sources))
    done = []
    for table in tables:
        if not wh.exists(table) or INGEST_ID.name not in wh.schema(table).names:
            continue
        with work_lock(settings, f"ingest-{table}", f"an ingest into {table}"):
            removed = _retract_from(wh, table, ingest_id)
        if removed is not None:
            done.append(removed)
    if not done:
        raise ValidationError(
            f"no rows of ingest {ingest_id} in {' or '.join(tables)} "
            "(the ingest id is printed by `scorehouse ingest`)"
        )
    return done


def _retract_from(wh: Warehouse, table: str, ingest_id: str) -> Retraction | None:
    theirs = F.col(INGEST_ID.name).eqNullSafe(F.lit(ingest_id))
    partitioned = "ds" in wh.partition_columns(table)
    if partitioned:
        days = sorted(r.ds for r in wh.read(table).where(theirs).select("ds").distinct().collect())
        if not days:
            return None
        current = wh.read(table, partitions={"ds": days})
    else:
        days, current = [], wh.read(table)
    rows = current.where(theirs).count()
    if not rows:
        return None
    kept = current.where(~theirs)
    version = (
        wh.overwrite(table, kept, partition_by=["ds"], replace_partitions={"ds": days})
        if partitioned
        else wh.overwrite(table, kept)
    )
    log.info("retracted %d rows of ingest %s from %s (version %d)", rows, ingest_id, table, version)
    return Retraction(table, rows, days, version)
