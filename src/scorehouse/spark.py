"""The one place that creates a SparkSession, from a spark_conf/ profile."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from pyspark import SparkConf, SparkContext
from pyspark.java_gateway import launch_gateway
from pyspark.sql import SparkSession

from scorehouse.paths import SPARK_CONF_DIR
from scorehouse.settings import Settings

LOG4J_FILE = "log4j2.properties"
DRIVER_OPTIONS = "spark.driver.extraJavaOptions"
# What every JVM start prints on its own: Spark's launcher always adds the incubating
# vector module (JavaModuleOptions), and no JVM flag silences the notice.
JVM_NOTICES = frozenset({"WARNING: Using incubator modules: jdk.incubator.vector"})
_STARTING = threading.Lock()


def is_jvm_notice(line: str) -> bool:
    """True for a line of JVM_NOTICES (dropped from the console and the job logs)."""
    return line.strip() in JVM_NOTICES


def profile_path(profile: str, conf_dir: Path | None = None) -> Path:
    """The properties file of a profile: conf_dir, ./spark_conf, then the repository's."""
    candidates = [conf_dir] if conf_dir else [Path("spark_conf"), SPARK_CONF_DIR]
    for directory in candidates:
        path = directory / f"{profile}.conf"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"spark profile {profile!r} not found in {[str(c) for c in candidates]}"
    )


def read_profile(path: Path) -> dict[str, str]:
    """Parse a spark-defaults style file: `key value` per line, `#` comments."""
    conf: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        conf[key] = value.strip()
    return conf


def log4j_path(conf_dir: Path | None = None) -> Path | None:
    """The driver's log4j2 profile: conf_dir, ./spark_conf, then the repository's."""
    for directory in (conf_dir, Path("spark_conf"), SPARK_CONF_DIR):
        if directory is not None and (directory / LOG4J_FILE).is_file():
            return (directory / LOG4J_FILE).resolve()
    return None


def driver_java_options(settings: Settings, options: str = "") -> str:
    """The driver JVM's options: the log4j2 profile and `spark.log_level`, then `options`
    (the profile's spark.driver.extraJavaOptions), whose own -D settings win (the JVM keeps
    the last)."""
    path = log4j_path(settings.spark.conf_dir)
    logging = [f"-Dscorehouse.spark.logLevel={settings.spark.log_level}"]
    if path is not None:
        logging.insert(0, f"-Dlog4j2.configurationFile={shlex.quote(str(path))}")
    return " ".join([*logging, options]).strip()


def get_spark(settings: Settings, app_name: str = "scorehouse") -> SparkSession:
    """Get or create the session for this process, applying the configured profile.

    Under spark-submit the launcher's settings win: profile values only fill gaps.
    """
    conf = read_profile(profile_path(settings.spark.profile, settings.spark.conf_dir))
    conf.update(settings.spark.conf)
    if settings.spark.master:
        conf["spark.master"] = settings.spark.master
    conf[DRIVER_OPTIONS] = driver_java_options(settings, conf.get(DRIVER_OPTIONS, ""))
    # Executors must run this very interpreter (the venv with xgboost and scorehouse).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("TZ", "UTC")
    submitted = _under_spark_submit()
    with _STARTING:  # two flow tasks asking at once must not start two JVMs
        if not submitted and not _driver_jvm_running():
            _start_driver(app_name, conf)
    builder = SparkSession.builder.appName(app_name)
    for key, value in conf.items():
        if submitted and key == "spark.master":
            continue
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    _quiet_unconfigured(spark, settings)
    return spark


def _start_driver(app_name: str, conf: dict[str, str]) -> None:
    """Start the driver JVM with its stderr relayed to ours, minus JVM_NOTICES, and its
    SparkContext; the session builder then finds that context."""
    spark_conf = SparkConf().setAppName(app_name).setAll(list(conf.items()))
    gateway = launch_gateway(spark_conf, popen_kwargs={"stderr": subprocess.PIPE})
    relay = threading.Thread(
        target=_relay, args=(gateway.proc.stderr,), name="spark-jvm-stderr", daemon=True
    )
    relay.start()
    SparkContext(conf=spark_conf, gateway=gateway)


def _relay(stream: IO[bytes]) -> None:
    # Onto fd 2, where the JVM would have written; reading on whatever happens, since a
    # JVM whose stderr pipe fills up blocks.
    for line in iter(stream.readline, b""):
        if not is_jvm_notice(line.decode(errors="replace")):
            with contextlib.suppress(OSError):
                os.write(2, line)


def _driver_jvm_running() -> bool:
    # pyspark keeps one JVM per process, reused by every later SparkContext; it has no
    # public accessor (test_spark_session pins this attribute).
    return SparkContext._gateway is not None


def _quiet_unconfigured(spark: SparkSession, settings: Settings) -> None:
    """A driver JVM started without a log4j2 profile (a bare `spark-submit jobs/...`) runs
    Spark's default one, WARN on the console: set `spark.log_level` on it from now on."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    if jvm.java.lang.System.getProperty("log4j2.configurationFile") is None:
        spark.sparkContext.setLogLevel(settings.spark.log_level)


def _under_spark_submit() -> bool:
    # spark-submit starts the driver Python with the gateway already running.
    return "PYSPARK_GATEWAY_PORT" in os.environ
