"""Feature transforms against a brute-force oracle, and the two build paths against each other."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from feature_oracle import oracle_features
from scorehouse.features import transforms
from scorehouse.features.registry import feature_names, feature_sql
from scorehouse.schemas import RAW_CUSTOMERS, RAW_TRANSACTIONS

START = date(2026, 1, 1)
HISTORY_START = date(2024, 1, 1)  # before every event the tests make


def _customers(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, RAW_CUSTOMERS)


def _transactions(spark: SparkSession, rows: list[tuple[int, date, int, float]]) -> DataFrame:
    data = [
        (f"t{i}", cid, datetime(d.year, d.month, d.day, 12), qty, amount, d)
        for i, (cid, d, qty, amount) in enumerate(rows)
    ]
    return spark.createDataFrame(data, RAW_TRANSACTIONS)


def _build_range(customers: DataFrame, transactions: DataFrame, days: list[date]) -> DataFrame:
    sql = feature_sql()
    history = transforms.day_range(HISTORY_START, max(days))
    daily = {"transactions": transforms.daily_rollups(sql, "transactions", transactions, history)}
    return transforms.features_from_state(
        sql, transforms.state_for_days(sql, daily, customers, days)
    )


def _build_chained(customers: DataFrame, transactions: DataFrame, days: list[date]) -> DataFrame:
    sql = feature_sql()
    history = transforms.day_range(HISTORY_START, max(days))
    daily = {
        "transactions": transforms.daily_rollups(sql, "transactions", transactions, history).cache()
    }
    state = transforms.state_for_days(sql, daily, customers, days[:1])
    frames = [state]
    for ds in days[1:]:
        state = transforms.next_day_state(sql, state, daily, customers, ds).localCheckpoint()
        frames.append(state)
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return transforms.features_from_state(sql, out)


def _assert_matches_oracle(
    features: DataFrame, customers: DataFrame, transactions: DataFrame, days: list[date]
) -> None:
    cust = customers.toPandas()
    tx = transactions.toPandas()
    expected = [row for ds in days for row in oracle_features(cust, tx, ds)]
    actual = (
        features.select("customer_id", "ds", *feature_names())
        .orderBy("ds", "customer_id")
        .collect()
    )
    expected.sort(key=lambda r: (r["ds"], r["customer_id"]))
    assert len(actual) == len(expected)
    mismatches = []
    for got, want in zip(actual, expected, strict=True):
        for name in ["customer_id", "ds", *feature_names()]:
            a, b = got[name], want[name]
            same = (a is None and b is None) or (
                a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
                if not isinstance(a, date)
                else a == b
            )
            if not same:
                mismatches.append((want["customer_id"], want["ds"], name, a, b))
    assert mismatches == []


def test_features_match_oracle_on_a_hand_made_history(spark: SparkSession) -> None:
    customers = _customers(
        spark,
        [
            (1, date(2025, 6, 1), date(2025, 6, 1), "consumer", "north", False),
            (1, date(2026, 1, 3), date(2025, 6, 1), "smb", "north", True),  # upgrade on Jan 3
            (2, date(2025, 12, 30), date(2025, 12, 30), "enterprise", "west", True),
            (3, date(2026, 1, 4), date(2026, 1, 4), "consumer", "east", False),  # signs up later
        ],
    )
    transactions = _transactions(
        spark,
        [
            (1, date(2025, 1, 10), 1, 5.00),  # more than 365 days before: lifetime only
            (1, date(2025, 12, 1), 2, 10.10),
            (1, date(2025, 12, 26), 1, 3.33),
            (1, date(2026, 1, 2), 4, 7.77),
            (1, date(2026, 1, 2), 1, 0.01),
            (2, date(2026, 1, 3), 1, 99.99),
            (3, date(2026, 1, 5), 3, 12.50),
        ],
    )
    days = transforms.day_range(START, START + timedelta(days=5))
    _assert_matches_oracle(
        _build_range(customers, transactions, days), customers, transactions, days
    )


def test_next_day_chain_equals_range_build(spark: SparkSession) -> None:
    customers = _customers(
        spark,
        [
            (c, date(2025, 1, 1), date(2025, 1, 1), "consumer", "south", c % 2 == 0)
            for c in range(1, 6)
        ],
    )
    rows = []
    for c in range(1, 6):
        for k in range(0, 420, 3 + c):
            rows.append((c, date(2025, 1, 1) + timedelta(days=k), 1 + k % 3, 1.25 * c + k / 100))
    transactions = _transactions(spark, rows)
    # Spans the days where the 7/30/90/365-day windows drop old rollups.
    days = transforms.day_range(date(2026, 1, 28), date(2026, 2, 6))
    assertDataFrameEqual(
        _build_chained(customers, transactions, days),
        _build_range(customers, transactions, days),
    )


def test_next_day_chain_follows_signups_and_attribute_changes(spark: SparkSession) -> None:
    first = date(2026, 2, 1)  # range-built; the chain advances Feb 2..6 from it
    customers = _customers(
        spark,
        [
            (1, date(2025, 1, 1), date(2025, 1, 1), "consumer", "south", True),
            (1, date(2026, 2, 3), date(2025, 1, 1), "smb", "east", False),  # changes Feb 3
            (1, date(2026, 2, 5), date(2025, 1, 1), "enterprise", "east", True),  # and Feb 5
            (2, date(2026, 2, 2), date(2026, 2, 2), "smb", "north", False),  # signs up Feb 2
            (3, date(2026, 2, 4), date(2026, 2, 4), "consumer", "west", None),  # signs up Feb 4
            (3, date(2026, 2, 6), date(2026, 2, 4), "consumer", "north", True),
            (4, date(2026, 2, 1), date(2026, 2, 1), "enterprise", "west", True),  # on `first`
            (5, date(2026, 3, 1), date(2026, 3, 1), "consumer", "east", False),  # after the days
            (6, date(2025, 6, 1), date(2025, 6, 1), "consumer", "south", False),  # never buys
        ],
    )
    transactions = _transactions(
        spark,
        [
            (1, date(2025, 2, 2), 1, 3.0),  # leaves the 365-day window on Feb 2
            (1, date(2026, 1, 3), 2, 4.5),  # leaves the 30-day window on Feb 2
            (1, date(2026, 2, 3), 1, 9.99),
            (2, date(2026, 2, 2), 4, 20.0),
            (2, date(2026, 2, 5), 1, 1.0),
            (3, date(2026, 2, 4), 2, 7.0),
            (3, date(2026, 2, 6), 1, 8.25),
            (4, date(2026, 2, 1), 1, 5.0),
            (4, date(2026, 2, 6), 1, 6.0),
            (5, date(2026, 3, 1), 1, 1.0),
        ],
    )
    days = transforms.day_range(first, date(2026, 2, 6))
    chained = _build_chained(customers, transactions, days)
    assertDataFrameEqual(chained, _build_range(customers, transactions, days))
    _assert_matches_oracle(chained, customers, transactions, days)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple], list[tuple]]:
    n_customers = draw(st.integers(1, 4))
    customers = []
    for cid in range(1, n_customers + 1):
        signup = START - timedelta(days=draw(st.integers(-3, 500)))
        segment = draw(st.sampled_from(["consumer", "smb", "enterprise", "other"]))
        customers.append(
            (
                cid,
                signup,
                signup,
                segment,
                draw(st.sampled_from(["north", "west"])),
                draw(st.booleans()),
            )
        )
        if draw(st.booleans()):  # a later attribute version
            changed = signup + timedelta(days=draw(st.integers(1, 600)))
            customers.append(
                (
                    cid,
                    changed,
                    signup,
                    draw(st.sampled_from(["smb", "enterprise"])),
                    "east",
                    draw(st.booleans()),
                )
            )
    events = draw(
        st.lists(
            st.tuples(
                st.integers(1, n_customers),
                st.integers(-500, 10),  # day offset from START; > end of days = future events
                st.integers(1, 5),
                st.integers(1, 50_000).map(lambda c: c / 100),
            ),
            max_size=40,
        )
    )
    tx = [(cid, START + timedelta(days=off), q, a) for cid, off, q, a in events]
    return customers, tx


# Each example runs Spark jobs: no shrinking phase (it would take minutes); the failing
# example is printed as generated.
@hyp_settings(
    max_examples=15,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(history=histories(), offset=st.integers(0, 3))
def test_every_feature_matches_brute_force_oracle(
    spark: SparkSession, history: tuple, offset: int
) -> None:
    customer_rows, tx_rows = history
    customers = _customers(spark, customer_rows)
    transactions = _transactions(spark, tx_rows)
    days = [START + timedelta(days=offset), START + timedelta(days=offset + 2)]
    _assert_matches_oracle(
        _build_range(customers, transactions, days), customers, transactions, days
    )
