"""Subcommands that run the Prefect flows: nightly, weekly-train, backfill, and the demo."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

import typer

from scorehouse.commands.common import Json, globals_of, iso_date, print_json, settings_of
from scorehouse.settings import Settings

log = logging.getLogger(__name__)

FailOn = Annotated[
    Literal["warn", "critical"] | None,
    typer.Option(help="stop before committing predictions when drift reaches this level"),
]
Force = Annotated[bool, typer.Option("--force", help="rerun every step, even those already done")]
AllowOlder = Annotated[
    bool,
    typer.Option(
        "--allow-older",
        help="publish even if the live generation holds a newer day (readers go back)",
    ),
]


def nightly(
    ctx: typer.Context,
    day: Annotated[
        date | None, typer.Option("--date", parser=iso_date, help="default: yesterday UTC")
    ] = None,
    fail_on: FailOn = None,
    force: Force = False,
    allow_incomplete: Annotated[
        bool,
        typer.Option(
            "--allow-incomplete",
            help="run for today or a later day although its events are not all in",
        ),
    ] = False,
    allow_older: AllowOlder = False,
    as_json: Json = False,
) -> None:
    """Run the nightly Prefect flow for a date: features, checks, score, publish, verify."""
    from scorehouse.flows import nightly as flow

    with prefect_server(settings_of(ctx)):
        result = flow(
            ds=day,
            config=globals_of(ctx).config,
            fail_on=fail_on,
            force=force,
            allow_incomplete=allow_incomplete,
            allow_older=allow_older,
        )
    _print_result(result, as_json)


def weekly_train(
    ctx: typer.Context,
    as_of: Annotated[
        date | None, typer.Option(parser=iso_date, help="default: yesterday UTC")
    ] = None,
    lookback_days: Annotated[
        int | None, typer.Option(help="default: features.training_lookback_days")
    ] = None,
    as_json: Json = False,
) -> None:
    """Run the weekly training Prefect flow: training set, train, champion gate."""
    from scorehouse.flows import weekly_train as flow

    with prefect_server(settings_of(ctx)):
        result = flow(as_of=as_of, lookback_days=lookback_days, config=globals_of(ctx).config)
    _print_result(result, as_json)


def backfill(
    ctx: typer.Context,
    start: Annotated[date, typer.Option(parser=iso_date, help="first day (YYYY-MM-DD)")],
    end: Annotated[
        date | None, typer.Option(parser=iso_date, help="last day (default: start)")
    ] = None,
    what: Annotated[
        Literal["features", "predictions", "both"],
        typer.Option(help="build features, score predictions, or both"),
    ] = "both",
    publish_last: Annotated[
        bool, typer.Option("--publish-last", help="publish the last day's predictions")
    ] = False,
    fail_on: FailOn = None,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Run the backfill Prefect flow over start..end with the nightly's steps.

    Features are built in one range build, checks and scores per day; steps whose output
    is already current are skipped unless --force. Prints what each step built or skipped.
    """
    if end is not None and end < start:  # refused before a Prefect server starts
        raise typer.BadParameter(f"{end} is before --start {start}", param_hint="--end")
    from scorehouse.flows import backfill as flow
    from scorehouse.orchestration.report import steps_text

    with prefect_server(settings_of(ctx)):
        result = flow(
            start=start,
            end=end,
            what=what,
            publish_last=publish_last,
            config=globals_of(ctx).config,
            fail_on=fail_on,
            force=force,
        )
    if as_json:
        print_json(result)
        return
    print(f"backfill {result['start']} .. {result['end']} ({result['what']})")
    print(steps_text(result["steps"], result["timings"]))


def demo(
    ctx: typer.Context,
    example: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="a shipped example: purchase_propensity (the default), churn, ...",
        ),
    ] = None,
    customers: Annotated[
        int | None,
        typer.Option(
            "--customers",
            "--entities",
            help="number of entities: customers, accounts, ... (default: 10000 customers "
            "for the purchase example, 2000 for the others)",
        ),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            help="days of history (default: 180 for the purchase example, 240 for the others)"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    as_json: Json = False,
) -> None:
    """Generate data, train, run the nightly flow, look up scores.

    The purchase example uses the built-in generator; another example (`--example churn`)
    uses its own generator and ingests its files as a user's would, in a warehouse,
    Redis namespace and model name of its own.
    """
    from scorehouse.demo import default_days, default_entities, example_project, run_demo

    # With --json the walk-through goes to stderr: stdout holds the timings document only.
    narrate = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    config = globals_of(ctx).config
    with narrate, example_project(example, config) as settings:
        timings = run_demo(
            settings or settings_of(ctx),
            customers=customers or default_entities(example),
            days=days or default_days(example),
            seed=seed,
            config=config,
            example=example,
        )
    if as_json:
        print_json(timings)


@contextlib.contextmanager
def prefect_server(settings: Settings) -> Iterator[None]:
    """Run the flow against the Prefect server of `scorehouse up` when one answers, so the
    run shows in its UI; otherwise as Prefect is set up (PREFECT_API_URL, or a temporary
    server for this process)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from scorehouse.stack import flow_api_url, prefect_url

    api = flow_api_url(settings, PREFECT_API_URL.value())
    if api is None:
        yield
        return
    log.info("flow runs report to the Prefect server of `scorehouse up`: %s", prefect_url(settings))
    with temporary_settings(updates={PREFECT_API_URL: api}):
        yield


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
    else:
        print(json.dumps(result, indent=2, default=str))
