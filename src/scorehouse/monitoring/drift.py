"""Drift rows and the day's drift report: pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from scorehouse.errors import ValidationError
from scorehouse.monitoring.psi import (
    LEVELS,
    bin_counts,
    drift_level,
    level_at_least,
    null_rate,
    psi,
    quantile_edges,
)
from scorehouse.settings import MonitoringSettings

if TYPE_CHECKING:
    from scorehouse.monitoring.reference import FeatureReference

TRAINING = "training"
PREVIOUS_DAY = "previous_day"
SCORE = "score"


class DriftError(ValidationError):
    """Drift reached the level given by --fail-on; predictions were not committed."""

    exit_code = 3


@dataclass(frozen=True)
class DriftRow:
    """One monitored series against one baseline (a row of the monitoring table)."""

    kind: str
    name: str
    baseline: str
    baseline_ds: date | None
    psi: float
    level: str
    null_rate: float
    baseline_null_rate: float
    rows: int
    baseline_rows: int

    @property
    def label(self) -> str:
        against = (
            self.baseline if self.baseline_ds is None else f"{self.baseline} {self.baseline_ds}"
        )
        return f"{self.name} vs {against}"


def compare(
    kind: str,
    name: str,
    baseline: str,
    baseline_ds: date | None,
    expected: Sequence[int] | np.ndarray,
    actual: Sequence[int] | np.ndarray,
    monitoring: MonitoringSettings,
) -> DriftRow:
    """The DriftRow of `actual` counts against `expected` counts on the same bins."""
    value = psi(expected, actual)
    return DriftRow(
        kind=kind,
        name=name,
        baseline=baseline,
        baseline_ds=baseline_ds,
        psi=value,
        level=drift_level(value, monitoring),
        null_rate=null_rate(actual),
        baseline_null_rate=null_rate(expected),
        rows=int(np.sum(actual)),
        baseline_rows=int(np.sum(expected)),
    )


@dataclass(frozen=True)
class DriftReport:
    """A day's drift rows, with what the run summary and --fail-on need."""

    ds: date
    rows: tuple[DriftRow, ...]
    monitoring_version: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)  # baselines that were unavailable

    @property
    def level(self) -> str:
        return max((r.level for r in self.rows), key=LEVELS.index, default="ok")

    def at(self, level: str) -> list[DriftRow]:
        return [r for r in self.rows if r.level == level]

    def summary_fields(self) -> dict[str, Any]:
        """The drift fields of ScoringRun."""
        feature_psi = [r.psi for r in self.rows if r.kind == "feature"]
        score_psi = {r.baseline: r.psi for r in self.rows if r.kind == SCORE}
        return {
            "drift_level": self.level,
            "drift_warn": tuple(r.label for r in self.at("warn")),
            "drift_critical": tuple(r.label for r in self.at("critical")),
            "max_feature_psi": max(feature_psi) if feature_psi else None,
            "score_psi": score_psi.get(PREVIOUS_DAY),
            "score_psi_training": score_psi.get(TRAINING),
            "monitoring_version": self.monitoring_version,
        }

    def raise_if(self, fail_on: str | None) -> None:
        """DriftError when any series reached `fail_on` (warn or critical)."""
        if fail_on is None:
            return
        hit = [r for r in self.rows if level_at_least(r.level, fail_on)]
        if hit:
            worst = sorted(hit, key=lambda r: -r.psi)
            listed = "\n  ".join(f"{r.label}: PSI {r.psi:.3f} ({r.level})" for r in worst)
            raise DriftError(
                f"drift on {self.ds} at or above {fail_on!r} (--fail-on {fail_on}); "
                f"predictions not committed, monitoring rows kept:\n  {listed}"
            )


def feature_drift(
    today: Mapping[str, np.ndarray],
    previous: Mapping[str, np.ndarray] | None,
    previous_ds: date | None,
    reference: FeatureReference | None,
    monitoring: MonitoringSettings,
) -> list[DriftRow]:
    """Feature rows against the training reference and against the previous snapshot."""
    rows = []
    for name, counts in today.items():
        if reference is not None and name in reference.features:
            rows.append(
                compare(
                    "feature",
                    name,
                    TRAINING,
                    None,
                    reference.features[name].counts,
                    counts,
                    monitoring,
                )
            )
        if previous is not None and name in previous:
            rows.append(
                compare(
                    "feature", name, PREVIOUS_DAY, previous_ds, previous[name], counts, monitoring
                )
            )
    return rows


def score_drift(
    today: np.ndarray, previous: np.ndarray, previous_ds: date, monitoring: MonitoringSettings
) -> DriftRow:
    """Score distribution against the previous night's, on that night's deciles."""
    edges = quantile_edges(previous.astype(np.float64), monitoring.bins)
    return compare(
        SCORE,
        SCORE,
        PREVIOUS_DAY,
        previous_ds,
        bin_counts(previous, edges),
        bin_counts(today, edges),
        monitoring,
    )
