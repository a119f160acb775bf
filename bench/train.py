"""Distributed (xgboost.spark on local[*]) vs single-node (xgboost.train) training.

    python bench/train.py --rows 1000000 5000000 [--rounds 100] [--variants ...]

Both sides start from the same Parquet training set (synthesized here: the registry's
features, nulls where the feature SQL leaves them, a planted signal) and train the same
booster parameters for a fixed number of rounds on the same time split. Each variant
runs in its own process; wall time covers reading the data through a trained booster;
peak memory is the largest RSS of the process tree (driver, JVM, Python workers),
sampled every 50 ms. Results: a table on stdout and bench/results/train.json.
"""

from __future__ import annotations

import argparse
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

from scorehouse.features.registry import feature_names, load_registry, to_matrix
from scorehouse.training.metrics import roc_auc

HERE = Path(__file__).resolve().parent
WEEKS = 20
START = date(2025, 1, 6)
VALID_WEEKS = (16, 17)  # weeks 18, 19 are test
TEST_START = START + timedelta(weeks=18)
VALID_START = START + timedelta(weeks=16)
VARIANTS = (
    "single",
    "spark_naive",
    "spark_lean",
    "spark_cached",
    "probe_barrier",
    "probe_convert",
)


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


def params(rounds: int) -> dict[str, Any]:
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "learning_rate": 0.1,
        "max_depth": 6,
        "tree_method": "hist",
        "max_bin": 256,
        "seed": 7,
    }


def _test_auc(booster: Any, data: Path) -> float:
    names = feature_names()
    table = pq.read_table(
        data, columns=["as_of", "label", *names], filters=[("as_of", ">=", TEST_START)]
    )
    pdf = table.to_pandas()
    return roc_auc(pdf["label"].to_numpy(), booster.inplace_predict(to_matrix(pdf, names)))


def run_single(data: Path, rounds: int, cores: int) -> dict[str, Any]:
    import xgboost as xgb

    names = feature_names()
    t0 = time.perf_counter()
    table = pq.read_table(
        data, columns=["as_of", "label", *names], filters=[("as_of", "<", TEST_START)]
    )
    pdf = table.to_pandas()
    valid = (pdf["as_of"] >= VALID_START).to_numpy()
    x = to_matrix(pdf, names)
    y = pdf["label"].to_numpy()
    t_read = time.perf_counter()
    dtrain = xgb.QuantileDMatrix(x[~valid], label=y[~valid], max_bin=256, feature_names=names)
    dvalid = xgb.QuantileDMatrix(x[valid], label=y[valid], ref=dtrain, feature_names=names)
    t_dm = time.perf_counter()
    booster = xgb.train(
        {**params(rounds), "nthread": cores},
        dtrain,
        rounds,
        evals=[(dvalid, "v")],
        verbose_eval=False,
    )
    t_fit = time.perf_counter()
    return {
        "seconds": t_fit - t0,
        "stages": {
            "read_to_matrix": t_read - t0,
            "quantile_dmatrix": t_dm - t_read,
            "boost": t_fit - t_dm,
        },
        "test_auc": _test_auc(booster, data),
    }


def _spark(cores: int) -> Any:
    from scorehouse.settings import load_settings
    from scorehouse.spark import get_spark

    settings = load_settings(
        environ={
            "SCOREHOUSE_SPARK__PROFILE": "local",
            "SCOREHOUSE_SPARK__MASTER": f"local[{cores}]",
            "SCOREHOUSE_SPARK__CONF": json.dumps({"spark.driver.memory": "8g"}),
        }
    )
    return get_spark(settings, app_name="bench-train")


