"""A flow step through pyspark's real bin/spark-submit, against the same step in-process.

The checks step reads a committed snapshot and changes nothing, so both modes must
hand back the same result dict; the spark-submit run streams its output line by line.
A step past its timeout has its whole process group killed.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import date
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession

from scorehouse.data.generate import write_generated
from scorehouse.features.build import build_features
from scorehouse.orchestration.runner import StepTimeout, submit_step
from scorehouse.orchestration.steps import run_step
from scorehouse.settings import Settings, load_settings

DS = date(2026, 3, 10)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _config(tmp_path: Path, runner: str, timeout_s: float = 600) -> tuple[str, Settings]:
    """A settings file, as a deployment passes --config to every job."""
    home = tmp_path / "home"
    data = {
        "home": str(home),
        "warehouse": str(home / "warehouse"),
        "spark": {"profile": "test"},
        "mlflow": {
            "tracking_uri": f"sqlite:///{home}/mlflow.db",
            "artifact_location": str(home / "mlartifacts"),
        },
        "orchestration": {"runner": runner, "step_timeout_s": timeout_s},
    }
    path = tmp_path / f"{runner}-{timeout_s}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path), load_settings(path, environ={})


def _logger(name: str) -> tuple[logging.Logger, _Lines]:
    logger = logging.getLogger(f"test-step-runner.{name}")
    logger.setLevel(logging.INFO)
    lines = _Lines()
    logger.addHandler(lines)
    return logger, lines


def test_check_step_gives_the_same_result_through_spark_submit(
    spark: SparkSession, tmp_path: Path
) -> None:
    _, local = _config(tmp_path, "in_process")
    write_generated(spark, local, customers=120, start=date(2026, 3, 1), days=10, seed=5)
    build_features(spark, local, DS, DS)
    # force: the second run must check again, not find the first run's entry in step_runs.
    params = {"ds": DS, "force": True}
    expected = run_step("checks", local, params, spark)

    config_submit, submitted = _config(tmp_path, "spark_submit")
    logger, lines = _logger("spark-submit")
    got = submit_step(submitted, "checks", params, logger, config_submit)

    assert {k: v for k, v in got.items() if k != "seconds"} == {
        k: v for k, v in expected.items() if k != "seconds"
    }
    assert expected["rows"] == expected["entities"] > 0
    # The job's own print, streamed from the subprocess into the step's logger.
    done = f"[checks] checks {DS}: {got['rows']} rows for {got['entities']} entities, ok"
    assert done in lines.lines


def test_a_step_past_its_timeout_has_its_process_group_killed(tmp_path: Path) -> None:
    config, settings = _config(tmp_path, "spark_submit", timeout_s=2)
    logger, _ = _logger("timeout")
    with pytest.raises(StepTimeout, match="ran past 2 s") as timed_out:
        submit_step(settings, "checks", {"ds": DS}, logger, config)
    group = int(re.search(r"process group (\d+)", str(timed_out.value)).group(1))  # type: ignore[union-attr]
    assert _running_in_group(group) == []


def _running_in_group(group: int) -> list[int]:
    """Processes of the group that are not dead (zombies wait for a reaper, not for us)."""
    running = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state not in ("Z", "X"):
            running.append(int(entry))
    return running
