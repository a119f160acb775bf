"""One typed settings model: built-in defaults ← YAML file ← SCOREHOUSE_* environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "SCOREHOUSE_"
CONFIG_ENV = "SCOREHOUSE_CONFIG"
# Secrets are read from the environment only; a YAML file that sets them is refused.
SECRET_FIELDS = {("redis", "password"), ("orchestration", "webhook_url")}


class SettingsError(ValueError):
    """The configuration cannot be loaded; the message names the source and the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSettings(_Model):
    profile: Literal["local", "test", "cluster"] = "local"
    master: str | None = None  # overrides the profile's spark.master
    conf_dir: Path | None = None  # defaults to the repository's spark_conf/
    conf: dict[str, str] = Field(default_factory=dict)  # extra spark.* settings


class TableNames(_Model):
    customers: str = "raw_customers"
    transactions: str = "raw_transactions"
    quarantine: str = "quarantine"
    customer_daily: str = "customer_daily"
    features: str = "features"
    training_set: str = "training_set"
    predictions: str = "predictions"
    monitoring: str = "monitoring"
    step_runs: str = "step_runs"  # what each flow step committed, from which inputs


class RedisSettings(_Model):
    url: str = "redis://127.0.0.1:6399/0"
    namespace: str = "sh"
    username: str | None = None
    password: SecretStr | None = None  # SCOREHOUSE_REDIS__PASSWORD only
    tls: bool = False
    tls_ca_file: Path | None = None
    # Integer-id bucket width. Redis checks every field of a listpack bucket before adding
    # one, so its load cost per entity grows with this width (2.2 µs at 1000, 0.64 µs at
    # 250) while memory barely moves (10.4 vs 10.7 B per prediction): docs/benchmarks.md.
    bucket_size: int = Field(default=250, ge=1, le=65536)
    # Loading (docs/redis-keys.md "Loading settings"): fields per write, unanswered writes
    # per connection, fields per HSET, optional total rate, the CPU scheduling of the
    # executors' loading thread (idle: Linux SCHED_IDLE, it runs only on CPU time no other
    # thread wants; normal: niceness `load_nice`), and at most this many load tasks
    # (= connections per master) at once (None: one per core, or per Spark partition).
    batch_size: int = Field(default=200, ge=1)
    inflight_batches: int = Field(default=4, ge=1)
    hset_fields: int = Field(default=100, ge=1)
    max_keys_per_second: int | None = None
    # The latency guard: each load task times a PING of its own every 10 ms, halves its rate
    # when one exceeds this and raises it again after ten that do not (None: off). It is a
    # round trip's p99, what a Client lookup (pointer cached) costs: 1 ms kept Client
    # batches' p99 at 0.9-1.3 ms during 5M loads (docs/redis-keys.md).
    reader_latency_target_ms: float | None = Field(default=1.0, gt=0)
    load_scheduler: Literal["idle", "normal"] = "normal"
    load_nice: int = Field(default=10, ge=0, le=19)
    load_connections: int | None = Field(default=None, ge=1)
    keep_generations: int = Field(default=2, ge=1)
    verify_sample: int = Field(default=1000, ge=0)

    @field_validator("namespace")
    @classmethod
    def _plain_namespace(cls, value: str) -> str:
        if not value or any(c in value for c in ":{} \t\n"):
            raise ValueError(
                "namespace must be non-empty plain text without ':', '{', '}' or spaces"
            )
        return value


class MlflowSettings(_Model):
    tracking_uri: str = "sqlite:///.scorehouse/mlflow/mlflow.db"
    artifact_location: Path = Path(".scorehouse/mlflow/artifacts")
    experiment: str = "scorehouse"


class ModelSettings(_Model):
    name: str = "purchase_propensity"
    horizon_days: int = Field(default=30, ge=1, le=365)
    num_workers: int | None = Field(default=None, ge=1)  # None: the cores Spark has
    num_boost_round: int = Field(default=200, ge=1)
    early_stopping_rounds: int = Field(default=20, ge=1)
    max_depth: int = Field(default=6, ge=1)
    learning_rate: float = Field(default=0.1, gt=0)
    seed: int = 7
    auc_tolerance: float = Field(default=0.002, ge=0)


class FeatureSettings(_Model):
    ttl_days: int = Field(default=3, ge=0)  # maximum feature age in a training row
    on_stale: Literal["drop", "default"] = "drop"
    sample_every_days: int = Field(default=7, ge=1)
    # A build whose previous day exists advances day by day up to this many days;
    # longer ranges (and first builds) are computed in one pass from the rollups.
    chain_max_days: int = Field(default=7, ge=1)
    # Snapshot retention: `features prune` keeps the newest retention_days days of
    # snapshots. Training sets read snapshots as old as lookback + ttl, so a shorter
    # retention is refused.
    training_lookback_days: int = Field(default=180, ge=0)
    retention_days: int = Field(default=200, ge=1)
    vacuum_retention_hours: int = Field(default=168, ge=0)  # Delta's default: time travel

    @model_validator(mode="after")
    def _retention_covers_training(self) -> FeatureSettings:
        needed = self.training_lookback_days + self.ttl_days + 1
        if self.retention_days < needed:
            raise ValueError(
                f"retention_days {self.retention_days} is shorter than the training lookback: "
                f"training_lookback_days {self.training_lookback_days} + ttl_days "
                f"{self.ttl_days} + 1 = {needed}"
            )
        return self


