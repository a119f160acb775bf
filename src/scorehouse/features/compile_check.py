"""Spark's analyzer over a project: every SQL expression a user wrote, against the
declared columns, before any data is read.

Each source becomes an empty DataFrame with its declared schema (events sources get
their `ds` day column), each feature's expressions are analyzed in the context the
compiled statements give them, then every compiled statement runs over the empty
inputs. Analysis only: no job runs, so this takes seconds on any project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from functools import partial
from pathlib import Path

from pyspark.errors import PySparkException
from pyspark.logger import PySparkLogger
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from scorehouse.features import transforms
from scorehouse.features.compile import FeatureSql, Partial
from scorehouse.features.training_set import AS_OF_SCHEMA
from scorehouse.project.checks import derived_order
from scorehouse.project.load import PARTS, PROJECT_FILE
from scorehouse.project.spec import Feature, Project, Source

SPARK_TYPES: dict[str, T.DataType] = {
    "int64": T.LongType(),
    "int32": T.IntegerType(),
    "double": T.DoubleType(),
    "string": T.StringType(),
    "bool": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}
_DAY = date(2000, 1, 3)


def source_schema(source: Source) -> T.StructType:
    """The raw table's schema as declared (events: plus `ds`, the event day)."""
    fields = [
        T.StructField(name, SPARK_TYPES[column.type], column.nullable)
        for name, column in source.columns.items()
    ]
    if source.kind == "events":
        fields.append(T.StructField("ds", T.DateType(), False))
    return T.StructType(fields)


def declaration_files(folder: Path) -> dict[str, Path]:
    """Which file holds each part of the project (`project`, `sources`, `features`)."""
    files = {"project": folder / PROJECT_FILE}
    for part in PARTS:
        own = folder / f"{part}.yaml"
        files[part] = own if own.exists() else files["project"]
    return files


def first_line(exc: Exception) -> str:
    """The first non-empty line of Spark's message (the error class and what it names)."""
    text = getattr(exc, "getMessage", lambda: str(exc))() or str(exc)
    return next((line.strip() for line in str(text).splitlines() if line.strip()), repr(exc))


@contextmanager
def _quiet_query_errors() -> Iterator[None]:
    """PySpark logs every analysis error with its whole plan; here they are the result."""
    loggers = [
        PySparkLogger.getLogger(name)
        for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger")
    ]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, before, strict=True):
            logger.disabled = disabled


def _with_column(frame: DataFrame, name: str, expr: str) -> DataFrame:
    return frame.withColumn(name, F.expr(expr))


