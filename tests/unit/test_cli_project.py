"""Project folders from the command line without a JVM: `init` scaffolds, `features list`
prints the declarations, `--project` points every command at another folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scorehouse.cli import main
from scorehouse.features.registry import load_registry
from scorehouse.paths import EXAMPLES_DIR
from scorehouse.project.load import features_of, load_project

PURCHASE = EXAMPLES_DIR / "purchase_propensity"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SCOREHOUSE_CONFIG", raising=False)
    monkeypatch.delenv("SCOREHOUSE_PROJECT", raising=False)
    monkeypatch.setenv("SCOREHOUSE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def test_init_scaffolds_the_template_named_after_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "churn_model"
    code, out, _ = _run(["init", str(target)], capsys)
    assert code == 0
    assert sorted(p.name for p in target.iterdir()) == [
        "features.yaml",
        "project.yaml",
        "sources.yaml",
    ]
    assert f"scorehouse --project {target} validate" in out
    project = load_project(target)
    assert project.name == "churn_model"
    assert [f.name for f in load_registry(target)] == [
        "event_count_7d",
        "event_count_30d",
        "value_sum_30d",
        "days_since_last_event",
        "age_days",
        "plan_code",
        "events_trend_7_30",
    ]


def test_init_copies_a_shipped_example_into_an_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "shop"
    target.mkdir()  # empty: accepted
    code, out, _ = _run(["init", str(target), "--example", "purchase_propensity", "--json"], capsys)
    assert code == 0
    shown = json.loads(out)
    assert shown["example"] == "purchase_propensity"
    assert sorted(Path(f).name for f in shown["files"]) == [
        "features.yaml",
        "project.yaml",
        "sources.yaml",
    ]
    assert load_registry(target) == load_registry(PURCHASE)
    assert (target / "features.yaml").read_text() == (PURCHASE / "features.yaml").read_text()


def test_init_refuses_a_non_empty_folder_and_an_unknown_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine\n")
    code, out, err = _run(["init", str(full)], capsys)
    assert (code, out) == (1, "")
    assert err[-1] == f"error: init: {full} is not empty; give a new or empty folder"
    assert [p.name for p in full.iterdir()] == ["notes.txt"]

    code, out, err = _run(["init", str(tmp_path / "new"), "--example", "nope"], capsys)
    assert (code, out) == (1, "")
    assert err[-1].startswith("error: init: no example 'nope' (choose from template, ")
    assert "purchase_propensity" in err[-1]  # every shipped example is named
    assert not (tmp_path / "new").exists()


def test_features_list_prints_every_declared_feature_with_its_definition(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(["features", "list", "--json"], capsys)
    assert code == 0
    listed = json.loads(out)
    declared = features_of(load_project(PURCHASE))
    assert [f["name"] for f in listed] == [f.name for f in declared]
    model = [f["name"] for f in listed if not f["internal"]]
    assert len(model) == 33
    assert model == [f.name for f in load_registry(PURCHASE)]
    by_name = {f["name"]: f for f in listed}
    assert by_name["weekend_txn_count_90d"] == {
        "name": "weekend_txn_count_90d",
        "kind": "aggregation",
        "type": "int",
        "window": "90",
        "no_history": 0,
        "internal": True,
        "definition": "count of transactions where DAYOFWEEK(ds) IN (1, 7) over 90",
        "description": "Transactions made on a Saturday or Sunday in the last 90 days",
        "min_value": 0,
        "max_value": None,
    }
    assert by_name["spend_trend_30_90"]["kind"] == "derived"
    assert by_name["spend_trend_30_90"]["definition"].startswith("IF(spend_90d > 0")
    assert by_name["segment_code"]["window"] == "as_of"

    code, out, _ = _run(["features", "list"], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 1 + len(declared)  # a header, one line per feature
    assert lines[0].split() == [
        "name",
        "kind",
        "type",
        "window",
        "no",
        "history",
        "internal",
        "definition",
    ]
    assert {line.split()[0] for line in lines[1:]} == {f.name for f in declared}
    interpurchase = next(line for line in lines if line.startswith("interpurchase_std_days"))
    assert "IF(lifetime_active_days >= 2, SQRT(GREATEST(0.0," in interpurchase  # one line


def test_project_option_points_every_command_elsewhere_and_is_put_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "mine"
    assert _run(["init", str(target)], capsys)[0] == 0
    for argv in (
        ["--project", str(target), "features", "list", "--json"],
        ["features", "list", "--json", "--project", str(target)],  # after the subcommand
        ["features", "list", "--json", f"--project={target}"],
    ):
        code, out, _ = _run(argv, capsys)
        assert code == 0, argv
        assert [f["name"] for f in json.loads(out)][:2] == ["event_count_7d", "event_count_30d"]
        assert "SCOREHOUSE_PROJECT" not in os.environ  # restored when the command ends

    # config shows the folder in use (through the environment, as child processes see it)
    code, out, _ = _run(["--project", str(target), "config", "--json"], capsys)
    assert code == 0 and json.loads(out)["project"] == str(target.resolve())
    code, out, _ = _run(["config", "--json"], capsys)
    assert json.loads(out)["project"] == str(PURCHASE.resolve())

    code, out, err = _run(["--project", str(tmp_path / "nowhere"), "features", "list"], capsys)
    assert (code, out) == (2, "")
    assert err[-1] == f"error: {tmp_path / 'nowhere'}: not a scorehouse project (no project.yaml)"
