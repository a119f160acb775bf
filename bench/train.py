"""Distributed training as `scorehouse train` runs it vs single-node `xgboost.train`,
and `auto`: the engine `scorehouse train` picks under default settings for that size.

    python bench/train.py --rows 1000000 5000000 [--rounds 100] [--variants ...]
        [--spark-conf KEY=VALUE ...]

Both sides start from the same Parquet training set (synthesized here: the registry's
features, nulls where the feature SQL leaves them, a planted signal), use the product's
booster parameters (`xgb_params` under default settings), the same time split, the same
round limit and early stopping, and the same cores (single-node nthread = Spark's
cores = num_workers). `distributed` calls the library's own functions (`prepare`,
`lay_out`, `fit_rows`, `fit_distributed`); `single` calls `fit_single_node`. Each variant
runs in its own process; wall time covers reading the data through a trained booster;
the distributed stages come from timestamps taken inside xgboost.spark's fit (driver and
barrier tasks). Peak memory is the largest RSS of the process tree (driver, JVM, Python
workers), sampled every 50 ms. Results: a table on stdout and bench/results/train.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import harness
from scorehouse.features.registry import feature_names, load_registry, to_matrix
from scorehouse.settings import load_settings
from scorehouse.training.metrics import roc_auc
from scorehouse.training.train import TrainOptions, fit_engine, fit_single_node, xgb_params

HERE = Path(__file__).resolve().parent
WEEKS = 20
START = date(2025, 1, 6)
VALID_WEEKS = (16, 17)  # weeks 18, 19 are test
TEST_START = START + timedelta(weeks=18)
VALID_START = START + timedelta(weeks=16)
VARIANTS = ("single", "distributed", "auto", "distributed_previous", "probe_barrier")


# ----------------------------------------------------------------------------- data


def synthesize(rows: int, folder: Path, seed: int = 7, chunk: int = 500_000) -> None:
    """Parquet files with the training-set contract: customer_id, as_of, label, features."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    defs = load_registry()
    done = 0
    part = 0
    while done < rows:
        n = min(chunk, rows - done)
        z = rng.normal(0, 1, n)  # latent propensity
        never = rng.random(n) < 0.1
        rate = np.exp(0.7 * z)
        cols: dict[str, pa.Array] = {
            "customer_id": pa.array(np.arange(done, done + n, dtype=np.int64)),
            "as_of": pa.array([START + timedelta(weeks=int(w)) for w in rng.integers(0, WEEKS, n)]),
        }
        week_drift = np.zeros(n)
        logit = 1.4 * z - 0.6 - 0.9 * never + week_drift
        cols["label"] = pa.array((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int32))
        for i, f in enumerate(defs):
            window = {"7d": 0.25, "30d": 1.0, "90d": 3.0, "365d": 12.0}.get(f.window, 6.0)
            base = rng.poisson(window * rate * (0.5 + (i % 5) / 5))
            if f.type == "int":
                values = np.where(never, f.no_history or 0, base).astype(np.float64)
            else:
                values = base * rng.gamma(2.0, 15.0, n)
            if "days_since" in f.name:
                values = np.round(rng.exponential(30 / rate))
            null = never if f.no_history is None else np.zeros(n, dtype=bool)
            if f.no_history is None and f.type == "double":
                null = null | (base == 0)
            arr = values.astype(np.int64 if f.type == "int" else np.float64)
            cols[f.name] = pa.array(arr, mask=null)
        pq.write_table(pa.table(cols), folder / f"part-{part:04d}.parquet")
        done += n
        part += 1


# ----------------------------------------------------------------------------- memory


