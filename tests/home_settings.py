"""Settings environments for tests: everything a run writes lives under one temp home."""

from __future__ import annotations

from pathlib import Path


def home_env(home: Path, **overrides: str) -> dict[str, str]:
    """SCOREHOUSE_* variables putting warehouse, MLflow store and state under `home`."""
    return {
        "SCOREHOUSE_HOME": str(home),
        "SCOREHOUSE_WAREHOUSE": str(home / "warehouse"),
        "SCOREHOUSE_SPARK__PROFILE": "test",
        "SCOREHOUSE_MLFLOW__TRACKING_URI": f"sqlite:///{home}/mlflow.db",
        "SCOREHOUSE_MLFLOW__ARTIFACT_LOCATION": str(home / "mlartifacts"),
        **overrides,
    }
