"""Publish a day's champion predictions and feature vectors into a new Redis generation.

spark-submit --properties-file spark_conf/local.conf jobs/load_redis.py --date 2026-01-15 \
    [--force] [--allow-older] [--result-json result.json]

Nothing is loaded when the live generation already holds these very predictions, unless
--force; a day older than the live generation's is refused unless --allow-older.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from scorehouse.orchestration import steps
from scorehouse.orchestration.results import job_parser, job_result
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark


def main(argv: Sequence[str] | None = None) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--date", type=date.fromisoformat, required=True, help="the predictions' ds"
    )
    parser.add_argument("--force", action="store_true", help="load even if already live")
    parser.add_argument(
        "--allow-older", action="store_true", help="load even if the live day is newer"
    )
    parser.add_argument("--flow-run-id", help="recorded in step_runs")
    args = parser.parse_args(argv)
    with job_result(args.result_json) as result:
        settings = load_settings(args.config)
        result.update(
            steps.publish(
                get_spark(settings, app_name="load_redis"),
                settings,
                args.date,
                force=args.force,
                allow_older=args.allow_older,
                flow_run_id=args.flow_run_id,
            )
        )
    print(
        f"{result['generation']}: {result['count']} scores, "
        f"{result['features_count']} feature vectors"
    )


if __name__ == "__main__":
    main()
