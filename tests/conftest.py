"""Shared fixtures: one session-scoped SparkSession, settings rooted in a temp dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from scorehouse.settings import Settings, load_settings
from scorehouse.spark import get_spark

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def spark_settings() -> Settings:
    return load_settings(environ={"SCOREHOUSE_SPARK__PROFILE": "test"})


@pytest.fixture(scope="session")
def spark(spark_settings: Settings) -> Iterator[SparkSession]:
    session = get_spark(spark_settings, app_name="scorehouse-tests")
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose warehouse, MLflow store and home live in a fresh temp directory."""
    home = tmp_path / "home"
    return load_settings(
        environ={
            "SCOREHOUSE_HOME": str(home),
            "SCOREHOUSE_WAREHOUSE": str(home / "warehouse"),
            "SCOREHOUSE_SPARK__PROFILE": "test",
            "SCOREHOUSE_MLFLOW__TRACKING_URI": f"sqlite:///{home}/mlflow.db",
            "SCOREHOUSE_MLFLOW__ARTIFACT_LOCATION": str(home / "mlartifacts"),
        }
    )
