"""Train the propensity model on the training-set table, log to MLflow, register, gate.

    spark-submit --properties-file spark_conf/local.conf jobs/train_model.py \
        --as-of 2026-06-30 [--training-table training_set] [--training-version 12] \
        [--config config.yaml] [--result-json result.json]
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
    parser.add_argument("--as-of", type=date.fromisoformat, help="labels known by this day")
    parser.add_argument("--training-table", help="default: tables.training_set")
    parser.add_argument("--training-version", type=int, help="Delta version (default latest)")
    args = parser.parse_args(argv)
    with job_result(args.result_json) as result:
        settings = load_settings(args.config)
        result.update(
            steps.train(
                get_spark(settings, app_name="train_model"),
                settings,
                as_of=args.as_of,
                training_version=args.training_version,
                table=args.training_table,
            )
        )
    print(f"{result['model_name']} v{result['version']} -> {result['alias']}: {result['reason']}")


if __name__ == "__main__":
    main()
