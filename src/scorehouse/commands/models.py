"""Subcommands for models: `train`, and `models list | promote VERSION | rollback`."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer

from scorehouse.commands.common import Json, iso_date, print_json, settings_of

if TYPE_CHECKING:
    from scorehouse.monitoring.experiment import Standing

app = typer.Typer(
    name="models", help="List, promote and roll back registered models.", no_args_is_help=True
)


def train(
    ctx: typer.Context,
    as_of: Annotated[
        date | None,
        typer.Option(parser=iso_date, help="use only labels known by this day (YYYY-MM-DD)"),
    ] = None,
    training_version: Annotated[
        int | None, typer.Option(help="Delta version of the training set (default latest)")
    ] = None,
    training_table: Annotated[str | None, typer.Option(help="default: tables.training_set")] = None,
    test_start: Annotated[
        date | None, typer.Option(parser=iso_date, help="first test as_of")
    ] = None,
    gap_days: Annotated[
        int | None, typer.Option(help="purge before the test cut (default: model.horizon_days)")
    ] = None,
    balance_classes: Annotated[
        bool, typer.Option("--balance-classes", help="scale_pos_weight = negatives/positives")
    ] = False,
    as_json: Json = False,
) -> None:
    """Train on the training-set table, log to MLflow, register, apply the champion gate.

    Distributed XGBoost on the training-set table (time split by as_of), baselines and
    evaluation logged to MLflow; the new version becomes champion only if it passes the
    gate, otherwise challenger.
    """
    from scorehouse.spark import get_spark
    from scorehouse.training.splits import SplitSpec
    from scorehouse.training.train import TrainOptions, train_from_warehouse

    settings = settings_of(ctx)
    split = SplitSpec(
        test_start=test_start,
        gap_days=settings.model.horizon_days if gap_days is None else gap_days,
    )
    result = train_from_warehouse(
        get_spark(settings, app_name="scorehouse-train"),
        settings,
        as_of=as_of,
        training_version=training_version,
        table=training_table,
        options=TrainOptions(split=split, balance_classes=balance_classes),
    )
    m = result.metrics
    if as_json:
        # The booster and the Spark model are objects, not results: left out.
        print_json(
            {
                "model_name": result.model_name,
                "version": result.version,
                "alias": result.alias,
                "decision": result.decision,
                "run_id": result.run_id,
                "tracking_uri": settings.mlflow.tracking_uri,
                "split": result.plan,
                "metrics": m,
            }
        )
        return
    print(f"{result.model_name} v{result.version} -> {result.alias}: {result.decision.reason}")
    print(f"  mlflow run {result.run_id} ({settings.mlflow.tracking_uri})")
    print(f"  split {result.plan.as_dict()}")
    print(
        f"  {'scorer':<12} {'test AUC':>9} {'PR AUC':>8} {'log loss':>9} {'ECE':>7} {'lift@10%':>9}"
    )
    for label, prefix in (
        ("model", ""),
        ("single-node", "single_node_"),
        ("baseline", "baseline_"),
        ("btyd", "btyd_"),
    ):
        if f"{prefix}test_roc_auc" not in m:
            continue
        print(
            f"  {label:<12} {m[prefix + 'test_roc_auc']:>9.4f} {m[prefix + 'test_pr_auc']:>8.4f} "
            f"{m[prefix + 'test_log_loss']:>9.4f} {m[prefix + 'test_ece']:>7.4f} "
            f"{m[prefix + 'test_top_decile_lift']:>9.2f}"
        )
    if "champion_test_roc_auc" in m:
        print(f"  previous champion on this test set: AUC {m['champion_test_roc_auc']:.4f}")
    print(f"  look: mlflow ui --backend-store-uri {settings.mlflow.tracking_uri}")


def backtest(
    ctx: typer.Context,
    start: Annotated[date, typer.Option(parser=iso_date, help="first as-of date")],
    end: Annotated[date, typer.Option(parser=iso_date, help="last as-of date")],
    every: Annotated[int, typer.Option(help="days between as-of dates")] = 7,
    version: Annotated[
        str | None, typer.Option(help="registered version to test (default: the champion)")
    ] = None,
    as_json: Json = False,
) -> None:
    """Score past as-of dates whose labels have matured; metrics per date vs the baseline.

    For each as-of date, every entity known then is scored with the model (features as
    of that date) and compared with what happened in the label horizon. The rows go to
    the backtests table and an MLflow run (table and chart). Dates the model was fit on
    are marked in_sample.
    """
    from scorehouse.spark import get_spark
    from scorehouse.training.backtest import BacktestRequest
    from scorehouse.training.backtest import backtest as run_backtest

    settings = settings_of(ctx)
    spark = get_spark(settings, app_name="scorehouse-backtest")
    result = run_backtest(spark, settings, BacktestRequest(start, end, every, version))
    table = result.rows
    if as_json:
        print_json(
            {
                "run_id": result.run_id,
                "model_version": result.model_version,
                "table_version": result.table_version,
                "rows": table.to_dict(orient="records"),
            }
        )
        return
    print(f"backtest of {settings.model.name} v{result.model_version}: run {result.run_id}")
    print(
        f"  {'as_of':<10} {'scorer':<9} {'rows':>7} {'pos rate':>8} {'AUC':>7} {'PR AUC':>7} {'ECE':>6} {'lift@10%':>8}"
    )
    for r in table.itertuples():
        mark = " (in sample)" if r.in_sample else ""
        print(
            f"  {r.as_of!s:<10} {r.scorer:<9} {r.rows:>7} {r.positive_rate:>8.3f} "
            f"{r.roc_auc:>7.4f} {r.pr_auc:>7.4f} {r.ece:>6.3f} {r.top_decile_lift:>8.2f}{mark}"
        )
    print(f"  table {settings.tables.backtests} version {result.table_version}")


@app.command("list")
def list_models(ctx: typer.Context, as_json: Json = False) -> None:
    """Versions with aliases, test AUC, run id."""
    from scorehouse.training.registry import list_versions

    settings = settings_of(ctx)
    versions = list_versions(settings)
    if as_json:
        print_json(versions)
        return
    if not versions:
        print(f"no versions of {settings.model.name} in {settings.mlflow.tracking_uri}")
        return
    print(f"{'version':>7}  {'aliases':<20} {'test AUC':>8}  {'run id':<32}  created (UTC)")
    for v in versions:
        auc = f"{v.test_auc:.4f}" if v.test_auc is not None else "-"
        print(
            f"{v.version:>7}  {','.join(v.aliases) or '-':<20} {auc:>8}  {v.run_id:<32}  "
            f"{v.created:%Y-%m-%d %H:%M:%S}"
        )


@app.command()
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(metavar="VERSION", help="the registered version")],
    as_json: Json = False,
) -> None:
    """Make VERSION the champion."""
    from scorehouse.training.registry import promote as make_champion

    settings = settings_of(ctx)
    make_champion(settings, version)
    if as_json:
        print_json({"model_name": settings.model.name, "champion": version})
    else:
        print(f"{settings.model.name} v{version} is the champion")


@app.command()
def rollback(ctx: typer.Context, as_json: Json = False) -> None:
    """Champion back to the one it replaced."""
    from scorehouse.training.registry import alias_version
    from scorehouse.training.registry import rollback as roll_back

    settings = settings_of(ctx)
    current = alias_version(settings, "champion")
    previous = roll_back(settings)
    if as_json:
        print_json({"model_name": settings.model.name, "from": current, "champion": previous})
    else:
        print(f"{settings.model.name}: champion rolled back from v{current} to v{previous}")


@app.command()
def experiment(ctx: typer.Context, as_json: Json = False) -> None:
    """Whether the challenger has earned promotion in the champion vs challenger experiment.

    Pools the matured nights of `experiment.name` (its latest challenger) from the
    experiment_outcomes table: rows, positive rate and AUC per arm, the AUC test. Verdict:
    "earned" with at least experiment.min_rows_per_arm rows in each arm, p < experiment.alpha
    and a higher challenger AUC; "worse" the same with a lower AUC; "not yet" otherwise.
    """
    from scorehouse.monitoring.outcomes import experiment_standing

    settings = settings_of(ctx)
    cfg = settings.experiment
    result = experiment_standing(settings)
    if as_json:
        rule = {"min_rows_per_arm": cfg.min_rows_per_arm, "alpha": cfg.alpha}
        print_json({"experiment": cfg.name, "rule": rule, "standing": result})
        return
    if cfg.name is None:
        print("no experiment: set experiment.name (docs/training.md, Champion vs challenger)")
        return
    if result is None:
        print(
            f"experiment {cfg.name}: no matured night yet ({settings.tables.experiment_outcomes})"
        )
        return
    _print_standing(result, cfg.min_rows_per_arm, cfg.alpha)


def _print_standing(s: Standing, min_rows: int, alpha: float) -> None:
    from scorehouse.serving.keys import ARMS

    champions = ",".join(f"v{v}" for v in s.champion_versions)
    print(f"experiment {s.experiment}: challenger v{s.challenger_version} vs champion {champions}")
    print(f"  matured nights {s.days} ({s.first_ds} to {s.last_ds})")
    print(f"  {'arm':<11} {'rows':>9} {'pos rate':>9} {'AUC':>7}")
    for arm in ARMS:
        auc = s.roc_auc[arm]
        auc_text = "-" if auc is None else f"{auc:.4f}"
        print(f"  {arm:<11} {s.rows[arm]:>9} {s.positive_rate[arm]:>9.4f} {auc_text:>7}")
    if s.auc is not None and s.auc.p_value is not None:
        print(f"  AUC difference {s.auc.diff:+.4f}, p {s.auc.p_value:.4g}")
    if s.rate.p_value is not None:
        print(f"  positive rate difference {s.rate.diff:+.4f}, p {s.rate.p_value:.4g}")
    print(
        f"  verdict: {s.verdict} (earned: >= {min_rows} rows per arm, p < {alpha}, "
        "challenger AUC higher)"
    )
