"""Subcommands `score` (nightly scoring of one day) and `sql` (Spark SQL over the warehouse)."""

from __future__ import annotations

import argparse
from datetime import date

from scorehouse.cli import registrar
from scorehouse.progress import rows_of
from scorehouse.settings import Settings


@registrar
def _register(sub: argparse._SubParsersAction) -> None:
    score = sub.add_parser(
        "score",
        help="score every entity of one day's features with the champion (and challenger)",
        description="Pin the champion (and a challenger in shadow mode), score the features "
        "snapshot of DATE, check the output, record drift in the monitoring table and "
        "replace DATE in the predictions table.",
    )
    score.add_argument("--date", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    score.add_argument(
        "--fail-on",
        choices=["warn", "critical"],
        help="stop before committing predictions when drift reaches this level",
    )
    score.add_argument("--flow-run-id", help="recorded with each prediction (set by Prefect)")
    score.set_defaults(handler=_score)

    sql = sub.add_parser(
        "sql",
        help="run a read-only Spark SQL query with every warehouse table as a view",
        description="Every Delta table under the warehouse is a temporary view named after "
        "its folder (predictions, features, monitoring, ...). One query runs: SELECT, "
        "WITH ... SELECT, VALUES, or SHOW / DESCRIBE / EXPLAIN; writes, SET, CACHE, ADD JAR, "
        "several statements and direct file reads (parquet.`/path`, read_files) are refused "
        "with exit code 2 before anything runs. `predictions VERSION AS OF 3` (or TIMESTAMP "
        "AS OF '2026-06-01 08:00:00', UTC) reads an earlier Delta version of a table.",
    )
    sql.add_argument("query", help='e.g. "SELECT ds, count(*) FROM predictions GROUP BY ds"')
    sql.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    sql.add_argument(
        "--allow-writes",
        action="store_true",
        help="run any statement, writes included (they can destroy warehouse tables)",
    )
    sql.set_defaults(handler=_sql)


def _score(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.scoring.score import score_date
    from scorehouse.spark import get_spark

    spark = get_spark(settings, app_name="scorehouse-score")
    run = score_date(spark, settings, args.date, flow_run_id=args.flow_run_id, fail_on=args.fail_on)
    rows_of(run, "rows")
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
    return 0


def _sql(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.scoring.analyst import run_sql
    from scorehouse.spark import get_spark

    spark = get_spark(settings, app_name="scorehouse-sql")
    run_sql(spark, settings, args.query, allow_writes=args.allow_writes).show(
        args.limit, truncate=False
    )
    return 0
