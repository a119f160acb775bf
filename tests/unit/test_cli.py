"""The `scorehouse` command without a JVM: argv forms, --json documents, error lines, pipes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from scorehouse.cli import main
from scorehouse.errors import ValidationError
from scorehouse.orchestration.report import steps_text
from scorehouse.scoring.analyst import run_analyst_file
from scorehouse.settings import load_settings


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SCOREHOUSE_CONFIG", raising=False)
    monkeypatch.setenv("SCOREHOUSE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def test_json_is_one_document_of_typed_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["features", "list", "--json"], capsys)
    assert code == 0
    features = json.loads(out)  # one document, nothing else on stdout
    by_name = {f["name"]: f for f in features}
    assert by_name["txn_count_7d"]["no_history"] == 0  # a number, not "0"
    assert by_name["txn_count_7d"]["max_value"] is None
    assert all(isinstance(f["min_value"], int | float | None) for f in features)

    code, out, _ = _run(["config", "--json"], capsys)
    shown = json.loads(out)
    assert code == 0 and isinstance(shown["serving"]["port"], int)


def test_expected_failures_print_one_error_line_and_their_exit_code(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["features", "--json"], 1, "error: features: --start is required to build (see --help)"),
        (
            ["publish", "--json"],
            1,
            "error: publish: --date is required (or use `publish rollback`)",
        ),
        (["--config", str(home / "nope.yaml"), "config"], 2, "error: config file"),
        # --config and -v after the subcommand work as they do before it.
        (["config", "-v", "--config", str(home / "nope.yaml")], 2, "error: config file"),
    ]
    for argv, expected_code, line in cases:
        code, out, err = _run(argv, capsys)
        assert (code, out) == (expected_code, ""), argv
        assert len(err) == 1 and err[0].startswith(line), (argv, err)


def test_verbose_gives_spark_info_lines_for_that_command_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCOREHOUSE_SPARK__LOG_LEVEL", raising=False)
    levels = []
    for argv in (["config", "--json"], ["-v", "config", "--json"], ["config", "--json"]):
        code, out, _ = _run(argv, capsys)
        assert code == 0
        levels.append(json.loads(out)["spark"]["log_level"])
    assert levels == ["ERROR", "INFO", "ERROR"]
    monkeypatch.setenv("SCOREHOUSE_SPARK__LOG_LEVEL", "debug")  # an explicit level wins
    code, out, _ = _run(["config", "-v", "--json"], capsys)
    assert json.loads(out)["spark"]["log_level"] == "DEBUG"


def test_usage_errors_exit_2_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["nightly", "--fail-on", "sometimes"],
        ["features", "--start", "2026-13-01"],
        ["ingest", "transactions", "x.csv", "--map", "customer_id"],
        ["sql"],  # neither a query nor --file
        ["sql", "SELECT 1", "--param", "ds=2026-01-01"],  # --param fills a --file query
        ["sql", "--file", "top_customers", "--param", "ds"],
        ["backfill", "--start", "2026-01-03", "--end", "2026-01-02"],
        ["no-such-command"],
    ):
        code, out, err = _run(argv, capsys)
        assert (code, out) == (2, ""), argv
        assert "Traceback" not in "\n".join(err)


def test_flow_commands_pass_every_option_and_print_typed_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    def nightly(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"ds": kwargs["ds"], "scoring": {"rows": 1200, "score_psi": 0.012}}

    monkeypatch.setattr("scorehouse.flows.nightly", nightly)
    argv = ["nightly", "--date", "2026-01-15", "--force", "--allow-incomplete"]
    code, out, _ = _run([*argv, "--allow-older", "--fail-on", "warn", "--json"], capsys)
    assert code == 0
    assert calls == [
        {
            "ds": date(2026, 1, 15),
            "config": None,
            "fail_on": "warn",
            "force": True,
            "allow_incomplete": True,
            "allow_older": True,
        }
    ]
    assert json.loads(out) == {"ds": "2026-01-15", "scoring": {"rows": 1200, "score_psi": 0.012}}


def test_backfill_prints_what_each_step_did(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []
    steps = {
        "features": {"skipped": True, "skip_reason": "snapshots are current", "rows": 3000},
        "checks-2026-01-02": {"skipped": False, "rows": 1000},
        "score-2026-01-02": {"skipped": False, "rows": 1000},
    }

    def backfill(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {
            "start": "2026-01-02",
            "end": "2026-01-02",
            "what": kwargs["what"],
            "rows": {"2026-01-02": 1000},
            "steps": steps,
            "timings": {"features": 0.1, "checks-2026-01-02": 2.5, "score-2026-01-02": 7.25},
        }

    monkeypatch.setattr("scorehouse.flows.backfill", backfill)
    argv = ["backfill", "--start", "2026-01-02", "--end", "2026-01-02", "--what", "predictions"]
    code, out, _ = _run([*argv, "--publish-last", "--force"], capsys)
    assert code == 0
    assert calls[0] == {
        "start": date(2026, 1, 2),
        "end": date(2026, 1, 2),
        "what": "predictions",
        "publish_last": True,
        "config": None,
        "fail_on": None,
        "force": True,
    }
    assert out.splitlines() == [
        "backfill 2026-01-02 .. 2026-01-02 (predictions)",
        "  features           skipped (snapshots are current); 3,000 rows",
        "  checks-2026-01-02  done in 2.500 s; 1,000 rows",
        "  score-2026-01-02   done in 7.250 s; 1,000 rows",
    ]
    code, out, _ = _run(["backfill", "--start", "2026-01-02", "--json"], capsys)
    assert code == 0 and json.loads(out)["rows"] == {"2026-01-02": 1000}
    assert calls[1]["end"] is None and calls[1]["what"] == "both"


def test_steps_text_without_rows_or_timings() -> None:
    assert steps_text({"verify": {"skipped": False}}, {}) == "  verify  done in - s"


def test_an_analyst_file_is_checked_before_spark_is_touched(home: Path) -> None:
    settings = load_settings()
    no_spark: Any = None
    with pytest.raises(
        ValidationError, match=re.escape("no shipped query 'my.sql'; sql/analyst/ holds")
    ):
        run_analyst_file(no_spark, settings, "my.sql", {})
    with pytest.raises(
        ValidationError, match=re.escape("top_customers.sql has no parameter day; it takes")
    ):
        run_analyst_file(no_spark, settings, "sql/analyst/top_customers.sql", {"day": "x"})


def test_a_closed_pipe_ends_the_command_quietly(home: Path) -> None:
    # The reader is gone before the command writes (`scorehouse features list | head -1`
    # when the output outgrows the pipe): no BrokenPipeError traceback, exit code 1.
    for argv in (["features", "list"], ["features", "list", "--json"]):
        process = subprocess.Popen(
            [sys.executable, "-m", "scorehouse", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        err = process.stderr.read()
        assert process.wait(timeout=60) == 1, err
        assert "Traceback" not in err and "BrokenPipe" not in err, err
    piped = subprocess.run(
        f"'{sys.executable}' -m scorehouse features list | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stdout.split() == [
        "name",
        "kind",
        "type",
        "window",
        "no",
        "history",
        "internal",
        "definition",
    ]
    assert "Traceback" not in piped.stderr
