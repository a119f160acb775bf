"""Nightly benchmark: the whole `nightly` flow for N customers with a year of history.

    python bench/nightly.py --customers 1000000 10000000 --work-dir /tmp/shb-nightly \
        [--no-latency-guard]

For each size: seeded data for 366 days ending on --ds (the raw events of --ds are the
"new day"), the features snapshot of the day before (range build, the stored history),
and one model trained once on a small separate warehouse and registered in an MLflow
store shared by every size. All of that is setup, cached under --work-dir and not timed;
it runs in a process of its own with a larger heap (SETUP_SPARK_CONF).

Timed: `scorehouse.flows.nightly(ds=--ds)` in a fresh Python process, as cron would
start it (Spark session start and Prefect's ephemeral server included in the total),
with a project-run redis-server, on a fresh copy of the setup state (the flow resumes,
skipping done steps, on a warehouse where --ds is already done). Per step: the flow's `timings` when it returns them,
else the seconds each step reports. Peak memory is the summed RSS of that process tree
(Python driver, the JVM and its Python workers) and, apart, of redis-server, sampled every
0.2 s; Redis's own used_memory (and its peak) when the flow is done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil
import redis as redis_client
import yaml

import harness

HISTORY_DAYS = 366  # a year of history before --ds, plus --ds itself
TRAIN_CUSTOMERS = 10_000
# The setup (generation and the year's feature history) is not timed: it gets a larger
# heap so that 10M customers spill less. The timed nightly runs on the local profile as is.
SETUP_SPARK_CONF = {"spark.driver.memory": "12g"}


# ------------------------------------------------------------------ memory sampling


def tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants."""
    try:
        process = psutil.Process(root)
        tree = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for member in tree:
        with contextlib.suppress(psutil.Error):  # the process ended meanwhile
            total += member.memory_info().rss
    return total


class PeakSampler(threading.Thread):
    """Polls the process tree's RSS until stopped; keeps the peak."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop_event.wait(self.every_s)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


# ------------------------------------------------------------------ setup (cached)


def write_config(
    path: Path,
    home: Path,
    mlflow_dir: Path,
    redis_url: str | None = None,
    spark_conf: dict[str, str] | None = None,
    guard: bool = True,
) -> Path:
    config: dict[str, Any] = {
        "home": str(home),
        "warehouse": str(home / "warehouse"),
        "spark": {"profile": "local", "conf": spark_conf or {}},
        "mlflow": {
            "tracking_uri": f"sqlite:///{mlflow_dir / 'mlflow.db'}",
            "artifact_location": str(mlflow_dir / "artifacts"),
        },
    }
    if redis_url:
        config["redis"] = {"url": redis_url}
        if not guard:  # the readers' latency guard off: the load runs at full speed
            config["redis"]["reader_latency_target_ms"] = None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def _done(marker: Path) -> dict[str, Any] | None:
    return json.loads(marker.read_text()) if marker.exists() else None


def setup_size(customers: int, ds: date, work: Path, seed: int) -> dict[str, Any]:
    """Raw data for a year up to ds and the features snapshot of ds-1 (cached)."""
    from scorehouse.data.generate import write_generated
    from scorehouse.features.build import build_features
    from scorehouse.settings import load_settings
    from scorehouse.spark import get_spark

    home = work / f"c{customers}" / "setup"
    config = write_config(home / "setup.yaml", home, work / "mlflow", spark_conf=SETUP_SPARK_CONF)
    settings = load_settings(config, environ={})
    marker = home / "setup.json"
    cached = _done(marker)
    if cached:
        return cached
    spark = get_spark(settings, app_name="bench-nightly-setup")
    began = time.perf_counter()
    generated = write_generated(
        spark,
        settings,
        customers=customers,
        start=ds - timedelta(days=HISTORY_DAYS - 1),
        days=HISTORY_DAYS,
        seed=seed,
    )
    generate_s = time.perf_counter() - began
    began = time.perf_counter()
    history = build_features(spark, settings, days=[ds - timedelta(days=1)])
    info = {
        "customers": customers,
        "transactions": generated.transaction_rows,
        "customer_versions": generated.customer_rows,
        "generate_s": round(generate_s, 1),
        "history_features_s": round(time.perf_counter() - began, 1),
        "history_rows": history.rows,
        "load_avg_during_setup": os.getloadavg(),
    }
    marker.write_text(json.dumps(info, indent=2))
    return info


def train_once(ds: date, work: Path, seed: int) -> dict[str, Any]:
    """One champion model from a small warehouse, in the MLflow store every size shares."""
    from scorehouse.data.generate import write_generated
    from scorehouse.features.training_set import build_training_set
    from scorehouse.settings import load_settings
    from scorehouse.spark import get_spark
    from scorehouse.training.train import train_from_warehouse

    marker = work / "train.json"
    cached = _done(marker)
    if cached:
        return cached
    home = work / "train"
    config = write_config(home / "setup.yaml", home, work / "mlflow", spark_conf=SETUP_SPARK_CONF)
    settings = load_settings(config, environ={})
    spark = get_spark(settings, app_name="bench-nightly-train")
    began = time.perf_counter()
    write_generated(
        spark,
        settings,
        customers=TRAIN_CUSTOMERS,
        start=ds - timedelta(days=HISTORY_DAYS - 1),
        days=HISTORY_DAYS,
        seed=seed + 1,
    )
    horizon = settings.model.horizon_days
    build_training_set(
        spark,
        settings,
        ds - timedelta(days=180),
        ds - timedelta(days=horizon + 1),
        every_days=14,
    )
    result = train_from_warehouse(spark, settings, as_of=ds - timedelta(days=1))
    info = {
        "customers": TRAIN_CUSTOMERS,
        "model": result.model_name,
        "version": result.version,
        "alias": result.alias,
        "test_roc_auc": result.metrics.get("test_roc_auc"),
        "seconds": round(time.perf_counter() - began, 1),
    }
    marker.write_text(json.dumps(info, indent=2))
    return info


# ------------------------------------------------------------------ the timed nightly


def step_timings(result: dict[str, Any]) -> dict[str, float]:
    """Per-step seconds: the flow's `timings` if it returns them, else what steps report."""
    if isinstance(result.get("timings"), dict):
        return {str(k): float(v) for k, v in result["timings"].items()}
    steps = {}
    for name in ("features", "scoring", "publish"):
        step = result.get(name)
        if isinstance(step, dict) and isinstance(step.get("seconds"), int | float):
            steps[name] = float(step["seconds"])
    return steps


