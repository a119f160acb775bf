"""Build the point-in-time training set for sampled as-of dates.

    spark-submit --properties-file spark_conf/cluster.conf jobs/build_training_set.py \
        --start 2026-05-01 --end 2026-10-31 [--horizon-days 30] [--every 7] [--config scorehouse.yaml] \
        [--result-json result.json]
"""

import sys

from scorehouse.orchestration.entry import main

if __name__ == "__main__":
    main(["training_set", *sys.argv[1:]])
