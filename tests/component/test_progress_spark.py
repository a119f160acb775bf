"""The progress bar follows the real Spark status tracker of the process's context."""

from __future__ import annotations

import threading
import time

from pyspark.sql import SparkSession

from scorehouse.progress import spark_task_counts


def _slow(rows):  # type: ignore[no-untyped-def]
    time.sleep(1.5)
    yield from rows


def test_task_counts_follow_a_running_stage(spark: SparkSession) -> None:
    job = threading.Thread(
        target=lambda: spark.sparkContext.parallelize(range(8), 4).mapPartitions(_slow).count()
    )
    job.start()
    seen = []
    deadline = time.monotonic() + 60
    while job.is_alive() and time.monotonic() < deadline:
        counts = spark_task_counts()
        assert counts is not None
        if counts[1]:
            seen.append(counts)
        time.sleep(0.1)
    job.join()
    # While the job ran: one active stage of 4 tasks, completed counts never decreasing.
    assert seen, "the stage was never seen active"
    assert {(total, stages) for _, total, stages in seen} == {(4, 1)}
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and all(0 <= d <= 4 for d in done)
    assert spark_task_counts() == (0, 0, 0)  # nothing active afterwards
