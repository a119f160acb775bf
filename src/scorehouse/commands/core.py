"""Subcommands of the feature store: config, features (build, list, prune), training-set."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Literal

import typer

from scorehouse.commands.common import Json, iso_date, print_json, settings_of
from scorehouse.errors import ScorehouseError
from scorehouse.progress import rows_of
from scorehouse.project.load import ProjectError, locate
from scorehouse.settings import public_view


def show_config(ctx: typer.Context, as_json: Json = False) -> None:
    """Print the effective settings (secrets masked) and the project folder in use."""
    view = public_view(settings_of(ctx))
    try:
        view["project"] = str(locate())
    except ProjectError as exc:  # shown, not fatal: config is where one looks for the cause
        view["project"] = f"error: {exc}"
    if as_json:
        print_json(view)
    else:
        print(json.dumps(view, indent=2))


def features(
    ctx: typer.Context,
    action: Annotated[
        Literal["build", "list", "prune"],
        typer.Argument(metavar="ACTION", help="build (default), list or prune"),
    ] = "build",
    start: Annotated[
        date | None, typer.Option(parser=iso_date, help="build: first as-of date (YYYY-MM-DD)")
    ] = None,
    end: Annotated[
        date | None, typer.Option(parser=iso_date, help="build: last as-of date (default: start)")
    ] = None,
    keep_days: Annotated[
        int | None, typer.Option(help="prune: snapshots to keep (default: features.retention_days)")
    ] = None,
    as_of: Annotated[
        date | None,
        typer.Option(parser=iso_date, help="prune: newest day kept (default: the newest snapshot)"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="prune: only list the days")] = False,
    as_json: Json = False,
) -> None:
    """Build feature snapshots, `features list` the declared features, or `features prune`
    old days."""
    if action == "list":
        _list_features(as_json)
        return
    settings = settings_of(ctx)
    from scorehouse.spark import get_spark

    if action == "prune":
        from scorehouse.features.retention import prune_features

        pruned = prune_features(
            get_spark(settings), settings, as_of=as_of, retention_days=keep_days, dry_run=dry_run
        )
        if as_json:
            print_json(pruned)
        else:
            print(json.dumps(pruned.__dict__, indent=2, default=str))
        return
    if start is None:
        raise ScorehouseError("features: --start is required to build (see --help)")
    from scorehouse.features.build import build_features

    build = build_features(get_spark(settings), settings, start, end)
    rows_of(build, "rows")
    if as_json:
        print_json(build)
        return
    restated = f", restated from {build.restated_from}" if build.restated_from else ""
    print(
        f"features {build.start}..{build.end}: {build.rows:,} rows, {len(build.built)} "
        f"snapshots written ({build.mode}{restated}); {settings.tables.features} version "
        f"{build.features_version} ({build.seconds:.1f} s)"
    )


def _list_features(as_json: bool) -> None:
    from scorehouse.commands.project import print_features

    print_features(as_json)


def training_set(
    ctx: typer.Context,
    start: Annotated[date, typer.Option(parser=iso_date, help="first as-of date")],
    end: Annotated[date, typer.Option(parser=iso_date, help="last as-of date")],
    horizon_days: Annotated[int | None, typer.Option(help="default: model.horizon_days")] = None,
    every: Annotated[int | None, typer.Option(help="sample an as-of date every N days")] = None,
    as_json: Json = False,
) -> None:
    """Build the point-in-time training set."""
    from scorehouse.features.training_set import build_training_set
    from scorehouse.spark import get_spark

    settings = settings_of(ctx)
    build = build_training_set(
        get_spark(settings), settings, start, end, horizon_days=horizon_days, every_days=every
    )
    rows_of(build, "rows", "positives", "stale_rows")
    if as_json:
        print_json(build)
    else:
        dates = build.as_of_dates
        span = f"{dates[0]}..{dates[-1]}" if dates else "none"
        print(
            f"training set: {build.rows:,} rows ({build.positives:,} positive, "
            f"{build.stale_rows:,} without a snapshot in the TTL) on {len(dates)} as-of dates "
            f"{span}; {settings.tables.training_set} version {build.table_version} "
            f"({build.seconds:.1f} s)"
        )