class _Analysis:
    def __init__(self, spark: SparkSession, project: Project, folder: Path) -> None:
        self.spark = spark
        self.project = project
        self.files = declaration_files(folder)
        self.sql = FeatureSql(project)
        self.problems: list[str] = []
        self.frames = {
            name: spark.createDataFrame([], source_schema(source))
            for name, source in project.sources.items()
        }

    def check(self, where: str, build: Callable[[], DataFrame]) -> DataFrame | None:
        """The frame `build` makes, analyzed; None (and a problem noted) if Spark refuses it."""
        try:
            frame = build()
            _ = frame.schema  # forces analysis under Spark Connect too
            return frame
        except PySparkException as exc:
            self.problems.append(f"{where}: {first_line(exc)}")
            return None

    def feature(self, f: Feature) -> str:
        return f"{self.files['features']}: feature {f.name}"

    # --- what the user wrote, one expression at a time ----------------------------

    def aggregation(self, f: Feature) -> None:
        events = self.frames[f.source or ""]
        where = self.feature(f)
        ok = True
        if f.filter is not None:
            ok &= self.check(f"{where}: filter", lambda: events.where(f.filter or "")) is not None
        if f.value is not None:
            alone = f"({f.value}) AS value"
            ok &= self.check(f"{where}: value", lambda: events.selectExpr(alone)) is not None
        if not ok:
            return
        # the rollup expressions the compiler makes of it (sum of a string, min of a map...)
        kinds = {"sum": "sum", "mean": "sum", "min": "min", "max": "max"}
        kinds |= {"first": "first", "last": "last"}
        kind = kinds.get(f.agg or "", "count")
        scale = f.scale if kind == "sum" else None
        value = f.value if kind != "count" else None
        partial = Partial(f.source or "", kind, value, f.filter, scale, "p")  # type: ignore[arg-type]
        timestamp = self.project.sources[f.source or ""].timestamp or "ds"
        self.check(where, lambda: events.selectExpr(partial.sql(timestamp)))

    def label(self) -> None:
        label = self.project.label
        if label is None or label.filter is None:
            return
        events = self.frames[label.source]
        where = f"{self.files['project']}: label: filter"
        self.check(where, lambda: events.where(label.filter or ""))

    # --- the compiled statements over empty inputs ---------------------------------

    def statements(self) -> DataFrame | None:
        """The state frame (None when a statement failed)."""
        sql, day = self.sql, [_DAY]
        at = f"{self.files['features']}: statement"
        attributes = self.frames[self.project.entity.source]
        daily: dict[str, DataFrame] = {}
        for source in sql.rollup_sources:
            rollups = self.check(
                f"{at} daily_{source}",
                partial(transforms.daily_rollups, sql, source, self.frames[source], day),
            )
            if rollups is None:
                return None
            daily[source] = rollups
        features_daily = {s: daily[s] for s in sql.event_sources}
        state = self.check(
            f"{at} range build",
            lambda: transforms.state_for_days(sql, features_daily, attributes, day),
        )
        if state is None:
            return None
        self.check(
            f"{at} next-day build",
            lambda: transforms.next_day_state(sql, state, features_daily, attributes, _DAY),
        )
        label = self.project.label
        if label is not None and sql.label_partial is not None:
            self.check(f"{self.files['project']}: label", lambda: self._labels(daily[label.source]))
        return state

    def _labels(self, daily: DataFrame) -> DataFrame:
        from string import Template

        from scorehouse.sqlfiles import run_statement

        as_of = self.spark.createDataFrame(
            [(_DAY, _DAY - timedelta(days=1), _DAY + timedelta(days=1))], AS_OF_SCHEMA
        )
        views = {
            "as_of_dates": as_of,
            "entities": transforms.entities(
                self.sql, self.frames[self.project.entity.source], [_DAY]
            ),
            "daily": daily,
        }
        return run_statement(self.spark, Template(self.sql.labels_sql()), "labels", views)

    def features(self, state: DataFrame) -> None:
        """Each feature over the state, in the order the features statement computes
        them; a failed one is a typed null so that those after it are still checked."""
        sql = self.sql
        frame = state
        by_name = {f.name: f for f in sql.features}
        ordered = [f for f in sql.features if f.kind != "derived"]
        ordered += [by_name[name] for name in derived_order(sql.features)]
        for f in ordered:
            if f.kind == "aggregation":
                expr = sql.typed(f, sql.finish[f.name])
            elif f.kind == "attribute":
                expr = sql.typed(f, sql.attribute_expr(f))
            else:
                expr = sql.typed(f, f"({f.expr})")
            where = self.feature(f) + (": expr" if f.expr is not None else "")
            added = self.check(where, partial(_with_column, frame, f.name, expr))
            if added is None:
                null = "DOUBLE" if sql.feature_type(f) != "int" else "BIGINT"
                added = frame.withColumn(f.name, F.expr(f"CAST(NULL AS {null})"))
            frame = added
        if not self.problems:
            self.check(
                f"{self.files['features']}: statement features",
                lambda: transforms.features_from_state(sql, state),
            )


def analyze(spark: SparkSession, project: Project, folder: Path) -> list[str]:
    """Every problem Spark's analyzer finds in the project's SQL, one line each:
    `FILE: feature NAME: <first line of Spark's message>` (empty: all of it resolves)."""
    with _quiet_query_errors():
        run = _Analysis(spark, project, folder)
        for f in run.sql.features:
            if f.kind == "aggregation":
                run.aggregation(f)
        run.label()
        if run.problems:  # the statements would fail on the same expressions
            return run.problems
        state = run.statements()
        if state is not None:
            run.features(state)
    return run.problems
