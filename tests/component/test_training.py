"""Training end to end on local[2]: real SparkXGBClassifier, real MLflow (SQLite), real registry."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame, SparkSession

from home_settings import home_env
from scorehouse.features.registry import feature_names, to_matrix
from scorehouse.settings import Settings, load_settings
from scorehouse.training import registry
from scorehouse.training.splits import SplitSpec
from scorehouse.training.train import TrainingSource, TrainOptions, TrainResult, train_model

START = date(2025, 3, 3)
DATES = [START + timedelta(weeks=i) for i in range(14)]
# Small and quick: 14 weekly dates x 220 customers ≈ 3k rows, at most 25 rounds.
OPTIONS = TrainOptions(split=SplitSpec(gap_days=7), num_boost_round=25)


def synthetic_training_pdf(customers: int = 220, seed: int = 11) -> pd.DataFrame:
    """A training set with the real column contract and a planted, learnable signal.

    A latent propensity drives recency, frequency and spend; the label is a noisy function
    of it. Customers without purchases get null recency and null averages, as in the
    feature SQL, so the missing-value path is exercised.
    """
    rng = np.random.default_rng(seed)
    names = feature_names()
    rows = []
    for i, as_of in enumerate(DATES):
        z = rng.normal(0, 1, customers)
        never = rng.random(customers) < 0.12
        rate = np.exp(0.8 * z)
        frame: dict[str, np.ndarray] = {}
        for name in names:  # background noise for every feature, then the informative ones
            frame[name] = rng.normal(0, 1, customers)
        frame["txn_count_90d"] = np.where(never, 0, rng.poisson(3 * rate)).astype(float)
        frame["txn_count_30d"] = np.where(never, 0, rng.poisson(rate)).astype(float)
        frame["txn_count_365d"] = np.where(never, 0, rng.poisson(12 * rate)).astype(float)
        recency = np.round(rng.exponential(40 / rate))
        frame["days_since_last_purchase"] = np.where(never, np.nan, recency)
        frame["spend_90d"] = frame["txn_count_90d"] * rng.gamma(2, 20, customers)
        avg = frame["spend_90d"] / np.maximum(frame["txn_count_90d"], 1)
        frame["avg_ticket_90d"] = np.where(frame["txn_count_90d"] == 0, np.nan, avg)
        logit = 1.6 * z - 0.4 + 0.02 * i - 0.8 * never
        label = (rng.random(customers) < 1 / (1 + np.exp(-logit))).astype(int)
        part = pd.DataFrame(frame)[names]
        part.insert(0, "label", label)
        part.insert(0, "as_of", as_of)
        part.insert(0, "customer_id", np.arange(customers, dtype=np.int64) + 1)
        rows.append(part)
    pdf = pd.concat(rows, ignore_index=True)
    # Integer features arrive as nullable ints from the feature tables.
    for name in names:
        if name in ("txn_count_30d", "txn_count_90d", "txn_count_365d", "days_since_last_purchase"):
            pdf[name] = pdf[name].astype("Int64")
    return pdf


def to_spark(spark: SparkSession, pdf: pd.DataFrame) -> DataFrame:
    return spark.createDataFrame(pdf).repartition(2)


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("training") / "home"
    # the distributed path (what `auto` picks on data the driver cannot hold)
    return load_settings(
        environ=home_env(
            home,
            SCOREHOUSE_MODEL__EARLY_STOPPING_ROUNDS="5",
            SCOREHOUSE_MODEL__DISTRIBUTED="always",
            SCOREHOUSE_MODEL__SEARCH_TRIALS="1",  # the configured booster only
        )
    )


@pytest.fixture(scope="module")
def training_pdf() -> pd.DataFrame:
    return synthetic_training_pdf()


@pytest.fixture(scope="module")
def first(
    spark: SparkSession, module_settings: Settings, training_pdf: pd.DataFrame
) -> TrainResult:
    df = to_spark(spark, training_pdf)
    return train_model(
        spark, module_settings, df, TrainingSource("training_set", 3), options=OPTIONS
    )


@pytest.fixture(scope="module")
def worse(
    spark: SparkSession, module_settings: Settings, training_pdf: pd.DataFrame, first: TrainResult
) -> TrainResult:
    """Labels shuffled on every row before the test cut: the model learns noise."""
    pdf = training_pdf.copy()
    before = pdf["as_of"] < first.plan.test_start
    rng = np.random.default_rng(5)
    pdf.loc[before, "label"] = rng.permutation(pdf.loc[before, "label"].to_numpy())
    return train_model(
        spark,
        module_settings,
        to_spark(spark, pdf),
        TrainingSource("training_set", 4),
        options=OPTIONS,
    )


def test_first_model_beats_the_baseline_and_becomes_champion(
    first: TrainResult, module_settings: Settings
) -> None:
    assert first.alias == "champion"
    assert first.metrics["test_roc_auc"] > first.metrics["baseline_test_roc_auc"]
    assert first.metrics["test_roc_auc"] > 0.7, first.metrics
    assert registry.alias_version(module_settings, "champion") == first.version
    assert registry.alias_version(module_settings, "challenger") is None


def test_run_records_metrics_params_lineage_and_artifacts(
    first: TrainResult, module_settings: Settings
) -> None:
    client = MlflowClient(module_settings.mlflow.tracking_uri)
    run = client.get_run(first.run_id)
    for scorer in ("", "baseline_", "single_node_"):
        for split in ("valid", "test"):
            for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "top_decile_lift"):
                assert f"{scorer}{split}_{metric}" in run.data.metrics
    # Single-node and distributed train the same model on the same rows: close AUCs.
    assert (
        abs(run.data.metrics["single_node_test_roc_auc"] - run.data.metrics["test_roc_auc"]) < 0.03
    )
    params = run.data.params
    assert params["num_workers"] == "2"
    assert params["missing"] == "nan"
    assert params["seed"] == str(module_settings.model.seed)
    assert params["split_test_start"] == first.plan.test_start.isoformat()
    tags = run.data.tags
    assert tags["training_table"] == "training_set"
    assert tags["training_table_version"] == "3"
    assert len(tags["feature_defs_sha256"]) == 64
    assert tags["git_commit"]
    assert tags["gate_decision"] == "champion"
    # The training set as the run's dataset input: the table's folder and Delta version.
    [used] = run.inputs.dataset_inputs
    assert (used.dataset.name, used.dataset.source_type) == ("training_set@3", "delta_table")
    assert json.loads(used.dataset.source) == {
        "path": str(module_settings.warehouse.resolve() / "training_set"),
        "delta_table_version": 3,
    }
    assert {t.key: t.value for t in used.tags} == {
        "mlflow.data.context": "training",
        "delta_version": "3",
    }
    assert "days_since_last_purchase" in used.dataset.schema
    # The run spans the training (split, fit, evaluation, reference), not just its logging.
    assert run.info.status == "FINISHED"
    seconds = (run.info.end_time - run.info.start_time) / 1000
    assert seconds > run.data.metrics["fit_seconds"] + run.data.metrics["single_node_fit_seconds"]
    reference = {Path(f.path).name for f in client.list_artifacts(first.run_id, "monitoring")}
    assert reference == {"feature_reference.json"}
    report = {Path(f.path).name for f in client.list_artifacts(first.run_id, "report")}
    assert {
        "roc_test.png",
        "pr_test.png",
        "calibration_test.png",
        "lift_test.png",
        "feature_importance_gain.png",
        "metrics.csv",
        "metrics.md",
    } <= report
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location.endswith(str(module_settings.mlflow.artifact_location))


def test_logged_model_pins_requirements_and_has_a_signature(
    first: TrainResult, module_settings: Settings
) -> None:
    import mlflow

    mlflow.set_tracking_uri(module_settings.mlflow.tracking_uri)
    uri = f"models:/{module_settings.model.name}/{first.version}"
    info = mlflow.models.get_model_info(uri)
    assert info.signature is not None
    assert [c.name for c in info.signature.inputs.inputs] == feature_names()
    reqs_path = mlflow.artifacts.download_artifacts(f"{uri}/requirements.txt")
    reqs = Path(reqs_path).read_text().split()
    assert "xgboost-cpu==3.2.0" in reqs
    assert not any(r.startswith("xgboost==") for r in reqs)


def test_loaded_booster_predicts_exactly_what_the_spark_model_does(
    spark: SparkSession, first: TrainResult, module_settings: Settings, training_pdf: pd.DataFrame
) -> None:
    loaded = registry.load_model(module_settings, "champion")
    assert (loaded.name, loaded.version, loaded.run_id) == (
        module_settings.model.name,
        first.version,
        first.run_id,
    )
    assert loaded.feature_names == feature_names()
    test_pdf = training_pdf[training_pdf["as_of"] >= first.plan.test_start].reset_index(drop=True)
    assert test_pdf["days_since_last_purchase"].isna().any()  # the missing path is covered
    names = feature_names()
    sdf = spark.createDataFrame(test_pdf).selectExpr(
        "customer_id", *[f"cast({n} as float) as {n}" for n in names]
    )
    assert first.spark_model is not None
    spark_scores = first.spark_model.transform(sdf).select("customer_id", "probability").toPandas()
    spark_p = spark_scores.set_index("customer_id")["probability"].map(lambda v: float(v[1]))
    ours = pd.Series(loaded.predict(to_matrix(test_pdf, names)), index=test_pdf["customer_id"])
    diff = (ours.sort_index() - spark_p.sort_index()).abs().max()
    assert diff <= 1e-6


def test_auto_fits_small_data_on_the_driver_to_the_same_quality(
    spark: SparkSession, first: TrainResult, training_pdf: pd.DataFrame, tmp_path: Path
) -> None:
    settings = load_settings(
        environ=home_env(tmp_path / "home", SCOREHOUSE_MODEL__EARLY_STOPPING_ROUNDS="5")
    )
    assert settings.model.distributed == "auto"
    result = train_model(
        spark, settings, to_spark(spark, training_pdf), TrainingSource("training_set", 3),
        options=OPTIONS,
    )  # fmt: skip
    mlflow_client = MlflowClient(settings.mlflow.tracking_uri)
    run = mlflow_client.get_run(result.run_id)
    assert run.data.tags["fit_engine"] == "single_node"
    # the search: each candidate a child run; the model carries the best one's settings
    trials = mlflow_client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert len(trials) == result.metrics["search_trials"] == settings.model.search_trials
    best = max(trials, key=lambda t: t.data.metrics["valid_roc_auc"])
    assert run.data.params["max_depth"] == best.data.params["max_depth"]
    assert result.spark_model is None
    assert result.alias == "champion"
    # the same rows, split and parameters as the distributed `first`: the same quality
    assert abs(result.metrics["test_roc_auc"] - first.metrics["test_roc_auc"]) < 0.02
    assert result.metrics["refit_rows"] == first.metrics["refit_rows"]
    loaded = registry.load_model(settings, "champion")
    test_pdf = training_pdf[training_pdf["as_of"] >= result.plan.test_start]
    scores = loaded.predict(to_matrix(test_pdf, feature_names()))
    assert scores.shape == (len(test_pdf),)
    assert np.all((scores > 0) & (scores < 1))


def test_model_loads_without_spark_in_a_fresh_process(
    first: TrainResult, module_settings: Settings
) -> None:
    code = (
        "import sys, numpy as np\n"
        "from scorehouse.settings import load_settings\n"
        "from scorehouse.training.registry import load_model\n"
        f"s = load_settings(environ={{'SCOREHOUSE_MLFLOW__TRACKING_URI': {module_settings.mlflow.tracking_uri!r}}})\n"
        "m = load_model(s)\n"
        "x = np.full((1, len(m.feature_names)), np.nan, dtype=np.float32)\n"
        # MLflow imports pyspark modules when installed; what matters is that no JVM starts.
        "ps = sys.modules.get('pyspark')\n"
        "print(m.version, float(m.predict(x)[0]), ps is not None and ps.SparkContext._active_spark_context is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, score, spark_started = out.stdout.split()
    assert version == first.version
    assert 0 < float(score) < 1
    assert spark_started == "False"


def test_worse_model_is_never_promoted_and_says_why(
    worse: TrainResult, first: TrainResult, module_settings: Settings
) -> None:
    assert worse.alias == "challenger"
    assert registry.alias_version(module_settings, "champion") == first.version
    assert registry.alias_version(module_settings, "challenger") == worse.version
    assert worse.decision.champion_version == first.version
    # the champion was refit on every matured row, the test dates included: it is not
    # judged on them, and the worse model fails against the baseline
    assert f"champion v{first.version} was fit on the test dates" in worse.decision.reason
    assert worse.metrics["test_roc_auc"] <= worse.metrics["baseline_test_roc_auc"]
    client = MlflowClient(module_settings.mlflow.tracking_uri)
    run_tags = client.get_run(worse.run_id).data.tags
    assert run_tags["gate_decision"] == "challenger"
    assert run_tags["gate_reason"] == worse.decision.reason
    assert "baseline" in worse.decision.reason or "champion" in worse.decision.reason
    mv = client.get_model_version(module_settings.model.name, worse.version)
    assert mv.tags["gate_reason"] == worse.decision.reason


def test_promote_then_rollback_restores_the_previous_champion(
    worse: TrainResult, first: TrainResult, module_settings: Settings
) -> None:
    registry.promote(module_settings, worse.version)
    assert registry.alias_version(module_settings, "champion") == worse.version
    assert registry.alias_version(module_settings, "challenger") is None
    assert registry.load_model(module_settings).version == worse.version
    versions = {v.version: v for v in registry.list_versions(module_settings)}
    assert versions[worse.version].aliases == ["champion"]
    assert versions[first.version].test_auc == pytest.approx(
        first.metrics["test_roc_auc"], abs=1e-6
    )

    assert registry.rollback(module_settings) == first.version
    assert registry.alias_version(module_settings, "champion") == first.version
    client = MlflowClient(module_settings.mlflow.tracking_uri)
    demoted = client.get_model_version(module_settings.model.name, worse.version)
    assert demoted.tags["previous_champion"] == first.version
    assert "rolled_back_at" in demoted.tags
    # The first champion replaced nobody: nothing further to roll back to.
    with pytest.raises(registry.ModelRegistryError, match="no previous champion"):
        registry.rollback(module_settings)


def test_promote_of_an_unknown_version_is_refused(
    first: TrainResult, module_settings: Settings
) -> None:
    with pytest.raises(registry.ModelRegistryError, match="no version 999"):
        registry.promote(module_settings, "999")


def test_training_set_without_a_feature_column_is_refused(
    spark: SparkSession, module_settings: Settings, training_pdf: pd.DataFrame
) -> None:
    from scorehouse.errors import ValidationError

    df = to_spark(spark, training_pdf.drop(columns=["spend_90d"]))
    with pytest.raises(ValidationError, match="spend_90d"):
        train_model(spark, module_settings, df, TrainingSource("t", 1), options=OPTIONS)


def test_split_plan_is_logged_as_an_artifact(first: TrainResult, module_settings: Settings) -> None:
    import mlflow

    mlflow.set_tracking_uri(module_settings.mlflow.tracking_uri)
    path = mlflow.artifacts.download_artifacts(
        run_id=first.run_id, artifact_path="report/split.json"
    )
    plan = json.loads(Path(path).read_text())["plan"]
    assert plan["test_start"] == first.plan.test_start.isoformat()


def test_cli_and_job_train_from_the_table_then_list_rollback_promote(
    spark: SparkSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import runpy

    import yaml

    from scorehouse.cli import main as cli
    from scorehouse.paths import REPO_ROOT
    from scorehouse.storage.warehouse import Warehouse

    home = tmp_path / "home"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "home": str(home),
                "warehouse": str(home / "warehouse"),
                "spark": {"profile": "test"},
                "mlflow": {
                    "tracking_uri": f"sqlite:///{home}/mlflow.db",
                    "artifact_location": str(home / "mlartifacts"),
                },
                # A 7-day horizon makes the default purge gap fit 14 weekly dates.
                "model": {"num_boost_round": 10, "early_stopping_rounds": 3, "horizon_days": 7},
            }
        )
    )
    settings = load_settings(config)
    pdf = synthetic_training_pdf(customers=150, seed=3)
    version = Warehouse.from_settings(spark, settings).overwrite(
        settings.tables.training_set, to_spark(spark, pdf)
    )

    assert cli(["--config", str(config), "train"]) == 0
    out = capsys.readouterr().out
    assert "v1 -> champion" in out
    assert registry.alias_version(settings, "champion") == "1"
    run = MlflowClient(settings.mlflow.tracking_uri).get_run(registry.load_model(settings).run_id)
    assert run.data.tags["training_table_version"] == str(version)

    # The job retrains on the pinned version: the same rows give the same AUC, which is
    # within the tolerance of the champion's, so it is promoted and remembers v1.
    job = str(REPO_ROOT / "jobs/train_model.py")
    argv = [job, "--config", str(config), "--training-version", str(version)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(job, run_name="__main__")
    assert "v2 -> champion" in capsys.readouterr().out
    assert registry.alias_version(settings, "champion") == "2"

    assert cli(["--config", str(config), "models", "list"]) == 0
    newest = capsys.readouterr().out.splitlines()[1].split()
    assert newest[:2] == ["2", "champion"]

    assert cli(["--config", str(config), "models", "rollback"]) == 0
    assert "from v2 to v1" in capsys.readouterr().out
    assert registry.alias_version(settings, "champion") == "1"
    assert cli(["--config", str(config), "models", "promote", "2"]) == 0
    assert registry.alias_version(settings, "champion") == "2"
    assert cli(["--config", str(config), "models", "promote", "7"]) == 1
    assert "no version 7" in capsys.readouterr().err
