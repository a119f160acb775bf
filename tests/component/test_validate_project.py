"""`scorehouse validate`: Spark's analyzer checks every SQL expression a user wrote against
the declared columns, and names the file and the feature of each problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from scorehouse.cli import main
from scorehouse.features.compile_check import analyze
from scorehouse.paths import EXAMPLES_DIR
from scorehouse.project.load import load_project

PURCHASE = EXAMPLES_DIR / "purchase_propensity"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SCOREHOUSE_CONFIG", raising=False)
    monkeypatch.delenv("SCOREHOUSE_PROJECT", raising=False)
    monkeypatch.setenv("SCOREHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCOREHOUSE_SPARK__PROFILE", "test")
    return tmp_path / "home"


def _purchase_with(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the purchase example with one edit of its features.yaml."""
    folder = tmp_path / "edited"
    shutil.copytree(PURCHASE, folder)
    features = folder / "features.yaml"
    text = features.read_text()
    assert text.count(old) == 1, old
    features.write_text(text.replace(old, new))
    return folder


def test_validate_passes_the_shipped_example_and_a_scaffolded_project(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["validate"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert out == f"ok: 35 features (33 model inputs), 2 sources in {PURCHASE.resolve()}\n"

    target = tmp_path / "mine"
    assert main(["init", str(target)]) == 0
    capsys.readouterr()
    code = main(["validate", "--project", str(target), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert json.loads(out) == {
        "project": str(target.resolve()),
        "ok": True,
        "features": 7,
        "model_features": 7,
        "sources": 2,
        "problems": [],
    }


def test_a_derived_expression_naming_an_unknown_column_is_reported(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _purchase_with(
        tmp_path,
        "IF(spend_90d > 0, spend_30d * 3D / spend_90d, NULL)",
        "IF(spend_90d > 0, spend_31d * 3D / spend_90d, NULL)",
    )
    problems = analyze(spark, load_project(folder), folder)
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{folder / 'features.yaml'}: feature spend_trend_30_90: expr: "
        "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with "
        "name `spend_31d` cannot be resolved."
    )

    code = main(["--project", str(folder), "validate"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == f"error: {problems[0]}"


def test_a_filter_with_a_type_error_is_reported(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _purchase_with(
        tmp_path, 'filter: "DAYOFWEEK(ds) IN (1, 7)"', 'filter: "DATEDIFF(amount, ds) > 0"'
    )
    problems = analyze(spark, load_project(folder), folder)
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{folder / 'features.yaml'}: feature weekend_txn_count_90d: filter: "
        "[DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE]"
    )
    assert "amount" in problems[0]

    code = main(["validate", "--json", "--project", str(folder)])
    out, _ = capsys.readouterr()
    shown = json.loads(out)
    assert code == 2
    assert (shown["ok"], shown["problems"]) == (False, problems)


def test_an_attribute_expression_sees_the_entity_columns_not_the_events(
    spark: SparkSession, tmp_path: Path
) -> None:
    # attribute expressions see the entity source's columns (and ds), not the events'
    folder = _purchase_with(tmp_path, '"DATEDIFF(ds, signup_date)"', '"DATEDIFF(ds, event_time)"')
    problems = analyze(spark, load_project(folder), folder)
    assert [p.split(" [")[0] for p in problems] == [
        f"{folder / 'features.yaml'}: feature tenure_days: expr:"
    ]
    assert "`event_time` cannot be resolved" in problems[0]


def test_a_syntax_error_is_one_line_naming_the_feature(spark: SparkSession, tmp_path: Path) -> None:
    folder = _purchase_with(
        tmp_path,
        "IF(txn_count_90d > 0, txn_count_30d * 3D / txn_count_90d, NULL)",
        "IF(txn_count_90d > 0, txn_count_30d * / txn_count_90d, NULL)",
    )
    problems = analyze(spark, load_project(folder), folder)
    assert len(problems) == 1 and "\n" not in problems[0]
    assert problems[0].startswith(
        f"{folder / 'features.yaml'}: feature txn_trend_30_90: expr: [PARSE_SYNTAX_ERROR]"
    )
