"""Subcommands that bring data in: `generate` (seeded demo data) and `ingest` (a user's file)."""

from __future__ import annotations

import argparse
import time
from datetime import date

from scorehouse.cli import registrar
from scorehouse.progress import record_rows, rows_of
from scorehouse.settings import Settings


def map_item(item: str) -> tuple[str, str]:
    """`customer_id=cust_no` → ("customer_id", "cust_no") (argparse reports a bad item)."""
    target, sep, source = item.partition("=")
    if not sep or not target.strip() or not source.strip():
        raise argparse.ArgumentTypeError(f"{item!r}: expected TARGET=SOURCE")
    return target.strip(), source.strip()


@registrar
def _register(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser(
        "generate",
        help="write seeded demo customers and transactions (replaces both raw tables)",
        description="Generate realistic demo data in Spark and replace the raw tables. "
        "The history covers DAYS days ending yesterday (UTC) unless --start is given.",
    )
    gen.add_argument("--customers", type=int, default=10_000, help="number of customers")
    gen.add_argument("--days", type=int, default=180, help="days of history")
    gen.add_argument("--seed", type=int, default=7, help="random seed (same seed, same data)")
    gen.add_argument("--start", type=date.fromisoformat, help="first day, YYYY-MM-DD")
    gen.add_argument("--partitions", type=int, help="Spark partitions (default: by size)")
    gen.set_defaults(handler=_generate)

    ing = sub.add_parser(
        "ingest",
        help="validate a CSV/Parquet file and append it to a raw table",
        description="Load your own file into raw_transactions or raw_customers. Rows that "
        "break a rule go to the quarantine table; the command fails and commits nothing "
        "when the rejected share exceeds ingest.max_reject_share.",
    )
    ing.add_argument("table", choices=["transactions", "customers"])
    ing.add_argument("path", help="file or folder to read")
    ing.add_argument("--format", choices=["csv", "parquet"], help="default: from the extension")
    ing.add_argument(
        "--map",
        action="append",
        type=map_item,
        default=[],
        metavar="TARGET=SOURCE",
        help="take contract column TARGET from file column SOURCE (repeatable)",
    )
    ing.add_argument(
        "--encoding", default="utf-8", help="CSV text encoding (default utf-8), e.g. iso-8859-1"
    )
    ing.set_defaults(handler=_ingest)

    retract = sub.add_parser(
        "retract",
        help="remove the rows one ingest appended (by the ingest id it printed)",
        description="Remove every raw row that one ingest appended. The days rewritten "
        "count as late data: the next nightly rebuilds the features from the earliest one.",
    )
    retract.add_argument("ingest_id", help="the id `scorehouse ingest` printed")
    retract.set_defaults(handler=_retract)


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.data.generate import default_start, write_generated
    from scorehouse.spark import get_spark

    start = args.start or default_start(args.days)
    spark = get_spark(settings, app_name="scorehouse-generate")
    began = time.perf_counter()
    result = write_generated(
        spark,
        settings,
        customers=args.customers,
        start=start,
        days=args.days,
        seed=args.seed,
        partitions=args.partitions,
    )
    elapsed = time.perf_counter() - began
    record_rows(result.customers_table, result.customer_rows)
    record_rows(result.transactions_table, result.transaction_rows)
    print(
        f"generated {args.customers} customers, {result.start} .. {result.end} (seed {args.seed}) "
        f"in {elapsed:.1f} s\n"
        f"  {result.customers_table}: {result.customer_rows} rows "
        f"(version {result.customers_version})\n"
        f"  {result.transactions_table}: {result.transaction_rows} rows "
        f"(version {result.transactions_version}, {result.transaction_rows / elapsed:,.0f} rows/s)\n"
        f"  warehouse: {settings.warehouse}"
    )
    return 0


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.data.ingest import format_summary, ingest_file
    from scorehouse.spark import get_spark

    mapping = dict(args.map)
    spark = get_spark(settings, app_name="scorehouse-ingest")
    result = ingest_file(
        spark,
        settings,
        table=args.table,
        path=args.path,
        fmt=args.format,
        mapping=mapping,
        encoding=args.encoding,
    )
    rows_of(result, "rows_read", "rows_appended", "rows_already_loaded", "rows_rejected")
    print(format_summary(result))
    return 0


def _retract(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.data.ingest import retract_ingest
    from scorehouse.spark import get_spark

    spark = get_spark(settings, app_name="scorehouse-retract")
    for done in retract_ingest(spark, settings, args.ingest_id):
        days = f" on {len(done.days)} days from {done.days[0]}" if done.days else ""
        print(
            f"retracted {done.rows} rows of ingest {args.ingest_id} from {done.table}{days} "
            f"(version {done.version})"
        )
    return 0
