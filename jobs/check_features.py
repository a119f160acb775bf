"""Check one day's committed feature snapshot before it is scored.

    spark-submit --properties-file spark_conf/local.conf jobs/check_features.py \
        --date 2026-11-22 [--force] [--config scorehouse.yaml] [--result-json result.json]

A snapshot that already passed the same checks is not checked again unless --force.
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
    parser.add_argument("--date", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    parser.add_argument("--force", action="store_true", help="check even if already checked")
    args = parser.parse_args(argv)
    with job_result(args.result_json) as result:
        settings = load_settings(args.config)
        result.update(
            steps.check_features(
                get_spark(settings, "check_features"), settings, args.date, force=args.force
            )
        )
    print(f"checks {args.date}: {result['rows']} rows for {result['entities']} entities, ok")


if __name__ == "__main__":
    main()
