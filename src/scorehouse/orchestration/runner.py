"""Run a flow step through spark-submit: `jobs/run_step.py <step> --option value ...`.

The submitted driver runs the same `steps.run_step` a flow runs in-process and hands its
result dict back with --result-json. The job's stdout and stderr go line by line into the
given logger, and a step that runs past its timeout has its whole process group
(spark-submit, the JVM, the Python driver) killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from scorehouse.errors import ScorehouseError
from scorehouse.orchestration.results import read_result
from scorehouse.paths import REPO_ROOT
from scorehouse.settings import Settings
from scorehouse.spark import (
    DRIVER_OPTIONS,
    driver_java_options,
    is_jvm_notice,
    profile_path,
    read_profile,
)

KILL_GRACE_S = 10.0


class StepFailed(ScorehouseError):
    """A job exited non-zero; `data_error` tells bad data (no retry) from a crash."""

    def __init__(self, message: str, *, data_error: bool = False) -> None:
        super().__init__(message)
        self.data_error = data_error


class StepTimeout(ScorehouseError):
    """A job ran past orchestration.step_timeout_s; its process group was killed."""


def spark_submit_path(settings: Settings) -> Path:
    """orchestration.spark_submit, else the spark-submit script shipped in the pyspark wheel."""
    if settings.orchestration.spark_submit is not None:
        return settings.orchestration.spark_submit
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-submit"


def jobs_dir(settings: Settings) -> Path:
    return settings.orchestration.jobs_dir or REPO_ROOT / "jobs"


def step_argv(step: str, params: Mapping[str, Any]) -> list[str]:
    """`<step> --option value ...` for jobs/run_step.py: an option per parameter (its name
    with dashes, or the step's flag for it); True is a bare flag, None and False are left
    out, a list repeats the option."""
    from scorehouse.orchestration.steps import STEPS

    flags = STEPS[step].flags
    argv = [step]
    for name, value in params.items():
        flag = "--" + flags.get(name, name).replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            argv += [flag, item.isoformat() if hasattr(item, "isoformat") else str(item)]
    return argv


def submit_command(settings: Settings, argv: Sequence[str], result_json: str | Path) -> list[str]:
    """bin/spark-submit --properties-file spark_conf/<profile>.conf --driver-java-options
    ... [extra] jobs/run_step.py <step> args.

    The driver's options are the profile's plus the log4j2 profile and level (see
    `scorehouse.spark.driver_java_options`); in cluster deploy mode the driver runs on the
    cluster, where that file is not, so the profile's options are left alone.
    """
    orch = settings.orchestration
    profile = profile_path(orch.profile or settings.spark.profile, settings.spark.conf_dir)
    conf = read_profile(profile)
    logging_options: list[str] = []
    if not _cluster_mode(conf, orch.submit_args):
        options = driver_java_options(settings, conf.get(DRIVER_OPTIONS, ""))
        logging_options = ["--driver-java-options", options]
    return [
        str(spark_submit_path(settings)),
        "--properties-file",
        str(profile.resolve()),
        *logging_options,
        *orch.submit_args,
        str((jobs_dir(settings) / "run_step.py").resolve()),
        *argv,
        "--result-json",
        str(result_json),
    ]


def _cluster_mode(conf: dict[str, str], submit_args: Sequence[str]) -> bool:
    """Whether spark-submit runs the driver on the cluster (the profile or submit_args say)."""
    mode = conf.get("spark.submit.deployMode", "client")
    args = list(submit_args)
    for i, arg in enumerate(args):
        if arg == "--deploy-mode" and i + 1 < len(args):
            mode = args[i + 1]
        elif arg.startswith(("--deploy-mode=", "spark.submit.deployMode=")):
            mode = arg.partition("=")[2]
    return mode == "cluster"


def submit_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # The driver and executors run this interpreter (the venv with scorehouse and xgboost).
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the log as they are printed
    env.setdefault("TZ", "UTC")
    return env


def submit_step(
    settings: Settings,
    step: str,
    params: Mapping[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    config: str | None = None,
) -> dict[str, Any]:
    """Run `step` with `params` (and the settings file `config`, as the flow has it)
    through spark-submit; its result dict."""
    argv = step_argv(step, params) + (["--config", config] if config else [])
    with tempfile.TemporaryDirectory(prefix=f"scorehouse-{step}-") as tmp:
        result_json = Path(tmp) / "result.json"
        _submit(settings, step, argv, result_json, logger)
        return read_result(result_json)


def _submit(
    settings: Settings,
    job: str,
    argv: Sequence[str],
    result_json: Path,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    command = submit_command(settings, argv, result_json)
    timeout = settings.orchestration.step_timeout_s
    logger.info("spark-submit %s %s (timeout %.0f s)", job, " ".join(argv), timeout)
    began = time.monotonic()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env=submit_env(settings),
        start_new_session=True,  # its own process group: a timeout kills the JVM too
    )
    tail: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            if is_jvm_notice(line):
                continue
            tail.append(line)
            del tail[:-20]
            logger.info("[%s] %s", job, line)

    reader = threading.Thread(target=pump, name=f"{job}-output", daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        reader.join(timeout=5)
        raise StepTimeout(
            f"job {job} ran past {timeout:.0f} s (orchestration.step_timeout_s); "
            f"its process group {process.pid} was killed"
        ) from None
    reader.join(timeout=30)
    if code != 0:
        error, data_error = f"exit code {code}", False
        if result_json.exists():
            failure = read_result(result_json)
            error = failure.get("error", error)
            data_error = bool(failure.get("data_error"))
        raise StepFailed(
            f"job {job} failed after {time.monotonic() - began:.0f} s: {error}\n"
            + "\n".join(tail[-8:]),
            data_error=data_error,
        )
    if not result_json.exists():
        raise StepFailed(f"job {job} exited 0 without writing {result_json.name}")


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM the group, then SIGKILL what is left after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=KILL_GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class _Forward(logging.Handler):
    def __init__(self, target: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.log(record.levelno, "%s: %s", record.name, record.getMessage())


@contextlib.contextmanager
def forward_library_logs(
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> Iterator[None]:
    """The library's own log lines (row counts, versions) also reach the step's logger."""
    library = logging.getLogger("scorehouse")
    handler = _Forward(logger)
    previous = library.level
    library.addHandler(handler)
    if library.getEffectiveLevel() > logging.INFO:
        library.setLevel(logging.INFO)
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(previous)
