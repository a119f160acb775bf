"""The one place that creates a SparkSession, from a spark_conf/ profile."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from scorehouse.paths import SPARK_CONF_DIR
from scorehouse.settings import Settings


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


def get_spark(settings: Settings, app_name: str = "scorehouse") -> SparkSession:
    """Get or create the session for this process, applying the configured profile.

    Under spark-submit the launcher's settings win: profile values only fill gaps.
    """
    conf = read_profile(profile_path(settings.spark.profile, settings.spark.conf_dir))
    conf.update(settings.spark.conf)
    if settings.spark.master:
        conf["spark.master"] = settings.spark.master
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
    return spark


def _under_spark_submit() -> bool:
    # spark-submit starts the driver Python with the gateway already running.
    return "PYSPARK_GATEWAY_PORT" in os.environ
