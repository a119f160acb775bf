"""Champion vs challenger on real outcomes: each arm's realized quality, the tests of their
difference, and the promotion verdict (pure functions; docs/training.md "Champion vs
challenger").

An arm is the set of entities served one model's score (keys.experiment_arm); its rows are
the predictions whose `model_role` is their `arm`. Per matured night: positive rate, AUC
and ECE of each arm, a two-proportion z-test on the positive rates and a z-test on the AUC
difference with Hanley-McNeil standard errors (the arms hold different entities: independent
samples). Over the nights: counts summed, AUCs and their difference pooled by inverse
variance, and the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from scipy.stats import norm

from scorehouse.serving.keys import ARMS
from scorehouse.training import metrics as m

Verdict = str  # "earned" | "not yet" | "worse"


@dataclass(frozen=True)
class Difference:
    """Challenger minus champion: the effect, its relative lift and a two-sided z-test."""

    diff: float
    lift: float | None  # diff / champion's value (None when that is 0)
    z: float | None  # None when the standard error is 0 (nothing to test)
    p_value: float | None


def _difference(champion: float, challenger: float, se: float) -> Difference:
    diff = challenger - champion
    lift = diff / champion if champion else None
    if not se > 0:
        return Difference(diff, lift, None, None)
    z = diff / se
    return Difference(diff, lift, z, float(2 * norm.sf(abs(z))))


def two_proportions(x1: int, n1: int, x2: int, n2: int) -> Difference:
    """Two-proportion z-test of x2/n2 (challenger) against x1/n1 (champion), pooled variance."""
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return _difference(p1, p2, se)


def hanley_mcneil_se(auc: float, positives: int, negatives: int) -> float:
    """Standard error of an AUC (Hanley & McNeil 1982, negative-exponential approximation)."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def auc_difference(
    champion: float, champion_se: float, challenger: float, challenger_se: float
) -> Difference:
    """z-test of the AUC difference of two independent samples."""
    return _difference(champion, challenger, math.hypot(champion_se, challenger_se))


@dataclass(frozen=True)
class ArmMetrics:
    """One arm's realized quality over its served rows."""

    rows: int
    positives: int
    positive_rate: float
    mean_score: float
    roc_auc: float | None  # None with a single class
    roc_auc_se: float | None
    ece: float


def arm_metrics(y: np.ndarray, p: np.ndarray) -> ArmMetrics:
    """Realized quality of one arm's labels `y` and served scores `p`."""
    positives = int(y.sum())
    auc = m.roc_auc(y, p) if 0 < positives < len(y) else None
    se = None if auc is None else hanley_mcneil_se(auc, positives, len(y) - positives)
    return ArmMetrics(
        len(y), positives, float(y.mean()), float(np.mean(p)), auc, se,
        m.expected_calibration_error(y, p),
    )  # fmt: skip


def compare_arms(frame: pd.DataFrame) -> dict[str, object] | None:
    """One night's comparison from its realized predictions (label, score, model_role,
    model_version, arm, experiment): each arm's metrics over its served rows (columns
    prefixed by the arm), the rate and AUC tests (`rate_`, `auc_`); None without an
    experiment or with an empty arm."""
    served = frame[frame["arm"].notna() & (frame["model_role"] == frame["arm"])]
    if served.empty or served["experiment"].nunique() != 1:
        return None
    row: dict[str, object] = {"experiment": str(served["experiment"].iloc[0])}
    metrics = {}
    for arm in ARMS:
        part = served[served["arm"] == arm]
        if part.empty:
            return None
        row[f"{arm}_version"] = str(part["model_version"].iloc[0])
        metrics[arm] = arm_metrics(part["label"].to_numpy(), part["score"].to_numpy())
        row.update({f"{arm}_{k}": v for k, v in metrics[arm].__dict__.items()})
    cp, ch = metrics["champion"], metrics["challenger"]
    rate = two_proportions(cp.positives, cp.rows, ch.positives, ch.rows)
    auc = None
    if cp.roc_auc is not None and ch.roc_auc is not None:
        assert cp.roc_auc_se is not None and ch.roc_auc_se is not None
        auc = auc_difference(cp.roc_auc, cp.roc_auc_se, ch.roc_auc, ch.roc_auc_se)
    return {**row, **_prefixed("rate", rate), **_prefixed("auc", auc)}


def _prefixed(prefix: str, test: Difference | None) -> dict[str, float | None]:
    names = Difference.__dataclass_fields__
    return {f"{prefix}_{k}": None if test is None else getattr(test, k) for k in names}


@dataclass(frozen=True)
class Standing:
    """Where an experiment's challenger stands over its matured nights."""

    experiment: str
    challenger_version: str
    champion_versions: tuple[str, ...]  # the champion may change during an experiment
    days: int
    first_ds: date | None
    last_ds: date | None
    rows: dict[str, int]  # per arm
    positive_rate: dict[str, float]
    roc_auc: dict[str, float | None]  # inverse-variance pooled over the nights
    auc: Difference | None
    rate: Difference
    verdict: Verdict


def standing(days: pd.DataFrame, min_rows: int, alpha: float) -> Standing:
    """Pool the nightly comparisons of one experiment and challenger (rows of the
    experiment_outcomes table) and give the verdict (`verdict`)."""
    rows = {arm: int(days[f"{arm}_rows"].sum()) for arm in ARMS}
    positives = {arm: int(days[f"{arm}_positives"].sum()) for arm in ARMS}
    rate = two_proportions(
        positives["champion"], rows["champion"], positives["challenger"], rows["challenger"]
    )
    pooled = {arm: _pooled(days[f"{arm}_roc_auc"], days[f"{arm}_roc_auc_se"]) for arm in ARMS}
    cp, ch = pooled["champion"], pooled["challenger"]
    auc = None if cp is None or ch is None else auc_difference(*cp, *ch)
    return Standing(
        experiment=str(days["experiment"].iloc[0]),
        challenger_version=str(days["challenger_version"].iloc[0]),
        champion_versions=tuple(sorted({str(v) for v in days.get("champion_version", [])})),
        days=len(days),
        first_ds=min(days["ds"]) if "ds" in days else None,
        last_ds=max(days["ds"]) if "ds" in days else None,
        rows=rows,
        positive_rate={arm: positives[arm] / rows[arm] for arm in ARMS},
        roc_auc={arm: None if p is None else p[0] for arm, p in pooled.items()},
        auc=auc,
        rate=rate,
        verdict=verdict(rows, auc, min_rows, alpha),
    )


def _pooled(aucs: pd.Series, ses: pd.Series) -> tuple[float, float] | None:
    """Inverse-variance mean of the nights' AUCs and its standard error (None: no night has
    one)."""
    a, s = aucs.to_numpy(dtype=float), ses.to_numpy(dtype=float)
    keep = np.isfinite(a) & np.isfinite(s) & (s > 0)
    if not keep.any():
        return None
    weights = 1 / s[keep] ** 2
    return float((weights * a[keep]).sum() / weights.sum()), float(1 / math.sqrt(weights.sum()))


def verdict(rows: dict[str, int], auc: Difference | None, min_rows: int, alpha: float) -> Verdict:
    """ "earned": both arms have `min_rows` matured predictions and the challenger's AUC is
    higher with p < alpha; "worse": the same, lower; "not yet" otherwise."""
    if min(rows.values()) < min_rows or auc is None or auc.p_value is None:
        return "not yet"
    if auc.p_value >= alpha:
        return "not yet"
    return "earned" if auc.diff > 0 else "worse"
