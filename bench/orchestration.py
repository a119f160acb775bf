"""Orchestration overhead: one nightly run per step, in_process vs spark_submit, and a rerun
that finds every output current.

    python bench/orchestration.py [--customers 800] [--days 200] [--work-dir DIR]

Setup (not timed): seeded data and one model from the weekly_train flow, then one copy of
that home per runner mode. Timed, per mode: `nightly(ds)` on its copy (first run), then
`nightly(ds)` again (rerun: features, checks, score and publish are found current).
Per step: the flow's `timings`. A project-run redis-server, Prefect's test harness.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import harness

END = date(2026, 10, 31)
MODES = ("in_process", "spark_submit")


def _env(home: Path) -> dict[str, str]:
    # Warehouse and MLflow store follow SCOREHOUSE_HOME.
    return {
        "SCOREHOUSE_HOME": str(home),
        "SCOREHOUSE_SPARK__PROFILE": "test",
        "SCOREHOUSE_MODEL__NUM_BOOST_ROUND": "30",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=800)
    parser.add_argument("--days", type=int, default=200)
    parser.add_argument("--work-dir", type=Path, default=Path(".scorehouse/bench-orchestration"))
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness

    from scorehouse.data.generate import write_generated
    from scorehouse.flows import nightly, weekly_train
    from scorehouse.localstack import RedisServer
    from scorehouse.settings import load_settings
    from scorehouse.spark import get_spark

    base = args.work_dir.resolve()
    shutil.rmtree(base, ignore_errors=True)
    trained = base / "trained"
    os.environ.update(_env(trained))
    settings = load_settings()
    start = END - timedelta(days=args.days - 1)
    spark = get_spark(settings, "bench-orchestration")
    write_generated(spark, settings, customers=args.customers, start=start, days=args.days, seed=3)
    runs: dict[str, dict[str, Any]] = {}
    with (
        RedisServer(base / "redis", maxmemory="2gb") as redis,
        prefect_test_harness(server_startup_timeout=120),
    ):
        weekly_train(as_of=END - timedelta(days=4), lookback_days=args.days - 54)
        for mode in MODES:
            home = base / mode
            shutil.copytree(trained, home)
            os.environ.update(_env(home))
            os.environ["SCOREHOUSE_REDIS__URL"] = redis.url
            os.environ["SCOREHOUSE_ORCHESTRATION__RUNNER"] = mode
            for run in ("first", "rerun"):
                began = time.perf_counter()
                result = nightly(ds=END)
                runs[f"{mode} {run}"] = {
                    "total_s": round(time.perf_counter() - began, 1),
                    "steps_s": {k: round(v, 1) for k, v in result["timings"].items()},
                    "skipped": [s for s, r in result["steps"].items() if r.get("skipped")],
                    "rows": result["scoring"]["rows"],
                }
    steps = list(next(iter(runs.values()))["steps_s"])
    print(f"{'run':22}" + "".join(f"{s:>10}" for s in steps) + f"{'total':>10}")
    for name, run in runs.items():
        cells = "".join(f"{run['steps_s'][s]:>10.1f}" for s in steps)
        print(
            f"{name:22}{cells}{run['total_s']:>10.1f}   skipped: {', '.join(run['skipped']) or '-'}"
        )
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    result = {"customers": args.customers, "days": args.days, "ds": END.isoformat(), "runs": runs}
    harness.write_result("orchestration", result)


if __name__ == "__main__":
    harness.run(main)
