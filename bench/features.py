"""Feature builds: one new day, incremental (next-day) vs recomputed from raw events.

    flock /tmp/scorehouse-bench.lock python bench/features.py \\
        --customers 1000000 --days 365 --work-dir /tmp/scorehouse-bench-features

Setup (cached in --work-dir, timed but not part of the comparison): generate
`--days` days of history plus the new day D with scorehouse.data.generate, roll up
every day before D, and build the snapshot of D-1 in range mode.

Measured, in one process:
- incremental: `build_features(D)` in next-day mode (D's raw events → its rollups;
  the D-1 snapshot + the rollups leaving the 7/30/90/365-day windows → D; checks;
  commit), run twice;
- from raw: every raw event up to D → rollups of every day → the windowed range
  statement for D → the same checks → commit to a separate table. This is the same
  feature definitions evaluated without any stored rollup or state.
The two snapshots of D must be identical (row for row, all columns) or the run fails.
Each build is timed in wall seconds and in CPU seconds of the Spark JVM (the latter
does not grow when other processes share the cores, so its ratio holds on a busy host).
Storage: bytes of the Delta files that day D adds to each table, and per year.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from scorehouse.data.generate import write_generated
from scorehouse.features import transforms
from scorehouse.features.build import EARLIEST, build_features, check_and_commit, refresh_rollups
from scorehouse.settings import Settings, load_settings
from scorehouse.spark import get_spark
from scorehouse.tables import Warehouse

RESULTS = Path(__file__).parent / "results" / "features.json"
START = date(2025, 1, 1)
FROM_RAW_TABLE = "features_from_raw"


def bench_settings(work_dir: Path, driver_memory: str) -> Settings:
    return load_settings(
        environ={
            "SCOREHOUSE_HOME": str(work_dir),
            "SCOREHOUSE_WAREHOUSE": str(work_dir / "warehouse"),
            "SCOREHOUSE_SPARK__PROFILE": "local",
            "SCOREHOUSE_SPARK__CONF": json.dumps({"spark.driver.memory": driver_memory}),
        }
    )


def day_bytes(wh: Warehouse, table: str, ds: date) -> tuple[int, int]:
    """(bytes, files) of the live Delta files of one ds partition."""
    actions = pa.table(DeltaTable(wh.uri(table)).get_add_actions(flatten=True)).to_pylist()
    sizes = [a["size_bytes"] for a in actions if str(a.get("partition.ds")) == ds.isoformat()]
    return sum(sizes), len(sizes)


def setup(spark: Any, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Generate the history and the new day, roll up the history, build D-1 (cached)."""
    marker = args.work_dir / "setup.json"
    key = {"customers": args.customers, "days": args.days, "seed": args.seed}
    if marker.exists():
        cached = json.loads(marker.read_text())
        if cached["key"] == key:
            return cached
    wh = Warehouse.from_settings(spark, settings)
    new_day = START + timedelta(days=args.days)
    began = time.perf_counter()
    generated = write_generated(
        spark,
        settings,
        customers=args.customers,
        start=START,
        days=args.days + 1,
        seed=args.seed,
    )
    generate_s = time.perf_counter() - began
    began = time.perf_counter()
    refresh_rollups(spark, wh, settings, [], missing_up_to=new_day - timedelta(days=1))
    rollups_s = time.perf_counter() - began
    previous = build_features(spark, settings, days=[new_day - timedelta(days=1)])
    assert previous.mode == "range", previous
    info = {
        "key": key,
        "new_day": new_day.isoformat(),
        "transaction_rows": generated.transaction_rows,
        "customer_rows": generated.customer_rows,
        "generate_seconds": round(generate_s, 1),
        "rollups_seconds": round(rollups_s, 1),
        "range_build_previous_day_seconds": round(previous.seconds, 1),
    }
    marker.write_text(json.dumps(info, indent=2))
    return info


