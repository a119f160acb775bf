"""Shared fixtures: one session-scoped SparkSession, settings rooted in a temp dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from home_settings import home_env
from scorehouse.localstack import RedisCluster, RedisServer
from scorehouse.settings import Settings, load_settings
from scorehouse.spark import get_spark

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
FAULTS = Path(__file__).parent / "faults"


E2E = Path(__file__).parent / "e2e"
REDIS_FIXTURES = {"redis_server", "redis_url", "redis_cluster", "redis_cluster_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers from what a test needs: `spark` (a SparkSession), `redis` (a redis-server),
    `e2e` (tests/e2e), `faults` (tests/faults); `make test-fast` runs what needs none."""
    for item in items:
        parents = Path(str(item.fspath)).parents
        needs = set(getattr(item, "fixturenames", ()))
        if FAULTS in parents:
            item.add_marker(pytest.mark.faults)
        if E2E in parents:
            item.add_marker(pytest.mark.e2e)
        if "spark" in needs:
            item.add_marker(pytest.mark.spark)
        if needs & REDIS_FIXTURES:
            item.add_marker(pytest.mark.redis)


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
    return load_settings(environ=home_env(home))


# --- Redis: real servers on free loopback ports, stopped at the end of the session ---


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server (project config, no persistence, 512 MB, noeviction)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), maxmemory="512mb")
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of the session server, emptied (FLUSHALL) and reset to the project config per test."""
    client = redis_server.client()
    client.flushall()
    client.config_set("maxmemory", "512mb")
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("hash-max-listpack-entries", "1024")
    client.close()
    yield redis_server.url
    client = redis_server.client()
    for user in client.acl_users():  # users a test added (e.g. the read-only reader)
        name = user.decode() if isinstance(user, bytes) else user
        if name != "default":
            client.acl_deluser(name)
    client.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A local Redis Cluster of three masters on loopback."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"), masters=3)
    with cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """URL of one cluster node, every master emptied first."""
    for server in redis_cluster.servers:
        client = server.client()
        client.flushall()
        client.close()
    return redis_cluster.url