class PeakRss:
    """Largest summed RSS of this process and its descendants, sampled in a thread, and
    the CPU seconds they used (last seen utime+stime per process, so exited Python
    workers still count). CPU time is the figure that survives a busy machine."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, cpu = _tree_usage(os.getpid())
            self.peak = max(self.peak, rss)
            self.cpu.update(cpu)
            time.sleep(self.interval)


def _tree_usage(root: int) -> tuple[int, dict[int, float]]:
    """(summed RSS bytes, {pid: cpu seconds}) of `root` and its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as fh:
                rss[int(entry)] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    total, stack, seen = 0, [root], {}
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        seen[pid] = cpu.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total, seen


# ----------------------------------------------------------------------------- variants


# The bench's split, by date for both sides (weeks 0-15 train, 16-17 valid, 18-19 test,
# no gap), so the single-node and distributed fits see the same rows.
def split_column() -> Any:
    from pyspark.sql import functions as F

    return (
        F.when(F.col("as_of") >= F.lit(TEST_START), F.lit("test"))
        .when(F.col("as_of") >= F.lit(VALID_START), F.lit("valid"))
        .otherwise(F.lit("train"))
    )


TRACE_LOG = "/tmp/scorehouse-bench-train-trace.jsonl"
# --spark-conf: settings laid over the local profile, to try one against the default.
EXTRA_CONF: dict[str, str] = {}


def params() -> dict[str, Any]:
    """The product's booster parameters under default settings (what `scorehouse train` uses)."""
    return xgb_params(load_settings(environ={}), TrainOptions(), 1.0)


def early_stopping_rounds() -> int:
    return load_settings(environ={}).model.early_stopping_rounds


def _test_auc(booster: Any, data: Path) -> float:
    names = feature_names()
    table = pq.read_table(
        data, columns=["as_of", "label", *names], filters=[("as_of", ">=", TEST_START)]
    )
    pdf = table.to_pandas()
    return roc_auc(pdf["label"].to_numpy(), booster.inplace_predict(to_matrix(pdf, names)))


def run_single(data: Path, rounds: int, cores: int) -> dict[str, Any]:
    """The product's single-node baseline (`fit_single_node`: to_matrix → QuantileDMatrix →
    xgboost.train with early stopping), nthread = the cores Spark has."""
    names = feature_names()
    t0 = time.perf_counter()
    table = pq.read_table(
        data, columns=["as_of", "label", *names], filters=[("as_of", "<", TEST_START)]
    )
    pdf = table.to_pandas()
    valid = (pdf["as_of"] >= VALID_START).to_numpy()
    train_pdf = pdf[~valid].reset_index(drop=True)
    valid_pdf = pdf[valid].reset_index(drop=True)
    t_read = time.perf_counter()
    booster = fit_single_node(
        train_pdf, valid_pdf, names, params(), rounds, early_stopping_rounds(), nthread=cores
    )
    t_fit = time.perf_counter()
    return {
        "seconds": t_fit - t0,
        "stages": {"read_to_pandas": t_read - t0, "fit": t_fit - t_read},
        "trees": booster.num_boosted_rounds(),
        "test_auc": _test_auc(booster, data),
    }


def _spark(cores: int) -> Any:
    from scorehouse.spark import get_spark

    settings = load_settings(
        environ={
            "SCOREHOUSE_SPARK__PROFILE": "local",
            "SCOREHOUSE_SPARK__MASTER": f"local[{cores}]",
            "SCOREHOUSE_SPARK__CONF": json.dumps({"spark.driver.memory": "8g", **EXTRA_CONF}),
        }
    )
    return get_spark(settings, app_name="bench-train"), settings


