"""Train the propensity model on the training-set table, log to MLflow, register, gate.

    spark-submit --properties-file spark_conf/local.conf jobs/train_model.py \
        --as-of 2026-06-30 [--training-table training_set] [--training-version 12] \
        [--config config.yaml] [--result-json result.json]
"""

import sys

from scorehouse.orchestration.entry import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
