"""One pydantic-settings model: built-in defaults ← YAML file ← SCOREHOUSE_* environment ← arguments.

SCOREHOUSE_* variables that name no setting (SCOREHOUSE_REPO, ...)
are ignored; a misspelt key inside a known section (SCOREHOUSE_REDIS__URLL) is an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

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
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

ENV_PREFIX = "SCOREHOUSE_"
CONFIG_ENV = "SCOREHOUSE_CONFIG"
# Secrets are read from the environment only; a YAML file that sets them is refused.
SECRET_FIELDS = {("redis", "password"), ("orchestration", "webhook_url")}
# URLs a file may set only without a password in them; the variables that carry it instead.
URL_FIELDS = {("redis", "url"), ("mlflow", "tracking_uri")}
URL_PASSWORD_FIELDS = {"redis": [("redis", "password")]}
# Query parameters `scorehouse config` masks (e.g. ?password=, ?token=, ?api_key=).
SECRET_QUERY_WORDS = ("password", "passwd", "secret", "token", "key")


class SettingsError(ValueError):
    """The configuration cannot be loaded; the message names the source and the key."""


class _Model(BaseModel):
    # Attribute docstrings are the fields' descriptions: docs/settings.md is generated from
    # them (`scorehouse.settings_doc`).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SparkSettings(_Model):
    profile: Literal["local", "test", "cluster"] = "local"
    """Which `spark_conf/<profile>.conf` the session starts from."""
    master: str | None = None
    """Overrides the profile's spark.master (None: the profile's)."""
    conf_dir: Path | None = None
    """Folder of the profile files (None: the repository's spark_conf/)."""
    conf: dict[str, str] = Field(default_factory=dict)
    """Extra spark.* settings, applied over the profile's."""
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "ERROR"
    """The driver's log level: ERROR keeps Spark's routine WARN lines off the console;
    `scorehouse -v` sets INFO."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class TableNames(_Model):
    quarantine: str = "quarantine"
    """Rows ingest rejected, with the rule each broke."""
    features: str = "features"
    """Daily feature snapshots, one row per customer and day."""
    training_set: str = "training_set"
    """Point-in-time training rows with their labels."""
    predictions: str = "predictions"
    """Nightly scores, one partition per day and model role."""
    monitoring: str = "monitoring"
    """Drift (PSI) and score statistics per run."""
    backtests: str = "backtests"
    """Per as-of date metrics of each backtest run, model and baseline."""
    outcomes: str = "outcomes"
    """Realized quality of each night's predictions once their labels matured."""
    experiment_outcomes: str = "experiment_outcomes"
    """Realized quality of each arm of a champion vs challenger experiment, per night, with
    the significance tests of their difference."""
    step_runs: str = "step_runs"
    """What each flow step committed, from which inputs."""
    publications: str = "publications"
    """Each Redis generation and the versions it holds."""


class RedisSettings(_Model):
    url: str = "redis://127.0.0.1:6399/0"
    """The Redis (or cluster node) to publish to and read from; no password in a file."""
    namespace: str = "sh"
    """Prefix of every key (`{ns}:...`, docs/redis-keys.md); plain text, no ':' or braces.
    Unless set: the project's name."""
    username: str | None = None
    """ACL user name (None: the default user)."""
    password: SecretStr | None = None
    """ACL password; a secret: SCOREHOUSE_REDIS__PASSWORD only, never in a file."""
    tls: bool = False
    """Connect over TLS."""
    tls_ca_file: Path | None = None
    """CA bundle that verifies the server's certificate (None: the certificate is not verified)."""
    bucket_size: int = Field(default=250, ge=1, le=65536)
    """Integer-id bucket width: memory against load speed. Redis checks every field of a
    listpack bucket before adding one, so its load cost per entity grows with this width
    (2.2 µs at 1000, 0.64 µs at 250) while memory barely moves (10.4 vs 10.7 B per
    prediction)."""
    max_keys_per_second: int | None = None
    """Optional cap on the keys a load writes per second, split over the load tasks (None:
    no cap; docs/redis-keys.md "Loading settings")."""
    reader_latency_target_ms: float | None = Field(default=1.0, gt=0)
    """The load's latency guard: each load task times a PING of its own every 10 ms, halves
    its rate when one exceeds this and raises it again after ten that do not (None: off). It
    is a round trip's p99, what a Client lookup (pointer cached) costs: 1 ms keeps Client
    batches' p99 under 2 ms during a load."""
    load_connections: int | None = Field(default=None, ge=1)
    """At most this many load tasks, hence connections per master, at once (a shared Redis);
    None: one per core when the tasks read the files, one per Spark partition otherwise."""
    keep_generations: int = Field(default=2, ge=1)
    """Published generations kept in Redis (the live one included); older ones are removed."""
    verify_sample: int = Field(default=1000, ge=0)
    """Rows read back and compared after a load, before it goes live (0: none)."""

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
    """MLflow tracking store and model registry (unless set: `<home>/mlflow/mlflow.db`)."""
    artifact_location: Path = Path(".scorehouse/mlflow/artifacts")
    """Where new experiments store artifacts (unless set: `<home>/mlflow/artifacts`)."""
    experiment: str = "scorehouse"
    """The experiment training runs are logged to."""


class ModelSettings(_Model):
    name: str = "purchase_propensity"
    """Registered model name; its champion scores the nightly batch and the fallback.
    Unless set: the project's `model.name`, else its name."""
    horizon_days: int = Field(default=30, ge=1, le=365)
    """The label horizon: an event within this many days after the snapshot day. Unless
    set: the project's `label.horizon_days`."""
    distributed: Literal["auto", "always", "never"] = "auto"
    """auto: XGBoost on the driver when the matured rows fit `single_node_max_gib`, else
    xgboost.spark on the executors; always / never force one. Same model either way."""
    single_node_max_gib: float = Field(default=2.0, gt=0)
    """auto's budget: the matured rows as the driver holds them (8 bytes per feature)."""
    num_workers: int | None = Field(default=None, ge=1)
    """Distributed XGBoost workers (None: the cores Spark has)."""
    num_boost_round: int = Field(default=200, ge=1)
    """Maximum boosting rounds."""
    search_trials: int = Field(default=8, ge=1)
    """Hyper-parameter candidates tried on the validation rows (1: the configured ones only)."""
    search_budget_s: float = Field(default=600, gt=0)
    """No new candidate starts once the search has run this long."""
    early_stopping_rounds: int = Field(default=20, ge=1)
    """Stop after this many rounds without a better validation score."""
    max_depth: int = Field(default=6, ge=1)
    """Maximum tree depth."""
    learning_rate: float = Field(default=0.1, gt=0)
    """XGBoost's eta."""
    seed: int = 7
    """Random seed of the split and the booster, so a retrain is reproducible."""
    auc_tolerance: float = Field(default=0.002, ge=0)
    """A challenger whose AUC is below the champion's by more than this is not promoted."""


class FeatureSettings(_Model):
    ttl_days: int = Field(default=3, ge=0)
    """Maximum feature age in a training row."""
    on_stale: Literal["drop", "default"] = "drop"
    """A training row without a snapshot inside ttl_days: dropped, or given the no-history values."""
    sample_every_days: int = Field(default=7, ge=1)
    """Training rows are sampled every this many days."""
    chain_max_days: int = Field(default=7, ge=1)
    """A build whose previous day exists advances day by day up to this many days; longer
    ranges (and first builds) are computed in one pass from the rollups."""
    training_lookback_days: int = Field(default=180, ge=0)
    """Days of snapshots a training set reads."""
    retention_days: int = Field(default=200, ge=1)
    """`features prune` keeps the newest this many days of snapshots; at least
    training_lookback_days + ttl_days + 1, as training sets read snapshots that old."""
    vacuum_retention_hours: int = Field(default=168, ge=0)
    """Delta VACUUM retention, hence how far back time travel reaches (Delta's default)."""

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
    """An ingest fails when more than this share of a file's rows is quarantined."""


class MonitoringSettings(_Model):
    psi_warn: float = Field(default=0.1, ge=0)
    """A feature or score PSI at or above this is reported as a warning."""
    psi_critical: float = Field(default=0.2, ge=0)
    """A PSI at or above this is reported as critical."""
    bins: int = Field(default=10, ge=2)
    """Quantile bins of the drift reference."""
    realized_auc_drop: float = Field(default=0.05, ge=0)
    """Alert when a night's predictions, once their labels mature, rank with an AUC this
    far below the model's test AUC."""
    retrain_on_alert: bool = False
    """A realized-AUC alert or critical drift starts weekly_train off-schedule (the new
    model still has to pass the gate)."""


class ExperimentSettings(_Model):
    """Champion vs challenger on real traffic (docs/training.md "Champion vs challenger")."""

    name: str | None = None
    """The experiment's name, part of the arm rule (None: no experiment, every entity is
    served the champion). Plain text without ':'; a new name draws new arms."""
    challenger_share: float = Field(default=0.1, ge=0, le=0.5)
    """Share of the entities served the challenger (rounded to 1/10000)."""
    alpha: float = Field(default=0.05, gt=0, lt=1)
    """Significance level of the promotion rule's AUC test."""
    min_rows_per_arm: int = Field(default=1000, ge=1)
    """Matured predictions each arm needs before a verdict other than "not yet"."""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or ":" in value or value != value.strip()):
            raise ValueError("experiment name must be non-empty plain text without ':'")
        return value


