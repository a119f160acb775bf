"""Ingest of user files into real Delta tables: quarantine, threshold, mapping, reruns."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from scorehouse import cli
from scorehouse.data import validation as v
from scorehouse.data.ingest import format_summary, ingest_file
from scorehouse.errors import ValidationError
from scorehouse.settings import IngestSettings, Settings
from scorehouse.storage.warehouse import Warehouse

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

CUSTOMERS_CSV = """customer_id,signup_date,segment,region,email_opt_in
1,2025-01-01,consumer,north,true
2,2025-02-01,smb,south,false
3,2025-03-01,enterprise,east,
"""

# Rows 1-6 valid; then one bad row per rule. Row numbers count data records.
TRANSACTIONS_CSV = """transaction_id,customer_id,event_time,quantity,amount
a1,1,2026-05-01 10:00:00,1,10.50
a2,1,2026-05-02 11:00:00,2,21.00
a3,2,2026-05-02 12:00:00,1,99.99
a4,3,2026-05-03 09:30:00,5,250.00
a5,3,2026-05-31 23:59:59,1,5.00
old,2,2026-04-01 08:00:00,3,30.00
b1,1,2026-05-04 10:00:00,1,1.00,extra
b2,1,2026-05-04 10:00:00,lots,1.00
,1,2026-05-04 10:00:00,1,1.00
b4,1,2026-05-04 10:00:00,-2,1.00
b5,1,2026-05-04 10:00:00,1,0
b6,1,2026-07-04 10:00:00,1,1.00
b7,99,2026-05-04 10:00:00,1,1.00
a1,1,2026-05-04 10:00:00,1,1.00
dup,2,2026-04-01 08:00:00,3,31.00
b8,3,2025-02-28 23:59:59,1,1.00
"""
# What is already in the table before the file above arrives.
PREVIOUS_CSV = """transaction_id,customer_id,event_time,quantity,amount
old,2,2026-04-01 08:00:00,3,30.00
dup,2,2026-04-01 08:00:00,3,30.00
"""

EXPECTED_REJECTS = [
    (7, None, v.MALFORMED),
    (8, "quantity", v.WRONG_TYPE),
    (9, "transaction_id", v.MISSING_VALUE),
    (10, "quantity", v.GREATER_THAN),
    (11, "amount", v.GREATER_THAN),
    (12, "event_time", v.NOT_IN_FUTURE),
    (13, "customer_id", v.UNKNOWN_ENTITY),
    (14, "transaction_id", v.DUPLICATE),
    (15, "transaction_id", v.DUPLICATE),
    (16, "event_time", v.BEFORE_KNOWN_FROM),
]


def lenient(settings: Settings, share: float = 0.9) -> Settings:
    return settings.model_copy(update={"ingest": IngestSettings(max_reject_share=share)})


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def with_customers(spark: SparkSession, settings: Settings, tmp_path: Path) -> Settings:
    result = ingest_file(
        spark, settings, table="customers", path=write(tmp_path, "c.csv", CUSTOMERS_CSV), now=NOW
    )
    assert (result.rows_read, result.rows_appended, result.rows_rejected) == (3, 3, 0)
    return settings


def quarantine_of(spark: SparkSession, settings: Settings, ingest_id: str) -> list[tuple]:
    wh = Warehouse.from_settings(spark, settings)
    rows = wh.read(settings.tables.quarantine).where(f"ingest_id = '{ingest_id}'").collect()
    return sorted(((r.row_number, r.column, r.rule) for r in rows), key=lambda r: r[0])


def test_bad_csv_rows_go_to_quarantine_with_their_rule(
    spark: SparkSession, with_customers: Settings, tmp_path: Path
) -> None:
    settings = lenient(with_customers)
    ingest_file(
        spark, settings, table="transactions", path=write(tmp_path, "p.csv", PREVIOUS_CSV), now=NOW
    )
    path = write(tmp_path, "t.csv", TRANSACTIONS_CSV)
    result = ingest_file(
        spark, settings, table="transactions", path=path, now=NOW, ingest_id="run1"
    )

    assert (result.rows_read, result.rows_appended, result.rows_already_loaded) == (16, 5, 1)
    assert result.rows_rejected == 10
    assert quarantine_of(spark, settings, "run1") == EXPECTED_REJECTS
    wh = Warehouse.from_settings(spark, settings)
    assertDataFrameEqual(
        wh.read("raw_transactions").select("transaction_id", "quantity", "amount", "ds"),
        [
            ("old", 3, 30.0, date(2026, 4, 1)),
            ("dup", 3, 30.0, date(2026, 4, 1)),
            ("a1", 1, 10.5, date(2026, 5, 1)),
            ("a2", 2, 21.0, date(2026, 5, 2)),
            ("a3", 1, 99.99, date(2026, 5, 2)),
            ("a4", 5, 250.0, date(2026, 5, 3)),
            ("a5", 1, 5.0, date(2026, 5, 31)),
        ],
    )
    q = wh.read(settings.tables.quarantine).where("ingest_id = 'run1' AND row_number = 7").first()
    assert q is not None
    assert (q.source_file, q.target_table) == (str(path.resolve()), "raw_transactions")
    assert q.raw_record == '{"_corrupt_record":"b1,1,2026-05-04 10:00:00,1,1.00,extra"}'
    assert q.ds == date(2026, 6, 1) and q.ingested_at == datetime(2026, 6, 1, 12, 0)
    summary = format_summary(result)
    assert str(path.resolve()) in summary
    assert "quantity / greater_than: 1 rows (e.g. rows 10)" in summary
    assert "transaction_id / duplicate: 2 rows (e.g. rows 14, 15)" in summary
    assert "event_time / before_known_from: 1 rows (e.g. rows 16)" in summary


def test_rerunning_the_same_file_adds_nothing(
    spark: SparkSession, with_customers: Settings, tmp_path: Path
) -> None:
    settings = lenient(with_customers)
    path = write(tmp_path, "t.csv", TRANSACTIONS_CSV)
    first = ingest_file(spark, settings, table="transactions", path=path, now=NOW)
    wh = Warehouse.from_settings(spark, settings)
    version = wh.version("raw_transactions")
    second = ingest_file(spark, settings, table="transactions", path=path, now=NOW)

    assert first.rows_appended == 7 and second.rows_appended == 0
    assert second.rows_already_loaded == 7 and second.table_version is None
    assert wh.version("raw_transactions") == version
    table = wh.read("raw_transactions")
    assert table.count() == table.select("transaction_id").distinct().count() == 7


def test_parquet_file_with_mapping_and_typed_columns(
    spark: SparkSession, with_customers: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "id": ["p1", "p2", "p3", "p4", "p5"],
                "cust_no": pa.array([1, 2, 2, 1, 42], pa.int64()),
                "ts": pa.array(
                    [
                        datetime(2026, 5, 1, 8),
                        datetime(2026, 5, 2, 8),
                        datetime(2026, 8, 1, 8),
                        datetime(2026, 5, 3, 8),
                        datetime(2026, 5, 3, 9),
                    ],
                    pa.timestamp("us", tz="UTC"),
                ),
                "qty": pa.array([1.0, 2.0, 1.0, 2.5, 1.0], pa.float64()),
                "amount": pa.array([10.0, -1.0, 3.0, 4.0, 5.0], pa.float64()),
            }
        ),
        path,
    )
    settings = lenient(with_customers)
    result = ingest_file(
        spark,
        settings,
        table="transactions",
        path=path,
        mapping={
            "transaction_id": "id",
            "customer_id": "cust_no",
            "event_time": "ts",
            "quantity": "qty",
        },
        now=NOW,
        ingest_id="pq",
    )
    assert quarantine_of(spark, settings, "pq") == [
        (2, "amount", v.GREATER_THAN),
        (3, "event_time", v.NOT_IN_FUTURE),
        (4, "quantity", v.WRONG_TYPE),
        (5, "customer_id", v.UNKNOWN_ENTITY),
    ]
    wh = Warehouse.from_settings(spark, settings)
    assertDataFrameEqual(
        wh.read("raw_transactions"),
        spark.createDataFrame(
            [("p1", 1, datetime(2026, 5, 1, 8), 1, 10.0, date(2026, 5, 1), "pq")],
            wh.schema("raw_transactions"),
        ),
    )
    assert result.rows_appended == 1


def test_over_threshold_fails_and_commits_nothing(
    spark: SparkSession, with_customers: Settings, tmp_path: Path
) -> None:
    path = write(tmp_path, "t.csv", TRANSACTIONS_CSV)
    with pytest.raises(ValidationError) as err:
        ingest_file(spark, with_customers, table="transactions", path=path, now=NOW)
    message = str(err.value)
    assert str(path.resolve()) in message
    assert "9 of 16 rows" in message and "nothing was committed" in message
    assert "quantity / wrong_type" in message and "customer_id / unknown_entity" in message
    wh = Warehouse.from_settings(spark, with_customers)
    assert not wh.exists("raw_transactions")
    assert not wh.exists(with_customers.tables.quarantine)


def test_missing_column_is_a_clear_error(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    path = write(
        tmp_path, "c.csv", "customer_id,signup_date,segment,email_opt_in\n1,2025-01-01,smb,true\n"
    )
    with pytest.raises(ValidationError, match=r"c\.csv: required column\(s\) region missing"):
        ingest_file(spark, settings, table="customers", path=path, now=NOW)


def test_cli_prints_summary_naming_file_column_rule(
    spark: SparkSession,
    with_customers: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in {
        "SCOREHOUSE_HOME": with_customers.home,
        "SCOREHOUSE_WAREHOUSE": with_customers.warehouse,
        "SCOREHOUSE_SPARK__PROFILE": "test",
        "SCOREHOUSE_INGEST__MAX_REJECT_SHARE": "0.5",
    }.items():
        monkeypatch.setenv(key, str(value))
    path = write(
        tmp_path,
        "mine.csv",
        "tid,cust,ts,quantity,amount\nx1,1,2026-05-01 10:00:00,1,2.00\nx2,1,2026-05-01 10:00:00,0,2.00\n",
    )
    argv = ["ingest", "transactions", str(path), "--format", "csv"]
    argv += ["--map", "transaction_id=tid", "--map", "customer_id=cust", "--map", "event_time=ts"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert str(path.resolve()) in out and "-> raw_transactions" in out
    assert "read 2 rows: appended 1" in out
    assert "quantity / greater_than: 1 rows (e.g. rows 2)" in out
