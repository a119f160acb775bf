"""`scorehouse demo`: the whole path on embedded local defaults, timed stage by stage.

The purchase example (the default): generate data in Spark → weekly training flow
(training set → XGBoost → MLflow registry) → nightly flow (features → scores → Redis) →
lookups, with a project-run redis-server.

Another shipped example (`--example NAME`) brings its own seeded generator,
`examples/NAME/generate.py`, and runs as a user's project would: the generator writes
one file per source → `ingest` of each file (the contracts, as for a user's file) →
features build → weekly training flow → nightly flow → lookups, with SCOREHOUSE_PROJECT
pointing at the example's folder.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from scorehouse.errors import ScorehouseError
from scorehouse.paths import EXAMPLES_DIR
from scorehouse.project.load import DEFAULT_EXAMPLE, ENV, PROJECT_FILE
from scorehouse.project.spec import Project
from scorehouse.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

GENERATOR_FILE = "generate.py"
# An example's generate(out_dir, *, <count>, days, seed, end): what is not <count>.
_GENERATOR_ARGS = {"out_dir", "days", "seed", "end"}
DEFAULT_ENTITIES = {DEFAULT_EXAMPLE: 10_000}
OTHER_ENTITIES = 2_000
# Days of history: the training split purges a label horizon before validation and again
# before test, so a 30-day horizon needs well over 150 days of as-of dates' history.
DEFAULT_DAYS = {DEFAULT_EXAMPLE: 180}
OTHER_DAYS = 240


class DemoError(ScorehouseError):
    """The demo cannot run as asked (an unknown example, a generator that does not fit)."""

    exit_code = 2


def example_names() -> list[str]:
    """The shipped examples (`examples/<name>/project.yaml`; `_template` is none)."""
    return sorted(
        p.parent.name
        for p in EXAMPLES_DIR.glob(f"*/{PROJECT_FILE}")
        if not p.parent.name.startswith("_")
    )


def example_dir(name: str) -> Path:
    folder = EXAMPLES_DIR / name
    if name.startswith("_") or not (folder / PROJECT_FILE).is_file():
        raise DemoError(f"no example {name!r}; the shipped examples: {', '.join(example_names())}")
    return folder


def default_entities(example: str | None) -> int:
    return DEFAULT_ENTITIES.get(example or DEFAULT_EXAMPLE, OTHER_ENTITIES)


def default_days(example: str | None) -> int:
    return DEFAULT_DAYS.get(example or DEFAULT_EXAMPLE, OTHER_DAYS)


@contextmanager
def example_project(example: str | None, config: str | None) -> Iterator[Settings | None]:
    """SCOREHOUSE_PROJECT set to the example's folder (restored after), and the settings
    loaded for it: each project has its own warehouse, Redis namespace and model name.
    None when no example is named (the project in use stays)."""
    if example is None:
        yield None
        return
    folder = example_dir(example)
    before = os.environ.get(ENV)
    os.environ[ENV] = str(folder.resolve())
    try:
        yield load_settings(config)
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    began = time.perf_counter()
    print(f"==> {name}", flush=True)
    yield
    timings[name] = round(time.perf_counter() - began, 1)
    print(f"    {name}: {timings[name]} s", flush=True)


def _prefect_environment(settings: Settings, home: Path) -> None:
    # When `scorehouse up` runs a Prefect server, the demo's runs go there (and show in
    # its UI); otherwise an ephemeral server keeps its state in a home of its own, so two
    # servers never write one SQLite file.
    from scorehouse.stack import http_ok, prefect_api_url

    if "PREFECT_API_URL" not in os.environ and http_ok(f"{prefect_api_url(settings)}/health"):
        os.environ["PREFECT_API_URL"] = prefect_api_url(settings)
        os.environ.setdefault("PREFECT_HOME", str((home / "prefect").resolve()))
    else:
        os.environ.setdefault("PREFECT_HOME", str((home / "prefect-ephemeral").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def run_demo(
    settings: Settings,
    *,
    customers: int,
    days: int,
    seed: int,
    config: str | None = None,
    example: str | None = None,
) -> dict[str, float]:
    """Run everything once for `customers` entities over `days` of history ending
    yesterday (UTC). `example`: a shipped example with a generator of its own (the
    settings must be loaded for it: `example_project`); None or the purchase example:
    the built-in generator."""
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    _prefect_environment(settings, home)

    from scorehouse import localstack
    from scorehouse.flows import nightly, weekly_train
    from scorehouse.serving import Client
    from scorehouse.spark import get_spark

    timings: dict[str, float] = {}
    end = datetime.now(tz=UTC).date() - timedelta(days=1)
    start = end - timedelta(days=days - 1)
    train_as_of = end - timedelta(days=1)
    # The first weeks of generated history give entities no past to learn from: sample
    # as-of dates only after a warm-up.
    warm_up = min(60, days // 3)
    began = time.perf_counter()
    generator = None if example in (None, DEFAULT_EXAMPLE) else _generator(example_dir(example))

    with _stage(timings, "start redis-server"):
        port = urlparse(settings.redis.url).port or 6379
        redis = localstack.up(home / "redis", port)
    with _stage(timings, "start spark"):
        spark = get_spark(settings, app_name="scorehouse-demo")
    if generator is None:
        lookups = _generate_purchases(spark, settings, timings, customers, start, days, seed)
        tables = (
            "raw_customers, raw_transactions, daily_transactions,\n"
            "                 features, training_set, predictions, monitoring, step_runs,\n"
            "                 publications"
        )
    else:
        lookups = _generate_and_ingest(
            spark, settings, timings, generator, customers, days, seed, end
        )
        # Every day the training set and the nightly read, in one range build.
        first = train_as_of - timedelta(days=days - warm_up)
        with _stage(timings, f"features {first} .. {end}"):
            from scorehouse.features.build import build_features

            build = build_features(spark, settings, first, end)
            print(f"    {build.rows} feature rows ({build.mode} build)")
        tables = _table_list(settings)
    with _stage(timings, "weekly_train flow (training set, XGBoost, MLflow, gate)"):
        trained = weekly_train(as_of=train_as_of, lookback_days=days - warm_up, config=config)
        t = trained["training"]
        built = trained["training_set"]
        print(f"    training set: {built['rows']} rows, {built['positives']} positive")
        print(
            f"    model {t['model_name']} v{t['version']} -> {t['alias']} (test AUC {t['test_roc_auc']:.4f}): {t['reason']}"
        )
    with _stage(timings, f"nightly flow for {end} (features, score, publish)"):
        result = nightly(ds=end, config=config)
        print(
            f"    {result['scoring']['rows']} predictions, Redis generation {result['publish'].get('generation')}"
        )
    spark.stop()  # frees the cores the lookups below are meant to show
    with _stage(timings, "lookups"):
        # A first lookup in a fresh process also connects and loads the model.
        patient = settings.model_copy(
            update={"serving": settings.serving.model_copy(update={"timeout_ms": 2000})}
        )
        with Client(patient) as client:  # the champion scores the unknown id, as HTTP does
            for score in client.get_many(lookups):
                print("   ", json.dumps(score.to_dict()))
    timings["total"] = round(time.perf_counter() - began, 1)
    (home / "demo_timings.json").write_text(json.dumps(timings, indent=2))
    _print_where(settings, redis.url, end, tables, lookups[:3])
    return timings


def _generate_purchases(
    spark: SparkSession,
    settings: Settings,
    timings: dict[str, float],
    customers: int,
    start: date,
    days: int,
    seed: int,
) -> list[object]:
    """The purchase example's raw tables from the built-in generator (replaced whole)."""
    from scorehouse.data.generate import write_generated

    with _stage(timings, f"generate {customers} customers x {days} days"):
        generated = write_generated(
            spark, settings, customers=customers, start=start, days=days, seed=seed
        )
        print(
            f"    {generated.customer_rows} customer versions, {generated.transaction_rows} transactions"
        )
    return [1, 2, 3, customers + 10_000_000]


