"""Hostile input files against real Spark and Delta: every one is refused or quarantined
with file, column and rule, and nothing else in the warehouse changes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from scorehouse.data import validation as v
from scorehouse.data.ingest import IngestResult, ingest_file, retract_ingest
from scorehouse.errors import ValidationError
from scorehouse.settings import IngestSettings, Settings
from scorehouse.storage.warehouse import Warehouse

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CUSTOMERS_CSV = "customer_id,signup_date,segment,region,email_opt_in\n1,2025-01-01,smb,north,true\n"
HEADER = "transaction_id,customer_id,event_time,quantity,amount\n"


def lenient(settings: Settings) -> Settings:
    return settings.model_copy(update={"ingest": IngestSettings(max_reject_share=0.9)})


@pytest.fixture
def customers(spark: SparkSession, settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "c.csv"
    path.write_text(CUSTOMERS_CSV)
    ingest_file(spark, settings, table="customers", path=path, now=NOW)
    return lenient(settings)


def _ingest(spark: SparkSession, settings: Settings, path: Path, **kw: object) -> IngestResult:
    return ingest_file(spark, settings, table="transactions", path=path, now=NOW, **kw)


def _rejects(spark: SparkSession, settings: Settings, ingest_id: str) -> list[tuple]:
    rows = Warehouse.from_settings(spark, settings).read(settings.tables.quarantine)
    found = rows.where(f"ingest_id = '{ingest_id}'").collect()
    return sorted((r.row_number, r.column, r.rule) for r in found)


def _ids(spark: SparkSession, settings: Settings) -> list[str]:
    table = Warehouse.from_settings(spark, settings).read("raw_transactions")
    return sorted(r.transaction_id for r in table.collect())


def test_an_absurd_amount_is_quarantined_and_the_rest_loads(
    spark: SparkSession, customers: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        HEADER + "a,1,2026-05-01 10:00:00,1,1.7e308\nb,1,2026-05-01 10:00:00,2000000,5\n"
        "c,1,2026-05-01 10:00:00,1,5\n"
    )
    _ingest(spark, customers, path, ingest_id="huge")
    assert _rejects(spark, customers, "huge") == [
        (1, "amount", v.MAX),
        (2, "quantity", v.MAX),
    ]
    assert _ids(spark, customers) == ["c"]


def test_bytes_that_are_not_utf8_are_rejected_not_replaced(
    spark: SparkSession, customers: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(
        HEADER.encode()
        + b"caf\xe9-1,1,2026-05-01 10:00:00,1,5\ncaf\xe8-1,1,2026-05-01 10:00:00,1,5\n"
        + b"plain,1,2026-05-01 10:00:00,1,5\n"
    )
    _ingest(spark, customers, path, ingest_id="bytes")
    assert _rejects(spark, customers, "bytes") == [
        (1, "transaction_id", v.NOT_UTF8),
        (2, "transaction_id", v.NOT_UTF8),
    ]
    assert _ids(spark, customers) == ["plain"]
    _ingest(spark, customers, path, encoding="iso-8859-1")
    assert _ids(spark, customers) == sorted(["café-1", "cafè-1", "plain"])


def test_parquet_from_pandas_with_nanosecond_utc_timestamps_loads(
    spark: SparkSession, customers: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame(
        {
            "transaction_id": ["p1", "p2"],
            "customer_id": [1, 1],
            "event_time": pd.to_datetime(["2026-05-01 10:00:00", "2026-05-02 11:30:00"], utc=True),
            "quantity": [1, 2],
            "amount": [3.5, 4.0],
        }
    ).to_parquet(path)
    assert pq.read_schema(path).field("event_time").type == pa.timestamp("ns", tz="UTC")
    result = _ingest(spark, customers, path)
    assert (result.rows_appended, result.rows_rejected) == (2, 0)
    table = Warehouse.from_settings(spark, customers).read("raw_transactions")
    assert sorted((r.transaction_id, r.event_time) for r in table.collect()) == [
        ("p1", datetime(2026, 5, 1, 10)),
        ("p2", datetime(2026, 5, 2, 11, 30)),
    ]


def test_a_parquet_column_of_the_wrong_type_is_refused_by_name(
    spark: SparkSession, customers: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "transaction_id": ["b1", "b2"],
                "customer_id": pa.array([1, 1], pa.int64()),
                "event_time": pa.array([datetime(2026, 5, 1, 10)] * 2, pa.timestamp("us")),
                "quantity": [True, False],
                "amount": [1.0, 2.0],
            }
        ),
        path,
    )
    with pytest.raises(ValidationError) as err:
        _ingest(spark, customers, path)
    message = str(err.value)
    assert str(path.resolve()) in message
    assert "quantity / wrong_type: 2 rows" in message
    assert not Warehouse.from_settings(spark, customers).exists("raw_transactions")


def test_a_file_that_is_not_parquet_is_a_one_line_error(
    spark: SparkSession, customers: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "t.parquet"
    path.write_text("this is not parquet\n")
    with pytest.raises(ValidationError, match=r"t\.parquet: cannot be read as Parquet"):
        _ingest(spark, customers, path)


@pytest.mark.parametrize(
    ("text", "appended"),
    [("", None), (HEADER, 0)],
    ids=["empty", "header-only"],
)
def test_empty_and_header_only_files_commit_nothing(
    spark: SparkSession, customers: Settings, tmp_path: Path, text: str, appended: int | None
) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    if appended is None:
        with pytest.raises(ValidationError, match=r"t\.csv: empty file"):
            _ingest(spark, customers, path)
    else:
        assert _ingest(spark, customers, path).rows_appended == appended
    assert not Warehouse.from_settings(spark, customers).exists("raw_transactions")


def test_the_same_file_ingested_twice_at_once_appends_its_rows_once(
    spark: SparkSession, customers: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        HEADER + "".join(f"r{i},1,2026-05-0{1 + i % 3} 10:00:00,1,{i + 1}\n" for i in range(50))
    )
    results: list[IngestResult] = []
    threads = [threading.Thread(target=lambda: results.append(_ingest(spark, customers, path)))]
    threads.append(threading.Thread(target=lambda: results.append(_ingest(spark, customers, path))))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.rows_appended for r in results) == [0, 50]
    assert sorted(r.rows_already_loaded for r in results) == [0, 50]
    assert _ids(spark, customers) == sorted(f"r{i}" for i in range(50))


def test_retract_removes_exactly_one_ingest(
    spark: SparkSession, customers: Settings, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(HEADER + "a1,1,2026-05-01 10:00:00,1,5\na2,1,2026-05-02 10:00:00,1,5\n")
    second.write_text(HEADER + "b1,1,2026-05-01 11:00:00,1,5\nb2,1,2026-05-03 10:00:00,1,5\n")
    _ingest(spark, customers, first, ingest_id="first")
    _ingest(spark, customers, second, ingest_id="second")
    done = retract_ingest(spark, customers, "second")
    assert [(d.table, d.rows, [str(x) for x in d.days]) for d in done] == [
        ("raw_transactions", 2, ["2026-05-01", "2026-05-03"])
    ]
    assert _ids(spark, customers) == ["a1", "a2"]
    with pytest.raises(ValidationError, match="no rows of ingest second"):
        retract_ingest(spark, customers, "second")
