"""Publish a day's champion predictions and feature vectors into a new Redis generation.

spark-submit --properties-file spark_conf/local.conf jobs/load_redis.py --date 2026-01-15 \
    [--force] [--allow-older] [--result-json result.json]

Nothing is loaded when the live generation already holds these very predictions, unless
--force; a day older than the live generation's is refused unless --allow-older.
"""

import sys

from scorehouse.orchestration.entry import main

if __name__ == "__main__":
    main(["publish", *sys.argv[1:]])
