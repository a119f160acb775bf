"""Ingest enforces the sources as the project declares them: a changed rule changes what
is quarantined, string keys load, and the Spark row masks agree with pandera itself."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from scorehouse.data import validation as v
from scorehouse.data.contracts import contract_for
from scorehouse.data.ingest import ingest_file
from scorehouse.errors import ValidationError
from scorehouse.paths import EXAMPLES_DIR
from scorehouse.project.load import load_project
from scorehouse.settings import IngestSettings, Settings
from scorehouse.storage.warehouse import Warehouse

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CUSTOMERS = "customer_id,signup_date,segment,region,email_opt_in\n"
TRANSACTIONS = "transaction_id,customer_id,event_time,quantity,amount\n"


def project_copy(tmp_path: Path, edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> Path:
    """The purchase example, copied and changed by `edit(project, sources)`."""
    folder = tmp_path / "project"
    shutil.copytree(EXAMPLES_DIR / "purchase_propensity", folder)
    project = yaml.safe_load((folder / "project.yaml").read_text())
    sources = yaml.safe_load((folder / "sources.yaml").read_text())
    edit(project, sources)
    (folder / "project.yaml").write_text(yaml.safe_dump(project))
    (folder / "sources.yaml").write_text(yaml.safe_dump(sources))
    return folder


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def lenient(settings: Settings) -> Settings:
    return settings.model_copy(update={"ingest": IngestSettings(max_reject_share=0.9)})


def quarantine(spark: SparkSession, settings: Settings, ingest_id: str) -> list[tuple]:
    rows = Warehouse.from_settings(spark, settings).read(settings.tables.quarantine)
    found = rows.where(f"ingest_id = '{ingest_id}'").collect()
    return sorted((r.source_file, r.row_number, r.column, r.rule, r.message) for r in found)


def test_a_changed_declaration_changes_what_is_quarantined(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    def tighter(_: dict[str, Any], sources: dict[str, Any]) -> None:
        sources["customers"]["columns"]["region"]["allowed"] = ["north", "south", "east"]
        sources["transactions"]["columns"]["quantity"]["max"] = 10

    shop = project_copy(tmp_path, tighter)
    settings = lenient(settings)
    customers = write(
        tmp_path, "c.csv", CUSTOMERS + "1,2025-01-01,smb,north,\n2,2025-01-01,smb,West,\n"
    )
    result = ingest_file(
        spark, settings, table="customers", path=customers, now=NOW, ingest_id="c",
        project_dir=shop,
    )  # fmt: skip
    assert (result.rows_appended, result.rows_rejected) == (1, 1)
    assert quarantine(spark, settings, "c") == [
        (
            str(customers.resolve()),
            2,
            "region",
            v.ALLOWED,
            "'West' is not one of north, south, east",
        )
    ]

    sales = write(
        tmp_path,
        "t.csv",
        TRANSACTIONS + "a,1,2026-05-01 10:00:00,10,5\nb,1,2026-05-01 10:00:00,11,5\n",
    )
    with pytest.raises(ValidationError) as err:
        ingest_file(
            spark, settings.model_copy(update={"ingest": IngestSettings(max_reject_share=0.1)}),
            table="transactions", path=sales, now=NOW, project_dir=shop,
        )  # fmt: skip
    message = str(err.value)
    assert str(sales.resolve()) in message
    assert "quantity / max: 1 rows (e.g. rows 2)" in message
    ingest_file(
        spark, settings, table="transactions", path=sales, now=NOW, ingest_id="t",
        project_dir=shop,
    )  # fmt: skip
    assert quarantine(spark, settings, "t") == [
        (str(sales.resolve()), 2, "quantity", v.MAX, "11 is above the maximum 10")
    ]


def test_the_shipped_declaration_accepts_what_the_changed_one_refuses(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    customers = write(
        tmp_path, "c.csv", CUSTOMERS + "1,2025-01-01,smb,north,\n2,2025-01-01,smb,West,\n"
    )
    result = ingest_file(spark, settings, table="customers", path=customers, now=NOW)
    assert (result.rows_appended, result.rows_rejected) == (2, 0)
    table = Warehouse.from_settings(spark, settings).read("raw_customers")
    assert sorted(r.region for r in table.collect()) == ["north", "west"]  # declared spelling


def test_a_source_with_string_keys_ingests(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    def string_keys(project: dict[str, Any], sources: dict[str, Any]) -> None:
        project["entity"]["type"] = "string"
        for source in sources.values():
            source["columns"]["customer_id"]["type"] = "string"

    shop = project_copy(tmp_path, string_keys)
    settings = lenient(settings)
    customers = write(
        tmp_path, "c.csv", CUSTOMERS + "C-001,2025-01-01,smb,north,\nc-002,2025-02-01,,,true\n"
    )
    ingest_file(spark, settings, table="customers", path=customers, now=NOW, project_dir=shop)
    sales = write(
        tmp_path,
        "t.csv",
        TRANSACTIONS
        + "a,C-001,2026-05-01 10:00:00,1,5\nb,c-002,2026-05-02 10:00:00,2,7.5\n"
        + "c,C-002,2026-05-02 10:00:00,1,1\nd,c-002,2025-01-15 10:00:00,1,1\n",
    )
    result = ingest_file(
        spark, settings, table="transactions", path=sales, now=NOW, ingest_id="s",
        project_dir=shop,
    )  # fmt: skip
    assert [(r[1], r[2], r[3]) for r in quarantine(spark, settings, "s")] == [
        (3, "customer_id", v.UNKNOWN_ENTITY),
        (4, "event_time", v.BEFORE_KNOWN_FROM),
    ]
    assert result.rows_appended == 2
    wh = Warehouse.from_settings(spark, settings)
    table = wh.read("raw_transactions")
    assert dict(table.dtypes)["customer_id"] == "string"
    assert sorted((r.transaction_id, r.customer_id, r.ds) for r in table.collect()) == [
        ("a", "C-001", date(2026, 5, 1)),
        ("b", "c-002", date(2026, 5, 2)),
    ]
    assert dict(wh.read("raw_customers").dtypes)["customer_id"] == "string"


# Typed rows: each breaks at most a few column rules.
TX_ROWS: list[tuple[Any, ...]] = [
    ("t1", 7, datetime(2026, 5, 30, 10), 2, 19.99),
    (None, 7, datetime(2026, 5, 30, 10), 2, 1.0),
    ("t3", None, datetime(2026, 7, 1), 0, 1.0),
    ("t4", 7, datetime(2026, 5, 30, 10), 2_000_000, -3.5),
    ("t5", 7, datetime(2026, 6, 1, 12, 0, 1), 1, 1e10),
    ("t6", 7, None, None, None),
]
CUSTOMER_ROWS: list[tuple[Any, ...]] = [
    (1, date(2026, 1, 1), date(2026, 1, 1), "smb", "north", True),
    (2, date(2025, 12, 31), date(2026, 1, 1), "retail", None, None),
    (3, date(2026, 7, 1), date(2026, 7, 2), None, "mars", False),
    (None, date(2026, 1, 1), None, "consumer", "east", True),
]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _pandera_failures(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> set[tuple]:
    """(row number, column, rule) pandera reports, uniqueness aside (a cross-row rule)."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        found = set()
        for case in err.failure_cases.iter_rows(named=True):
            if case["check"] == "multiple_fields_uniqueness":
                continue
            row, number = case["index"] + 1, case["check_number"]
            if case["check"] == "not_nullable":
                found.add((row, case["column"], v.MISSING_VALUE))
            elif case["schema_context"] == "DataFrameSchema":
                check = schema.checks[number]
                found.add((row, (check.statistics or {})["column"], check.name))
            else:
                found.add((row, case["column"], schema.columns[case["column"]].checks[number].name))
        return found
    return set()


