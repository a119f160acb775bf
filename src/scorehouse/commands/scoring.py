"""Subcommands `score` (nightly scoring of one day) and `sql` (Spark SQL over the warehouse)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import typer

from scorehouse.commands.common import (
    Json,
    checked_pairs,
    iso_date,
    pairs,
    print_json,
    settings_of,
)
from scorehouse.progress import rows_of


def score(
    ctx: typer.Context,
    day: Annotated[date, typer.Option("--date", parser=iso_date, help="YYYY-MM-DD")],
    fail_on: Annotated[
        Literal["warn", "critical"] | None,
        typer.Option(help="stop before committing predictions when drift reaches this level"),
    ] = None,
    flow_run_id: Annotated[
        str | None, typer.Option(help="recorded with each prediction (set by Prefect)")
    ] = None,
    as_json: Json = False,
) -> None:
    """Score every entity of one day's features with the champion (and challenger).

    Pin the champion (and a challenger in shadow mode), score the features snapshot of
    DATE, check the output, record drift in the monitoring table and replace DATE in the
    predictions table.
    """
    from scorehouse.scoring.score import score_date
    from scorehouse.spark import get_spark

    settings = settings_of(ctx)
    spark = get_spark(settings, app_name="scorehouse-score")
    run = score_date(spark, settings, day, flow_run_id=flow_run_id, fail_on=fail_on)
    rows_of(run, "rows")
    if as_json:
        print_json(run)
        return
    challenger = f", challenger v{run.challenger_version}" if run.challenger_version else ""
    print(
        f"{run.ds}: {run.rows} entities scored by {run.model_name} v{run.model_version}"
        f"{challenger} in {run.seconds:.1f} s"
    )
    print(
        f"  features version {run.features_version} -> predictions version "
        f"{run.predictions_version}"
    )
    if run.drift_level is not None:
        psi = "n/a" if run.score_psi is None else f"{run.score_psi:.3f}"
        print(f"  drift: {run.drift_level} (score PSI vs previous night {psi})")
        for label in run.drift_critical:
            print(f"    critical: {label}")
        for label in run.drift_warn:
            print(f"    warn:     {label}")


def sql(
    ctx: typer.Context,
    query: Annotated[
        str | None,
        typer.Argument(
            metavar="QUERY", help='e.g. "SELECT ds, count(*) FROM predictions GROUP BY ds"'
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            metavar="NAME",
            help="a shipped query instead: sql/analyst/NAME.sql, NAME.sql or NAME",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="KEY=VALUE",
            callback=checked_pairs("KEY=VALUE"),
            help="--file: fill ${KEY} with a date (YYYY-MM-DD) or a table or column name "
            "(repeatable; a table parameter defaults to the warehouse table of that name, "
            "entity_key and segment to the project's columns)",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="rows to print")] = 50,
    allow_writes: Annotated[
        bool,
        typer.Option(
            "--allow-writes",
            help="run any statement, writes included (they can destroy warehouse tables)",
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Run a read-only Spark SQL query with every warehouse table as a view.

    Every Delta table under the warehouse is a temporary view named after its folder
    (predictions, features, monitoring, ...). One query runs: SELECT, WITH ... SELECT,
    VALUES, or SHOW / DESCRIBE / EXPLAIN; writes, SET, CACHE, ADD JAR, several statements
    and direct file reads (``parquet.`/path` ``, read_files) are refused with exit code 2 before
    anything runs. `predictions VERSION AS OF 3` (or TIMESTAMP AS OF '2026-06-01 08:00:00',
    UTC) reads an earlier Delta version of a table. `--file NAME --param ds=...` runs a
    shipped query of sql/analyst/ under the same rules.
    """
    if (query is None) == (file is None):
        raise typer.BadParameter("give either a QUERY or --file NAME", param_hint="QUERY/--file")
    if param and file is None:
        raise typer.BadParameter("fills the parameters of a --file query", param_hint="--param")
    params = pairs(param)
    from scorehouse.scoring.analyst import run_analyst_file, run_sql
    from scorehouse.spark import get_spark

    settings = settings_of(ctx)
    spark = get_spark(settings, app_name="scorehouse-sql")
    if query is not None:
        frame = run_sql(spark, settings, query, allow_writes=allow_writes)
    else:
        assert file is not None  # one of the two, checked above
        frame = run_analyst_file(spark, settings, file, params, allow_writes=allow_writes)
    if as_json:
        print_json([row.asDict(recursive=True) for row in frame.limit(limit).collect()])
    else:
        frame.show(limit, truncate=False)
