"""Subcommands for models: `train`, and `models list | promote VERSION | rollback`."""

from __future__ import annotations

import argparse
from datetime import date

from scorehouse.cli import registrar
from scorehouse.settings import Settings


@registrar
def _register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train on the training-set table, log to MLflow, register, apply the champion gate",
        description="Distributed XGBoost on the training-set table (time split by as_of), "
        "baselines and evaluation logged to MLflow; the new version becomes champion only "
        "if it passes the gate, otherwise challenger.",
    )
    train.add_argument(
        "--as-of", type=date.fromisoformat, help="use only labels known by this day (YYYY-MM-DD)"
    )
    train.add_argument(
        "--training-version", type=int, help="Delta version of the training set (default latest)"
    )
    train.add_argument("--training-table", help="default: tables.training_set")
    train.add_argument("--valid-start", type=date.fromisoformat, help="first validation as_of")
    train.add_argument("--test-start", type=date.fromisoformat, help="first test as_of")
    train.add_argument(
        "--gap-days", type=int, help="purge before each cut (default: model.horizon_days)"
    )
    train.add_argument(
        "--balance-classes", action="store_true", help="scale_pos_weight = negatives/positives"
    )
    train.set_defaults(handler=_train)

    models = sub.add_parser("models", help="list, promote and roll back registered models")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    msub.add_parser("list", help="versions with aliases, test AUC, run id").set_defaults(
        handler=_list
    )
    promote = msub.add_parser("promote", help="make VERSION the champion")
    promote.add_argument("version")
    promote.set_defaults(handler=_promote)
    msub.add_parser("rollback", help="champion back to the one it replaced").set_defaults(
        handler=_rollback
    )


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.spark import get_spark
    from scorehouse.training.splits import SplitSpec
    from scorehouse.training.train import TrainOptions, train_from_warehouse

    split = SplitSpec(
        valid_start=args.valid_start,
        test_start=args.test_start,
        gap_days=settings.model.horizon_days if args.gap_days is None else args.gap_days,
    )
    spark = get_spark(settings, app_name="scorehouse-train")
    result = train_from_warehouse(
        spark,
        settings,
        as_of=args.as_of,
        training_version=args.training_version,
        table=args.training_table,
        options=TrainOptions(split=split, balance_classes=args.balance_classes),
    )
    m = result.metrics
    print(f"{result.model_name} v{result.version} -> {result.alias}: {result.decision.reason}")
    print(f"  mlflow run {result.run_id} ({settings.mlflow.tracking_uri})")
    print(f"  split {result.plan.as_dict()}")
    print(
        f"  {'scorer':<12} {'test AUC':>9} {'PR AUC':>8} {'log loss':>9} {'ECE':>7} {'lift@10%':>9}"
    )
    for label, prefix in (
        ("model", ""),
        ("single-node", "single_node_"),
        ("heuristic", "heuristic_"),
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
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.training.registry import list_versions

    versions = list_versions(settings)
    if not versions:
        print(f"no versions of {settings.model.name} in {settings.mlflow.tracking_uri}")
        return 0
    print(f"{'version':>7}  {'aliases':<20} {'test AUC':>8}  {'run id':<32}  created (UTC)")
    for v in versions:
        auc = f"{v.test_auc:.4f}" if v.test_auc is not None else "-"
        print(
            f"{v.version:>7}  {','.join(v.aliases) or '-':<20} {auc:>8}  {v.run_id:<32}  "
            f"{v.created:%Y-%m-%d %H:%M:%S}"
        )
    return 0


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.training.registry import promote

    promote(settings, args.version)
    print(f"{settings.model.name} v{args.version} is the champion")
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.training.registry import alias_version, rollback

    current = alias_version(settings, "champion")
    previous = rollback(settings)
    print(f"{settings.model.name}: champion rolled back from v{current} to v{previous}")
    return 0
