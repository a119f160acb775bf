"""The demo generator: deterministic per seed, exact schemas, and the planted behaviour."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from scorehouse.data import generate as gen
from scorehouse.schemas import RAW_CUSTOMERS, RAW_TRANSACTIONS

START = date(2026, 1, 5)  # a Monday
DAYS = 150


@pytest.fixture(scope="module")
def generated(spark: SparkSession) -> tuple[pd.DataFrame, pd.DataFrame]:
    customers, transactions = gen.generate(spark, customers=4000, start=START, days=DAYS, seed=11)
    return customers.toPandas(), transactions.toPandas()


def test_same_seed_same_data_whatever_the_partitioning(spark: SparkSession) -> None:
    def run(partitions: int, seed: int = 3) -> tuple[DataFrame, DataFrame]:
        return gen.generate(
            spark, customers=300, start=START, days=40, seed=seed, partitions=partitions
        )

    one_c, one_t = run(1)
    three_c, three_t = run(3)
    assertDataFrameEqual(three_c, one_c)
    assertDataFrameEqual(three_t, one_t)
    _, other_t = run(3, seed=4)
    assert other_t.exceptAll(one_t).count() > 0


def test_schemas_are_exactly_the_contracts(spark: SparkSession) -> None:
    customers, transactions = gen.generate(spark, customers=10, start=START, days=5, seed=1)
    assert customers.schema == RAW_CUSTOMERS
    assert transactions.schema == RAW_TRANSACTIONS


def test_transactions_keep_the_contract(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    _, tx = generated
    assert 50_000 < len(tx) < 200_000  # 4000 customers x 150 days, ~10-40 purchases each
    assert tx.transaction_id.is_unique
    assert (tx.quantity >= 1).all()
    assert (tx.amount > 0).all()
    assert np.allclose(tx.amount, tx.amount.round(2))
    event_day = tx.event_time.dt.normalize().dt.date
    assert (event_day == tx.ds).all()
    assert tx.ds.min() >= START and tx.ds.max() <= START + timedelta(days=DAYS - 1)


def test_customer_history_starts_at_signup_and_has_changes(
    generated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    cust, _ = generated
    assert cust.customer_id.nunique() == 4000
    assert not cust.duplicated(["customer_id", "valid_from"]).any()
    first = cust.sort_values("valid_from").groupby("customer_id").first()
    assert (first.valid_from == first.signup_date).all()
    changed = cust.customer_id.value_counts()
    assert 0.1 < (changed > 1).mean() < 0.4
    later = cust[cust.valid_from > cust.signup_date]
    assert (later.valid_from <= START + timedelta(days=DAYS - 1)).all()
    assert set(cust.segment) == set(gen.SEGMENTS)
    assert set(cust.region) == set(gen.REGIONS)


def test_new_signups_buy_only_after_signing_up(
    generated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    cust, tx = generated
    signup = cust.groupby("customer_id").signup_date.first()
    new = signup[signup >= START]
    assert 0.15 < len(new) / len(signup) < 0.45
    joined = tx.join(signup, on="customer_id")
    assert (joined.ds >= joined.signup_date).all()
    assert joined[joined.customer_id.isin(new.index)].customer_id.nunique() > 0.5 * len(new)


def test_weekends_belong_to_consumers(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    cust, tx = generated
    segment = cust.sort_values("valid_from").groupby("customer_id").segment.first()
    tx = tx.join(segment, on="customer_id")
    weekend = pd.to_datetime(tx.ds).dt.dayofweek >= 5
    days = pd.Series(pd.date_range(START, periods=DAYS)).dt.dayofweek >= 5
    n_weekend, n_weekday = days.sum(), (~days).sum()

    def weekend_lift(rows: pd.Series) -> float:
        return (rows & weekend).sum() / n_weekend / ((rows & ~weekend).sum() / n_weekday)

    assert weekend_lift(tx.segment == "consumer") > 1.3
    assert weekend_lift(tx.segment == "enterprise") < 0.6


def test_churned_customers_stop_buying() -> None:
    ids = np.arange(1, 3001)
    customers = gen._draw_customers(ids, 5, 200)
    counts, churn_day = gen._simulate(customers, 5, START, 200)
    during = (churn_day >= 0) & (churn_day < 200)
    assert 0.05 < during.mean() < 0.5
    after_churn = np.arange(200)[None, :] >= churn_day[:, None]
    assert counts[after_churn].sum() == 0
    assert counts[customers.churned_before].sum() == 0
    # Visible in the data too: many early buyers go silent for good.
    early, late = counts[:, :60].sum(1) > 0, counts[:, -60:].sum(1) > 0
    assert (early & ~late).sum() > 0.1 * early.sum()


def test_next_30_days_label_is_predictable_but_not_trivial(
    generated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    cust, tx = generated
    signup = cust.groupby("customer_id").signup_date.first()
    cutoff = START + timedelta(days=90)
    eligible = signup[signup <= cutoff].index
    future = tx[(tx.ds > cutoff) & (tx.ds <= cutoff + timedelta(days=30))]
    recent = tx[(tx.ds > cutoff - timedelta(days=30)) & (tx.ds <= cutoff)]
    label = pd.Series(eligible.isin(future.customer_id), index=eligible)
    bought_recently = pd.Series(eligible.isin(recent.customer_id), index=eligible)
    assert 0.15 < label.mean() < 0.70
    p_recent, p_quiet = label[bought_recently].mean(), label[~bought_recently].mean()
    assert p_recent > 2 * p_quiet  # recency carries signal ...
    assert p_recent < 0.95 and p_quiet > 0.05  # ... but does not decide the label alone


def test_spending_drifts_upwards() -> None:
    ids = np.arange(1, 2001)
    customers = gen._draw_customers(ids, 9, 730)
    alive = ~customers.churned_before & (customers.signup_day < 0)
    counts, churn_day = gen._simulate(customers, 9, START, 730)
    # Among customers alive all along, the second year has more purchases than the first.
    kept = alive & (churn_day >= 730)
    assert counts[kept, 365:].sum() > 1.1 * counts[kept, :365].sum()


def test_rejects_nonsense_arguments(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        gen.generate(spark, customers=0, start=START, days=5, seed=1)
    with pytest.raises(ValueError, match="seed"):
        gen.generate(spark, customers=5, start=START, days=5, seed=-1)


def test_default_start_ends_the_history_yesterday() -> None:
    start = gen.default_start(180, today=date(2026, 11, 23))
    assert start == date(2026, 5, 27)
    assert start + timedelta(days=179) == date(2026, 11, 22)


def test_row_counts_do_not_depend_on_spark(spark: SparkSession) -> None:
    """The Spark path and the numpy model agree (no rows lost in the Arrow hand-off)."""
    _, transactions = gen.generate(spark, customers=200, start=START, days=30, seed=2)
    customers = gen._draw_customers(np.arange(1, 201), 2, 30)
    counts, _ = gen._simulate(customers, 2, START, 30)
    assert transactions.count() == counts.sum()
    per_day = transactions.groupBy("ds").count().orderBy("ds").toPandas()
    by_day = dict(zip(per_day.ds, per_day["count"], strict=True))
    expected = {START + timedelta(days=d): int(n) for d, n in enumerate(counts.sum(0)) if n}
    assert by_day == expected
    assert transactions.select(F.max("amount")).first()[0] > 0
