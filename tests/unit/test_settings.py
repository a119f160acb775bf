from pathlib import Path

import pytest

from scorehouse.settings import SettingsError, load_settings


def test_defaults_run_locally_without_any_file() -> None:
    settings = load_settings(environ={})
    assert settings.spark.profile == "local"
    assert settings.redis.url.startswith("redis://127.0.0.1")
    assert settings.mlflow.tracking_uri.startswith("sqlite:///")
    assert settings.model.horizon_days == 30


def test_yaml_then_environment_override(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  horizon_days: 14\n  name: m1\nwarehouse: /data/wh\n")
    settings = load_settings(
        config, environ={"SCOREHOUSE_MODEL__HORIZON_DAYS": "7", "SCOREHOUSE_SPARK__PROFILE": "test"}
    )
    assert settings.model.horizon_days == 7
    assert settings.model.name == "m1"
    assert settings.warehouse == Path("/data/wh")
    assert settings.spark.profile == "test"


def test_warehouse_and_mlflow_store_follow_home_unless_set(tmp_path: Path) -> None:
    moved = load_settings(environ={"SCOREHOUSE_HOME": "/srv/sh"})
    assert (moved.warehouse, moved.mlflow.tracking_uri, moved.mlflow.artifact_location) == (
        Path("/srv/sh/warehouse"),
        "sqlite:////srv/sh/mlflow/mlflow.db",
        Path("/srv/sh/mlflow/artifacts"),
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        "home: /srv/sh\nwarehouse: /lake/wh\nmlflow:\n  tracking_uri: http://mlflow:5000\n"
    )
    pinned = load_settings(config, environ={})
    assert (pinned.warehouse, pinned.mlflow.tracking_uri, pinned.mlflow.artifact_location) == (
        Path("/lake/wh"),
        "http://mlflow:5000",
        Path("/srv/sh/mlflow/artifacts"),
    )


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("redis:\n  url: redis://cache:6379/2\n")
    settings = load_settings(environ={"SCOREHOUSE_CONFIG": str(config)})
    assert settings.redis.url == "redis://cache:6379/2"


def test_typo_in_yaml_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  horizon_dayz: 14\n")
    with pytest.raises(
        SettingsError, match=r"model\.horizon_dayz: Extra inputs are not permitted"
    ) as err:
        load_settings(config, environ={})
    assert str(config) in str(err.value)


def test_typo_in_environment_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match=r"redis\.urll"):
        load_settings(environ={"SCOREHOUSE_REDIS__URLL": "redis://x"})


def test_secret_in_yaml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("redis:\n  password: hunter2\n")
    with pytest.raises(SettingsError, match="SCOREHOUSE_REDIS__PASSWORD"):
        load_settings(config, environ={})


def test_secret_from_environment_is_masked() -> None:
    settings = load_settings(environ={"SCOREHOUSE_REDIS__PASSWORD": "hunter2"})
    assert settings.redis.password is not None
    assert settings.redis.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)


def test_invalid_value_names_the_key() -> None:
    with pytest.raises(SettingsError, match=r"model\.horizon_days"):
        load_settings(environ={"SCOREHOUSE_MODEL__HORIZON_DAYS": "0"})
