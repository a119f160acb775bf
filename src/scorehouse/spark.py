"""The one place that creates a SparkSession, from a spark_conf/ profile."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from scorehouse.paths import SPARK_CONF_DIR
from scorehouse.settings import Settings

LOG4J_FILE = "log4j2.properties"
DRIVER_OPTIONS = "spark.driver.extraJavaOptions"


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
    builder = SparkSession.builder.appName(app_name)
    submitted = _under_spark_submit()
    for key, value in conf.items():
        if submitted and key == "spark.master":
            continue
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    _quiet_unconfigured(spark, settings)
    return spark


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
