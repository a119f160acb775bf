"""Validate a user's CSV/Parquet file and append it to the raw table of a project source.

    spark-submit --properties-file spark_conf/local.conf jobs/ingest_file.py \
        --source transactions --path /data/sales.csv --format csv \
        --map customer_id=cust_no --map event_time=ts [--result-json result.json]
"""

import sys

from scorehouse.orchestration.entry import main

if __name__ == "__main__":
    main(["ingest", *sys.argv[1:]])
