"""Champion vs challenger: the arm rule of the key contract and the statistics of the
per-arm outcomes (pure functions)."""

from __future__ import annotations

import binascii
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency
from sklearn.metrics import roc_auc_score

from scorehouse.monitoring import experiment as ex
from scorehouse.publish.writer import _served
from scorehouse.schemas import EntityKey
from scorehouse.scoring.batch import Assignment, RoleRows, RunRows, predictions_table
from scorehouse.serving import keys
from scorehouse.serving.generation import Experiment, GenerationInfo
from scorehouse.settings import ExperimentSettings

# --- the arm rule ----------------------------------------------------------------------


def test_worked_example_of_docs_redis_keys():
    # docs/redis-keys.md "Champion vs challenger arms": other languages check against these.
    assert binascii.crc32(b"spring-promo:4999123") == 1490597422
    assert keys.arm_slot("spring-promo", 4999123) == 7422
    assert keys.arm_slot("spring-promo", "28") == 431
    assert keys.challenger_slots(0.1) == 1000
    assert keys.experiment_arm("spring-promo", 4999123, 1000) == "champion"
    assert keys.experiment_arm("spring-promo", 28, 1000) == "challenger"
    # Another experiment draws other arms for the same entity.
    assert keys.arm_slot("autumn", 28) != keys.arm_slot("spring-promo", 28)


def test_integer_and_text_forms_of_an_id_share_an_arm():
    assert keys.arm_slot("e", 42) == keys.arm_slot("e", "42") == keys.arm_slot("e", np.int64(42))


@pytest.mark.parametrize(("share", "slots"), [(0, 0), (0.1, 1000), (0.5, 5000), (0.12345, 1235)])
def test_challenger_slots_round_the_share_to_ten_thousandths(share, slots):
    assert keys.challenger_slots(share) == slots


def test_the_challenger_arm_holds_about_its_share():
    ids = pa.array(np.arange(200_000, dtype=np.int64))
    share = float((keys.arm_slots("exp", ids) < keys.challenger_slots(0.1)).mean())
    # Binomial standard deviation at n=200k, p=0.1 is 0.00067: 4 sigma.
    assert share == pytest.approx(0.1, abs=0.003)


@settings(max_examples=60, deadline=None)
@given(
    st.text(min_size=1, max_size=12).filter(lambda t: ":" not in t),
    st.lists(
        st.one_of(
            st.integers(0, 2**63 - 1).map(str),
            st.text(min_size=1, max_size=40),
        ),
        max_size=30,
    ),
)
def test_vectorised_slots_equal_the_rule_for_every_id(name, ids):
    got = keys.arm_slots(name, pa.array(ids, pa.string()))
    assert got.tolist() == [zlib_slot(name, i) for i in ids]


def test_vectorised_slots_of_integer_ids_and_of_a_slice():
    ids = pa.array([0, 7, 4999123, 2**63 - 1], pa.int64())
    assert keys.arm_slots("e", ids).tolist() == [zlib_slot("e", str(i)) for i in ids.to_pylist()]
    assert keys.arm_slots("e", ids.slice(1, 2)).tolist() == [
        zlib_slot("e", "7"),
        zlib_slot("e", "4999123"),
    ]
    assert keys.arm_slots("e", pa.array([], pa.int64())).tolist() == []


def zlib_slot(name: str, text: str) -> int:
    return binascii.crc32(f"{name}:{text}".encode()) % keys.ARM_SLOTS


def test_generation_metadata_round_trips_the_experiment():
    experiment = Experiment("spring-promo", 0.1, 1000, "8")
    meta = {"ds": "2026-01-15", "model_version": "7", **experiment.meta()}
    assert GenerationInfo.from_meta("G", meta).experiment == experiment
    assert GenerationInfo.from_meta("G", {"ds": "2026-01-15"}).experiment is None


def test_experiment_names_are_plain_text():
    assert ExperimentSettings(name="spring-promo").name == "spring-promo"
    for bad in ("", "a:b", " x"):
        with pytest.raises(ValueError, match="plain text"):
            ExperimentSettings(name=bad)
    with pytest.raises(ValueError):
        ExperimentSettings(challenger_share=0.6)


# --- the predictions rows and the served rows ------------------------------------------


def test_predictions_rows_record_each_entitys_arm_on_both_roles():
    ids = pa.array([4999123, 17, 3], pa.int64())
    run = RunRows(1, datetime(2026, 1, 16, tzinfo=UTC), None, Assignment("spring-promo", 1000))
    assert run.experiment is not None
    arms = run.experiment.arms(ids)
    expected = [keys.experiment_arm("spring-promo", i, 1000) for i in ids.to_pylist()]
    scores = np.array([0.1, 0.2, 0.3], np.float32)
    for role in ("champion", "challenger"):
        rows = predictions_table(
            ids,
            scores,
            np.sort(scores),
            RoleRows(role, "m", "1", "r"),
            run,
            EntityKey("customer_id"),
            arms,
        )
        assert rows.column("arm").to_pylist() == expected
        assert rows.column("experiment").to_pylist() == ["spring-promo"] * 3


def test_the_load_keeps_the_row_whose_role_is_the_arm():
    batch = pa.RecordBatch.from_pydict(
        {
            "model_role": ["champion", "challenger", "champion", "challenger", "champion"],
            "arm": ["champion", "champion", "challenger", "challenger", None],
        }
    )
    assert _served(batch, "champion", True).to_pylist() == [True, False, False, True, True]
    assert _served(batch, "champion", False).to_pylist() == [True, False, True, False, True]


