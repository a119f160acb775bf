"""The warehouse: Delta tables under one root folder.

Spark writes Parquet (Hive `col=value` layout, zstd) into a staging folder inside the
table; the driver checks the files, moves them into place and commits them to a real
Delta table (protocol (1,2)) with deltalake's transaction API. Spark with delta-spark,
deltalake, DuckDB and Polars all read these tables.

Everything in this package runs on the driver. deltalake must never be called inside
Spark tasks or executors (Python UDFs, mapInArrow): it breaks after `fork`.

- `warehouse`: the `Warehouse` class (read, append, overwrite, versions, partitions).
- `staging`: the Parquet files Spark writes before a commit, and their checks.
- `commit`: the per-table lock and the deltalake commit of staged files.
- `compaction`: small-file compaction with deltalake's optimize.
- `schema`, `partitions`, `stats`: schema rules, partition values, file statistics.

See docs/tables.md.
"""
