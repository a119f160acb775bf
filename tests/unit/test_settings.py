import json
from pathlib import Path

import pytest

from scorehouse.cli import main
from scorehouse.paths import EXAMPLES_DIR
from scorehouse.settings import Settings, SettingsError, load_settings


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
        Path("/srv/sh/warehouse/purchase_propensity"),  # one folder per project
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


def test_scorehouse_variables_that_are_no_settings_are_ignored() -> None:
    # The Docker image sets these for paths.py; they configure no setting.
    settings = load_settings(
        environ={
            "SCOREHOUSE_REPO": "/opt/scorehouse/app",
            "SCOREHOUSE_PROJECT": "/srv/project",
            "SCOREHOUSE_SERVING__HOST": "0.0.0.0",
        }
    )
    assert settings.serving.host == "0.0.0.0"


def test_arguments_then_environment_then_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  name: from_file\n  horizon_days: 14\n  seed: 3\n")
    monkeypatch.setenv("SCOREHOUSE_CONFIG", str(config))
    monkeypatch.setenv("SCOREHOUSE_MODEL__HORIZON_DAYS", "7")
    monkeypatch.setenv("SCOREHOUSE_MODEL__SEED", "5")
    settings = Settings(model={"seed": 9})  # type: ignore[arg-type]
    assert (settings.model.name, settings.model.horizon_days, settings.model.seed) == (
        "from_file",
        7,
        9,
    )
    assert settings.redis.namespace == "purchase_propensity"  # the project's name


def test_environment_values_are_read_as_yaml() -> None:
    settings = load_settings(
        environ={
            "SCOREHOUSE_ORCHESTRATION__SUBMIT_ARGS": "[--master, 'local[1]']",
            "SCOREHOUSE_REDIS__READER_LATENCY_TARGET_MS": "null",
            "SCOREHOUSE_SPARK__CONF": '{"spark.driver.memory": "8g"}',
        }
    )
    assert settings.orchestration.submit_args == ("--master", "local[1]")
    assert settings.redis.reader_latency_target_ms is None
    assert settings.spark.conf == {"spark.driver.memory": "8g"}


@pytest.mark.parametrize(
    ("yaml_text", "key", "variables"),
    [
        (
            "redis:\n  url: redis://app:hunter2@cache:6379/0\n",
            "redis.url",
            ["SCOREHOUSE_REDIS__PASSWORD", "SCOREHOUSE_REDIS__URL"],
        ),
        (
            "mlflow:\n  tracking_uri: https://ml:hunter2@mlflow.internal\n",
            "mlflow.tracking_uri",
            ["SCOREHOUSE_MLFLOW__TRACKING_URI"],
        ),
    ],
)
def test_password_inside_a_yaml_url_is_refused(
    tmp_path: Path, yaml_text: str, key: str, variables: list[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    with pytest.raises(SettingsError) as err:
        load_settings(config, environ={})
    message = str(err.value)
    assert message.startswith(f"{config}: {key} carries a password")
    assert all(v in message for v in variables), message
    assert "hunter2" not in message


def test_password_inside_an_environment_url_is_accepted() -> None:
    settings = load_settings(environ={"SCOREHOUSE_REDIS__URL": "redis://app:hunter2@cache:6379/0"})
    assert settings.redis.url == "redis://app:hunter2@cache:6379/0"


def test_config_command_masks_every_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SCOREHOUSE_CONFIG", raising=False)
    monkeypatch.setenv("SCOREHOUSE_REDIS__URL", "redis://app:hunter2@cache:6379/0")
    monkeypatch.setenv("SCOREHOUSE_REDIS__PASSWORD", "hunter3")
    monkeypatch.setenv("SCOREHOUSE_MLFLOW__TRACKING_URI", "https://ml:hunter4@mlflow?token=hunter5")
    monkeypatch.setenv("SCOREHOUSE_ORCHESTRATION__WEBHOOK_URL", "https://hooks/T/hunter6")
    assert main(["config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "hunter" not in json.dumps(shown)
    assert shown["redis"]["url"] == "redis://app:***@cache:6379/0"
    assert shown["mlflow"]["tracking_uri"] == "https://ml:***@mlflow?token=***"
    assert shown["redis"]["password"] == shown["orchestration"]["webhook_url"] == "**********"


def test_two_projects_get_their_own_tables_keys_and_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "churn"
    other.mkdir()
    for name in ("project.yaml", "sources.yaml", "features.yaml"):
        text = (EXAMPLES_DIR / "purchase_propensity" / name).read_text()
        (other / name).write_text(text.replace("name: purchase_propensity", "name: churn_risk"))
    base = load_settings(environ={"SCOREHOUSE_HOME": str(tmp_path)})
    monkeypatch.setenv("SCOREHOUSE_PROJECT", str(other))
    mine = load_settings(environ={"SCOREHOUSE_HOME": str(tmp_path)})
    assert (mine.warehouse, mine.redis.namespace, mine.model.name) == (
        tmp_path / "warehouse" / "churn_risk",
        "churn_risk",
        "churn_risk",
    )
    assert mine.warehouse != base.warehouse and mine.redis.namespace != base.redis.namespace
