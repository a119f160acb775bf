"""Pure parts of orchestration: step options, the spark-submit command, results, reports."""

from __future__ import annotations

import json
import threading
import typing
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scorehouse.commands.flows import prefect_server
from scorehouse.errors import ValidationError
from scorehouse.orchestration.alerts import alert_payload, safe_url
from scorehouse.orchestration.entry import parser, plain_type, step_parameters
from scorehouse.orchestration.report import mlflow_link, nightly_markdown
from scorehouse.orchestration.results import job_result, jsonable, read_result
from scorehouse.orchestration.runner import spark_submit_path, step_argv, submit_command
from scorehouse.orchestration.steps import STEPS
from scorehouse.paths import SPARK_CONF_DIR
from scorehouse.settings import SettingsError, load_settings
from scorehouse.stack import flow_api_url


def test_step_argv_turns_parameters_into_the_steps_options() -> None:
    argv = step_argv(
        "score", {"ds": date(2026, 10, 31), "fail_on": None, "force": True, "flow_run_id": "r"}
    )
    assert argv == ["score", "--date", "2026-10-31", "--force", "--flow-run-id", "r"]
    assert step_argv("ingest", {"source": "t", "mapping": ["a=b", "c=d"], "fmt": "csv"}) == [
        "ingest", "--source", "t", "--map", "a=b", "--map", "c=d", "--format", "csv",
    ]  # fmt: skip


@pytest.mark.parametrize("name", sorted(STEPS))
def test_every_steps_options_read_back_what_the_flow_passes(name: str) -> None:
    """What step_argv writes, the step's job parses back to the same typed parameters."""
    samples = {date: date(2026, 10, 31), int: 7, str: "x", float: 0.5}
    step = STEPS[name]
    hints = typing.get_type_hints(step.work) | (
        typing.get_type_hints(step.skip) if step.skip else {}
    )
    params = {}
    for pname in step_parameters(step):
        kind, many = plain_type(hints.get(pname, bool))
        value = True if kind is bool else samples[kind]
        params[pname] = [value, value] if many else value
    parsed = vars(parser(name).parse_args([*step_argv(name, params)[1:], "--config", "c.yaml"]))
    assert parsed.pop("config") == "c.yaml" and parsed.pop("result_json") is None
    assert parsed == params


def test_submit_command_uses_the_profile_file_and_the_job_script() -> None:
    settings = load_settings(
        environ={
            "SCOREHOUSE_SPARK__PROFILE": "test",
            "SCOREHOUSE_ORCHESTRATION__PROFILE": "local",
            "SCOREHOUSE_ORCHESTRATION__SUBMIT_ARGS": "[--master, 'local[1]']",
        }
    )
    command = submit_command(settings, ["score", "--date", "2026-10-31"], "/tmp/r.json")
    assert command[0] == str(spark_submit_path(settings))
    assert command[0].endswith("pyspark/bin/spark-submit")
    assert command[1] == "--properties-file"
    assert Path(command[2]).name == "local.conf" and Path(command[2]).is_file()
    # The driver gets the quiet log4j2 profile and keeps the profile's UTC option.
    assert command[3] == "--driver-java-options"
    assert command[4].split() == [
        f"-Dlog4j2.configurationFile={SPARK_CONF_DIR / 'log4j2.properties'}",
        "-Dscorehouse.spark.logLevel=ERROR",
        "-Duser.timezone=UTC",
    ]
    assert command[5:7] == ["--master", "local[1]"]
    assert Path(command[7]).name == "run_step.py" and Path(command[7]).is_file()
    assert command[8:] == ["score", "--date", "2026-10-31", "--result-json", "/tmp/r.json"]


def test_submit_command_leaves_a_cluster_mode_drivers_options_to_the_profile() -> None:
    settings = load_settings(
        environ={
            "SCOREHOUSE_ORCHESTRATION__PROFILE": "cluster",
            "SCOREHOUSE_ORCHESTRATION__SUBMIT_ARGS": "[--master, yarn, --deploy-mode, cluster]",
        }
    )
    command = submit_command(settings, ["score"], "/tmp/r.json")
    assert "--driver-java-options" not in command
    assert command[3:7] == ["--master", "yarn", "--deploy-mode", "cluster"]


def test_job_result_writes_the_result_or_the_failure(tmp_path: Path) -> None:
    ok = tmp_path / "ok.json"
    with job_result(str(ok)) as result:
        result.update({"ds": date(2026, 1, 2), "rows": 3, "drift_warn": ("a", "b")})
    assert read_result(ok) == {"ds": "2026-01-02", "rows": 3, "drift_warn": ["a", "b"]}

    bad = tmp_path / "bad.json"
    with pytest.raises(ValidationError), job_result(str(bad)):
        raise ValidationError("features: must be >= 0")
    failure = read_result(bad)
    assert failure["error"] == "ValidationError: features: must be >= 0"
    assert failure["data_error"] is True

    crash = tmp_path / "crash.json"
    with pytest.raises(OSError), job_result(str(crash)):
        raise OSError("disk gone")
    assert read_result(crash)["data_error"] is False


def test_jsonable_is_plain_json() -> None:
    value = jsonable({"d": date(2026, 1, 1), "t": (1, 2), "n": {"x": None}})
    assert json.loads(json.dumps(value)) == {"d": "2026-01-01", "t": [1, 2], "n": {"x": None}}


def test_safe_url_hides_path_query_and_credentials() -> None:
    url = "https://user:pw@hooks.example.com:8443/services/T0KEN/s3cret?key=abc"
    assert safe_url(url) == "https://hooks.example.com:8443/…"


