"""Subcommands that bring data in: `generate` (seeded demo data), `ingest` (a user's file)
and `retract` (take one ingest back)."""

from __future__ import annotations

import argparse
import time
from datetime import date
from typing import Annotated, Literal

import typer

from scorehouse.commands.common import (
    Json,
    checked_pairs,
    iso_date,
    pair,
    pairs,
    print_json,
    settings_of,
)
from scorehouse.progress import record_rows, rows_of


def map_item(item: str) -> tuple[str, str]:
    """argparse type of a job's `--map TARGET=SOURCE` (argparse reports a bad item)."""
    try:
        return pair(item, "TARGET=SOURCE")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def generate(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(help="number of customers")] = 10_000,
    days: Annotated[int, typer.Option(help="days of history")] = 180,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same data)")] = 7,
    start: Annotated[date | None, typer.Option(parser=iso_date, help="first day")] = None,
    partitions: Annotated[
        int | None, typer.Option(help="Spark partitions (default: by size)")
    ] = None,
    acquisition: Annotated[
        Literal["steady", "launch"],
        typer.Option(
            help="steady: most customers older than the history; launch: most sign up in "
            "its first 90 days"
        ),
    ] = "steady",
    as_json: Json = False,
) -> None:
    """Write seeded demo customers and transactions (replaces both raw tables).

    Generate realistic demo data in Spark and replace the raw tables. The history covers
    DAYS days ending yesterday (UTC) unless --start is given.
    """
    from scorehouse.data.generate import default_start, write_generated
    from scorehouse.spark import get_spark

    settings = settings_of(ctx)
    start = start or default_start(days)
    spark = get_spark(settings, app_name="scorehouse-generate")
    began = time.perf_counter()
    result = write_generated(
        spark,
        settings,
        customers=customers,
        start=start,
        days=days,
        seed=seed,
        partitions=partitions,
        acquisition=acquisition,
    )
    elapsed = time.perf_counter() - began
    record_rows(result.customers_table, result.customer_rows)
    record_rows(result.transactions_table, result.transaction_rows)
    if as_json:
        print_json({**vars(result), "seconds": round(elapsed, 3)})
        return
    print(
        f"generated {customers} customers, {result.start} .. {result.end} (seed {seed}) "
        f"in {elapsed:.1f} s\n"
        f"  {result.customers_table}: {result.customer_rows} rows "
        f"(version {result.customers_version})\n"
        f"  {result.transactions_table}: {result.transaction_rows} rows "
        f"(version {result.transactions_version}, {result.transaction_rows / elapsed:,.0f} rows/s)\n"
        f"  warehouse: {settings.warehouse}"
    )


def ingest(
    ctx: typer.Context,
    table: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="a source of the project, e.g. transactions or customers (purchase example)",
        ),
    ],
    path: Annotated[str, typer.Argument(metavar="PATH", help="file or folder to read")],
    fmt: Annotated[
        Literal["csv", "parquet"] | None,
        typer.Option("--format", help="default: from the extension"),
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="TARGET=SOURCE",
            callback=checked_pairs("TARGET=SOURCE"),
            help="take contract column TARGET from file column SOURCE (repeatable)",
        ),
    ] = None,
    encoding: Annotated[str, typer.Option(help="CSV text encoding, e.g. iso-8859-1")] = "utf-8",
    as_json: Json = False,
) -> None:
    """Validate a CSV/Parquet file against a source's contract and append it to its raw table.

    Load your own file into the raw table of a declared source (raw_transactions,
    raw_customers for the purchase example). Rows that break a rule of the source's
    contract go to the quarantine table; the command fails and commits nothing when the
    rejected share exceeds ingest.max_reject_share.
    """
    from scorehouse.data.ingest import format_summary, ingest_file
    from scorehouse.spark import get_spark

    columns = pairs(mapping, "TARGET=SOURCE")
    settings = settings_of(ctx)
    result = ingest_file(
        get_spark(settings, app_name="scorehouse-ingest"),
        settings,
        table=table,
        path=path,
        fmt=fmt,
        mapping=columns,
        encoding=encoding,
    )
    rows_of(result, "rows_read", "rows_appended", "rows_already_loaded", "rows_rejected")
    if as_json:
        print_json(result)
    else:
        print(format_summary(result))


def retract(
    ctx: typer.Context,
    ingest_id: Annotated[
        str, typer.Argument(metavar="INGEST_ID", help="the id `scorehouse ingest` printed")
    ],
    as_json: Json = False,
) -> None:
    """Remove the rows one ingest appended (by the ingest id it printed).

    Remove every raw row that one ingest appended. The days rewritten count as late data:
    the next nightly rebuilds the features from the earliest one.
    """
    from scorehouse.data.ingest import retract_ingest
    from scorehouse.spark import get_spark

    settings = settings_of(ctx)
    done = retract_ingest(get_spark(settings, app_name="scorehouse-retract"), settings, ingest_id)
    if as_json:
        print_json(done)
        return
    for each in done:
        days = f" on {len(each.days)} days from {each.days[0]}" if each.days else ""
        print(
            f"retracted {each.rows} rows of ingest {ingest_id} from {each.table}{days} "
            f"(version {each.version})"
        )
