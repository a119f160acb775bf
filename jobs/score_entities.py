"""Score every entity of one day's features with the champion (and a shadow challenger).

    spark-submit --properties-file spark_conf/local.conf jobs/score_entities.py \
        --date 2026-06-30 [--fail-on critical] [--config config.yaml]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date

from scorehouse.scoring.score import FAIL_ON_CHOICES, score_date
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    parser.add_argument("--fail-on", choices=FAIL_ON_CHOICES, help="stop on drift at this level")
    parser.add_argument("--flow-run-id", help="recorded with each prediction")
    parser.add_argument("--config", help="settings YAML (default: SCOREHOUSE_CONFIG or built-in)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    run = score_date(
        get_spark(settings, app_name="score_entities"),
        settings,
        args.date,
        flow_run_id=args.flow_run_id,
        fail_on=args.fail_on,
    )
    print(run)


if __name__ == "__main__":
    main()