def run_spark(data: Path, rounds: int, cores: int, mode: str) -> dict[str, Any]:
    """mode: naive (VectorAssembler, xgboost's own repartition), lean (float columns,
    one repartition to num_workers), cached (lean + cache and count before fit)."""
    from pyspark.sql import functions as F
    from xgboost.spark import SparkXGBClassifier

    names = feature_names()
    spark = _spark(cores)
    t0 = time.perf_counter()
    df = spark.read.parquet(str(data)).where(F.col("as_of") < F.lit(TEST_START))
    df = df.withColumn("is_valid", F.col("as_of") >= F.lit(VALID_START))
    common = {
        "label_col": "label",
        "validation_indicator_col": "is_valid",
        "num_workers": cores,
        "n_estimators": rounds,
        "missing": float("nan"),
        "verbose": False,
        **{k: v for k, v in params(rounds).items() if k != "objective"},
    }
    if mode in ("lean", "cached"):
        # Float columns, no vector, one partition per worker (shuffled once, so every
        # worker holds train and validation rows; xgboost then skips its own repartition).
        df = df.select("label", "is_valid", *[F.col(n).cast("float").alias(n) for n in names])
        df = df.repartition(cores)
        if mode == "cached":  # the label-count pass and the training pass read memory
            df = df.cache()
            df.count()
        est = SparkXGBClassifier(features_col=names, feature_names=names, **common)
    else:
        from pyspark.ml.feature import VectorAssembler

        df = VectorAssembler(inputCols=names, outputCol="features", handleInvalid="keep").transform(
            df
        )
        est = SparkXGBClassifier(features_col="features", force_repartition=True, **common)
    t_prep = time.perf_counter()
    model = est.fit(df)
    t_fit = time.perf_counter()
    booster = model.get_booster()
    booster.feature_names = names
    out = {
        "seconds": t_fit - t0,
        "stages": {"prepare": t_prep - t0, "fit": t_fit - t_prep},
        "test_auc": _test_auc(booster, data),
    }
    spark.stop()
    return out


def run_probe_barrier(data: Path, rounds: int, cores: int) -> dict[str, Any]:
    """Fixed cost of a fit: barrier stage, Python workers, tracker, on 2k rows and 1 round."""
    from pyspark.sql import functions as F
    from xgboost.spark import SparkXGBClassifier

    names = feature_names()
    spark = _spark(cores)
    df = spark.read.parquet(str(data)).limit(2000)
    df = (
        df.select("label", *[F.col(n).cast("float").alias(n) for n in names])
        .repartition(cores)
        .cache()
    )
    df.count()
    t0 = time.perf_counter()
    SparkXGBClassifier(features_col=names, num_workers=cores, n_estimators=1).fit(df)
    out = {"seconds": time.perf_counter() - t0, "stages": {}, "test_auc": None}
    spark.stop()
    return out


def run_probe_convert(data: Path, rounds: int, cores: int) -> dict[str, Any]:
    """Data conversion alone: Parquet → Spark → Arrow → pandas → float32 matrix in workers."""
    from pyspark.sql import functions as F

    names = feature_names()
    spark = _spark(cores)

    def convert(batches: Any) -> Any:
        import pandas as pd

        rows = 0
        for pdf in batches:
            rows += to_matrix(pdf, names).shape[0]
        yield pd.DataFrame({"rows": [rows]})

    t0 = time.perf_counter()
    df = spark.read.parquet(str(data)).where(F.col("as_of") < F.lit(TEST_START))
    df = df.select("label", *[F.col(n).cast("float").alias(n) for n in names]).repartition(cores)
    total = df.mapInPandas(convert, "rows long").agg(F.sum("rows")).first()[0]
    out = {"seconds": time.perf_counter() - t0, "stages": {"rows": total}, "test_auc": None}
    spark.stop()
    return out


def run_one(variant: str, data: Path, rounds: int, cores: int) -> dict[str, Any]:
    with PeakRss() as mem:
        if variant == "single":
            result = run_single(data, rounds, cores)
        elif variant.startswith("spark_"):
            result = run_spark(data, rounds, cores, variant.removeprefix("spark_"))
        elif variant == "probe_barrier":
            result = run_probe_barrier(data, rounds, cores)
        else:
            result = run_probe_convert(data, rounds, cores)
    return {**result, "peak_rss_mb": mem.peak / 2**20, "cpu_seconds": mem.cpu_seconds}


# ----------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/scorehouse-bench-train"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: "variant:rows"
    args = parser.parse_args(argv)

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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    args.out.write_text(
        json.dumps(
            {
                "machine": {"cores": os.cpu_count(), "loadavg_at_end": load},
                "rounds": args.rounds,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.out}")


HEADER = (
    f"{'rows':>10} {'variant':<14} {'wall s':>7} {'x single':>8} {'CPU s':>7} "
    f"{'x single':>8} {'peak MB':>8} {'test AUC':>8}"
)


def _row(r: dict[str, Any]) -> str:
    vs, cvs, auc = r.get("vs_single"), r.get("cpu_vs_single"), r.get("test_auc")
    return (
        f"{r['rows']:>10,} {r['variant']:<14} {r['seconds']:>7.1f} "
        f"{(f'{vs:.2f}' if vs else '-'):>8} {r['cpu_seconds']:>7.1f} "
        f"{(f'{cvs:.2f}' if cvs else '-'):>8} {r['peak_rss_mb']:>8.0f} "
        f"{(f'{auc:.4f}' if auc else '-'):>8}"
    )


if __name__ == "__main__":
    main()