class ServingSettings(_Model):
    host: str = "127.0.0.1"
    """Address `scorehouse serve` listens on."""
    port: int = 8080
    """Port `scorehouse serve` listens on."""
    default_score: float = Field(default=0.0, ge=0, le=1)
    """The declared default: the score answered (source `default`) when neither Redis nor
    the fallback model can give one."""
    timeout_ms: int = Field(default=50, ge=1)
    """Redis socket timeout of a lookup; past it the lookup answers the default."""


class StackSettings(_Model):
    """Where `scorehouse up` runs the Prefect and MLflow servers (loopback only by default)."""

    host: str = "127.0.0.1"
    """Address the Prefect and MLflow servers listen on."""
    prefect_port: int = Field(default=4200, ge=1, le=65535)
    """Prefect server (UI and API) port."""
    mlflow_port: int = Field(default=5000, ge=1, le=65535)
    """MLflow server (UI) port."""
    startup_timeout_s: float = Field(default=120, gt=0)
    """Seconds to wait for a server or worker to answer; a cold start on a busy laptop is
    slow."""


class OrchestrationSettings(_Model):
    """How flow steps run their jobs: in the flow's process, or through spark-submit."""

    runner: Literal["in_process", "spark_submit"] = "in_process"
    """Run each step's job in the flow's process, or as a spark-submit process."""
    spark_submit: Path | None = None
    """The spark-submit executable (None: pyspark's own bin/spark-submit)."""
    profile: Literal["local", "test", "cluster"] | None = None
    """Spark profile of submitted jobs (None: spark.profile)."""
    submit_args: tuple[str, ...] = ()
    """Extra spark-submit arguments, e.g. ["--master", "yarn", "--deploy-mode", "client"]."""
    jobs_dir: Path | None = None
    """Folder of the job scripts (None: the repository's jobs/)."""
    step_timeout_s: float = Field(default=3600, gt=0)
    """A step running longer has its spark-submit process group killed."""
    retries: int = Field(default=2, ge=0)
    """Retries of a failed step."""
    retry_delay_s: float = Field(default=10, ge=0)
    """Seconds before the first retry, doubled on every further retry."""
    webhook_url: SecretStr | None = None
    """Where failure alerts are posted as JSON; it embeds a token, so a secret:
    SCOREHOUSE_ORCHESTRATION__WEBHOOK_URL only, never in a file."""
    webhook_timeout_s: float = Field(default=10, gt=0)
    """Seconds an alert post may take."""


