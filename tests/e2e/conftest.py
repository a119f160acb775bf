"""Fixtures of the end-to-end tests: one Prefect test server and one trained home for the
whole session (generating the history and training take most of an e2e run)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.testing.utilities import prefect_test_harness
from pyspark.sql import SparkSession

from nightly_support import CUSTOMERS, DAYS, END, TRAIN_AS_OF, WARM_UP, nightly_env
from scorehouse.data.generate import write_generated
from scorehouse.settings import Settings, load_settings


@pytest.fixture(scope="session")
def prefect() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def trained(
    spark: SparkSession, prefect: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Generated history and a champion from the weekly_train flow, shared read-only."""
    from scorehouse.flows import weekly_train

    home = tmp_path_factory.mktemp("trained") / "home"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in nightly_env(home).items():
            mp.setenv(key, value)
        settings = load_settings()
        start = END - timedelta(days=DAYS - 1)
        write_generated(spark, settings, customers=CUSTOMERS, start=start, days=DAYS, seed=3)
        result = weekly_train(as_of=TRAIN_AS_OF, lookback_days=DAYS - WARM_UP - 4)
    yield home, result


@pytest.fixture
def e2e_settings(
    trained: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """A private copy of the trained home; the flows read settings from the environment,
    as a deployment would."""
    home = tmp_path / "home"
    shutil.copytree(trained[0], home)
    for key, value in nightly_env(home, redis_url).items():
        monkeypatch.setenv(key, value)
    return load_settings()
