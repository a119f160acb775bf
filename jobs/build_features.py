"""Build feature snapshots for a range of as-of dates.

    spark-submit --properties-file spark_conf/cluster.conf jobs/build_features.py \
        --start 2026-11-01 --end 2026-11-22 [--force] [--config scorehouse.yaml] \
        [--result-json result.json]

Days already built from the same raw table versions are skipped (see step_runs) unless
--force is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from scorehouse.orchestration import steps
from scorehouse.orchestration.results import job_parser, job_result
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark


def main(argv: Sequence[str] | None = None) -> None:
    parser = job_parser("Build feature snapshots for each day.")
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, default=None)
    parser.add_argument("--force", action="store_true", help="rebuild days already current")
    parser.add_argument("--flow-run-id", help="recorded in step_runs")
    args = parser.parse_args(argv)
    with job_result(args.result_json) as result:
        settings = load_settings(args.config)
        result.update(
            steps.features(
                get_spark(settings, "build_features"),
                settings,
                args.start,
                args.end,
                force=args.force,
                flow_run_id=args.flow_run_id,
            )
        )
    print(f"features {result['start']}..{result['end']}: {result['rows']} rows ({result['mode']})")


if __name__ == "__main__":
    main()
