"""A job runs through pyspark's real `bin/spark-submit` on a standalone cluster.

The pyspark wheel ships `bin/spark-class` and `bin/spark-submit` but not the sbin
start-master/start-worker scripts, so the fixture starts the standalone Master and two
Workers (one core each) directly with `spark-class`, as subprocesses on loopback ports.
The job is submitted with spark_conf/cluster.conf, adapted only where this machine
differs from a cluster (this venv's Python, 2 cores, loopback).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyspark
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from scorehouse.data.generate import generate
from scorehouse.localstack import free_port
from scorehouse.paths import REPO_ROOT, SPARK_CONF_DIR
from scorehouse.settings import Settings
from scorehouse.spark import read_profile
from scorehouse.storage.warehouse import Warehouse

SPARK_HOME = Path(pyspark.__file__).parent
START = date(2026, 2, 1)
# Where this 2-core machine differs from a real cluster.
LOCAL_OVERRIDES = {
    "spark.pyspark.python": sys.executable,
    "spark.pyspark.driver.python": sys.executable,
    "spark.driver.memory": "1g",
    "spark.driver.cores": "1",
    "spark.executor.memory": "512m",
    "spark.executor.memoryOverhead": "384m",
    "spark.executor.cores": "1",
    "spark.executor.instances": "2",
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}


@dataclass
class Standalone:
    master_url: str
    ui_url: str

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as response:
            return dict(json.load(response))


def _daemon_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_DAEMON_MEMORY="256m",
        SPARK_LOG_DIR=str(tmp / "logs"),
        PYSPARK_PYTHON=sys.executable,
        TZ="UTC",
    )
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # Each daemon runs in its own process group (start_new_session): signal only that.
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """A Spark standalone Master and two one-core Workers on loopback."""
    tmp = tmp_path_factory.mktemp("standalone")
    env = _daemon_env(tmp)
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port, ui_port = free_port(), free_port()
    cluster = Standalone(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}")
    procs: list[subprocess.Popen[bytes]] = []
    logs = []

    def start(name: str, *args: str) -> None:
        log = (tmp / f"{name}.log").open("wb")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [spark_class, *args],
                env=env,
                cwd=tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    try:
        start(
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)),
        )
        for i in (1, 2):
            work = tmp / f"worker{i}"
            work.mkdir()
            start(
                f"worker{i}",
                "org.apache.spark.deploy.worker.Worker",
                cluster.master_url,
                *("--host", "127.0.0.1", "--cores", "1", "--memory", "1g"),
                *("--webui-port", str(free_port()), "--work-dir", str(work)),
            )
        deadline = time.monotonic() + 60
        alive = 0
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            try:
                alive = sum(w["state"] == "ALIVE" for w in cluster.state()["workers"])
            except OSError:
                alive = 0
            if alive == 2:
                break
            time.sleep(0.5)
        if alive != 2:
            tails = "\n".join(
                f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(tmp.glob("*.log"))
            )
            pytest.fail(f"standalone cluster did not get 2 live workers within 60 s:\n{tails}")
        yield cluster
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log in logs:
            log.close()


def _submit_config(tmp: Path) -> tuple[Path, Path]:
    """The cluster profile adapted to this machine, and a settings file that selects it."""
    conf = read_profile(SPARK_CONF_DIR / "cluster.conf")
    conf.update(LOCAL_OVERRIDES)
    conf_dir = tmp / "spark_conf"
    conf_dir.mkdir()
    properties = conf_dir / "cluster.conf"
    properties.write_text("".join(f"{key} {value}\n" for key, value in conf.items()))
    home = tmp / "home"
    config = tmp / "scorehouse.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "home": str(home),
                "warehouse": str(home / "warehouse"),
                "spark": {"profile": "cluster", "conf_dir": str(conf_dir)},
            }
        )
    )
    return properties, config


def test_generate_job_runs_on_a_standalone_cluster_through_spark_submit(
    standalone: Standalone, spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    properties, config = _submit_config(tmp_path)
    env = _daemon_env(tmp_path)
    env.pop("PYSPARK_GATEWAY_PORT", None)
    env.pop("PYSPARK_GATEWAY_SECRET", None)
    command = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        *("--master", standalone.master_url, "--deploy-mode", "client"),
        *("--properties-file", str(properties)),
        str(REPO_ROOT / "jobs" / "generate_data.py"),
        *("--customers", "120", "--days", "12", "--seed", "11"),
        *("--start", START.isoformat(), "--config", str(config)),
    ]
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-4000:]

    # The job ran on the cluster: the master lists it as finished with its executors.
    apps = standalone.state()["completedapps"]
    assert [a["name"] for a in apps] == ["generate"]  # the step's name

    # Its output: both raw tables at version 0, holding exactly what the generator makes.
    job_settings = settings.model_copy(update={"warehouse": tmp_path / "home" / "warehouse"})
    wh = Warehouse.from_settings(spark, job_settings)
    assert wh.version("raw_customers") == 0
    assert wh.version("raw_transactions") == 0
    customers, transactions = generate(spark, customers=120, start=START, days=12, seed=11)
    assertDataFrameEqual(wh.read("raw_customers"), customers)
    assertDataFrameEqual(wh.read("raw_transactions"), transactions)
