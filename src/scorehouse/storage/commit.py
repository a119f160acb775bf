"""The deltalake commit of staged files, and the per-table lock that serializes commits.

Driver only. deltalake's transaction API is called here and nowhere in Spark tasks (it
breaks after `fork`). The protocol, under the table's lock: re-check the schema against
the latest snapshot, move the staged files into the table (a rename), commit add actions
(create the table, or an append/overwrite transaction with partition filters), and
delete the moved files again if the commit fails.

deltalake's write transaction checks neither file schemas nor concurrent writers of the
same partitions: the staging checks and this lock do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deltalake import DeltaTable, Field
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions
from pyspark.sql.types import StructType

from scorehouse.errors import ConflictError
from scorehouse.locks import file_lock
from scorehouse.storage.partitions import Partitions, in_filters
from scorehouse.storage.schema import check_schema, delta_schema, spark_schema
from scorehouse.storage.staging import StagedFile

log = logging.getLogger(__name__)

LOCK_FILE = "_scorehouse_commit.lock"
COMMIT_RETRIES = 5


@contextlib.contextmanager
def commit_lock(table_dir: Path, timeout_s: float = 600.0) -> Iterator[None]:
    """Exclusive per-table lock across threads and processes (a file in the table folder)."""
    with file_lock(table_dir / LOCK_FILE, f"a commit to table {table_dir.name}", timeout_s, 0.05):
        yield


def build_add_action(
    rel_path: str,
    size: int,
    modification_time_ms: int,
    partition_values: Mapping[str, str | None],
    stats: Mapping[str, Any],
    *,
    data_change: bool = True,
) -> AddAction:
    """An AddAction for a file already in the table folder (path relative to the root)."""
    # deltalake URI-encodes the path into the log itself: pass the on-disk name as is.
    return AddAction(
        path=rel_path,
        size=size,
        partition_values=dict(partition_values),
        modification_time=modification_time_ms,
        data_change=data_change,
        stats=json.dumps(stats, separators=(",", ":")),
    )


@dataclass(frozen=True)
class StagedWrite:
    """Checked, staged files and how they are to be committed to one table."""

    table: str
    table_dir: Path
    stage: Path
    files: Sequence[StagedFile]
    mode: Literal["append", "overwrite"]
    partition_cols: list[str]
    replace_partitions: Partitions | None = None
    allow_new_columns: bool = False

    @property
    def operation(self) -> str:
        """What the commit records as `scorehouse.operation`."""
        return self.mode if self.replace_partitions is None else "replace_partitions"


def commit(write: StagedWrite, data_schema: StructType) -> int:
    """Commit the staged files under the table's lock; returns the new version."""
    with commit_lock(write.table_dir):
        return _commit_locked(write, data_schema)


def _commit_locked(write: StagedWrite, data_schema: StructType) -> int:
    """Re-check against the latest snapshot, move the files into place, commit."""
    uri = str(write.table_dir)
    current: StructType | None = None
    if DeltaTable.is_deltatable(uri):
        snapshot = DeltaTable(uri)
        current = spark_schema(snapshot)
        if list(snapshot.metadata().partition_columns) != write.partition_cols:
            raise ConflictError(f"table {write.table}: partitioning changed while writing")
    # A concurrent commit may have evolved the schema since the write was planned.
    target = check_schema(
        write.table, current, data_schema, allow_new_columns=write.allow_new_columns
    )
    moved: list[Path] = []
    try:
        actions = _move_into_table(write, moved)
        properties = CommitProperties(custom_metadata={"scorehouse.operation": write.operation})
        if current is None:
            create_table_with_add_actions(
                uri,
                delta_schema(target),
                actions,
                mode="error",
                partition_by=write.partition_cols or None,
                commit_properties=properties,
            )
            version = 0
        else:
            _add_new_columns(uri, current, target)
            version = _transact(write, actions, properties)
        moved = []
        return version
    finally:
        for path in moved:  # the commit failed: the moved files must not linger
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _move_into_table(write: StagedWrite, moved: list[Path]) -> list[AddAction]:
    """Move staged files to their place in the table; `moved` records each one for clean-up."""
    actions = []
    for staged in write.files:
        dest = write.table_dir / staged.rel_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(write.stage / staged.rel_path, dest)
        moved.append(dest)
        stat = dest.stat()
        actions.append(
            build_add_action(
                staged.rel_path,
                stat.st_size,
                int(stat.st_mtime * 1000),
                staged.partition_values,
                staged.stats,
            )
        )
    return actions


def _add_new_columns(uri: str, current: StructType, target: StructType) -> None:
    """deltalake's write transaction ignores a wider schema: evolve the table first."""
    new_fields = [f for f in target if f.name not in current.names]
    if new_fields:
        DeltaTable(uri).alter.add_columns(
            [Field.from_json(json.dumps(f.jsonValue())) for f in new_fields]
        )


def _transact(write: StagedWrite, actions: list[AddAction], properties: CommitProperties) -> int:
    """An append or overwrite transaction of `actions`, retried on commit conflicts."""
    uri = str(write.table_dir)
    filters = None if write.replace_partitions is None else in_filters(write.replace_partitions)
    for attempt in range(COMMIT_RETRIES):
        snapshot = DeltaTable(uri)
        try:
            snapshot.create_write_transaction(
                list(actions),
                write.mode,
                delta_schema(spark_schema(snapshot)),
                partition_by=write.partition_cols or None,
                partition_filters=filters,
                commit_properties=properties,
            )
            return DeltaTable(uri).version()
        except CommitFailedError as exc:
            # Only writers outside this lock (other tools) can get here.
            log.warning("table %s: commit conflict (attempt %d): %s", write.table, attempt, exc)
            time.sleep(0.1 * (attempt + 1))
    raise ConflictError(f"table {write.table}: commit failed {COMMIT_RETRIES} times")