class Settings(BaseSettings):
    """Every setting; `load_settings` (or `Settings()`) fills it from its four sources."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_parse_none_str="null",
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    home: Path = Path(".scorehouse")
    """Root of local state: the warehouse and MLflow store live under it unless set."""
    warehouse: Path = Path(".scorehouse/warehouse")
    """Folder of the Delta tables (unless set: `<home>/warehouse`)."""
    spark: SparkSettings = SparkSettings()
    tables: TableNames = TableNames()
    redis: RedisSettings = RedisSettings()
    mlflow: MlflowSettings = MlflowSettings()
    model: ModelSettings = ModelSettings()
    features: FeatureSettings = FeatureSettings()
    ingest: IngestSettings = IngestSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    serving: ServingSettings = ServingSettings()
    experiment: ExperimentSettings = ExperimentSettings()
    stack: StackSettings = StackSettings()
    orchestration: OrchestrationSettings = OrchestrationSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then SCOREHOUSE_* variables, then the YAML file, then defaults.yaml."""
        inputs = _INPUTS.get() or _Inputs.of(None, os.environ)
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _Environment(settings_cls, inputs.environ),
        ]
        if inputs.config_file is not None:
            sources.append(_YamlFile(settings_cls, inputs.config_file))
        sources.append(_YamlFile(settings_cls, None))
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _locations_under_home(cls, data: Any) -> Any:
        """Warehouse and MLflow store follow `home` unless set, so one variable moves a run.
        The project's name keeps projects apart: its tables live in `<home>/warehouse/<name>`,
        its Redis keys under the namespace `<name>`, its model is registered as `<name>`
        (each unless set)."""
        if not isinstance(data, Mapping):
            return data
        home = Path(str(data.get("home", ".scorehouse")))
        derived = dict(data)
        project = _project_names()
        derived.setdefault("warehouse", home / "warehouse" / project[0])
        for part, key, value in (
            ("redis", "namespace", project[0]),
            ("model", "name", project[1]),
            ("model", "horizon_days", project[2]),
        ):
            section = dict(derived.get(part) or {})
            section.setdefault(key, value)
            derived[part] = section
        mlflow = dict(derived.get("mlflow") or {})
        mlflow.setdefault("tracking_uri", f"sqlite:///{home}/mlflow/mlflow.db")
        mlflow.setdefault("artifact_location", home / "mlflow" / "artifacts")
        derived["mlflow"] = mlflow
        return derived

    def table_path(self, name: str) -> Path:
        """Location of a warehouse table given its logical name (a field of `tables`)."""
        return self.warehouse / getattr(self.tables, name)