class IngestSettings(_Model):
    max_reject_share: float = Field(default=0.01, ge=0, le=1)


class MonitoringSettings(_Model):
    psi_warn: float = Field(default=0.1, ge=0)
    psi_critical: float = Field(default=0.2, ge=0)
    bins: int = Field(default=10, ge=2)


class ServingSettings(_Model):
    host: str = "127.0.0.1"
    port: int = 8080
    default_score: float = Field(default=0.0, ge=0, le=1)
    timeout_ms: int = Field(default=50, ge=1)


class StackSettings(_Model):
    """Where `scorehouse up` runs the Prefect and MLflow servers (loopback only by default)."""

    host: str = "127.0.0.1"
    prefect_port: int = Field(default=4200, ge=1, le=65535)
    mlflow_port: int = Field(default=5000, ge=1, le=65535)
    # Seconds to wait for a server or worker to answer; a cold start on a busy laptop is slow.
    startup_timeout_s: float = Field(default=120, gt=0)


class OrchestrationSettings(_Model):
    """How flow steps run their jobs: in the flow's process, or through spark-submit."""

    runner: Literal["in_process", "spark_submit"] = "in_process"
    spark_submit: Path | None = None  # None: pyspark's own bin/spark-submit
    profile: Literal["local", "test", "cluster"] | None = None  # None: spark.profile
    submit_args: tuple[str, ...] = ()  # e.g. ["--master", "yarn", "--deploy-mode", "client"]
    jobs_dir: Path | None = None  # None: the repository's jobs/
    step_timeout_s: float = Field(default=3600, gt=0)  # the spark-submit process group is killed
    retries: int = Field(default=2, ge=0)
    retry_delay_s: float = Field(default=10, ge=0)  # doubled on every further retry
    # Webhook URLs embed tokens: SCOREHOUSE_ORCHESTRATION__WEBHOOK_URL only, never a file.
    webhook_url: SecretStr | None = None
    webhook_timeout_s: float = Field(default=10, gt=0)


class Settings(_Model):
    home: Path = Path(".scorehouse")
    warehouse: Path = Path(".scorehouse/warehouse")  # unless set: <home>/warehouse
    spark: SparkSettings = SparkSettings()
    tables: TableNames = TableNames()
    redis: RedisSettings = RedisSettings()
    mlflow: MlflowSettings = MlflowSettings()
    model: ModelSettings = ModelSettings()
    features: FeatureSettings = FeatureSettings()
    ingest: IngestSettings = IngestSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    serving: ServingSettings = ServingSettings()
    stack: StackSettings = StackSettings()
    orchestration: OrchestrationSettings = OrchestrationSettings()

    @model_validator(mode="before")
    @classmethod
    def _locations_under_home(cls, data: Any) -> Any:
        """Warehouse and MLflow store follow `home` unless set, so one variable moves a run."""
        if not isinstance(data, Mapping):
            return data
        home = Path(str(data.get("home", ".scorehouse")))
        derived = dict(data)
        derived.setdefault("warehouse", home / "warehouse")
        mlflow = dict(derived.get("mlflow") or {})
        mlflow.setdefault("tracking_uri", f"sqlite:///{home}/mlflow/mlflow.db")
        mlflow.setdefault("artifact_location", home / "mlflow" / "artifacts")
        derived["mlflow"] = mlflow
        return derived

    def table_path(self, name: str) -> Path:
        """Location of a warehouse table given its logical name (a field of `tables`)."""
        return self.warehouse / getattr(self.tables, name)


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise SettingsError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
    return data


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        # YAML parsing turns "2" into 2 and "true" into True; pydantic does the rest.
        node[path[-1]] = yaml.safe_load(value) if value else value
    return overrides


def _refuse_file_secrets(data: Mapping[str, Any], source: Path) -> None:
    for section, key in SECRET_FIELDS:
        if isinstance(data.get(section), Mapping) and key in data[section]:
            raise SettingsError(
                f"{source}: {section}.{key} is a secret; set it in the environment as "
                f"{ENV_PREFIX}{section.upper()}__{key.upper()}, never in a file"
            )


def _format_errors(exc: ValidationError, sources: str) -> str:
    lines = [f"invalid configuration ({sources}):"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)


def load_settings(
    config: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Built-in defaults, then the YAML file (argument or SCOREHOUSE_CONFIG), then the environment."""
    environ = os.environ if environ is None else environ
    defaults_text = resources.files("scorehouse").joinpath("defaults.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(defaults_text)
    sources = ["built-in defaults"]
    config = config or environ.get(CONFIG_ENV)
    if config:
        path = Path(config)
        file_data = _read_yaml(path)
        _refuse_file_secrets(file_data, path)
        data = _deep_merge(data, file_data)
        sources.append(str(path))
    env_data = _env_overrides(environ)
    if env_data:
        data = _deep_merge(data, env_data)
        sources.append("SCOREHOUSE_* environment")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_format_errors(exc, ", ".join(sources))) from None
