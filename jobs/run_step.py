"""Run any step by name: the one file a flow submits through spark-submit.

    spark-submit --properties-file spark_conf/cluster.conf jobs/run_step.py \
        score --date 2026-06-30 [--config scorehouse.yaml] [--result-json result.json]

`jobs/run_step.py <step> --help` lists a step's options; the named jobs beside this file
run one step each with the same options.
"""

from scorehouse.orchestration.entry import main

if __name__ == "__main__":
    main()
