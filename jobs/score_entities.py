"""Score every entity of one day's features with the champion (and a shadow challenger).

    spark-submit --properties-file spark_conf/local.conf jobs/score_entities.py \
        --date 2026-06-30 [--fail-on critical] [--force] [--config config.yaml] \
        [--result-json result.json]

A day already scored by the same champion from the same snapshot is skipped unless --force.
"""

import sys

from scorehouse.orchestration.entry import main

if __name__ == "__main__":
    main(["score", *sys.argv[1:]])
