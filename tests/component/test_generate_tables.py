"""`write_generated` replaces the raw tables through the warehouse layer."""

from __future__ import annotations

from datetime import date

from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from scorehouse.data.generate import generate, write_generated
from scorehouse.schemas import RAW_CUSTOMERS, RAW_TRANSACTIONS
from scorehouse.settings import Settings
from scorehouse.storage.warehouse import Warehouse

START = date(2026, 3, 1)


def test_generated_tables_hold_exactly_the_generated_rows(
    spark: SparkSession, settings: Settings
) -> None:
    first = write_generated(spark, settings, customers=300, start=START, days=20, seed=5)
    customers, transactions = generate(spark, customers=300, start=START, days=20, seed=5)
    wh = Warehouse.from_settings(spark, settings)

    assert wh.schema("raw_customers") == RAW_CUSTOMERS
    assert wh.schema("raw_transactions") == RAW_TRANSACTIONS
    assert wh.partition_columns("raw_transactions") == ["ds"]
    assertDataFrameEqual(wh.read("raw_customers"), customers)
    assertDataFrameEqual(wh.read("raw_transactions"), transactions)
    assert first.transaction_rows == transactions.count()
    assert first.end == date(2026, 3, 20)

    # Generating again replaces both tables rather than adding to them.
    second = write_generated(spark, settings, customers=100, start=START, days=20, seed=5)
    assert second.transactions_version == first.transactions_version + 1
    assert wh.read("raw_customers").select("customer_id").distinct().count() == 100
    assert wh.read("raw_transactions").count() == second.transaction_rows