def run_distributed(data: Path, rounds: int, cores: int, previous: bool) -> dict[str, Any]:
    """What `scorehouse train` runs: prepare → time split → `lay_out` → persist → the split
    counts (which fill the cache) → `fit_distributed(fit_rows(...))` with num_workers = the
    cores Spark has. `previous`: stock xgboost.spark (no layout: its own round-robin
    repartition and its label-counting job), to show what those two save."""

    import scorehouse.training.train as tt

    names = feature_names()
    spark, settings = _spark(cores)
    workers = tt.num_workers(spark, settings)
    if previous:
        tt.BinaryXGBClassifier = tt.SparkXGBClassifier  # type: ignore[misc]
    trace = _Trace()
    t0 = time.perf_counter()
    df = tt.prepare(spark.read.parquet(str(data)), names, None, 0)
    df = df.withColumn("split", split_column())
    df = (df if previous else tt.lay_out(df, workers)).persist()
    counts = {r["split"]: r["count"] for r in df.groupBy("split").count().collect()}
    t_prep = time.perf_counter()
    trace.mark("fit_start")
    _, booster = tt.fit_distributed(
        spark,
        tt.fit_rows(df),
        names,
        params(),
        rounds,
        early_stopping_rounds(),
        workers,
        force_repartition=previous,
    )
    t_fit = time.perf_counter()
    trace.mark("fit_end")
    out = {
        "seconds": t_fit - t0,
        "stages": {
            "read_layout_cache_count": t_prep - t0,
            "fit": t_fit - t_prep,
            **trace.stages(),
        },
        "workers": workers,
        "split_rows": counts,
        "trees": booster.num_boosted_rounds(),
        "test_auc": _test_auc(booster, data),
    }
    spark.stop()
    return out


def run_probe_barrier(data: Path, rounds: int, cores: int) -> dict[str, Any]:
    """Fixed cost of the product's fit: `fit_distributed` on 2k laid-out cached rows, 1 round."""
    from pyspark.sql import functions as F

    import scorehouse.training.train as tt

    names = feature_names()
    spark, settings = _spark(cores)
    workers = tt.num_workers(spark, settings)
    df = tt.prepare(spark.read.parquet(str(data)).limit(2000), names, None, 0)
    df = df.withColumn("split", F.when(F.rand(1) < 0.2, "valid").otherwise("train"))
    df = tt.lay_out(df, workers).persist()
    df.count()
    trace = _Trace()
    t0 = time.perf_counter()
    trace.mark("fit_start")
    tt.fit_distributed(spark, tt.fit_rows(df), names, params(), 1, 1, workers, False)
    trace.mark("fit_end")
    out = {"seconds": time.perf_counter() - t0, "stages": trace.stages(), "test_auc": None}
    spark.stop()
    return out


# ----------------------------------------------------------------------------- trace


