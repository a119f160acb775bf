"""The `step_runs` table: what each flow step committed for a day, and from which inputs.

A step is skipped when its latest entry for the day has the same inputs (Delta versions,
model versions, file sets) and its output is still exactly what that entry recorded: the
file set of the day's partition in the Delta log, or, for Redis, the live generation.
Everything is decided from Delta tables and Redis, never from local marker files.
Written through Warehouse (Spark writes, the driver commits). Reads need no Spark (the
Delta log through deltalake, in the driver only), so a flow can decide to skip a step
before it pays for a spark-submit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql.types import (
    DateType,
    DoubleType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from scorehouse.orchestration.results import jsonable
from scorehouse.settings import Settings
from scorehouse.storage.location import table_uri
from scorehouse.storage.warehouse import Warehouse

log = logging.getLogger(__name__)

STEP_RUNS = StructType(
    [
        StructField("step", StringType(), False),
        StructField("ds", DateType(), False),
        StructField("inputs", StringType(), False),  # canonical JSON
        StructField("output_files", StringType(), True),  # fingerprint of the output partition
        StructField("outputs", StringType(), False),  # the step's result, JSON
        StructField("flow_run_id", StringType(), True),
        StructField("recorded_at", TimestampType(), False),
        StructField("seconds", DoubleType(), True),
    ]
)


def canonical(inputs: Mapping[str, Any]) -> str:
    return json.dumps(jsonable(inputs), sort_keys=True, separators=(",", ":"))


def exists(settings: Settings, table: str) -> bool:
    return DeltaTable.is_deltatable(table_uri(settings, table))


def version(settings: Settings, table: str) -> int:
    return DeltaTable(table_uri(settings, table)).version()


def files_fingerprint(settings: Settings, table: str, ds: date | None = None) -> str | None:
    """A short hash of the files that make up the table (or its `ds` partition) now.

    Every commit adds files under fresh names, so any rewrite of that day changes it.
    None when the table or the partition does not exist.
    """
    if not exists(settings, table):
        return None
    snapshot = DeltaTable(table_uri(settings, table))
    filters = [("ds", "=", ds.isoformat())] if ds is not None else None
    files = sorted(snapshot.file_uris(partition_filters=filters))
    if not files:
        return None
    return _hash(files)


def partition_fingerprints(settings: Settings, table: str) -> dict[date, str]:
    """`files_fingerprint` of every `ds` partition of the table, from one read of its log."""
    if not exists(settings, table):
        return {}
    actions = pa.table(DeltaTable(table_uri(settings, table)).get_add_actions(flatten=True))
    files: dict[date, list[str]] = {}
    for path, value in zip(
        actions.column("path").to_pylist(),
        actions.column("partition.ds").to_pylist(),
        strict=True,
    ):
        if value is not None:
            files.setdefault(date.fromisoformat(str(value)), []).append(path)
    return {ds: _hash(sorted(paths)) for ds, paths in files.items()}


def cumulative_fingerprints(per_day: Mapping[date, str], days: Sequence[date]) -> dict[date, str]:
    """For each of `days`, a hash of the fingerprints of every partition up to that day."""
    items = sorted(per_day.items())
    running = hashlib.sha1()
    out: dict[date, str] = {}
    n = 0
    for day in sorted(days):
        while n < len(items) and items[n][0] <= day:
            running.update(f"{items[n][0]}={items[n][1]};".encode())
            n += 1
        out[day] = running.hexdigest()[:16]
    return out


def _hash(lines: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()[:16]


def partition_rows(settings: Settings, table: str, ds: date) -> int:
    """Rows of one `ds` partition, from the Delta log (no data scan)."""
    if not exists(settings, table):
        return 0
    actions = pa.table(DeltaTable(table_uri(settings, table)).get_add_actions(flatten=True))
    total = 0
    for value, rows in zip(
        actions.column("partition.ds").to_pylist(),
        actions.column("num_records").to_pylist(),
        strict=True,
    ):
        if value is not None and str(value) == ds.isoformat():
            total += int(rows or 0)
    return total


def latest_inputs(settings: Settings, step: str) -> dict[date, dict[str, Any]]:
    """The inputs of the newest entry of `step` for every day it ran for."""
    table = settings.tables.step_runs
    if not exists(settings, table):
        return {}
    rows = DeltaTable(table_uri(settings, table)).to_pyarrow_table().to_pylist()
    newest: dict[date, dict[str, Any]] = {}
    for row in sorted((r for r in rows if r["step"] == step), key=lambda r: r["recorded_at"]):
        newest[row["ds"]] = row
    return {ds: json.loads(row["inputs"]) for ds, row in newest.items()}


def latest(settings: Settings, step: str, ds: date) -> dict[str, Any] | None:
    """The newest entry of `step` for `ds`, with inputs and outputs parsed."""
    table = settings.tables.step_runs
    if not exists(settings, table):
        return None
    rows = DeltaTable(table_uri(settings, table)).to_pyarrow_table().to_pylist()
    mine = [r for r in rows if r["step"] == step and r["ds"] == ds]
    if not mine:
        return None
    row = max(mine, key=lambda r: r["recorded_at"])
    return {**row, "inputs": json.loads(row["inputs"]), "outputs": json.loads(row["outputs"])}


def done(
    settings: Settings,
    step: str,
    ds: date,
    inputs: Mapping[str, Any],
    output_table: str | None,
) -> dict[str, Any] | None:
    """The recorded outputs when `step` already ran for `ds` from these very inputs and its
    output partition is unchanged since; None when it has to run."""
    entry = latest(settings, step, ds)
    if entry is None:
        return None
    if canonical(entry["inputs"]) != canonical(inputs):
        log.info("%s %s: inputs changed since the last run; running it", step, ds)
        return None
    if output_table is not None:
        now = files_fingerprint(settings, output_table, ds)
        if now is None or now != entry["output_files"]:
            log.info(
                "%s %s: %s was rewritten since the last run; running it", step, ds, output_table
            )
            return None
    outputs: dict[str, Any] = entry["outputs"]
    return outputs


def record(
    wh: Warehouse,
    settings: Settings,
    step: str,
    days: Sequence[date],
    inputs: Mapping[str, Any],
    output_table: str | None,
    outputs: Mapping[str, Any],
    *,
    flow_run_id: str | None = None,
    seconds: float | None = None,
) -> int:
    """Append one entry per day (after the step committed). Returns the table version."""
    return record_days(
        wh,
        settings,
        step,
        {ds: inputs for ds in days},
        output_table,
        outputs,
        flow_run_id=flow_run_id,
        seconds=seconds,
    )


def record_days(
    wh: Warehouse,
    settings: Settings,
    step: str,
    inputs: Mapping[date, Mapping[str, Any]],
    output_table: str | None,
    outputs: Mapping[str, Any],
    *,
    flow_run_id: str | None = None,
    seconds: float | None = None,
) -> int:
    """`record` with inputs of their own for each day."""
    now = datetime.now(tz=UTC)
    rows = [
        (
            step,
            ds,
            canonical(day_inputs),
            files_fingerprint(settings, output_table, ds) if output_table else None,
            canonical(outputs),
            flow_run_id,
            now,
            seconds,
        )
        for ds, day_inputs in inputs.items()
    ]
    frame = wh.spark.createDataFrame(rows, STEP_RUNS)
    return wh.append(settings.tables.step_runs, frame)
