"""Subcommands of the serving side: `publish` (and `publish rollback`), `lookup`, `serve`."""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Annotated, Literal

import typer

from scorehouse.commands.common import Json, iso_date, print_json, settings_of
from scorehouse.errors import ScorehouseError
from scorehouse.progress import rows_of


def publish(
    ctx: typer.Context,
    action: Annotated[
        Literal["rollback"] | None,
        typer.Argument(metavar="rollback", help="point readers back instead of loading a day"),
    ] = None,
    day: Annotated[
        date | None, typer.Option("--date", parser=iso_date, help="the predictions' ds")
    ] = None,
    allow_older: Annotated[
        bool,
        typer.Option(
            "--allow-older",
            help="publish even if the live generation holds a newer day (readers go back)",
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Load a day's champion predictions into a new Redis generation and flip to it.

    Load the champion predictions (and feature vectors) of --date into a new Redis
    generation, verify it, flip the pointer and add its row to the `publications` table.
    `publish rollback` points readers back at the previous generation.
    """
    from scorehouse.publish.generations import rollback

    settings = settings_of(ctx)
    if action == "rollback":
        info = rollback(settings)
        if as_json:
            print_json(info)
        else:
            print(
                f"rolled back: readers now see {info.generation} (ds {info.ds}, "
                f"model v{info.model_version})"
            )
        return
    if day is None:
        raise ScorehouseError("publish: --date is required (or use `publish rollback`)")
    from scorehouse.orchestration.publications import publish_recorded
    from scorehouse.spark import get_spark

    info, _ = publish_recorded(
        get_spark(settings, app_name="publish"), settings, day, allow_older=allow_older
    )
    rows_of(info, "count", "features_count")
    if as_json:
        print_json(info)
        return
    print(
        f"published {info.count} scores and {info.features_count} feature vectors as generation "
        f"{info.generation} (model {info.model_name} v{info.model_version}); "
        f"`redis-cli GET {settings.redis.namespace}:current` names it"
    )


def lookup(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(metavar="ID...", help="entity ids")],
    no_fallback: Annotated[
        bool,
        typer.Option(
            "--no-fallback",
            help="answer a miss with serving.default_score instead of scoring it with the champion",
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Print the score of each id as a JSON line (what apps read); --json: one list."""
    from scorehouse.serving import Client, keys

    # The service's Client: same fallback model, same id rule, so the same answer.
    with Client(settings_of(ctx), fallback=not no_fallback) as client:
        try:
            results = client.get_many(ids)
        except keys.InvalidEntityId as exc:
            print(f"error: invalid entity id: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    for result in results:
        print(json.dumps(result.to_dict()))


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="default: serving.host")] = None,
    port: Annotated[int | None, typer.Option(help="default: serving.port")] = None,
) -> None:
    """Run the HTTP lookup service."""
    from scorehouse.serving.service import serve as run_service

    run_service(settings_of(ctx), host=host, port=port)
