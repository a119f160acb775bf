"""Record how the predictions whose label horizon ended on a day turned out.

    spark-submit --properties-file spark_conf/local.conf jobs/record_outcomes.py \
        --date 2026-11-22 [--config scorehouse.yaml] [--result-json result.json]

Measures the predictions of date - model.horizon_days against the labels that matured
since, per model version and role, into the outcomes table.
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
    parser.add_argument("--flow-run-id", default=None)
    args = parser.parse_args(argv)
    with job_result(args.result_json) as result:
        settings = load_settings(args.config)
        spark = get_spark(settings, "record_outcomes")
        result.update(steps.outcomes(spark, settings, args.date, flow_run_id=args.flow_run_id))
    if result["skipped"]:
        print(f"outcomes {args.date}: nothing to measure ({result['skip_reason']})")
    else:
        print(
            f"outcomes of {result['scored_ds']}: {result['rows']} models, {len(result['alerts'])} alerts"
        )


if __name__ == "__main__":
    main()