class _Trace:
    """Timestamps from inside xgboost.spark's fit, driver and barrier tasks alike.

    Wraps (with the wrapped signatures kept, which xgboost.spark inspects) the functions
    its training closure calls; being defined in this script, the wrappers travel to the
    Python workers by value and append to a shared file. Costs a few file writes.
    """

    def __init__(self) -> None:
        import xgboost.spark.core as core

        if os.path.exists(TRACE_LOG):
            os.remove(TRACE_LOG)
        est = core._SparkXGBEstimator
        for name in ("_get_distributed_train_params", "_get_tracker_args"):
            setattr(est, name, _driver_span(getattr(est, name), name))
        core._can_use_qdm = _worker_mark(core._can_use_qdm, "barrier_passed")
        core.create_dmatrix_from_partitions = _worker_span(
            core.create_dmatrix_from_partitions, "dmatrix"
        )
        core.worker_train = _worker_span(core.worker_train, "boost")
        core.CommunicatorContext = _traced_context(core.CommunicatorContext)

    def mark(self, event: str) -> None:
        _log(event, time.time(), time.time())

    def stages(self) -> dict[str, float]:
        """Seconds per part of the fit (the slowest worker where both do the same thing)."""
        ev: dict[str, list[dict[str, Any]]] = {}
        with open(TRACE_LOG) as fh:
            for line in fh:
                r = json.loads(line)
                ev.setdefault(r["ev"], []).append(r)

        def first(name: str, key: str = "start") -> float:
            return min(r[key] for r in ev[name])

        def last(name: str, key: str = "end") -> float:
            return max(r[key] for r in ev[name])

        out = {
            # prepare_input + the label count + the tracker, on the driver
            "fit_driver_before_job": last("_get_tracker_args") - first("fit_start"),
            "fit_label_count": last("_get_distributed_train_params")
            - first("_get_distributed_train_params"),
            # task launch, Python worker fork, imports, the first barrier
            "fit_worker_start": last("barrier_passed") - last("_get_tracker_args"),
            "fit_worker_process_to_barrier": max(
                r["start"] - r["proc_start"] for r in ev["barrier_passed"]
            ),
            # allGather, collective init
            "fit_collective_init": first("dmatrix") - last("barrier_passed"),
            # Arrow → pandas, train/valid split, QuantileDMatrix sketch (1 thread per worker)
            "fit_dmatrix": max(r["end"] - r["start"] for r in ev["dmatrix"]),
            "fit_dmatrix_wait_first_batch": max(r["first"] - r["start"] for r in ev["dmatrix"]),
            "fit_boost": max(r["end"] - r["start"] for r in ev["boost"]),
            "fit_after_boost": first("fit_end") - last("boost"),
            # leaving the collective (tracker shutdown handshake)
            "fit_collective_exit": last("collective_exit") - last("boost"),
            # barrier, booster to the driver, sklearn wrapper, best-iteration slice
            "fit_result_to_driver": first("fit_end") - last("collective_exit"),
        }
        # Spark answers a barrier()/allGather() by polling once a second (JVM side), so
        # each call costs up to a second however ready the workers are. The first call
        # (before any hook) is counted, the others timed, per worker (the slowest).
        calls: dict[int, list[float]] = {}
        for r in ev.get("barrier_call", []):
            calls.setdefault(r["pid"], []).append(r["end"] - r["start"])
        if calls:
            out["fit_barrier_calls"] = 1 + max(len(v) for v in calls.values())
            out["fit_barrier_seconds_after_first"] = max(sum(v) for v in calls.values())
        return {k: round(v, 3) for k, v in out.items()}


def _log(event: str, start: float, end: float, **extra: float) -> None:
    with open(TRACE_LOG, "a") as fh:
        fh.write(json.dumps({"ev": event, "start": start, "end": end, **extra}) + "\n")


def _proc_start() -> float:
    """Epoch seconds at which this process started (a forked Python worker: its fork)."""
    with open("/proc/self/stat") as fh:
        ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as fh:
        boot = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _driver_span(fn: Any, name: str) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            _log(name, t, time.time())

    return wrapper


def _worker_mark(fn: Any, name: str) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.time()
        _log(name, t, t, proc_start=_proc_start())
        _time_barrier_calls()
        return fn(*args, **kwargs)

    return wrapper