# --- statistics ------------------------------------------------------------------------


def test_two_proportions_z_squared_is_the_chi_square_of_the_two_by_two_table():
    test = ex.two_proportions(50, 100, 65, 100)
    chi2, p, _, _ = chi2_contingency([[50, 50], [65, 35]], correction=False)
    assert test.z is not None and test.z**2 == pytest.approx(chi2)
    assert test.p_value == pytest.approx(p)
    assert test.diff == pytest.approx(0.15)
    assert test.lift == pytest.approx(0.3)


def test_hanley_mcneil_reproduces_the_papers_example():
    # Hanley & McNeil (1982), Radiology 143:29-36: area 0.893, 51 abnormal, 58 normal: SE 0.032.
    assert ex.hanley_mcneil_se(0.893, 51, 58) == pytest.approx(0.032, abs=1e-3)


@pytest.mark.parametrize(("pos", "neg"), [(10, 30), (200, 1000)])
def test_hanley_mcneil_at_chance_is_the_mann_whitney_null_variance(pos, neg):
    expected = math.sqrt((pos + neg + 1) / (12 * pos * neg))
    assert ex.hanley_mcneil_se(0.5, pos, neg) == pytest.approx(expected)


def test_auc_difference_combines_independent_standard_errors():
    test = ex.auc_difference(0.70, 0.03, 0.76, 0.04)
    assert test.diff == pytest.approx(0.06)
    assert test.z == pytest.approx(0.06 / 0.05)
    assert test.p_value == pytest.approx(0.2301, abs=1e-4)  # 2 * (1 - Phi(1.2))
    assert test.lift == pytest.approx(0.06 / 0.70)
    assert ex.auc_difference(0.7, 0.0, 0.7, 0.0).p_value is None


def arm_frame(rng: np.random.Generator, n: int = 4000) -> pd.DataFrame:
    """Realized predictions of an experiment: both roles' rows of every entity; the
    challenger ranks better (its scores carry more signal)."""
    ids = np.arange(n)
    label = rng.random(n) < 0.3
    arm = np.where(
        [keys.experiment_arm("e", i, 3000) == "challenger" for i in ids], "challenger", "champion"
    )
    rows = []
    for role, version, signal in (("champion", "7", 0.5), ("challenger", "8", 1.5)):
        score = 1 / (1 + np.exp(-(signal * label + rng.normal(size=n))))
        rows.append(pd.DataFrame({"model_role": role, "model_version": version, "score": score,
                                  "label": label.astype(int), "arm": arm, "experiment": "e"}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_compare_arms_measures_each_arm_on_its_served_rows():
    frame = arm_frame(np.random.default_rng(1))
    row = ex.compare_arms(frame)
    assert row is not None
    for arm in ex.ARMS:
        served = frame[(frame.arm == arm) & (frame.model_role == arm)]
        assert row[f"{arm}_rows"] == len(served) == (frame.arm == arm).sum() // 2
        assert row[f"{arm}_roc_auc"] == pytest.approx(roc_auc_score(served.label, served.score))
        assert row[f"{arm}_positive_rate"] == pytest.approx(served.label.mean())
    assert (row["champion_version"], row["challenger_version"]) == ("7", "8")
    assert row["auc_diff"] > 0 and row["auc_p_value"] < 1e-6
    assert frame.model_role.nunique() == 2
    assert ex.compare_arms(frame.assign(arm=None)) is None


def nights(rows: int, aucs: tuple[float, float], se: float, days: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"experiment": "e", "challenger_version": "8",
             "champion_rows": rows, "challenger_rows": rows,
             "champion_positives": rows // 3, "challenger_positives": rows // 3,
             "champion_roc_auc": aucs[0], "challenger_roc_auc": aucs[1],
             "champion_roc_auc_se": se, "challenger_roc_auc_se": se}
            for _ in range(days)
        ]
    )  # fmt: skip


def test_standing_pools_nights_by_inverse_variance():
    days = nights(5000, (0.70, 0.74), 0.01)
    days.loc[1, ["champion_roc_auc", "challenger_roc_auc"]] = (0.72, 0.76)
    result = ex.standing(days, min_rows=1000, alpha=0.05)
    assert result.days == 2 and result.rows == {"champion": 10000, "challenger": 10000}
    assert result.roc_auc == {"champion": pytest.approx(0.71), "challenger": pytest.approx(0.75)}
    assert result.auc is not None
    # Each arm's pooled SE is 0.01/sqrt(2); the difference's is 0.01.
    assert result.auc.z == pytest.approx(0.04 / 0.01)
    assert result.verdict == "earned"


@pytest.mark.parametrize(
    ("rows", "aucs", "expected"),
    [
        (5000, (0.70, 0.74), "earned"),
        (5000, (0.74, 0.70), "worse"),
        (5000, (0.70, 0.705), "not yet"),  # p >= alpha
        (400, (0.70, 0.74), "not yet"),  # too few rows per arm (800 over two nights)
    ],
)
def test_verdict_rule(rows, aucs, expected):
    assert ex.standing(nights(rows, aucs, 0.01), min_rows=1000, alpha=0.05).verdict == expected
