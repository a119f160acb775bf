"""Subcommands of the nightly path: config, features, training-set, nightly, weekly-train, demo."""

from __future__ import annotations

import argparse
import json
from datetime import date

from scorehouse.cli import registrar
from scorehouse.errors import ScorehouseError
from scorehouse.progress import rows_of
from scorehouse.settings import Settings


@registrar
def _register(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="print the effective settings (secrets masked)")
    config.set_defaults(handler=_show_config)

    features = sub.add_parser(
        "features", help="build feature snapshots, `features list`, or `features prune`"
    )
    features.add_argument("action", nargs="?", choices=["build", "list", "prune"], default="build")
    features.add_argument("--start", type=date.fromisoformat, help="first as-of date (YYYY-MM-DD)")
    features.add_argument("--end", type=date.fromisoformat, help="last as-of date (default: start)")
    features.add_argument(
        "--keep-days",
        type=int,
        default=None,
        help="prune: snapshots to keep (default: features.retention_days)",
    )
    features.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=None,
        help="prune: newest day kept (default: the newest snapshot)",
    )
    features.add_argument("--dry-run", action="store_true", help="prune: only list the days")
    features.set_defaults(handler=_features)

    training = sub.add_parser("training-set", help="build the point-in-time training set")
    training.add_argument("--start", type=date.fromisoformat, required=True)
    training.add_argument("--end", type=date.fromisoformat, required=True)
    training.add_argument("--horizon-days", type=int, default=None)
    training.add_argument(
        "--every", type=int, default=None, help="sample an as-of date every N days"
    )
    training.set_defaults(handler=_training_set)

    nightly = sub.add_parser("nightly", help="run the nightly Prefect flow for a date")
    nightly.add_argument(
        "--date", type=date.fromisoformat, default=None, help="default: yesterday UTC"
    )
    nightly.add_argument("--fail-on", choices=["warn", "critical"], default=None)
    nightly.add_argument(
        "--force", action="store_true", help="rerun every step, even those already done"
    )
    nightly.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="run for today or a later day although its events are not all in",
    )
    nightly.add_argument(
        "--allow-older",
        action="store_true",
        help="publish even if the live generation holds a newer day (readers go back)",
    )
    nightly.set_defaults(handler=_nightly)

    weekly = sub.add_parser("weekly-train", help="run the weekly training Prefect flow")
    weekly.add_argument(
        "--as-of", type=date.fromisoformat, default=None, help="default: yesterday UTC"
    )
    weekly.add_argument(
        "--lookback-days", type=int, default=None, help="default: features.training_lookback_days"
    )
    weekly.set_defaults(handler=_weekly_train)

    demo = sub.add_parser("demo", help="generate data, train, run the nightly flow, look up scores")
    demo.add_argument("--customers", type=int, default=10_000)
    demo.add_argument("--days", type=int, default=180)
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(handler=_demo)


def _show_config(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.settings import public_view

    print(json.dumps(public_view(settings), indent=2))
    return 0


def _features(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        from scorehouse.features.registry import load_registry

        print(f"{'name':28} {'type':6} {'window':9} {'no history':10} {'owner':10} description")
        for f in load_registry():
            no_history = "missing" if f.no_history is None else f.no_history
            print(
                f"{f.name:28} {f.type:6} {f.window:9} {no_history!s:10} {f.owner:10} {f.description}"
            )
        return 0
    if args.action == "prune":
        from scorehouse.features.retention import prune_features
        from scorehouse.spark import get_spark

        pruned = prune_features(
            get_spark(settings),
            settings,
            as_of=args.as_of,
            retention_days=args.keep_days,
            dry_run=args.dry_run,
        )
        print(json.dumps(pruned.__dict__, indent=2, default=str))
        return 0
    if args.start is None:
        raise ScorehouseError("features: --start is required to build (see --help)")
    from scorehouse.features.build import build_features
    from scorehouse.spark import get_spark

    build = build_features(get_spark(settings), settings, args.start, args.end)
    rows_of(build, "rows")
    print(json.dumps({k: str(v) for k, v in build.__dict__.items()}, indent=2))
    return 0


def _training_set(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.features.training_set import build_training_set
    from scorehouse.spark import get_spark

    build = build_training_set(
        get_spark(settings),
        settings,
        args.start,
        args.end,
        horizon_days=args.horizon_days,
        every_days=args.every,
    )
    rows_of(build, "rows", "positives", "stale_rows")
    print(json.dumps({k: str(v) for k, v in build.__dict__.items()}, indent=2))
    return 0


def _nightly(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.flows import nightly

    result = nightly(
        ds=args.date,
        config=args.config,
        fail_on=args.fail_on,
        force=args.force,
        allow_incomplete=args.allow_incomplete,
        allow_older=args.allow_older,
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def _weekly_train(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.flows import weekly_train

    result = weekly_train(as_of=args.as_of, lookback_days=args.lookback_days, config=args.config)
    print(json.dumps(result, indent=2, default=str))
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.demo import run_demo

    run_demo(settings, customers=args.customers, days=args.days, seed=args.seed, config=args.config)
    return 0
