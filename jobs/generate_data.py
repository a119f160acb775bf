"""Generate seeded demo customers and transactions and replace the raw tables.

    spark-submit --properties-file spark_conf/local.conf jobs/generate_data.py \
        --customers 10000 --days 180 --seed 7 --start 2026-01-01 [--acquisition launch] [--result-json result.json]
"""

import sys

from scorehouse.orchestration.entry import main

if __name__ == "__main__":
    main(["generate", *sys.argv[1:]])