def run_child(ds: date, config: Path, out: Path) -> None:
    """In the fresh process: run the flow, write what it returned and the flow wall time."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The flow is called directly here, not through `scorehouse` (cli.main), so the
    # defaults that cli.main gives a flow run are set here too.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    began = time.perf_counter()
    from scorehouse.flows import nightly

    imported = time.perf_counter()
    result = nightly(ds=ds, config=str(config))
    done = time.perf_counter()
    out.write_text(
        json.dumps(
            {
                "result": result,
                "import_s": imported - began,
                "flow_s": done - imported,
            },
            default=str,
        )
    )


def time_nightly(customers: int, ds: date, work: Path, guard: bool = True) -> dict[str, Any]:
    from scorehouse.localstack import RedisServer

    # Each timed run starts from a fresh copy of the setup state: rerunning the flow on
    # a warehouse where ds is already done would resume, skipping every step.
    home = work / f"c{customers}" / "run"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(work / f"c{customers}" / "setup" / "warehouse", home / "warehouse")
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    load_before = os.getloadavg()
    with RedisServer(home / "redis") as redis:
        config = write_config(home / "nightly.yaml", home, work / "mlflow", redis.url, guard=guard)
        out = home / "nightly_result.json"
        out.unlink(missing_ok=True)
        env = dict(os.environ, PREFECT_HOME=str(home / "prefect"))
        began = time.perf_counter()
        child = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                str(config),
                "--ds",
                ds.isoformat(),
                "--child-out",
                str(out),
            ],
            env=env,
        )
        sampler, redis_sampler = PeakSampler(child.pid), PeakSampler(redis.pid or 0)
        sampler.start()
        redis_sampler.start()
        code = child.wait()
        wall = time.perf_counter() - began
        peak, redis_peak = sampler.stop(), redis_sampler.stop()
        memory = redis_client.Redis.from_url(redis.url).info("memory")
    if code != 0:
        raise SystemExit(f"nightly for {customers} customers failed (exit {code})")
    data = json.loads(out.read_text())
    result = data["result"]
    skipped = [k for k, v in result.items() if isinstance(v, dict) and v.get("skipped")]
    if skipped:
        print(f"warning: steps skipped as already done: {skipped}", flush=True)
    return {
        "customers": customers,
        "latency_guard": guard,
        "commit": commit,
        "skipped": skipped,
        "load_avg_before": load_before,
        "rows_scored": (result.get("scoring") or {}).get("rows"),
        "steps_s": step_timings(result),
        "flow_s": round(data["flow_s"], 1),
        "process_s": round(wall, 1),
        "import_s": round(data["import_s"], 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "redis_peak_rss_gib": round(redis_peak / 2**30, 2),
        "redis_used_memory_gib": round(memory["used_memory"] / 2**30, 2),
        "redis_used_memory_peak_gib": round(memory["used_memory_peak"] / 2**30, 2),
        "load_avg_after": os.getloadavg(),
    }


# ------------------------------------------------------------------ report


def print_table(runs: list[dict[str, Any]]) -> None:
    steps = list(dict.fromkeys(s for r in runs for s in r["steps_s"]))
    header = f"{'customers':>10} " + " ".join(f"{s[:12]:>12}" for s in steps)
    print(header + f" {'flow':>7} {'process':>8} {'peak GiB':>9} {'load1':>6}")
    for r in runs:
        cells = " ".join(f"{r['steps_s'].get(s, float('nan')):>12.1f}" for s in steps)
        print(
            f"{r['customers']:>10,} {cells} {r['flow_s']:>7.1f} {r['process_s']:>8.1f} "
            f"{r['peak_rss_gib']:>9.2f} {r['load_avg_after'][0]:>6.1f}"
        )
    if len(runs) > 1:
        first, last = runs[0], runs[-1]
        size = last["customers"] / first["customers"]
        print(f"\nscaling {first['customers']:,} -> {last['customers']:,} customers (x{size:g}):")
        for s in [*steps, "flow_s", "process_s"]:
            a = first["steps_s"].get(s, first.get(s))
            b = last["steps_s"].get(s, last.get(s))
            if a and b:
                print(f"  {s:<20} x{b / a:.2f}")


def set_up_apart(args: argparse.Namespace, customers: int) -> None:
    """The setup of one size in a process of its own, so that its JVM (SETUP_SPARK_CONF's
    heap) has exited before anything is timed; this process then reads the cached setup."""
    command = [sys.executable, __file__, "--setup-only", "--customers", str(customers)]
    command += ["--ds", args.ds.isoformat(), "--work-dir", str(args.work_dir)]
    subprocess.run([*command, "--seed", str(args.seed)], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--ds", type=date.fromisoformat, default=date(2026, 11, 1))
    parser.add_argument("--work-dir", type=Path, default=Path(".scorehouse/bench-nightly"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--result", default="nightly", help="bench/results/<name>.json")
    parser.add_argument(
        "--setup-only", action="store_true", help="generate and train, time nothing"
    )
    parser.add_argument(
        "--no-latency-guard",
        action="store_true",
        help="publish with redis.reader_latency_target_ms null (the default guard is on)",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.ds, args.child, args.child_out)
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    setups: dict[int, dict[str, Any]] = {}
    runs: list[dict[str, Any]] = []
    # Size by size (set up, then time), saving after each, so a long 1M setup that does
    # not finish still leaves the smaller sizes measured.
    for n in args.customers:
        if not args.setup_only:
            set_up_apart(args, n)
        trained = train_once(args.ds, work, args.seed)
        setups[n] = setup_size(n, args.ds, work, args.seed)
        print(f"setup {n}: {json.dumps(setups[n])}", flush=True)
        if args.setup_only:
            continue
        runs.append(time_nightly(n, args.ds, work, guard=not args.no_latency_guard))
        print(f"nightly {n}: {json.dumps(runs[-1])}", flush=True)
        result = {"ds": args.ds.isoformat(), "history_days": HISTORY_DAYS, "model": trained}
        harness.write_result(args.result, {**result, "setup": setups, "runs": runs})
    if runs:
        print()
        print_table(runs)


if __name__ == "__main__":
    harness.run(main)
