"""Validate a user's CSV/Parquet file and append it to the raw table of a project source.

    spark-submit --properties-file spark_conf/local.conf jobs/ingest_file.py \
        transactions /data/sales.csv --format csv \
        --map customer_id=cust_no --map event_time=ts [--result-json result.json]
"""

from __future__ import annotations

from collections.abc import Sequence

from scorehouse.commands.data import map_item
from scorehouse.data.ingest import format_summary, ingest_file
from scorehouse.orchestration.results import job_parser, job_result, jsonable
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark


def main(argv: Sequence[str] | None = None) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("table", help="a source of the project (e.g. transactions)")
    parser.add_argument("path")
    parser.add_argument("--format", choices=["csv", "parquet"])
    parser.add_argument(
        "--map", action="append", type=map_item, default=[], metavar="TARGET=SOURCE"
    )
    args = parser.parse_args(argv)
    with job_result(args.result_json) as out:
        settings = load_settings(args.config)
        result = ingest_file(
            get_spark(settings, app_name="ingest_file"),
            settings,
            table=args.table,
            path=args.path,
            fmt=args.format,
            mapping=dict(args.map),
        )
        out.update(jsonable(result))
    print(format_summary(result))


if __name__ == "__main__":
    main()
