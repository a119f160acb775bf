"""Build feature snapshots for a range of as-of dates.

    spark-submit --properties-file spark_conf/cluster.conf jobs/build_features.py \
        --start 2026-11-01 --end 2026-11-22 [--config scorehouse.yaml]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date

from scorehouse.features.build import build_features
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build feature snapshots for each day.")
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, default=None)
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    build_features(get_spark(settings, "build_features"), settings, args.start, args.end)


if __name__ == "__main__":
    main()
