"""Each sql/analyst/*.sql over small warehouse tables of both shipped examples: the purchase
example (integer customer_id, segment) and churn (string account_id, plan). The project
fills the entity key and the segment column, and every query returns the rows worked out
by hand."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from home_settings import home_env
from scorehouse.errors import ValidationError
from scorehouse.features.registry import entity_key
from scorehouse.monitoring.outcomes import OUTCOMES, per_model, record_arms
from scorehouse.paths import EXAMPLES_DIR
from scorehouse.schemas import predictions_schema
from scorehouse.scoring.analyst import (
    analyst_query,
    project_parameters,
    register_views,
    run_analyst_file,
)
from scorehouse.settings import Settings, load_settings
from scorehouse.sqlfiles import sql_path
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training import metrics as m

DS = date(2025, 6, 1)
AT = datetime(2025, 6, 2, 3, 0)
SCORES = {"champion": [0.9, 0.5, 0.2, 0.1], "challenger": [0.8, 0.1, 0.3, 0.2]}
PERCENTILES = {"champion": [1.0, 0.75, 0.5, 0.25], "challenger": [1.0, 0.25, 0.75, 0.5]}
VERSIONS = {"champion": "1", "challenger": "2"}
LABELS = [1, 0, 1, 0]  # realized, entity by entity
ARMS = ["champion", "champion", "challenger", "challenger"]


@dataclass(frozen=True)
class Example:
    folder: str
    keys: list[Any]  # four entities scored on DS, then one scored only the day before
    segment: str  # the column the project's first categorical feature encodes
    values: list[str | None]  # its value for each of the four on DS
    other: str  # another attribute column, for an explicit `segment`


EXAMPLES = [
    Example("purchase_propensity", [1, 2, 3, 4, 9], "segment", ["smb", "smb", "consumer", None], "region"),
    Example("churn", ["acc-a", "acc-b", "acc-c", "acc-d", "acc-z"], "plan", ["pro", "pro", "free", None], "country"),
]  # fmt: skip


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda e: e.folder)
def example(
    request: pytest.FixtureRequest, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Example, Settings]]:
    """A warehouse of the example (SCOREHOUSE_PROJECT on it) with the tables the queries read."""
    ex: Example = request.param
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCOREHOUSE_PROJECT", str(EXAMPLES_DIR / ex.folder))
        settings = load_settings(environ=home_env(tmp_path_factory.mktemp(ex.folder) / "home"))
        wh = Warehouse.from_settings(spark, settings)
        wh.append(settings.tables.predictions, _predictions(spark, ex), partition_by=["ds"])
        wh.append(settings.tables.features, _features(spark, ex), partition_by=["ds"])
        _write_outcomes(spark, settings, ex)
        yield ex, settings


def _predictions(spark: SparkSession, ex: Example) -> DataFrame:
    rows = [
        (key, DS, SCORES[role][i], PERCENTILES[role][i], "m", VERSIONS[role], role, "run", 5, AT,
         None, "ab", ARMS[i])
        for role in SCORES
        for i, key in enumerate(ex.keys[:4])
    ]  # fmt: skip
    # Scored the day before only: never counted on DS.
    rows.append((ex.keys[4], DS - timedelta(days=1), 0.99, 1.0, "m", "1", "champion", "run", 4,
                 AT, None, None, None))  # fmt: skip
    return spark.createDataFrame(rows, predictions_schema(entity_key()))


def _features(spark: SparkSession, ex: Example) -> DataFrame:
    key = entity_key()
    rows = [(k, DS, v, "north") for k, v in zip(ex.keys[:4], ex.values, strict=True)]
    rows.append((ex.keys[0], DS - timedelta(days=1), "other", "south"))  # not the day's value
    schema = f"{key.name} {'long' if key.type == 'int64' else 'string'}, ds date, "
    return spark.createDataFrame(rows, schema + f"{ex.segment} string, {ex.other} string")


def _realized() -> pd.DataFrame:
    """What the nightly's outcomes step joins: each prediction of DS with its label."""
    return pd.DataFrame(
        [
            {"model_role": role, "model_version": VERSIONS[role], "score": SCORES[role][i],
             "label": LABELS[i], "experiment": "ab", "arm": ARMS[i]}
            for role in SCORES
            for i in range(4)
        ]
    )  # fmt: skip


