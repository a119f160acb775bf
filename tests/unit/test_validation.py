"""Validation rules on tiny inline DataFrames, one rule at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from scorehouse.data import validation as v
from scorehouse.data.contracts import contract_for
from scorehouse.errors import ValidationError
from scorehouse.project.load import load_project
from scorehouse.schemas import QUARANTINE, RAW_CUSTOMERS, RAW_TRANSACTIONS

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TX_COLUMNS = ["transaction_id", "customer_id", "event_time", "quantity", "amount"]
CUST_COLUMNS = ["customer_id", "signup_date", "segment", "region", "email_opt_in", "valid_from"]
GOOD_TX = ("t1", "7", "2026-05-30 10:00:00", "2", "19.99")
# the shipped purchase example's contracts, `now` fixed
TX = contract_for(load_project(), "transactions", now=NOW)
CUST = contract_for(load_project(), "customers", now=NOW)


def as_read(spark: SparkSession, columns: list[str], rows: list[tuple]) -> DataFrame:
    """A CSV as `read_file` gives it (text columns, corrupt record) with row numbers."""
    schema = v.all_string_schema(columns)
    padded = [row if len(row) == len(columns) + 1 else (*row, None) for row in rows]
    return v.with_row_numbers(spark.createDataFrame(padded, schema))


def checked_tx(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    prepared = v.prepare(as_read(spark, TX_COLUMNS, rows), TX, source_file="f.csv")
    return v.check_values(prepared, TX)


def checked_cust(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    prepared = v.prepare(as_read(spark, CUST_COLUMNS, rows), CUST, source_file="c.csv")
    return v.check_values(prepared, CUST)


def broken(checked: DataFrame) -> DataFrame:
    """(row, column, rule) of every violation."""
    return checked.select(
        F.col(v.ROW_NUMBER).alias("row"), F.explode(v.VIOLATIONS).alias("x")
    ).select("row", "x.column", "x.rule")


def test_row_numbers_follow_input_order(spark: SparkSession) -> None:
    letters = "abcdefghij"
    df = (
        spark.createDataFrame([(c,) for c in letters], "x string")
        .coalesce(1)
        .union(spark.createDataFrame([("k",), ("l",)], "x string"))
    )
    assert df.rdd.getNumPartitions() > 1
    expected = spark.createDataFrame(
        [(c, i + 1) for i, c in enumerate(letters + "kl")], "x string, _row_number long"
    )
    assertDataFrameEqual(v.with_row_numbers(df), expected, checkRowOrder=True)


def test_mapping_renames_and_raw_record_keeps_the_original_row(spark: SparkSession) -> None:
    df = v.with_row_numbers(
        spark.createDataFrame(
            [("t1", "7", "2026-05-30 10:00:00", "2", "19.99", "x")],
            "id string, cust_no string, ts string, quantity string, amount string, extra string",
        )
    )
    prepared = v.prepare(
        df,
        TX,
        source_file="f.parquet",
        mapping={"transaction_id": "id", "customer_id": "cust_no", "event_time": "ts"},
    )
    raw = '{"id":"t1","cust_no":"7","ts":"2026-05-30 10:00:00","quantity":"2","amount":"19.99","extra":"x"}'
    assertDataFrameEqual(
        prepared,
        spark.createDataFrame(
            [(1, raw, None, "t1", "7", "2026-05-30 10:00:00", "2", "19.99")],
            f"_row_number long, _raw_record string, _corrupt_record string, "
            f"{', '.join(c + ' string' for c in TX_COLUMNS)}",
        ),
    )


def test_missing_required_column_names_file_and_column_without_rows(spark: SparkSession) -> None:
    df = as_read(
        spark, ["transaction_id", "customer_id", "quantity", "amount"], [("secret", "7", "1", "2")]
    )
    with pytest.raises(ValidationError) as err:
        v.prepare(df, TX, source_file="/data/f.csv")
    message = str(err.value)
    assert "/data/f.csv" in message and "event_time" in message
    assert "secret" not in message


def test_mapping_errors_name_the_bad_column(spark: SparkSession) -> None:
    df = as_read(spark, TX_COLUMNS, [GOOD_TX])
    with pytest.raises(ValidationError, match=r"f\.csv.*no_such_target"):
        v.prepare(df, TX, source_file="f.csv", mapping={"no_such_target": "quantity"})
    with pytest.raises(ValidationError, match=r"f\.csv.*cust_no not in the file"):
        v.prepare(df, TX, source_file="f.csv", mapping={"customer_id": "cust_no"})


def test_valid_transaction_values_are_typed(spark: SparkSession) -> None:
    checked = checked_tx(
        spark,
        [
            GOOD_TX,
            (" t2 ", " 8 ", "2026-05-30T23:30:00+02:00", "3.0", "5"),
        ],
    )
    valid = v.valid_rows(checked.withColumn(v.ALREADY_LOADED, F.lit(False)), TX)
    assert [(f.name, f.dataType) for f in valid.schema] == [
        (f.name, f.dataType) for f in RAW_TRANSACTIONS
    ]
    assertDataFrameEqual(
        valid,
        spark.createDataFrame(
            [
                ("t1", 7, datetime(2026, 5, 30, 10, 0), 2, 19.99, date(2026, 5, 30)),
                ("t2", 8, datetime(2026, 5, 30, 21, 30), 3, 5.0, date(2026, 5, 30)),
            ],
            RAW_TRANSACTIONS,
        ),
    )


# Each row breaks exactly one rule (one DataFrame keeps the Spark jobs few).
TX_RULE_CASES = [
    ((None, "7", "2026-05-30 10:00:00", "2", "1.0"), "transaction_id", v.MISSING_VALUE),
    (("t", "  ", "2026-05-30 10:00:00", "2", "1.0"), "customer_id", v.MISSING_VALUE),
    (("t", "seven", "2026-05-30 10:00:00", "2", "1.0"), "customer_id", v.WRONG_TYPE),
    (("t", "7", "30/05/2026", "2", "1.0"), "event_time", v.WRONG_TYPE),
    (("t", "7", "2026-05-30 10:00:00", "two", "1.0"), "quantity", v.WRONG_TYPE),
    (("t", "7", "2026-05-30 10:00:00", "2.5", "1.0"), "quantity", v.WRONG_TYPE),
    (("t", "7", "2026-05-30 10:00:00", "9999999999", "1.0"), "quantity", v.WRONG_TYPE),
    (("t", "7", "2026-05-30 10:00:00", "2", "NaN"), "amount", v.WRONG_TYPE),
    (("t", "7", "2026-05-30 10:00:00", "-1", "1.0"), "quantity", v.GREATER_THAN),
    (("t", "7", "2026-05-30 10:00:00", "0", "1.0"), "quantity", v.GREATER_THAN),
    (("t", "7", "2026-05-30 10:00:00", "1", "0"), "amount", v.GREATER_THAN),
    (("t", "7", "2026-05-30 10:00:00", "1", "-3.5"), "amount", v.GREATER_THAN),
    (("t", "7", "2026-06-01 12:00:01", "1", "1.0"), "event_time", v.NOT_IN_FUTURE),
]


def test_each_transaction_rule(spark: SparkSession) -> None:
    checked = checked_tx(spark, [GOOD_TX] + [row for row, _, _ in TX_RULE_CASES])
    expected = [(i + 2, column, rule) for i, (_, column, rule) in enumerate(TX_RULE_CASES)]
    assertDataFrameEqual(broken(checked), expected)


def test_malformed_record_is_one_violation_without_column(spark: SparkSession) -> None:
    checked = checked_tx(spark, [GOOD_TX, ("t9", "7", None, None, None, "t9,7")])
    assertDataFrameEqual(broken(checked), [(2, None, v.MALFORMED)])
    raw = checked.where(F.col(v.ROW_NUMBER) == 2).select(v.RAW_RECORD).first()
    assert raw is not None and raw[0] == '{"_corrupt_record":"t9,7"}'


def test_a_row_breaking_several_rules_reports_each(spark: SparkSession) -> None:
    checked = checked_tx(spark, [(None, "x", "2026-05-30", "-2", "0")])
    assertDataFrameEqual(
        broken(checked),
        [
            (1, "transaction_id", v.MISSING_VALUE),
            (1, "customer_id", v.WRONG_TYPE),
            (1, "quantity", v.GREATER_THAN),
            (1, "amount", v.GREATER_THAN),
        ],
    )


def test_messages_show_the_offending_value(spark: SparkSession) -> None:
    checked = checked_tx(
        spark,
        [
            ("t", "7", "2026-05-30 10:00:00", "two", "1.0"),
            ("t", "7", "2027-01-01 00:00:00", "1", "-3.5"),
        ],
    )
    messages = checked.select(v.ROW_NUMBER, F.explode(v.VIOLATIONS).alias("x")).select(
        v.ROW_NUMBER, "x.message"
    )
    assertDataFrameEqual(
        messages,
        [
            (1, "'two' is not a valid int"),
            (2, "2027-01-01 00:00:00 is after the ingest time 2026-06-01 12:00:00"),
            (2, "-3.5 is not greater than 0"),
        ],
    )


CUSTOMER_RULE_CASES = [
    (("1", "2026-01-01", "retail", "north", "true", None), "segment", v.ALLOWED),
    (("1", "2026-01-01", "smb", "mars", "true", None), "region", v.ALLOWED),
    (("1", "2026-01-01", "smb", "north", "maybe", None), "email_opt_in", v.WRONG_TYPE),
    (("1", "2026-07-01", "smb", "north", "true", None), "signup_date", v.NOT_IN_FUTURE),
    (("1", "2026-01-01", "smb", "north", "y", "2025-12-31"), "valid_from", v.BEFORE_KNOWN_FROM),
    (("1", "2026-01-01", "smb", "north", "y", "2026-06-02"), "valid_from", v.NOT_IN_FUTURE),
    ((None, "2026-01-01", "smb", "north", "y", None), "customer_id", v.MISSING_VALUE),
    (("1", None, "smb", "north", "y", None), "signup_date", v.MISSING_VALUE),
    (("1", "01.01.2026", "smb", "north", "y", None), "signup_date", v.WRONG_TYPE),
]


def test_each_customer_rule(spark: SparkSession) -> None:
    checked = checked_cust(spark, [row for row, _, _ in CUSTOMER_RULE_CASES])
    expected = [(i + 1, column, rule) for i, (_, column, rule) in enumerate(CUSTOMER_RULE_CASES)]
    assertDataFrameEqual(broken(checked), expected)


def test_customer_values_are_normalised_and_valid_from_defaults_to_signup(
    spark: SparkSession,
) -> None:
    checked = checked_cust(
        spark,
        [
            ("1", "2026-01-01", " SMB ", "North", "yes", None),
            ("1", "2026-01-01", "enterprise", "north", "0", "2026-03-01"),
            ("2", "2025-05-05", None, None, None, ""),
        ],
    )
    assert broken(checked).count() == 0
    valid = v.valid_rows(checked.withColumn(v.ALREADY_LOADED, F.lit(False)), CUST)
    assertDataFrameEqual(
        valid,
        spark.createDataFrame(
            [
                (1, date(2026, 1, 1), date(2026, 1, 1), "smb", "north", True),
                (1, date(2026, 3, 1), date(2026, 1, 1), "enterprise", "north", False),
                (2, date(2025, 5, 5), date(2025, 5, 5), None, None, None),
            ],
            RAW_CUSTOMERS,
        ),
    )


def test_unknown_entities_and_events_before_the_entity_is_known_are_flagged(
    spark: SparkSession,
) -> None:
    checked = checked_tx(
        spark,
        [
            GOOD_TX,
            ("t2", "8", "2026-05-30 10:00:00", "1", "1.0"),
            ("t3", "x", "2026-05-30", "1", "1"),
            ("t4", "9", "2026-05-31 23:59:59", "1", "1.0"),  # the day before 9 is known
            ("t5", "9", "2026-06-01 00:00:00", "1", "1.0"),
        ],
    )
    known = spark.createDataFrame(
        [(7, date(2026, 1, 1)), (7, date(2026, 3, 1)), (9, date(2026, 6, 1))],
        "key long, valid_from date",
    )
    result = v.check_known_entities(
        checked,
        known,
        key="customer_id",
        timestamp="event_time",
        entity="customer",
        table="raw_customers",
    )
    assertDataFrameEqual(
        broken(result),
        [
            (2, "customer_id", v.UNKNOWN_ENTITY),
            (3, "customer_id", v.WRONG_TYPE),
            (4, "event_time", v.BEFORE_KNOWN_FROM),
        ],
    )
    message = result.filter(F.col(v.ROW_NUMBER) == 4).select(F.col(v.VIOLATIONS)[0]["message"])
    assert message.first()[0] == (
        "event_time 2026-05-31 23:59:59 is before customer 9 is known (first valid_from 2026-06-01)"
    )


def test_duplicates_in_file_keep_the_first_valid_occurrence(spark: SparkSession) -> None:
    checked = checked_tx(
        spark,
        [
            ("t1", "7", "2026-05-30 10:00:00", "-1", "1.0"),  # invalid: does not claim t1
            ("t1", "7", "2026-05-30 10:00:00", "1", "1.0"),
            ("t1", "7", "2026-05-30 11:00:00", "1", "1.0"),
            ("t2", "7", "2026-05-30 10:00:00", "1", "1.0"),
        ],
    )
    result = v.check_duplicates(checked, TX)
    assertDataFrameEqual(
        broken(result),
        [(1, "quantity", v.GREATER_THAN), (3, "transaction_id", v.DUPLICATE)],
    )
    message = result.where(F.col(v.ROW_NUMBER) == 3).select(v.VIOLATIONS).first()
    assert (
        message is not None
        and message[0][0]["message"] == "transaction_id=t1 repeats row 2 of the file"
    )


def test_rows_already_in_the_table_are_skipped_or_rejected(spark: SparkSession) -> None:
    checked = checked_tx(
        spark,
        [
            GOOD_TX,  # identical to the table's row: a rerun, skipped
            ("t2", "7", "2026-05-30 10:00:00", "5", "1.0"),  # same id, other values
            ("t3", "7", "2026-05-30 10:00:00", "1", "1.0"),  # new
        ],
    )
    existing = spark.createDataFrame(
        [
            ("t1", 7, datetime(2026, 5, 30, 10, 0), 2, 19.99, date(2026, 5, 30)),
            ("t2", 7, datetime(2026, 5, 30, 10, 0), 1, 1.0, date(2026, 5, 30)),
        ],
        RAW_TRANSACTIONS,
    )
    result = v.check_duplicates(checked, TX, existing)
    assertDataFrameEqual(broken(result), [(2, "transaction_id", v.DUPLICATE)])
    assertDataFrameEqual(
        result.select(v.ROW_NUMBER, v.ALREADY_LOADED), [(1, True), (2, False), (3, False)]
    )
    assertDataFrameEqual(v.valid_rows(result, TX).select("transaction_id"), [("t3",)])


def test_quarantine_rows_match_the_schema_and_content(spark: SparkSession) -> None:
    checked = checked_tx(spark, [GOOD_TX, ("t2", "7", "2026-05-30 10:00:00", "0", "-1")])
    quarantine = v.quarantine_rows(
        checked,
        source_file="/in/f.csv",
        target_table="raw_transactions",
        ingest_id="abc",
        ingested_at=NOW,
    )
    assert quarantine.schema.names == QUARANTINE.names
    raw = '{"transaction_id":"t2","customer_id":"7","event_time":"2026-05-30 10:00:00","quantity":"0","amount":"-1"}'
    at = datetime(2026, 6, 1, 12, 0)
    expected = [
        (
            "/in/f.csv",
            "raw_transactions",
            2,
            "quantity",
            v.GREATER_THAN,
            "0 is not greater than 0",
            raw,
            "abc",
            at,
            date(2026, 6, 1),
        ),
        (
            "/in/f.csv",
            "raw_transactions",
            2,
            "amount",
            v.GREATER_THAN,
            "-1.0 is not greater than 0",
            raw,
            "abc",
            at,
            date(2026, 6, 1),
        ),
    ]
    assertDataFrameEqual(quarantine, spark.createDataFrame(expected, QUARANTINE))


def test_reject_summary_counts_rows_per_column_and_rule(spark: SparkSession) -> None:
    checked = checked_tx(
        spark,
        [
            ("t1", "7", "2026-05-30 10:00:00", "0", "1"),
            ("t2", "7", "2026-05-30 10:00:00", "0", "-1"),
            GOOD_TX,
            ("t4", "7", None, None, None, "t4,7"),
        ],
    )
    quarantine = v.quarantine_rows(
        checked, source_file="f", target_table="t", ingest_id="i", ingested_at=NOW
    )
    assertDataFrameEqual(
        v.reject_summary(quarantine),
        [
            ("quantity", v.GREATER_THAN, 2, [1, 2]),
            (None, v.MALFORMED, 1, [4]),
            ("amount", v.GREATER_THAN, 1, [2]),
        ],
    )
    assert checked.agg(v.rejected_count()).first()[0] == 3  # type: ignore[index]
