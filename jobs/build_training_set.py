"""Build the point-in-time training set for sampled as-of dates.

    spark-submit --properties-file spark_conf/cluster.conf jobs/build_training_set.py \
        --start 2026-05-01 --end 2026-10-31 [--horizon-days 30] [--every 7] [--config scorehouse.yaml] \
        [--result-json result.json]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from scorehouse.orchestration import steps
from scorehouse.orchestration.results import job_parser, job_result
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark


def main(argv: Sequence[str] | None = None) -> None:
    parser = job_parser("Build the point-in-time training set.")
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True)
    parser.add_argument("--horizon-days", type=int, default=None)
    parser.add_argument("--every", type=int, default=None)
    args = parser.parse_args(argv)
    with job_result(args.result_json) as result:
        settings = load_settings(args.config)
        result.update(
            steps.training_set(
                get_spark(settings, "build_training_set"),
                settings,
                args.start,
                args.end,
                horizon_days=args.horizon_days,
                every_days=args.every,
            )
        )
    print(f"training set: {result['rows']} rows, version {result['table_version']}")


if __name__ == "__main__":
    main()
