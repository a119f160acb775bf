"""`scorehouse sql --file`: a shipped sql/analyst/ query over real Delta tables, read-only."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from deltalake import write_deltalake
from pyspark.sql import SparkSession

from home_settings import home_env
from scorehouse.cli import main
from scorehouse.settings import load_settings

DS = date(2026, 1, 15)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A warehouse with one predictions table: three champion rows of DS, one of the day
    before and one challenger row (neither is a top customer of DS)."""
    home = tmp_path / "home"
    for key, value in home_env(home).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SCOREHOUSE_CONFIG", raising=False)
    rows = [
        (1, 0.2, 1 / 3, "champion", DS),
        (2, 0.9, 1.0, "champion", DS),
        (3, 0.5, 2 / 3, "champion", DS),
        (4, 0.99, 1.0, "champion", date(2026, 1, 14)),
        (5, 0.95, 1.0, "challenger", DS),
    ]
    frame = pd.DataFrame(
        rows, columns=["customer_id", "score", "percentile", "model_role", "ds"]
    ).assign(
        model_name="propensity",
        model_version="3",
        features_version=7,
        scored_at=datetime(2026, 1, 16, 2, 30, tzinfo=UTC),
    )
    warehouse = load_settings().warehouse
    write_deltalake(str(warehouse / "predictions"), frame, partition_by=["ds"])
    return home


def test_a_shipped_query_runs_with_its_parameters(
    spark: SparkSession, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sql", "--file", "sql/analyst/top_customers.sql", "--param", f"ds={DS}", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["customer_id"], r["score"], r["model_version"]) for r in out] == [
        (2, 0.9, "3"),
        (3, 0.5, "3"),
        (1, 0.2, "3"),
    ]
    assert out[0]["features_version"] == 7 and out[0]["scored_at"].startswith("2026-01-16T02:30")
    # NAME alone, the table parameter named explicitly, and the table printed.
    argv = ["sql", "--file", "top_customers", "--param", "predictions=predictions"]
    assert main([*argv, "--param", f"ds={DS}", "--limit", "1"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert [line.split("|")[1].strip() for line in table] == ["customer_id", "2"]


def test_a_shipped_query_is_held_to_the_read_only_rule(
    spark: SparkSession, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A parameter may only name a table: text that is not a name is refused by the
    # template, a name that is no warehouse view by the read-only guard (exit code 2).
    cases = [
        ("predictions=predictions; DROP TABLE predictions", 1, "is neither a date nor a table"),
        ("predictions=system_tables", 2, "error: scorehouse sql runs read-only queries"),
    ]
    for param, code, line in cases:
        argv = ["sql", "--file", "top_customers", "--param", f"ds={DS}", "--param", param]
        assert main(argv) == code
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert captured.out == "" and len(err) == 1 and line in err[0], err
