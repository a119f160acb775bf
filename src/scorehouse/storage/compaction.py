"""Small-file compaction with deltalake's optimize (`DeltaTable.optimize.compact`).

Runs on the driver: deltalake reads the small files of each selected partition and
writes them back as files of about `target_file_bytes` in the driver process (its own
threads, streaming record batches), then commits removes and adds with dataChange=false
in one commit. The table keeps protocol (1,2) and its Hive `col=value` layout, so Spark
(through `Warehouse.read` or delta-spark), DuckDB and Polars read the compacted table.
"""

from __future__ import annotations

from pathlib import Path

from deltalake import DeltaTable, WriterProperties
from deltalake.transaction import CommitProperties

from scorehouse.errors import ValidationError
from scorehouse.storage.commit import commit_lock
from scorehouse.storage.partitions import Partitions, in_filters

DEFAULT_TARGET_FILE_BYTES = 128 * 1024 * 1024


def compact(
    table: str,
    table_dir: Path,
    partitions: Partitions | None = None,
    target_file_bytes: int = DEFAULT_TARGET_FILE_BYTES,
) -> int:
    """Compact the small files of the table (or of `partitions`); returns the version.

    Nothing to compact means no commit. Held under the table's commit lock, so no
    scorehouse write commits between the plan and the commit.
    """
    filters = in_filters(partitions or {})
    if any(None in values for _, _, values in filters):
        # deltalake's `in` filter cannot name the null partition.
        raise ValidationError(
            f"table {table}: a null partition value cannot be selected for compaction; "
            "compact the whole table instead"
        )
    with commit_lock(table_dir):
        DeltaTable(str(table_dir)).optimize.compact(
            partition_filters=filters or None,
            target_size=target_file_bytes,
            writer_properties=WriterProperties(compression="ZSTD"),
            commit_properties=CommitProperties(
                custom_metadata={"scorehouse.operation": "optimize"}
            ),
        )
        return DeltaTable(str(table_dir)).version()
