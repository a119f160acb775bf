"""Per-batch scoring, percentiles and output checks: pure functions, real xgboost, no Spark."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb

from scorehouse.features.registry import feature_names, to_matrix
from scorehouse.scoring.batch import load_booster, percentile_ranks, rank_batch, score_batch
from scorehouse.scoring.checks import OutputStats, output_problems, score_stats
from scoring_support import features_pdf, train_booster


@pytest.fixture(scope="module")
def pdf():
    return features_pdf(400, date(2025, 6, 1), seed=4)


@pytest.fixture(scope="module")
def booster(pdf) -> xgb.Booster:
    return train_booster(pdf)


def test_score_batch_equals_booster_predict_on_to_matrix(pdf, booster):
    batch = pa.RecordBatch.from_pandas(pdf, preserve_index=False)
    assert batch.column("days_since_last_purchase").null_count > 0  # missing path exercised
    names = feature_names()
    out = score_batch(batch, [("champion", booster, names)])
    dmatrix = xgb.DMatrix(to_matrix(pdf, names), missing=np.nan, feature_names=names)
    expected = booster.predict(dmatrix)
    assert out.schema.names == ["customer_id", "score_champion"]
    assert out.column("customer_id").to_pylist() == pdf["customer_id"].tolist()
    np.testing.assert_array_equal(out.column("score_champion").to_numpy(), expected)


def test_score_batch_from_broadcast_bytes_matches_original(pdf, booster):
    """The executor's booster, rebuilt from save_raw('ubj'), predicts the same values."""
    rebuilt = load_booster(bytes(booster.save_raw("ubj")), nthread=1)
    batch = pa.RecordBatch.from_pandas(pdf.head(50), preserve_index=False)
    names = feature_names()
    out = score_batch(batch, [("champion", booster, names), ("challenger", rebuilt, names)])
    np.testing.assert_array_equal(
        out.column("score_champion").to_numpy(), out.column("score_challenger").to_numpy()
    )


def test_percentile_is_share_of_scores_at_or_below():
    day = np.array([0.1, 0.5, 0.5, 0.9], dtype=np.float32)
    ranks = percentile_ranks(day, np.sort(day))
    np.testing.assert_allclose(ranks, [0.25, 0.75, 0.75, 1.0])


def test_rank_batch_keeps_ids_and_widens_scores():
    batch = pa.RecordBatch.from_arrays(
        [pa.array([7, 8, 9], pa.int64()), pa.array([0.3, 0.1, 0.2], pa.float32())],
        names=["customer_id", "score_champion"],
    )
    out = rank_batch(batch, np.sort(np.array([0.3, 0.1, 0.2, 0.4], dtype=np.float32)))
    assert out.column("customer_id").to_pylist() == [7, 8, 9]
    assert out.column("score").type == pa.float64()
    assert out.column("percentile").to_pylist() == [0.75, 0.25, 0.5]


def _stats(**overrides) -> OutputStats:
    base = dict(
        role="champion",
        rows=10,
        distinct_entities=10,
        snapshot_rows=10,
        nulls=0,
        nans=0,
        min_score=0.01,
        max_score=0.99,
    )
    return OutputStats(**{**base, **overrides})


def test_clean_output_has_no_problems():
    assert output_problems(_stats()) == []


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"distinct_entities": 9}, "1 duplicates"),
        ({"rows": 9, "distinct_entities": 9}, "9 scores for 10 snapshot rows"),
        ({"nulls": 2}, "2 null scores"),
        ({"nans": 1}, "1 NaN scores"),
        ({"max_score": 1.5}, "above 1"),
        ({"min_score": -0.1}, "below 0"),
        ({"rows": 0, "distinct_entities": 0, "snapshot_rows": 0}, "snapshot is empty"),
    ],
)
def test_each_broken_rule_is_named(overrides, fragment):
    problems = output_problems(_stats(**overrides))
    assert len(problems) == 1
    assert fragment in problems[0]


def test_score_stats_counts_nulls_and_nans_apart():
    stats = score_stats("champion", pa.array([0.2, None, float("nan"), 0.8]), 4, 4)
    assert (stats.nulls, stats.nans, stats.min_score, stats.max_score) == (1, 1, 0.2, 0.8)
