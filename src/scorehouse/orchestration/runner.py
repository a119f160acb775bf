"""Run one job of jobs/ for a flow step: in this process, or through spark-submit.

Both modes run the same `main(argv)` with `--result-json`, so a step gets the same dict
back either way. In spark_submit mode the job's stdout and stderr go line by line into
the given logger, and a step that runs past its timeout has its whole process group
(spark-submit, the JVM, the Python driver) killed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from scorehouse.errors import ScorehouseError
from scorehouse.orchestration.results import read_result
from scorehouse.paths import REPO_ROOT
from scorehouse.settings import Settings
from scorehouse.spark import DRIVER_OPTIONS, driver_java_options, profile_path, read_profile

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


def job_argv(params: dict[str, Any]) -> list[str]:
    """`--name value` per parameter (underscores become dashes); True is a bare flag,
    None and False are left out."""
    argv: list[str] = []
    for name, value in params.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        else:
            argv += [flag, value.isoformat() if hasattr(value, "isoformat") else str(value)]
    return argv


def submit_command(
    settings: Settings, job: str, argv: Sequence[str], result_json: str | Path
) -> list[str]:
    """bin/spark-submit --properties-file spark_conf/<profile>.conf --driver-java-options
    ... [extra] jobs/<job>.py args.

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
        str((jobs_dir(settings) / f"{job}.py").resolve()),
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


def run_job(
    settings: Settings,
    job: str,
    params: dict[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> dict[str, Any]:
    """Run jobs/<job>.py with `params` the configured way and return its result dict."""
    argv = job_argv(params)
    with tempfile.TemporaryDirectory(prefix=f"scorehouse-{job}-") as tmp:
        result_json = Path(tmp) / "result.json"
        if settings.orchestration.runner == "spark_submit":
            _submit(settings, job, argv, result_json, logger)
        else:
            with _forward_library_logs(logger):
                _load_job(jobs_dir(settings) / f"{job}.py").main(
                    [*argv, "--result-json", str(result_json)]
                )
        return read_result(result_json)


def _submit(
    settings: Settings,
    job: str,
    argv: Sequence[str],
    result_json: Path,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    command = submit_command(settings, job, argv, result_json)
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


_JOBS: dict[Path, ModuleType] = {}


def _load_job(path: Path) -> ModuleType:
    """jobs/ is not a package: load the script as a module once (its main() is what runs)."""
    path = path.resolve()
    if path not in _JOBS:
        if not path.is_file():
            raise FileNotFoundError(f"job script {path} does not exist (orchestration.jobs_dir)")
        spec = importlib.util.spec_from_file_location(f"scorehouse_job_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _JOBS[path] = module
    return _JOBS[path]


class _Forward(logging.Handler):
    def __init__(self, target: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.log(record.levelno, "%s: %s", record.name, record.getMessage())


@contextlib.contextmanager
def _forward_library_logs(
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
