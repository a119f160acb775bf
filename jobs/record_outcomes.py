"""Record how the predictions whose label horizon ended on a day turned out.

    spark-submit --properties-file spark_conf/local.conf jobs/record_outcomes.py \
        --date 2026-11-22 [--config scorehouse.yaml] [--result-json result.json]

Measures the predictions of date - model.horizon_days against the labels that matured
since, per model version and role, into the outcomes table.
"""

import sys

from scorehouse.orchestration.entry import main

if __name__ == "__main__":
    main(["outcomes", *sys.argv[1:]])
