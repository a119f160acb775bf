from pyspark.sql import SparkSession


def test_session_is_utc_with_arrow_and_two_cores(spark: SparkSession) -> None:
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert spark.sparkContext.defaultParallelism == 2
    row = spark.sql("SELECT CAST(TIMESTAMP '2026-01-01 00:00:00' AS LONG) AS epoch").first()
    assert row is not None and row.epoch == 1767225600
