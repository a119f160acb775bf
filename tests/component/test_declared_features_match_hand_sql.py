"""The purchase example's declarations give the values the hand-written feature SQL gave.

The hand SQL (sql/features/customer_*.sql) is what the declarations replace; this test
ran against it on generated data before it was deleted."""

from __future__ import annotations

import math
from datetime import date, timedelta

from pyspark.sql import SparkSession

from scorehouse.data.generate import generate
from scorehouse.features import transforms
from scorehouse.features.registry import feature_names, feature_sql
from scorehouse.sqlfiles import run_sql

START = date(2025, 1, 1)


def test_purchase_declarations_equal_hand_sql_on_generated_data(spark: SparkSession) -> None:
    customers, transactions = generate(spark, customers=400, start=START, days=430, seed=11)
    customers, transactions = customers.cache(), transactions.cache()
    history = transforms.day_range(START, START + timedelta(days=429))
    days = history[-3:]
    old_daily = run_sql(
        spark,
        "features/customer_daily",
        {"transactions": transactions, "days": transforms.days_frame(spark, history)},
    )
    old_entities = run_sql(
        spark,
        "features/customer_entities",
        {"customers": customers, "days": transforms.days_frame(spark, days)},
    )
    old_state = run_sql(
        spark,
        "features/customer_state_range",
        {"daily": old_daily, "entities": old_entities, "days": transforms.days_frame(spark, days)},
    )
    old = run_sql(spark, "features/customer_features", {"state": old_state})
    sql = feature_sql()
    daily = {"transactions": transforms.daily_rollups(sql, "transactions", transactions, history)}
    new = transforms.features_from_state(
        sql, transforms.state_for_days(sql, daily, customers, days)
    )
    names = feature_names()
    want = {(r.customer_id, r.ds): r for r in old.select("customer_id", "ds", *names).collect()}
    got = {(r.customer_id, r.ds): r for r in new.select("customer_id", "ds", *names).collect()}
    assert set(got) == set(want) and len(got) > 1000
    mismatches = [
        (key, name, got[key][name], want[key][name])
        for key in want
        for name in names
        if not (
            (got[key][name] is None and want[key][name] is None)
            or (
                got[key][name] is not None
                and want[key][name] is not None
                and math.isclose(got[key][name], want[key][name], rel_tol=1e-12)
            )
        )
    ]
    assert mismatches == []
