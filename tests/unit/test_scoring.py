"""Per-batch scoring, percentiles and output checks: pure functions, real xgboost, no Spark."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb

from scorehouse.features.registry import feature_names, to_matrix
from scorehouse.schemas import PREDICTIONS, EntityKey
from scorehouse.scoring import batch
from scorehouse.scoring.batch import (
    RoleRows,
    RunRows,
    load_booster,
    percentile_ranks,
    predictions_file_schema,
    predictions_table,
    score_batch,
)
from scorehouse.scoring.checks import OutputStats, distinct_count, output_problems, score_stats
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
    out = score_batch(batch, [("champion", booster, names)], "customer_id")
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
    out = score_batch(
        batch,
        [("champion", booster, names), ("challenger", rebuilt, names)],
        "customer_id",
    )
    np.testing.assert_array_equal(
        out.column("score_champion").to_numpy(), out.column("score_challenger").to_numpy()
    )


def test_percentile_is_share_of_scores_at_or_below():
    day = np.array([0.1, 0.5, 0.5, 0.9], dtype=np.float32)
    ranks = percentile_ranks(day, np.sort(day))
    np.testing.assert_allclose(ranks, [0.25, 0.75, 0.75, 1.0])


def test_percentile_chunks_give_the_whole_day_ranks(monkeypatch):
    """Ranking chunk by chunk equals one searchsorted of every score, ties included."""
    rng = np.random.default_rng(5)
    day = rng.integers(0, 50, 1000).astype(np.float32) / 50  # many ties
    expected = np.searchsorted(np.sort(day), day, side="right") / len(day)
    monkeypatch.setattr(batch, "RANK_CHUNK", 64)
    np.testing.assert_array_equal(percentile_ranks(day, np.sort(day)), expected)


def test_predictions_table_has_the_file_columns_in_contract_order():
    ids = pa.array([7, 8, 9], pa.int64())
    scores = np.array([0.3, 0.1, 0.2], dtype=np.float32)
    day = np.sort(np.array([0.3, 0.1, 0.2, 0.4], dtype=np.float32))
    scored_at = datetime(2025, 6, 2, 3, 4, 5, tzinfo=UTC)
    out = predictions_table(
        ids,
        scores,
        day,
        RoleRows("champion", "propensity", "3", "run-1"),
        RunRows(12, scored_at, None),
        EntityKey("customer_id"),
    )
    assert out.schema.names == [n for n in PREDICTIONS.names if n != "ds"]
    assert out.schema.field("model_role").type == pa.dictionary(pa.int8(), pa.string())
    assert out.cast(predictions_file_schema(EntityKey("customer_id"))).to_pydict() == {
        "customer_id": [7, 8, 9],
        "score": [float(np.float32(0.3)), float(np.float32(0.1)), float(np.float32(0.2))],
        "percentile": [0.75, 0.25, 0.5],
        "model_name": ["propensity"] * 3,
        "model_version": ["3"] * 3,
        "model_role": ["champion"] * 3,
        "mlflow_run_id": ["run-1"] * 3,
        "features_version": [12] * 3,
        "scored_at": [scored_at] * 3,
        "flow_run_id": [None] * 3,
        "experiment": [None] * 3,
        "arm": [None] * 3,
    }


@pytest.mark.parametrize(
    ("ids", "distinct"),
    [([], 0), ([5], 1), ([3, 1, 2], 3), ([4, 1, 4, 2, 1], 3), ([-(2**62), 2**62, 0], 3)],
)
def test_distinct_count(ids, distinct):
    assert distinct_count(np.array(ids, dtype=np.int64)) == distinct


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
