"""Each sql/analyst/*.sql on small inline tables, against values worked out by hand."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import product

import pytest
from pyspark.sql import SparkSession

from scorehouse.schemas import PREDICTIONS
from scorehouse.scoring.analyst import analyst_query
from scorehouse.sqlfiles import sql_path

DS = date(2025, 6, 1)
AT = datetime(2025, 6, 2, 3, 0)


def prediction(cid, score, pct, role="champion", version="1", ds=DS):
    return (cid, ds, score, pct, "m", version, role, "run", 5, AT, None, None, None)


@pytest.fixture
def views(spark: SparkSession):
    rows = [
        prediction(1, 0.9, 1.0),
        prediction(2, 0.5, 0.75),
        prediction(3, 0.2, 0.5),
        prediction(4, 0.1, 0.25),
        prediction(1, 0.8, 1.0, "challenger", "2"),
        prediction(2, 0.1, 0.25, "challenger", "2"),
        prediction(3, 0.3, 0.75, "challenger", "2"),
        prediction(4, 0.2, 0.5, "challenger", "2"),
        prediction(9, 0.99, 1.0, ds=DS - timedelta(days=1)),  # another day: never counted
    ]
    spark.createDataFrame(rows, PREDICTIONS).createOrReplaceTempView("t_predictions")
    spark.createDataFrame(
        [(1, DS, "smb"), (2, DS, "smb"), (3, DS, "consumer"), (4, DS, None)],
        "customer_id long, ds date, segment string",
    ).createOrReplaceTempView("t_features")
    return "t_predictions"


def test_every_analyst_query_is_covered():
    tested = {
        "top_customers",
        "score_distribution_by_segment",
        "compare_model_versions",
        "realized_auc",
    }
    assert {p.stem for p in sql_path("analyst/x").parent.glob("*.sql")} == tested


def test_top_customers(spark, views):
    out = analyst_query(spark, "top_customers", predictions=views, ds=DS).collect()
    assert [(r.customer_id, r.score) for r in out] == [(1, 0.9), (2, 0.5), (3, 0.2), (4, 0.1)]


def test_score_distribution_by_segment(spark, views):
    out = analyst_query(
        spark, "score_distribution_by_segment", predictions=views, features="t_features", ds=DS
    ).collect()
    got = {r.segment: (r.customers, round(r.mean_score, 6), r.share_in_top_decile) for r in out}
    assert got == {
        "consumer": (1, 0.2, 0.0),
        "smb": (2, 0.7, 0.5),
        "unknown": (1, 0.1, 0.0),
    }


def test_compare_model_versions(spark, views):
    (row,) = analyst_query(spark, "compare_model_versions", predictions=views, ds=DS).collect()
    assert (row.champion_version, row.challenger_version, row.customers) == ("1", "2", 4)
    # |diffs| = 0.1, 0.4, 0.1, 0.1
    assert row.mean_abs_diff == pytest.approx(0.175)
    assert row.max_abs_diff == pytest.approx(0.4)
    assert row.top_decile_overlap == pytest.approx(1.0)  # customer 1 tops both


def brute_force_auc(scores: list[float], labels: list[int]) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_realized_auc_by_rank_statistics(spark: SparkSession):
    day2 = DS + timedelta(days=1)
    late = DS + timedelta(days=40)  # its horizon has not passed by outcomes_through
    scores = {1: 0.9, 2: 0.7, 3: 0.7, 4: 0.4, 5: 0.2, 6: 0.7}
    rows = [prediction(c, s, 0.5) for c, s in scores.items()]
    rows += [prediction(c, 1 - s, 0.5, "challenger", "2") for c, s in scores.items()]
    rows += [prediction(c, 0.5, 0.5, ds=day2) for c in (1, 2)]
    rows += [prediction(c, 0.5, 0.5, ds=late) for c in (1, 2)]
    spark.createDataFrame(rows, PREDICTIONS).createOrReplaceTempView("r_predictions")
    # Purchases: on ds itself (does not count), inside the horizon, and after it.
    txns = [
        (1, DS + timedelta(days=3)),
        (2, DS + timedelta(days=30)),  # last day of the horizon: counts
        (3, DS),  # same day as the score: not an outcome
        (4, DS + timedelta(days=31)),  # after the horizon
        (6, DS + timedelta(days=10)),
        (6, DS + timedelta(days=11)),  # twice: still one positive
        (2, day2 + timedelta(days=1)),
    ]
    spark.createDataFrame(txns, "customer_id long, ds date").createOrReplaceTempView("r_txns")
    out = analyst_query(
        spark,
        "realized_auc",
        predictions="r_predictions",
        transactions="r_txns",
        start=DS,
        end=late,
        outcomes_through=DS + timedelta(days=35),
    ).collect()
    got = {(r.ds, r.model_role): r for r in out}
    assert set(got) == {(DS, "champion"), (DS, "challenger"), (day2, "champion")}
    labels = [1, 1, 0, 0, 0, 1]  # customers 1..6
    champion = got[(DS, "champion")]
    assert (champion.customers, champion.positives) == (6, 3)
    assert champion.auc == pytest.approx(brute_force_auc(list(scores.values()), labels))
    challenger = got[(DS, "challenger")]
    assert challenger.auc == pytest.approx(
        brute_force_auc([1 - s for s in scores.values()], labels)
    )
    # Both customers of day 2 bought within its horizon: one class, AUC undefined.
    assert (got[(day2, "champion")].positives, got[(day2, "champion")].auc) == (2, None)
