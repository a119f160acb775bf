"""Score every entity of one day's features with the champion (and a shadow challenger).

    spark-submit --properties-file spark_conf/local.conf jobs/score_entities.py \
        --date 2026-06-30 [--fail-on critical] [--force] [--config config.yaml] \
        [--result-json result.json]

A day already scored by the same champion from the same snapshot is skipped unless --force.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from scorehouse.orchestration import steps
from scorehouse.orchestration.results import job_parser, job_result
from scorehouse.scoring.score import FAIL_ON_CHOICES
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark


def main(argv: Sequence[str] | None = None) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--date", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    parser.add_argument("--fail-on", choices=FAIL_ON_CHOICES, help="stop on drift at this level")
    parser.add_argument("--flow-run-id", help="recorded with each prediction")
    parser.add_argument("--force", action="store_true", help="score even if already current")
    args = parser.parse_args(argv)
    with job_result(args.result_json) as result:
        settings = load_settings(args.config)
        result.update(
            steps.score(
                get_spark(settings, app_name="score_entities"),
                settings,
                args.date,
                flow_run_id=args.flow_run_id,
                fail_on=args.fail_on,
                force=args.force,
            )
        )
    print(
        f"scored {args.date}: {result['rows']} entities with v{result['model_version']}"
        f"{' (already current)' if result['skipped'] else ''}"
    )


if __name__ == "__main__":
    main()
