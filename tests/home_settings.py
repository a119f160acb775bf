"""Settings environments for tests: everything a run writes lives under one temp home."""

from __future__ import annotations

from pathlib import Path


def home_env(home: Path, **overrides: str) -> dict[str, str]:
    """SCOREHOUSE_* variables for a run whose warehouse, MLflow store and state live in `home`."""
    return {
        "SCOREHOUSE_HOME": str(home),
        "SCOREHOUSE_SPARK__PROFILE": "test",
        "SCOREHOUSE_REDIS__NAMESPACE": "sh",
        **overrides,
    }
