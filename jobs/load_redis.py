"""Publish a day's champion predictions and feature vectors into a new Redis generation.

spark-submit --properties-file spark_conf/local.conf jobs/load_redis.py --date 2026-01-15
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date

from scorehouse.serving.loader import publish_date
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--date", type=date.fromisoformat, required=True, help="the predictions' ds"
    )
    parser.add_argument("--config", help="settings YAML (default: SCOREHOUSE_CONFIG or built-in)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    info = publish_date(get_spark(settings, app_name="load_redis"), settings, args.date)
    print(f"{info.generation}: {info.count} scores, {info.features_count} feature vectors")


if __name__ == "__main__":
    main()
