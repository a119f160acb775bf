"""PSI, binning, null rates and drift levels against hand-computed values."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from scorehouse.monitoring.drift import DriftError, DriftReport, compare, feature_drift
from scorehouse.monitoring.histograms import histogram_batch
from scorehouse.monitoring.psi import bin_counts, drift_level, null_rate, psi, quantile_edges
from scorehouse.monitoring.reference import FeatureBins, FeatureReference
from scorehouse.settings import MonitoringSettings

LEVELS = MonitoringSettings(psi_warn=0.1, psi_critical=0.2)


def test_psi_matches_hand_computation():
    # shares e = (0.5, 0.5), a = (0.7, 0.3):
    # (0.7-0.5) ln(0.7/0.5) + (0.3-0.5) ln(0.3/0.5) = 0.2*0.336472 + 0.2*0.510826 = 0.169460
    assert psi([50, 50], [70, 30]) == pytest.approx(0.2 * math.log(1.4) + 0.2 * math.log(5 / 3))
    assert psi([50, 50], [70, 30]) == pytest.approx(0.169459, abs=1e-6)


def test_psi_of_identical_distributions_is_zero_and_scale_free():
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)


def test_psi_floors_empty_bins_at_epsilon():
    # e = (1, 0) → (1, 1e-4); a = (0.5, 0.5): 0.5 ln(0.5/1) ... by hand
    expected = (0.5 - 1) * math.log(0.5 / 1) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi([10, 0], [5, 5]) == pytest.approx(expected)


def test_psi_refuses_different_bins():
    with pytest.raises(ValueError, match="bins differ"):
        psi([1, 2], [1, 2, 3])


def test_bin_counts_put_missing_first_and_use_right_closed_bins():
    values = np.array([np.nan, 0.0, 1.0, 1.5, 2.0, 9.0, np.nan])
    # bins: missing, (-inf, 1], (1, 2], (2, inf)
    assert bin_counts(values, np.array([1.0, 2.0])).tolist() == [2, 2, 2, 1]


def test_quantile_edges_collapse_point_masses():
    values = np.array([0.0] * 80 + list(range(1, 21)), dtype=float)
    edges = quantile_edges(values, 10)
    assert edges[0] == 0.0
    assert len(edges) == len(set(edges.tolist()))
    assert len(edges) < 9


def test_null_rate():
    assert null_rate([3, 5, 2]) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("value", "level"),
    [(0.0, "ok"), (0.099, "ok"), (0.1, "warn"), (0.19, "warn"), (0.2, "critical")],
)
def test_drift_levels_at_thresholds(value, level):
    assert drift_level(value, LEVELS) == level


def test_feature_drift_rows_against_both_baselines():
    reference = FeatureReference({"x": FeatureBins((1.0,), (0, 50, 50))}, "training_set@1", 2)
    rows = feature_drift(
        {"x": np.array([10, 70, 20])},
        {"x": np.array([0, 50, 50])},
        date(2025, 1, 1),
        reference,
        LEVELS,
    )
    assert [(r.baseline, r.baseline_ds) for r in rows] == [
        ("training", None),
        ("previous_day", date(2025, 1, 1)),
    ]
    assert rows[0].null_rate == pytest.approx(0.1)
    assert rows[0].baseline_null_rate == 0.0
    assert rows[0].level == "critical"  # a tenth of the values became missing


def test_report_level_summary_and_fail_on():
    ok = compare("feature", "a", "training", None, [50, 50], [50, 50], LEVELS)
    warn = compare("feature", "b", "training", None, [50, 50], [70, 30], LEVELS)
    report = DriftReport(date(2025, 1, 2), (ok, warn))
    assert report.level == "warn"
    fields = report.summary_fields()
    assert fields["drift_warn"] == ("b vs training",)
    assert fields["drift_critical"] == ()
    report.raise_if(None)
    report.raise_if("critical")  # warn is below critical: no error
    with pytest.raises(DriftError, match=r"b vs training: PSI 0\.169 \(warn\)"):
        report.raise_if("warn")


def test_reference_json_round_trip():
    reference = FeatureReference({"x": FeatureBins((0.5, 2.0), (1, 2, 3, 4))}, "t@3", 10)
    assert FeatureReference.from_json(reference.to_json()) == reference
    with_score = FeatureReference(
        {"x": FeatureBins((0.5,), (0, 1, 1))}, "t@4", 2, score=FeatureBins((0.3,), (0, 5, 6))
    )
    assert FeatureReference.from_json(with_score.to_json()) == with_score


def test_summary_keeps_score_psi_per_baseline():
    night = compare("score", "score", "previous_day", date(2025, 1, 1), [50, 50], [70, 30], LEVELS)
    training = compare("score", "score", "training", None, [50, 50], [50, 50], LEVELS)
    fields = DriftReport(date(2025, 1, 2), (training, night)).summary_fields()
    assert fields["score_psi"] == pytest.approx(night.psi)
    assert fields["score_psi_training"] == 0.0


def test_histogram_batch_groups_by_day():
    batch = pa.RecordBatch.from_pydict(
        {"ds": ["d1", "d1", "d2"], "x": pa.array([1, None, 5], pa.int64())}
    )
    out = histogram_batch(batch, {"x": np.array([2.0])}, "ds").to_pylist()
    counts = {(r["grp"], r["bin"]): r["count"] for r in out}
    assert counts == {
        ("d1", 0): 1,
        ("d1", 1): 1,
        ("d1", 2): 0,
        ("d2", 0): 0,
        ("d2", 1): 0,
        ("d2", 2): 1,
    }