@pytest.mark.parametrize(
    ("source", "rows"),
    [("transactions", TX_ROWS), ("customers", CUSTOMER_ROWS)],
)
def test_spark_row_masks_agree_with_pandera(
    spark: SparkSession, source: str, rows: list[tuple[Any, ...]]
) -> None:
    contract = contract_for(load_project(), source, now=NOW)
    names = contract.columns
    polars_types = {n: c.dtype.type for n, c in contract.schema.columns.items()}
    frame = pl.DataFrame(
        [
            [
                v_.replace(tzinfo=UTC) if isinstance(v_, datetime) else v_
                for v_ in (row[i] for row in rows)
            ]
            for i in range(len(names))
        ],
        schema=polars_types,
        orient="col",
    )
    expected = _pandera_failures(contract.schema, frame)
    as_text = spark.createDataFrame(
        [(*[_text(x) for x in row], None) for row in rows], v.all_string_schema(names)
    )
    prepared = v.prepare(v.with_row_numbers(as_text), contract, source_file="f.csv")
    checked = v.check_values(prepared, contract)
    found = {
        (r[0], r[1], r[2])
        for r in checked.select(v.ROW_NUMBER, F.explode(v.VIOLATIONS).alias("x"))
        .select(v.ROW_NUMBER, "x.column", "x.rule")
        .collect()
    }
    assert expected and found == expected
