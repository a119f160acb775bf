"""Project declarations: what is refused (with the file, the declaration and the problem)
and what the engine derives from the shipped example."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from scorehouse.features.compile import FeatureSql
from scorehouse.features.registry import load_registry, plain_encoded_columns
from scorehouse.paths import EXAMPLES_DIR
from scorehouse.project.load import ProjectError, load_project

PURCHASE = EXAMPLES_DIR / "purchase_propensity"


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    shutil.copytree(PURCHASE, folder)
    return folder


def _edit_features(folder: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = folder / "features.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data["features"])
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_the_purchase_example_declares_33_model_features_in_order() -> None:
    names = [f.name for f in load_registry(PURCHASE)]
    assert len(names) == 33
    assert names[:4] == ["txn_count_7d", "txn_count_30d", "txn_count_90d", "txn_count_365d"]
    assert names[-4:] == ["tenure_days", "segment_code", "region_code", "email_opt_in_flag"]
    assert "weekend_txn_count_90d" not in names  # internal: a helper of weekend_share_90d


def test_plain_columns_are_the_key_the_plain_features_and_their_hidden_state() -> None:
    plain = plain_encoded_columns(PURCHASE)
    assert plain[0] == "customer_id"
    assert {"avg_ticket_90d", "spend_365d", "__spend_365d"} <= set(plain)
    assert "tenure_days" not in plain and "txn_count_7d" not in plain


def test_a_cast_feature_gets_a_state_of_its_own() -> None:
    folder_project = load_project(PURCHASE)
    extra = {"name": "max_amount_7d", "agg": "max", "value": "amount", "source": "transactions",
             "window": 7, "no_history": None}  # fmt: skip
    project = folder_project.model_copy(
        update={"features": [*folder_project.features, type(folder_project.features[0])(**extra)]}
    )
    sql = FeatureSql(project)
    assert sql.finish["max_amount_7d"] == "__max_amount_7d"
    assert "CAST(__max_amount_7d AS DOUBLE) AS max_amount_7d" in sql.features_sql()


def test_window_sums_and_means_share_their_state() -> None:
    sql = FeatureSql(load_project(PURCHASE))
    # spend_90d and avg_ticket_90d read one sum state; avg_ticket and txn_count one count
    assert "__spend_90d" in sql.state_columns()
    assert not any(name.startswith("__avg_ticket") for name in sql.state_columns())
    assert sql.leaving_days("transactions") == [0, 7, 30, 90, 365]


def test_a_derived_cycle_is_refused_naming_the_file_and_the_features(tmp_path: Path) -> None:
    folder = _copy(tmp_path)

    def cycle(features: list[dict]) -> None:
        features += [
            {"name": "a_ratio", "expr": "b_ratio + 1", "no_history": None},
            {"name": "b_ratio", "expr": "a_ratio * 2", "no_history": None},
        ]

    _edit_features(folder, cycle)
    with pytest.raises(ProjectError, match=r"features\.yaml: derived features .* cycle: .*a_ratio"):
        load_project(folder)


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (
            {"name": "x", "agg": "sum", "source": "transactions", "window": 7, "no_history": 0},
            r"feature x: agg sum needs `value`",
        ),
        (
            {
                "name": "x",
                "agg": "first",
                "value": "amount",
                "source": "transactions",
                "window": 30,
                "no_history": None,
            },
            r"feature x: agg first is kept over the lifetime only",
        ),
        (
            {"name": "x", "agg": "count", "source": "nowhere", "window": 7, "no_history": 0},
            r"feature x: source 'nowhere' is not declared",
        ),
        (
            {"name": "x", "agg": "count", "source": "customers", "window": 7, "no_history": 0},
            r"feature x: agg needs an events source",
        ),
        (
            {"name": "x", "source": "customers", "column": "colour", "no_history": 0},
            r"feature x: customers has no column 'colour'",
        ),
        (
            {"name": "x", "agg": "count", "source": "transactions", "window": 0, "no_history": 0},
            r"feature x: window 0: between 1 and 3650 days",
        ),
        (
            {"name": "txn_count_7d", "expr": "1", "no_history": 0},
            r"feature txn_count_7d: declared twice",
        ),
        (
            {"name": "x", "no_history": 0},
            r"feature x: a feature needs `agg`",
        ),
        (
            {
                "name": "x",
                "agg": "sum",
                "value": "amount",
                "source": "transactions",
                "window": 7,
                "no_history": 0,
            },
            r"feature x: sum of 'amount' needs `scale`",
        ),
    ],
)
def test_a_bad_feature_is_refused_naming_file_feature_and_problem(
    tmp_path: Path, feature: dict, message: str
) -> None:
    folder = _copy(tmp_path)
    _edit_features(folder, lambda features: features.append(feature))
    with pytest.raises(ProjectError, match=r"features\.yaml: " + message):
        load_project(folder)


def test_a_key_of_the_wrong_type_is_refused_naming_the_source(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    path = folder / "sources.yaml"
    path.write_text(
        path.read_text().replace("customer_id: {type: int64}", "customer_id: {type: string}", 1)
    )
    with pytest.raises(ProjectError, match=r"source transactions: column customer_id: type string"):
        load_project(folder)


def test_a_folder_without_project_yaml_is_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not a scorehouse project"):
        load_project(tmp_path)


def test_a_label_summing_a_decimal_without_scale_is_refused() -> None:
    from scorehouse.project.checks import check_project

    project = load_project(PURCHASE)
    assert project.label is not None
    spend = project.label.model_copy(update={"value": "amount", "greater_than": 100})
    problems = check_project(project.model_copy(update={"label": spend}))
    assert problems == [
        "label: the sum of 'amount' needs `scale` (scale: 100 keeps cents), unless the value "
        "is an integer column"
    ]