@dataclass(frozen=True)
class _Inputs:
    """What one load reads: the environment mapping and the YAML file it names, if any."""

    environ: Mapping[str, str]
    config_file: Path | None = None

    @classmethod
    def of(cls, config: str | Path | None, environ: Mapping[str, str]) -> _Inputs:
        config = config or environ.get(CONFIG_ENV)
        return cls(environ, Path(config) if config else None)


# `load_settings` hands its arguments to the sources through this: pydantic-settings
# builds the sources in a classmethod that takes no per-call arguments.
_INPUTS: ContextVar[_Inputs | None] = ContextVar("scorehouse_settings_inputs", default=None)


def _project_names() -> tuple[str, str, int]:
    """(project name, model name, label horizon) of the project in use
    (scorehouse.project.load.locate)."""
    from scorehouse.project.load import load_project

    project = load_project()
    horizon = project.label.horizon_days if project.label is not None else 30
    return project.name, project.model.name or project.name, horizon


class _Environment(EnvSettingsSource):
    """SCOREHOUSE_* variables of a given mapping; values are YAML ("2", "null", "[a, b]")."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            {k: v for k, v in self._environ.items() if k != CONFIG_ENV},
            self.case_sensitive,
            self.env_ignore_empty,
            self.env_parse_none_str,
        )

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        # YAML is a superset of JSON: `[--master, 'local[1]']` works as well as JSON does.
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(str(exc)) from exc


class _YamlFile(InitSettingsSource):
    """A settings YAML file (None: the built-in defaults.yaml); secrets in it are refused."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        if path is None:
            text = resources.files("scorehouse").joinpath("defaults.yaml").read_text()
            data = yaml.safe_load(text) or {}
        else:
            data = _read_yaml(path)
            _refuse_file_secrets(data, path)
        super().__init__(settings_cls, data)


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


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def _refuse_file_secrets(data: Mapping[str, Any], source: Path) -> None:
    for section, key in SECRET_FIELDS:
        if isinstance(data.get(section), Mapping) and key in data[section]:
            raise SettingsError(
                f"{source}: {section}.{key} is a secret; set it in the environment as "
                f"{_env_name(section, key)}, never in a file"
            )
    for section, key in URL_FIELDS:
        block = data.get(section)
        value = block.get(key) if isinstance(block, Mapping) else None
        if isinstance(value, str) and urlsplit(value).password is not None:
            instead = " or ".join(
                f"{_env_name(s, k)}"
                for s, k in [*URL_PASSWORD_FIELDS.get(section, []), (section, key)]
            )
            raise SettingsError(
                f"{source}: {section}.{key} carries a password; secrets come from the "
                f"environment only: set {instead} there, and keep the file's URL without it"
            )


def _where(loc: tuple[int | str, ...], inputs: _Inputs) -> str:
    """The source of the value an error is about: the variable, the file, or the defaults."""
    keys = [str(part) for part in loc]
    variable = ENV_PREFIX + "__".join(keys).upper()
    for name in inputs.environ:
        if name.upper() == variable:
            return f"environment {name}"
    if inputs.config_file is not None and _has_key(_read_yaml(inputs.config_file), keys):
        return str(inputs.config_file)
    return "built-in defaults"


def _has_key(data: Any, keys: list[str]) -> bool:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return False
        data = data[key]
    return True


def _format_errors(exc: ValidationError, inputs: _Inputs) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        lines.append(f"  {_where(error['loc'], inputs)}: {where}: {error['msg']}")
    return "\n".join(lines)


def load_settings(
    config: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Built-in defaults, then the YAML file (argument or SCOREHOUSE_CONFIG), then the environment."""
    inputs = _Inputs.of(config, os.environ if environ is None else environ)
    token = _INPUTS.set(inputs)
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_format_errors(exc, inputs)) from None
    finally:
        _INPUTS.reset(token)


def public_view(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-ready values with every secret masked, URL passwords included."""
    return _mask_urls(settings.model_dump(mode="json"))


def _mask_urls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_urls(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def mask_url(url: str) -> str:
    """The URL with the password of its user part and secret-looking query values as ***."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret_keys = {k for k, _ in query if any(w in k.lower() for w in SECRET_QUERY_WORDS)}
    if parts.password is None and not secret_keys:
        return url  # untouched: rebuilding would normalise e.g. sqlite:/// paths
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    masked = "&".join(f"{k}={'***' if k in secret_keys else v}" for k, v in query)
    return urlunsplit(parts._replace(netloc=netloc, query=masked))
