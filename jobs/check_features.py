"""Check one day's committed feature snapshot before it is scored.

    spark-submit --properties-file spark_conf/local.conf jobs/check_features.py \
        --date 2026-11-22 [--force] [--config scorehouse.yaml] [--result-json result.json]

A snapshot that already passed the same checks is not checked again unless --force.
"""

import sys

from scorehouse.orchestration.entry import main

if __name__ == "__main__":
    main(["checks", *sys.argv[1:]])
