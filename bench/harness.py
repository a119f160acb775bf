"""What every benchmark shares: one lock, the warehouse settings, the host, the result file.

A benchmark takes the lock for its whole run (`exclusive()`), so two benchmarks started
at once run one after the other instead of measuring each other. Its result goes to
bench/results/<name>.json with the command that reproduces it and the host it ran on
(`write_result`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from scorehouse.settings import Settings, load_settings

RESULTS = Path(__file__).parent / "results"
LOCK = Path(os.environ.get("SCOREHOUSE_BENCH_LOCK", "/tmp/scorehouse-bench.lock"))
HELD = "SCOREHOUSE_BENCH_LOCK_HELD"
PACKAGES = (
    "pyspark",
    "deltalake",
    "xgboost",
    "xgboost-cpu",
    "redis",
    "pyarrow",
    "mlflow",
    "prefect",
)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold the benchmarks' lock file (flock) while the block runs; wait for it if taken.
    A process the holder starts (a timed child) inherits the hold through HELD."""
    if os.environ.get(HELD) == str(LOCK):
        yield
        return
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {LOCK}: another benchmark is running", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        os.environ[HELD] = str(LOCK)
        try:
            yield
        finally:
            del os.environ[HELD]
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(main: Callable[[], Any]) -> Any:
    """A benchmark's `if __name__ == "__main__"`: its main, setup included, under the lock."""
    with exclusive():
        return main()


def bench_settings(
    home: Path, driver_memory: str = "6g", conf: Mapping[str, str] | None = None, **env: str
) -> Settings:
    """Settings of a private warehouse under `home` with the local Spark profile; `env`
    adds SCOREHOUSE_* variables (e.g. SCOREHOUSE_REDIS__URL)."""
    return load_settings(
        environ={
            "SCOREHOUSE_HOME": str(home),
            "SCOREHOUSE_WAREHOUSE": str(home / "warehouse"),
            "SCOREHOUSE_SPARK__PROFILE": "local",
            "SCOREHOUSE_SPARK__CONF": json.dumps(
                {"spark.driver.memory": driver_memory, **(conf or {})}
            ),
            **env,
        }
    )


def host() -> dict[str, Any]:
    """Where and with what a result was measured (the load average says how busy it was)."""
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def write_result(name: str | Path, result: Mapping[str, Any]) -> Path:
    """Write bench/results/<name>.json (or the path given) with the command line and the
    host added; return its path."""
    path = Path(name) if isinstance(name, Path) else RESULTS / f"{name}.json"
    command = "python " + shlex.join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"command": command, **result, "host": host()}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"written to {path}")
    return path
