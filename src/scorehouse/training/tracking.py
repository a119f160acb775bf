"""MLflow set-up and run lineage: tracking store, experiment, training-set input,
feature-definition hash, git commit."""

from __future__ import annotations

import hashlib
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.types.utils import _infer_schema

from scorehouse.paths import REPO_ROOT
from scorehouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def configure_mlflow(settings: Settings) -> str:
    """Point MLflow at the configured store and return the experiment id (created if new).

    The experiment is created with the configured artifact location, so artifacts land
    in a plain local folder beside the SQLite file rather than under ./mlruns.
    """
    uri = settings.mlflow.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = settings.mlflow.artifact_location.resolve()
    location.mkdir(parents=True, exist_ok=True)
    return str(client.create_experiment(settings.mlflow.experiment, location.as_uri()))


def client(settings: Settings) -> MlflowClient:
    uri = settings.mlflow.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def dataset_name(table: str, version: int | None) -> str:
    """`training_set@12`: a table at a Delta version (`@latest` when not pinned)."""
    return f"{table}@{'latest' if version is None else version}"


def log_training_set(df: DataFrame, table: str, uri: str, version: int | None) -> None:
    """The active run's dataset input (MLflow's "Datasets used", context `training`): the
    Delta table at `uri` and its version, with the frame's schema. Metadata only: no row
    is read."""
    try:
        with warnings.catch_warnings():
            # Its hint on integer columns with missing values is about model signatures.
            warnings.simplefilter("ignore", UserWarning)
            schema = _infer_schema(df)  # from the Spark schema alone, for these column types
    except MlflowException:
        schema = None
    source = DeltaDatasetSource(path=uri, delta_table_version=version)
    name = dataset_name(table, version)
    dataset = MetaDataset(source, name=name, schema=schema)  # type: ignore[abstract]
    # The source leaves out version 0 (MLflow tests the version for truth): the name and
    # this tag always carry it.
    tags = {} if version is None else {"delta_version": str(version)}
    mlflow.log_input(dataset, context="training", tags=tags)


def feature_definitions_hash() -> str:
    """sha256 over the statements the project's declarations compile to.

    Any change to a declaration that changes a value (or to the engine deriving the SQL)
    changes the hash, so a model can be matched with the exact definitions its training
    set was built from; a reworded description does not.
    """
    from scorehouse.features.registry import feature_sql, load_registry

    sql = feature_sql()
    digest = hashlib.sha256()
    parts = [sql.daily_sql(s) for s in sql.rollup_sources]
    parts += [sql.entities_sql(), sql.range_sql(), sql.next_day_sql(), sql.features_sql()]
    parts += [repr([(f.name, f.no_history) for f in load_registry()])]
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def git_commit(repo: Path = REPO_ROOT) -> tuple[str | None, bool]:
    """(HEAD commit, whether tracked files differ from it); (None, False) outside a checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, False
    return head, bool(dirty)