def _write_outcomes(spark: SparkSession, settings: Settings, ex: Example) -> None:
    """The outcomes of DS (and of a day before the queried range) as the nightly writes them."""
    realized = _realized()
    days = []
    for ds in (DS - timedelta(days=40), DS):
        table = per_model(realized, {"1": 0.9, "2": 0.7}, drop=0.05)
        table.insert(0, "ds", ds)
        days.append(table.assign(horizon_days=30, computed_at=AT, flow_run_id=None))
    rows = pd.concat(days)[OUTCOMES.fieldNames()]
    Warehouse.from_settings(spark, settings).append(
        settings.tables.outcomes, spark.createDataFrame(rows, OUTCOMES), partition_by=["ds"]
    )
    run = {"ds": DS, "horizon_days": 30, "computed_at": AT, "flow_run_id": None}
    record_arms(spark, settings, realized, run)


def run(spark: SparkSession, settings: Settings, name: str, **params: Any) -> DataFrame:
    """`scorehouse sql --file NAME --param k=v ...`: only what the analyst gives."""
    return run_analyst_file(spark, settings, name, {k: str(v) for k, v in params.items()})


def assert_rows(frame: DataFrame, expected: list[dict[str, Any]]) -> None:
    """The whole result: its columns in order, then every row (numbers to a relative 1e-6)."""
    assert frame.columns == list(expected[0])
    got = [r.asDict() for r in frame.collect()]
    close = [
        {k: pytest.approx(v) if isinstance(v, float) else v for k, v in e.items()} for e in expected
    ]
    assert got == close


def test_every_analyst_query_is_covered() -> None:
    tested = {
        "top_customers",
        "score_distribution_by_segment",
        "score_deciles",
        "compare_model_versions",
        "realized_auc",
        "experiment_outcomes",
    }
    assert {p.stem for p in sql_path("analyst/x").parent.glob("*.sql")} == tested


def test_each_example_names_its_key_and_segment_column() -> None:
    assert {e.folder: project_parameters(EXAMPLES_DIR / e.folder) for e in EXAMPLES} == {
        "purchase_propensity": {"entity_key": "customer_id", "segment": "segment"},
        "churn": {"entity_key": "account_id", "segment": "plan"},
    }


def test_top_customers_are_keyed_by_the_projects_entity_key(
    spark: SparkSession, example: tuple[Example, Settings]
) -> None:
    ex, settings = example
    key = entity_key().name
    expected = [
        {key: k, "score": s, "percentile": p, "model_name": "m", "model_version": "1",
         "features_version": 5, "scored_at": AT}
        for k, s, p in zip(ex.keys, SCORES["champion"], PERCENTILES["champion"], strict=False)
    ]  # fmt: skip
    assert_rows(run(spark, settings, "top_customers", ds=DS), expected)
    # From Python over the registered views: the project fills the key there too.
    register_views(spark, settings)
    assert_rows(analyst_query(spark, "top_customers", predictions="predictions", ds=DS), expected)


def _quantile(ascending: list[float], q: float) -> float:
    """PERCENTILE_APPROX on a few values: the smallest with a share >= q at or below it."""
    return ascending[math.ceil(q * len(ascending)) - 1]


