"""Generate seeded demo customers and transactions and replace the raw tables.

    spark-submit --properties-file spark_conf/local.conf jobs/generate_data.py \
        --customers 10000 --days 180 --seed 7 --start 2026-01-01 [--result-json result.json]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from scorehouse.data.generate import default_start, write_generated
from scorehouse.orchestration.results import job_parser, job_result, jsonable
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark


def main(argv: Sequence[str] | None = None) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=date.fromisoformat, help="default: history ends yesterday")
    args = parser.parse_args(argv)
    with job_result(args.result_json) as out:
        settings = load_settings(args.config)
        result = write_generated(
            get_spark(settings, app_name="generate_data"),
            settings,
            customers=args.customers,
            start=args.start or default_start(args.days),
            days=args.days,
            seed=args.seed,
        )
        out.update(jsonable(result))
    print(result)


if __name__ == "__main__":
    main()