def _generator(folder: Path) -> Callable[..., dict[str, Path]]:
    """`generate` of the example's generate.py."""
    path = folder / GENERATOR_FILE
    if not path.is_file():
        raise DemoError(f"example {folder.name} has no {GENERATOR_FILE}: it has no demo data")
    spec = importlib.util.spec_from_file_location(f"scorehouse_example_{folder.name}", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generate = getattr(module, "generate", None)
    if not callable(generate):
        raise DemoError(f"{path}: defines no generate(out_dir, *, <count>, days, seed, end)")
    return generate


def _count_argument(generate: Callable[..., Any]) -> str:
    """The generator's entity count keyword (`accounts`, ...): its one other argument."""
    names = [n for n in inspect.signature(generate).parameters if n not in _GENERATOR_ARGS]
    if len(names) != 1:
        raise DemoError(
            f"{inspect.getsourcefile(generate)}: generate() must take out_dir, one entity "
            f"count, days, seed and end; it takes {', '.join(names) or 'no count'} besides"
        )
    return names[0]


def _ingest_order(project: Project, files: dict[str, Path]) -> list[str]:
    """The entity's source first (events are checked against the entities it knows), then
    the other attributes, then the events."""
    unknown = sorted(set(files) - set(project.sources))
    missing = sorted(set(project.sources) - set(files))
    if unknown or missing:
        raise DemoError(
            f"the generator wrote {sorted(files)}; the project declares {sorted(project.sources)}"
        )
    rank = {project.entity.source: 0}
    return sorted(
        files,
        key=lambda s: (rank.get(s, 1 if project.sources[s].kind == "attributes" else 2), s),
    )


def _reset_warehouse(settings: Settings) -> None:
    """The demo starts from an empty warehouse of its project: a rerun (another seed, a
    later day) must not append to the last run's rows. Only a folder under the home."""
    warehouse = Path(settings.warehouse).resolve()
    home = Path(settings.home).resolve()
    if not warehouse.exists():
        return
    if home not in warehouse.parents:
        raise DemoError(
            f"the demo replaces its project's warehouse, and {warehouse} is not under the "
            f"home {home}: run the demo with a home of its own (SCOREHOUSE_HOME)"
        )
    print(f"    replacing the demo warehouse {warehouse}")
    shutil.rmtree(warehouse)


def _generate_and_ingest(
    spark: SparkSession,
    settings: Settings,
    timings: dict[str, float],
    generate: Callable[..., dict[str, Path]],
    entities: int,
    days: int,
    seed: int,
    end: date,
) -> list[object]:
    """Files from the example's generator, each ingested into its source's raw table;
    returns three known entity ids and an unknown one to look up."""
    from scorehouse.data.ingest import format_summary, ingest_file
    from scorehouse.features.registry import feature_sql

    project = feature_sql().project
    count = _count_argument(generate)
    with tempfile.TemporaryDirectory(prefix=f"scorehouse-{project.name}-") as tmp:
        with _stage(timings, f"generate {entities} {count} x {days} days"):
            files = generate(Path(tmp), **{count: entities}, days=days, seed=seed, end=end)
            for source, path in files.items():
                print(f"    {source}: {path.name} ({path.stat().st_size / 1e6:.1f} MB)")
        _reset_warehouse(settings)
        for source in _ingest_order(project, files):
            with _stage(timings, f"ingest {source}"):
                result = ingest_file(spark, settings, table=source, path=files[source])
                print("    " + format_summary(result).replace("\n", "\n    "))
        return _lookup_ids(project, files[project.entity.source])


def _lookup_ids(project: Project, path: Path) -> list[object]:
    """Three ids of the entity's source file, and one that no entity has."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    key = project.sources[project.entity.source].key or project.entity.key
    if path.suffix.lower() in (".parquet", ".pq"):
        column = pq.read_table(path, columns=[key]).column(key)
    else:
        options = pacsv.ConvertOptions(include_columns=[key])
        column = pacsv.read_csv(path, convert_options=options).column(key)
    values = column.to_pylist()
    known = list(dict.fromkeys(values))[:3]
    ids: list[object] = []
    if project.entity.type == "string":
        ids += [str(k) for k in known]
        ids.append(f"no-such-{project.entity.name}")
    else:
        ids += [int(k) for k in known]
        ids.append(max(int(k) for k in values) + 10_000_000)
    return ids


def _table_list(settings: Settings) -> str:
    from scorehouse.features.registry import feature_sql

    sql = feature_sql()
    project = sql.project
    names = [sql.raw_table(s) for s in project.sources]
    names += [sql.rollup_table(s) for s, src in project.sources.items() if src.kind == "events"]
    tables = settings.tables
    names += [tables.features, tables.training_set, tables.predictions, tables.monitoring]
    return ", ".join(names) + ",\n                 step_runs, publications, quarantine"


def _print_where(
    settings: Settings, redis_url: str, ds: object, tables: str, lookups: list[object]
) -> None:
    wh = Path(settings.warehouse).resolve()
    project = os.environ.get(ENV)
    prefix = f"SCOREHOUSE_PROJECT={project} " if project else ""
    ids = " ".join(str(i) for i in lookups)
    print(
        f"""
Done. Where everything is:
  Delta tables   {wh}/<table>   ({tables})
                 {prefix}scorehouse sql "SELECT * FROM predictions WHERE ds = '{ds}' ORDER BY score DESC LIMIT 10"
                 python -c "import polars as pl; print(pl.read_delta('{wh}/predictions'))"
  MLflow         {settings.mlflow.tracking_uri}
                 mlflow ui --backend-store-uri {settings.mlflow.tracking_uri}  → http://127.0.0.1:5000
  Redis          {redis_url}   (still running; key contract in docs/redis-keys.md)
                 {prefix}scorehouse lookup {ids}
                 redis-cli -p {urlparse(redis_url).port} GET {settings.redis.namespace}:current
  Stage timings  {Path(settings.home).resolve()}/demo_timings.json
"""
    )