def _distribution(column: str, groups: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Expected rows: per group its champion scores of DS, ascending (0.9 is the top one)."""
    return [
        {column: name, "entities": len(s), "mean_score": float(np.mean(s)),
         "p25_score": _quantile(s, 0.25), "median_score": _quantile(s, 0.5),
         "p75_score": _quantile(s, 0.75),
         "share_in_top_decile": float(np.mean([x == 0.9 for x in s]))}
        for name, s in groups.items()
    ]  # fmt: skip


def test_score_distribution_by_the_projects_categorical_attribute(
    spark: SparkSession, example: tuple[Example, Settings]
) -> None:
    ex, settings = example
    first, _, third, _ = ex.values  # two entities share the first value, one has none
    assert first is not None and third is not None
    expected = _distribution(ex.segment, {third: [0.2], first: [0.5, 0.9], "unknown": [0.1]})
    expected.sort(key=lambda r: r[ex.segment])
    assert_rows(run(spark, settings, "score_distribution_by_segment", ds=DS), expected)
    # Any column of the features table, named by the analyst.
    by_other = run(spark, settings, "score_distribution_by_segment", ds=DS, segment=ex.other)
    assert_rows(by_other, _distribution(ex.other, {"north": [0.1, 0.2, 0.5, 0.9]}))


def test_score_deciles_of_each_model(
    spark: SparkSession, example: tuple[Example, Settings]
) -> None:
    _, settings = example
    # percentile 1.0 -> decile 10, 0.75 -> 8, 0.5 -> 5, 0.25 -> 3
    deciles = {1.0: 10, 0.75: 8, 0.5: 5, 0.25: 3}
    expected = [
        {"model_role": role, "model_version": VERSIONS[role], "decile": deciles[p],
         "entities": 1, "min_score": s, "max_score": s, "mean_score": s}
        for role in ("challenger", "champion")
        for p, s in sorted(zip(PERCENTILES[role], SCORES[role], strict=True), reverse=True)
    ]  # fmt: skip
    assert_rows(run(spark, settings, "score_deciles", ds=DS), expected)


def test_compare_model_versions_pairs_entities_by_their_key(
    spark: SparkSession, example: tuple[Example, Settings]
) -> None:
    _, settings = example
    a, b = np.array(SCORES["champion"]), np.array(SCORES["challenger"])
    pa, pb = PERCENTILES["champion"], PERCENTILES["challenger"]
    expected = {
        "ds": DS, "champion_version": "1", "challenger_version": "2", "entities": 4,
        "champion_mean_score": 0.425, "challenger_mean_score": 0.35,
        "mean_abs_diff": 0.175, "max_abs_diff": 0.4,  # |diffs| = 0.1, 0.4, 0.1, 0.1
        "pearson": float(np.corrcoef(a, b)[0, 1]), "spearman": float(np.corrcoef(pa, pb)[0, 1]),
        "top_decile_overlap": 1.0,  # the first entity tops both
    }  # fmt: skip
    assert_rows(run(spark, settings, "compare_model_versions", ds=DS), [expected])


def test_realized_auc_reads_the_outcomes_the_nightly_recorded(
    spark: SparkSession, example: tuple[Example, Settings]
) -> None:
    _, settings = example

    def outcome(role: str, auc: float, test_auc: float, alert: bool) -> dict[str, Any]:
        return {
            "ds": DS, "model_role": role, "model_version": VERSIONS[role], "entities": 4,
            "positives": 2, "positive_rate": 0.5, "mean_score": float(np.mean(SCORES[role])),
            "auc": auc, "test_auc": test_auc, "auc_drop": test_auc - auc,
            "ece": m.expected_calibration_error(np.array(LABELS), np.array(SCORES[role])),
            "alert": alert, "horizon_days": 30, "computed_at": AT,
        }  # fmt: skip

    # Positives score 0.9 and 0.2, negatives 0.5 and 0.1 for the champion: 3 of 4 pairs;
    # the challenger (0.8, 0.3 against 0.1, 0.2) ranks every pair right.
    expected = [outcome("challenger", 1.0, 0.7, False), outcome("champion", 0.75, 0.9, True)]
    start = DS - timedelta(days=30)  # the earlier recorded day is outside the range
    assert_rows(run(spark, settings, "realized_auc", start=start, end=DS), expected)
    before = run(spark, settings, "realized_auc", start=start, end=DS - timedelta(days=1))
    assert before.collect() == []


def test_experiment_outcomes_per_night(
    spark: SparkSession, example: tuple[Example, Settings]
) -> None:
    _, settings = example
    # Served rows: entities 1, 2 the champion's scores (0.9, 0.5), entities 3, 4 the
    # challenger's (0.3, 0.2); each arm has one positive, ranked first.
    ece = {
        arm: m.expected_calibration_error(np.array([1, 0]), np.array(scores))
        for arm, scores in (("champion", [0.9, 0.5]), ("challenger", [0.3, 0.2]))
    }
    expected = {
        "ds": DS, "experiment": "ab", "champion_version": "1", "challenger_version": "2",
        "champion_rows": 2, "challenger_rows": 2,
        "champion_positive_rate": 0.5, "challenger_positive_rate": 0.5,
        "rate_diff": 0.0, "rate_p_value": 1.0,
        "champion_roc_auc": 1.0, "challenger_roc_auc": 1.0,
        "auc_diff": 0.0, "auc_p_value": None,  # both standard errors are 0: nothing to test
        "champion_ece": ece["champion"], "challenger_ece": ece["challenger"],
    }  # fmt: skip
    out = run(spark, settings, "experiment_outcomes", start=DS, end=DS)
    assert_rows(out, [expected])


def test_a_project_parameter_is_still_checked_as_a_name(
    spark: SparkSession, example: tuple[Example, Settings]
) -> None:
    _, settings = example
    with pytest.raises(ValidationError, match="is neither a date nor a table or column name"):
        run(spark, settings, "top_customers", ds=DS, entity_key="1; DROP TABLE predictions")
