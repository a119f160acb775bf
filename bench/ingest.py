"""Ingest of one CSV file of transactions: wall seconds to validate and commit N rows.

    python bench/ingest.py \\
        --rows 1000000 --work-dir /tmp/scorehouse-bench-ingest [--runs 2]

Setup (cached in --work-dir, not timed): the generator's customers and transactions,
written as one customers CSV and one transactions CSV of about --rows rows. Measured:
`ingest_file` of the customers file, then of the transactions file, into a fresh
warehouse per run (the contracts applied, duplicates and unknown customers checked,
rows committed); the best run of each is reported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import date
from pathlib import Path

import harness
from scorehouse.data.generate import generate
from scorehouse.data.ingest import ingest_file
from scorehouse.spark import get_spark

START = date(2025, 1, 1)


def _csv(frame, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    if not folder.exists():
        frame.drop("ds").coalesce(1).write.option("header", True).csv(str(folder))
    return next(folder.glob("part-*.csv"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/scorehouse-bench-ingest"))
    args = parser.parse_args()
    spark = get_spark(harness.bench_settings(args.work_dir / "setup"), app_name="bench-ingest")
    # about 12.5 transactions per customer over 120 days
    customers_df, transactions_df = generate(
        spark, customers=max(1, args.rows * 2 // 25), start=START, days=120, seed=3
    )
    data = args.work_dir / f"data-{args.rows}"
    customers_csv = _csv(customers_df, data / "customers")
    transactions_csv = _csv(transactions_df, data / "transactions")
    rows = sum(1 for _ in transactions_csv.open()) - 1
    timings: dict[str, list[float]] = {"customers": [], "transactions": []}
    for run in range(args.runs):
        home = args.work_dir / f"run-{run}"
        shutil.rmtree(home, ignore_errors=True)
        settings = harness.bench_settings(home)
        for table, path in (("customers", customers_csv), ("transactions", transactions_csv)):
            began = time.perf_counter()
            result = ingest_file(spark, settings, table=table, path=path)
            timings[table].append(round(time.perf_counter() - began, 2))
            print(f"run {run}: {table} {result.rows_appended} rows in {timings[table][-1]} s")
    best = {k: min(v) for k, v in timings.items()}
    harness.write_result(
        "ingest", {"transaction_rows": rows, "best_seconds": best, "runs": timings}
    )
    print(json.dumps(best))


if __name__ == "__main__":
    harness.run(main)