def _time_barrier_calls() -> None:
    """From here on, log every barrier() and allGather() of this worker process.

    Called right after the fit's first barrier (which therefore is counted, not timed).
    """
    from pyspark import BarrierTaskContext

    for name in ("barrier", "allGather"):
        method = getattr(BarrierTaskContext, name)
        if getattr(method, "_traced", False):
            continue

        def traced(self: Any, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            t = time.time()
            try:
                return _method(self, *args, **kwargs)
            finally:
                _log("barrier_call", t, time.time(), pid=os.getpid())

        traced._traced = True  # type: ignore[attr-defined]
        setattr(BarrierTaskContext, name, traced)


def _traced_context(base: Any) -> Any:
    class TracedContext(base):  # type: ignore[misc,valid-type]
        def __exit__(self, *args: Any) -> Any:
            t = time.time()
            try:
                return base.__exit__(self, *args)
            finally:
                _log("collective_exit", t, time.time())

    return TracedContext


def _worker_span(fn: Any, name: str) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.time()
        first = [t]
        if "iterator" in kwargs:  # time until Spark hands over the first Arrow batch

            def watch(batches: Any) -> Any:
                for i, batch in enumerate(batches):
                    if i == 0:
                        first[0] = time.time()
                    yield batch

            kwargs["iterator"] = watch(kwargs["iterator"])
        try:
            return fn(*args, **kwargs)
        finally:
            _log(name, t, time.time(), first=first[0])

    return wrapper


def run_one(variant: str, data: Path, rounds: int, cores: int) -> dict[str, Any]:
    engine = None
    if variant == "auto":  # what `scorehouse train` picks under default settings
        rows = pq.ParquetDataset(data).read(columns=["label"]).num_rows
        engine = fit_engine(load_settings(environ={}).model, rows, len(feature_names()))
        variant = "single" if engine == "single_node" else "distributed"
    with PeakRss() as mem:
        if variant == "single":
            result = run_single(data, rounds, cores)
        elif variant.startswith("distributed"):
            result = run_distributed(data, rounds, cores, previous=variant.endswith("_previous"))
        else:
            result = run_probe_barrier(data, rounds, cores)
    out = {**result, "peak_rss_mb": mem.peak / 2**20, "cpu_seconds": mem.cpu_seconds}
    return out if engine is None else {**out, "engine": engine}


# ----------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/scorehouse-bench-train"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train.json")
    parser.add_argument(
        "--spark-conf",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark settings for the Spark variants (compare with a run without)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: "variant:rows"
    args = parser.parse_args(argv)
    EXTRA_CONF.update(dict(kv.split("=", 1) for kv in args.spark_conf))

    if args.one:
        variant, rows = args.one.split(":")
        data = args.data_dir / f"rows-{rows}"
        print(json.dumps(run_one(variant, data, args.rounds, args.cores)))
        return

    results = []
    for rows in args.rows:
        data = args.data_dir / f"rows-{rows}"
        if not data.exists():
            t = time.perf_counter()
            synthesize(rows, data)
            print(
                f"synthesized {rows:,} rows in {time.perf_counter() - t:.1f} s -> {data}",
                flush=True,
            )
        for variant in args.variants:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                f"{variant}:{rows}",
                "--rounds",
                str(args.rounds),
                "--cores",
                str(args.cores),
                "--data-dir",
                str(args.data_dir),
                *(["--spark-conf", *args.spark_conf] if args.spark_conf else []),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{variant} on {rows} rows failed")
            result = {
                "variant": variant,
                "rows": rows,
                **json.loads(proc.stdout.strip().splitlines()[-1]),
            }
            results.append(result)
            print(_row(result), flush=True)

    single = {r["rows"]: r for r in results if r["variant"] == "single"}
    for r in results:
        base = single.get(r["rows"])
        r["vs_single"] = r["seconds"] / base["seconds"] if base else None
        r["cpu_vs_single"] = r["cpu_seconds"] / base["cpu_seconds"] if base else None
    print()
    print(HEADER)
    for r in results:
        print(_row(r))
    result = {"rounds": args.rounds, "spark_conf": EXTRA_CONF, "results": results}
    harness.write_result(args.out, result)


HEADER = (
    f"{'rows':>10} {'variant':<20} {'wall s':>7} {'x single':>8} {'CPU s':>7} "
    f"{'x single':>8} {'peak MB':>8} {'test AUC':>8}"
)


def _row(r: dict[str, Any]) -> str:
    vs, cvs, auc = r.get("vs_single"), r.get("cpu_vs_single"), r.get("test_auc")
    name = f"{r['variant']} ({r['engine']})" if "engine" in r else r["variant"]
    return (
        f"{r['rows']:>10,} {name:<20} {r['seconds']:>7.1f} "
        f"{(f'{vs:.2f}' if vs else '-'):>8} {r['cpu_seconds']:>7.1f} "
        f"{(f'{cvs:.2f}' if cvs else '-'):>8} {r['peak_rss_mb']:>8.0f} "
        f"{(f'{auc:.4f}' if auc else '-'):>8}"
    )


if __name__ == "__main__":
    harness.run(main)