def jvm_cpu_seconds(spark: Any) -> float:
    """CPU seconds used so far by the Spark JVM (driver and, in local mode, every task):
    unlike wall time, it does not grow when other processes share the cores."""
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def from_raw(spark: Any, settings: Settings, ds: date) -> float:
    """The snapshot of ds from every raw event up to ds: no stored rollup or state is read."""
    began = time.perf_counter()
    wh = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    raw_days = [d for d in wh.partition_values(tables.transactions) if d <= ds]
    transactions = wh.read(tables.transactions, ds_between=(EARLIEST, ds))
    daily = transforms.daily_rollups(transactions, raw_days)
    customers = wh.read(tables.customers)
    state = transforms.state_for_days(daily, customers, [ds])
    check_and_commit(
        wh, settings, transforms.features_from_state(state), customers, [ds], table=FROM_RAW_TABLE
    )
    return time.perf_counter() - began


def identical(spark: Any, settings: Settings, ds: date) -> tuple[int, int, int]:
    """(rows, rows only in the incremental snapshot, rows only in the from-raw one)."""
    wh = Warehouse.from_settings(spark, settings)
    incremental = wh.read(settings.tables.features, partitions={"ds": [ds]})
    baseline = wh.read(FROM_RAW_TABLE, partitions={"ds": [ds]}).select(*incremental.columns)
    return (
        incremental.count(),
        incremental.exceptAll(baseline).count(),
        baseline.exceptAll(incremental).count(),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365, help="days of history before D")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("/tmp/scorehouse-bench-features"), help="cached"
    )
    parser.add_argument("--setup-only", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    settings = bench_settings(args.work_dir, args.driver_memory)
    spark = get_spark(settings, app_name="bench-features")
    info = setup(spark, settings, args)
    print(json.dumps(info, indent=2))
    if args.setup_only:
        return
    ds = date.fromisoformat(info["new_day"])
    wh = Warehouse.from_settings(spark, settings)

    incremental, incremental_cpu = [], []
    for _ in range(2):
        cpu = jvm_cpu_seconds(spark)
        build = build_features(spark, settings, ds)
        assert build.mode == "next-day", build
        incremental.append(build.seconds)
        incremental_cpu.append(jvm_cpu_seconds(spark) - cpu)
    cpu = jvm_cpu_seconds(spark)
    raw_s = from_raw(spark, settings, ds)
    raw_cpu = jvm_cpu_seconds(spark) - cpu
    rows, only_incremental, only_raw = identical(spark, settings, ds)
    if only_incremental or only_raw:
        raise SystemExit(
            f"snapshots of {ds} differ: {only_incremental} rows only incremental, "
            f"{only_raw} only from raw"
        )

    storage = {}
    for name in (settings.tables.transactions, settings.tables.customer_daily, "features"):
        size, files = day_bytes(wh, name, ds)
        storage[name] = {"bytes": size, "files": files, "bytes_per_year": size * 365}
    best = min(incremental)
    result = {
        **info,
        "rows": rows,
        "identical": True,
        "incremental_seconds": [round(s, 1) for s in incremental],
        "from_raw_seconds": round(raw_s, 1),
        "speedup_vs_best_incremental": round(raw_s / best, 1),
        "speedup_vs_first_incremental": round(raw_s / incremental[0], 1),
        "incremental_jvm_cpu_seconds": [round(c, 1) for c in incremental_cpu],
        "from_raw_jvm_cpu_seconds": round(raw_cpu, 1),
        "cpu_ratio_vs_best_incremental": round(raw_cpu / min(incremental_cpu), 1),
        "storage_added_by_day": storage,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "load_average": os.getloadavg(),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))

    print(f"\n{args.customers:,} customers, {args.days} days of history, new day {ds}")
    print(f"{'build of the new day':46} {'seconds':>9} {'JVM CPU s':>10}")
    for i, (s, c) in enumerate(zip(incremental, incremental_cpu, strict=True), 1):
        print(f"{f'incremental (next-day), run {i}':46} {s:9.1f} {c:10.1f}")
    print(f"{'recomputed from raw events':46} {raw_s:9.1f} {raw_cpu:10.1f}")
    print(
        f"{'speed-up (from raw / best incremental)':46} {raw_s / best:8.1f}x "
        f"{raw_cpu / min(incremental_cpu):9.1f}x"
    )
    print(f"outputs identical: {rows:,} rows, 0 differing")
    print(f"\n{'table':24} {'bytes added by the day':>24} {'files':>6} {'per year (x365)':>18}")
    for name, s in storage.items():
        print(f"{name:24} {s['bytes']:24,} {s['files']:6} {s['bytes_per_year']:18,}")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
