"""Step logging: durations and row counts for every CLI step; a bar only on a terminal."""

from __future__ import annotations

import io
import logging
import threading

import pytest

from scorehouse import progress
from scorehouse.cli import main


def test_step_logs_its_row_counts_and_duration(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scorehouse.step")
    with progress.step("generate", stream=io.StringIO()) as report:
        progress.record_rows("raw_transactions", 1234567)
        progress.record_rows("raw_customers", 1000)
    assert report.rows == {"raw_transactions": 1234567, "raw_customers": 1000}
    assert report.seconds >= 0
    assert [r.getMessage() for r in caplog.records] == [
        "generate: started",
        f"generate: raw_transactions 1,234,567 rows, raw_customers 1,000 rows in {report.seconds:.1f} s",
    ]


def test_rows_are_recorded_only_inside_a_step_and_nested_steps_keep_their_own() -> None:
    progress.record_rows("ignored", 5)  # outside any step: nothing to add to
    with progress.step("outer", stream=io.StringIO()) as outer:
        with progress.step("inner", stream=io.StringIO()) as inner:
            progress.rows_of({"count": 7, "features_count": 3, "flag": True}, "count", "flag")
        progress.rows_of(type("Run", (), {"rows": 9})(), "rows", "missing")
    assert inner.rows == {"count": 7}
    assert outer.rows == {"rows": 9}


def test_a_failing_step_logs_the_failure_and_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scorehouse.step")
    with pytest.raises(ZeroDivisionError), progress.step("score", stream=io.StringIO()):
        1 / 0  # noqa: B018
    assert caplog.records[-1].levelno == logging.ERROR
    assert caplog.records[-1].getMessage().startswith("score: failed after ")


def test_no_bar_unless_the_stream_is_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain, terminal = io.StringIO(), Terminal()
    with progress.step("plain", stream=plain):
        pass
    assert plain.getvalue() == ""
    # On a terminal the bar thread runs (and leaves nothing behind: it is transient).
    with progress.step("tty", stream=terminal):
        assert any(t.name == "progress-tty" for t in threading.enumerate())
    assert not any(t.name == "progress-tty" for t in threading.enumerate())


def test_cli_steps_log_duration_without_escape_codes_when_piped(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scorehouse.step")
    assert main(["config"]) == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "scorehouse.step"]
    assert messages[0] == "scorehouse config: started"
    assert messages[1].startswith("scorehouse config: in ") and messages[1].endswith(" s")
    assert "\x1b[" not in capsys.readouterr().err


def test_cli_draws_no_bar_for_quick_commands_even_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["config"]) == 0
    assert "\x1b[" not in terminal.getvalue()
