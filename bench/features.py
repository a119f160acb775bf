"""Feature builds: one new day, incremental (next-day) vs recomputed from raw events.

    python bench/features.py \\
        --customers 1000000 --days 365 --work-dir /tmp/scorehouse-bench-features \\
        [--runs 2] [--spark-conf KEY=VALUE ...]

Setup (cached in --work-dir, timed but not part of the comparison): generate
`--days` days of history plus the new day D with scorehouse.data.generate, roll up
every day before D, and build the snapshot of D-1 in range mode.

Measured, in one process:
- incremental: `build_features(D)` in next-day mode (D's raw events → its rollups;
  the D-1 snapshot + the rollups leaving the 7/30/90/365-day windows → D; checks;
  commit);
- from raw: every raw event up to D → rollups of every day → the windowed range
  statement for D → the same checks → commit to a separate table. This is the same
  feature definitions evaluated without any stored rollup or state.
One untimed-for-the-ratio incremental build warms the JVM up; then `--runs` rounds
alternate (incremental, from raw), so that load that comes and goes hits both sides,
and the ratio is best from raw / best incremental (each round's ratio is printed too).
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
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

import harness
from scorehouse.data.generate import write_generated
from scorehouse.features import transforms
from scorehouse.features.build import EARLIEST, build_features, check_and_commit, refresh_rollups
from scorehouse.features.registry import feature_sql
from scorehouse.settings import Settings
from scorehouse.spark import get_spark
from scorehouse.storage.warehouse import Warehouse

START = date(2025, 1, 1)
FROM_RAW_TABLE = "features_from_raw"


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
    raw_days = [d for d in wh.partition_values("raw_transactions") if d <= ds]
    sql = feature_sql()
    transactions = wh.read("raw_transactions", ds_between=(EARLIEST, ds))
    daily = {"transactions": transforms.daily_rollups(sql, "transactions", transactions, raw_days)}
    customers = wh.read("raw_customers")
    state = transforms.state_for_days(sql, daily, customers, [ds])
    features = transforms.features_from_state(sql, state)
    check_and_commit(wh, settings, features, customers, [ds], table=FROM_RAW_TABLE)
    return time.perf_counter() - began


def incremental_build(
    spark: Any, settings: Settings, ds: date
) -> tuple[float, float, dict[str, float]]:
    """(wall seconds, JVM CPU seconds, wall seconds per phase) of one next-day build of ds."""
    cpu = jvm_cpu_seconds(spark)
    build = build_features(spark, settings, ds)
    assert build.mode == "next-day", build
    phases = {**build.phases, "other": round(build.seconds - sum(build.phases.values()), 2)}
    return build.seconds, jvm_cpu_seconds(spark) - cpu, phases


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
    parser.add_argument("--runs", type=int, default=2, help="alternating rounds")
    parser.add_argument(
        "--spark-conf",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="settings laid over the local profile (both sides get them)",
    )
    parser.add_argument("--setup-only", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    extra_conf = dict(kv.split("=", 1) for kv in args.spark_conf)
    settings = harness.bench_settings(args.work_dir, args.driver_memory, extra_conf)
    spark = get_spark(settings, app_name="bench-features")
    info = setup(spark, settings, args)
    print(json.dumps(info, indent=2))
    if args.setup_only:
        return
    ds = date.fromisoformat(info["new_day"])
    wh = Warehouse.from_settings(spark, settings)

    load_before = os.getloadavg()
    if not wh.exists(FROM_RAW_TABLE):
        # Its first commit would take the first-build path (persist, profile, write):
        # start it with the day before so every timed from-raw build is a replacement.
        previous = wh.read(settings.tables.features, partitions={"ds": [ds - timedelta(days=1)]})
        wh.overwrite(FROM_RAW_TABLE, previous, partition_by=["ds"])
    warm_up, warm_up_cpu, _ = incremental_build(spark, settings, ds)
    incremental, incremental_cpu, phases, raw, raw_cpu = [], [], [], [], []
    for _ in range(args.runs):
        seconds, cpu_s, phases_s = incremental_build(spark, settings, ds)
        incremental.append(seconds)
        incremental_cpu.append(cpu_s)
        phases.append(phases_s)
        cpu = jvm_cpu_seconds(spark)
        raw.append(from_raw(spark, settings, ds))
        raw_cpu.append(jvm_cpu_seconds(spark) - cpu)
    rows, only_incremental, only_raw = identical(spark, settings, ds)
    if only_incremental or only_raw:
        raise SystemExit(
            f"snapshots of {ds} differ: {only_incremental} rows only incremental, "
            f"{only_raw} only from raw"
        )

    storage = {}
    for name in ("raw_transactions", "daily_transactions", "features"):
        size, files = day_bytes(wh, name, ds)
        storage[name] = {"bytes": size, "files": files, "bytes_per_year": size * 365}
    best, raw_best = min(incremental), min(raw)
    cpu_ratio = min(raw_cpu) / min(incremental_cpu)
    result = {
        **info,
        "rows": rows,
        "identical": True,
        "warm_up_incremental_seconds": round(warm_up, 1),
        "incremental_seconds": [round(s, 1) for s in incremental],
        "from_raw_seconds": [round(s, 1) for s in raw],
        "speedup_best_vs_best": round(raw_best / best, 2),
        "speedup_per_round": [round(r / i, 2) for i, r in zip(incremental, raw, strict=True)],
        "warm_up_incremental_jvm_cpu_seconds": round(warm_up_cpu, 1),
        "incremental_jvm_cpu_seconds": [round(c, 1) for c in incremental_cpu],
        "incremental_phases_seconds": phases,
        "from_raw_jvm_cpu_seconds": [round(c, 1) for c in raw_cpu],
        "cpu_ratio_best_vs_best": round(cpu_ratio, 2),
        "storage_added_by_day": storage,
        "spark_conf": extra_conf,
        "load_average_before": load_before,
    }
    harness.write_result("features", result)

    print(f"\n{args.customers:,} customers, {args.days} days of history, new day {ds}")
    print(f"{'build of the new day (rounds alternate)':46} {'seconds':>9} {'JVM CPU s':>10}")
    print(f"{'incremental (next-day), warm-up':46} {warm_up:9.1f} {warm_up_cpu:10.1f}")
    for i in range(args.runs):
        print(
            f"{f'incremental (next-day), round {i + 1}':46} {incremental[i]:9.1f} {incremental_cpu[i]:10.1f}"
        )
        print(f"{f'recomputed from raw events, round {i + 1}':46} {raw[i]:9.1f} {raw_cpu[i]:10.1f}")
    print(
        f"{'speed-up (best from raw / best incremental)':46} {raw_best / best:8.2f}x {cpu_ratio:9.2f}x"
    )
    print(
        f"{'speed-up per round':46}",
        " ".join(f"{r / i:.2f}x" for i, r in zip(incremental, raw, strict=True)),
    )
    fastest = phases[incremental.index(best)]
    print(
        "best incremental build, by phase:", ", ".join(f"{k} {v:.2f}s" for k, v in fastest.items())
    )
    print(f"outputs identical: {rows:,} rows, 0 differing")
    print(f"\n{'table':24} {'bytes added by the day':>24} {'files':>6} {'per year (x365)':>18}")
    for name, s in storage.items():
        print(f"{name:24} {s['bytes']:24,} {s['files']:6} {s['bytes_per_year']:18,}")
    print(f"spark conf over the local profile: {extra_conf or 'none'}")
    print(f"load average before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    harness.run(main)
