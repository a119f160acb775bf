"""The BG/NBD baseline's inputs from the declared features (pure; the fit itself is in
tests/component/test_btyd_baseline.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scorehouse.paths import EXAMPLES_DIR
from scorehouse.project.load import ProjectError, load_project
from scorehouse.project.spec import BtydDecl
from scorehouse.training import btyd

DECL = BtydDecl(purchase_days="days", days_since_first="first", days_since_last="last")


def test_inputs_are_repeat_days_recency_from_the_first_and_age_and_nobuyers_are_marked() -> None:
    nan = float("nan")
    columns = {
        # one purchase day 10 days ago; four, the first 100 and the last 7 days ago;
        # bought on the as-of day only; no purchase yet (null first/last, 0 days)
        "days": np.array([1, 4, 1, 0], dtype=float),
        "first": np.array([10, 100, 0, nan]),
        "last": np.array([10, 7, 0, nan]),
    }
    expected = pd.DataFrame(
        {
            "frequency": [0.0, 3.0, 0.0, 0.0],
            "recency": [0.0, 93.0, 0.0, 0.0],
            "T": [10.0, 100.0, 0.0, 0.0],
            "bought": [True, True, True, False],
        }
    )
    pd.testing.assert_frame_equal(btyd.inputs(columns, DECL), expected)


def test_inconsistent_histories_are_treated_as_no_purchase() -> None:
    columns = {
        "days": np.array([3.0, 2.0, 2.0, np.nan]),
        "first": np.array([5.0, -1.0, 5.0, 5.0]),
        "last": np.array([9.0, 0.0, np.nan, 1.0]),  # last before first; negative age; nulls
    }
    assert not btyd.inputs(columns, DECL)["bought"].any()


def test_a_fit_without_any_purchase_history_says_so() -> None:
    rows = pd.DataFrame({"days": [0.0, 0.0], "first": [np.nan, np.nan], "last": [np.nan, np.nan]})
    with pytest.raises(btyd.NothingToFit, match="no train entity has a purchase history"):
        btyd.fit(rows, DECL, 30, seed=1)


def test_an_undeclared_btyd_feature_is_refused_naming_the_file_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    shutil.copytree(EXAMPLES_DIR / "purchase_propensity", folder)
    path = folder / "project.yaml"
    data = yaml.safe_load(path.read_text())
    data["model"]["btyd"]["days_since_first"] = "days_since_first_order"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ProjectError) as err:
        load_project(folder)
    assert str(err.value) == (
        f"{path}: model: btyd.days_since_first 'days_since_first_order' is not a model feature"
    )
