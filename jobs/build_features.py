"""Build feature snapshots for a range of as-of dates.

    spark-submit --properties-file spark_conf/cluster.conf jobs/build_features.py \
        --start 2026-11-01 --end 2026-11-22 [--force] [--config scorehouse.yaml] \
        [--result-json result.json]

Days already built from the same raw table versions are skipped (see step_runs) unless
--force is given.
"""

import sys

from scorehouse.orchestration.entry import main

if __name__ == "__main__":
    main(["features", *sys.argv[1:]])