def test_webhook_url_is_a_secret_refused_in_files(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("orchestration:\n  webhook_url: https://hooks.example.com/T0KEN\n")
    with pytest.raises(SettingsError, match="SCOREHOUSE_ORCHESTRATION__WEBHOOK_URL"):
        load_settings(config, environ={})
    settings = load_settings(
        environ={"SCOREHOUSE_ORCHESTRATION__WEBHOOK_URL": "https://hooks.example.com/T0KEN"}
    )
    assert settings.orchestration.webhook_url is not None
    assert "T0KEN" not in repr(settings)


def test_alert_payload_names_flow_run_step_and_day() -> None:
    assert alert_payload("nightly", "r1", "score", "DriftError: x", "2026-10-31") == {
        "flow": "nightly",
        "flow_run_id": "r1",
        "failed_step": "score",
        "error": "DriftError: x",
        "ds": "2026-10-31",
    }


def test_mlflow_link_points_at_the_run_when_served_over_http() -> None:
    assert mlflow_link("http://127.0.0.1:5000", "3", "abc") == (
        "[abc](http://127.0.0.1:5000/#/experiments/3/runs/abc)"
    )
    assert mlflow_link("sqlite:///m.db", "3", "abc") == (
        "run `abc` in experiment `3` of `sqlite:///m.db`"
    )


def test_nightly_markdown_lists_steps_model_and_drift() -> None:
    result = {
        "ds": "2026-10-31",
        "steps": {
            "features": {"rows": 800, "skipped": True},
            "score": {
                "rows": 800,
                "model_name": "m",
                "model_version": "2",
                "run_id": "abc",
                "experiment_id": "1",
                "tracking_uri": "http://mlflow:5000",
                "drift_level": "warn",
                "drift_warn": ["recency vs training"],
                "drift_critical": [],
                "max_feature_psi": 0.12,
                "score_psi": 0.01,
            },
            "publish": {"generation": "g1", "count": 800, "features_count": 800},
        },
        "timings": {"features": 1.5, "score": 2.25, "publish": 1.0},
    }
    markdown = nightly_markdown(result)
    assert "| features | skipped (already done) | 800 | 1.500 |" in markdown
    assert "| score | done | 800 | 2.250 |" in markdown
    assert "- model: m v2" in markdown
    assert "(http://mlflow:5000/#/experiments/1/runs/abc)" in markdown
    assert "- level: **warn**" in markdown
    assert "- at warn: recency vs training" in markdown
    assert "- total: 4.750 s" in markdown


def test_bad_data_is_not_retried_but_a_crash_is() -> None:
    from prefect.states import Failed

    from scorehouse.flows import _worth_retrying
    from scorehouse.monitoring.drift import DriftError
    from scorehouse.orchestration.runner import StepFailed, StepTimeout

    def retried(exc: Exception) -> bool:
        return _worth_retrying(None, None, Failed(data=exc))  # type: ignore[arg-type]

    assert not retried(ValidationError("features: must be >= 0"))
    assert not retried(DriftError("drift at warn"))
    assert not retried(StepFailed("job score_entities failed", data_error=True))
    assert retried(StepFailed("job score_entities failed: exit code 137"))
    assert retried(StepTimeout("job build_features ran past 3600 s"))
    assert retried(ConnectionError("redis went away"))


def test_a_changed_raw_day_changes_the_history_of_that_day_and_every_later_one() -> None:
    from scorehouse.orchestration.ledger import cumulative_fingerprints

    days = [date(2026, 3, d) for d in range(1, 6)]
    raw = {d: f"files-{d.day}" for d in days[:4]}  # no raw files on the last day
    before = cumulative_fingerprints(raw, days)
    late = cumulative_fingerprints({**raw, days[2]: "files-3-and-late-rows"}, days)
    assert [before[d] == late[d] for d in days] == [True, True, False, False, False]
    retracted = cumulative_fingerprints({d: f for d, f in raw.items() if d != days[1]}, days)
    assert [before[d] == retracted[d] for d in days] == [True, False, False, False, False]
    assert before[days[3]] == before[days[4]]  # a day without raw files adds nothing


def test_a_night_that_is_not_over_needs_an_explicit_override() -> None:
    from datetime import UTC, datetime, timedelta

    from scorehouse.flows import refuse_incomplete

    today = datetime.now(UTC).date()
    refuse_incomplete(today - timedelta(days=1), allow=False)
    for day in (today, today + timedelta(days=30)):
        with pytest.raises(ValidationError, match=f"nightly {day}: that day is not complete"):
            refuse_incomplete(day, allow=False)
        refuse_incomplete(day, allow=True)


def test_a_cli_flow_run_reports_to_the_stack_server_only_when_it_answers_and_none_is_set() -> None:
    settings = load_settings(environ={"SCOREHOUSE_STACK__PREFECT_PORT": "4321"})
    asked: list[str] = []

    def answers(url: str) -> bool:
        asked.append(url)
        return True

    assert flow_api_url(settings, None, answers) == "http://127.0.0.1:4321/api"
    assert asked == ["http://127.0.0.1:4321/api/health"]
    assert flow_api_url(settings, None, lambda url: False) is None  # a temporary server
    assert flow_api_url(settings, "http://prefect.example:4200/api", answers) is None
    assert len(asked) == 1  # a configured API is not second-guessed


def test_the_flow_commands_point_prefect_at_an_answering_stack_server() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    settings = load_settings(environ={"SCOREHOUSE_STACK__PREFECT_PORT": str(port)})
    try:
        # As on a machine with no Prefect API configured (the e2e harness may be running).
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            with prefect_server(settings):
                assert PREFECT_API_URL.value() == f"http://127.0.0.1:{port}/api"
            assert PREFECT_API_URL.value() is None
            server.shutdown()
            with prefect_server(settings):
                assert PREFECT_API_URL.value() is None  # nothing answers: a temporary server
    finally:
        server.shutdown()
        server.server_close()
