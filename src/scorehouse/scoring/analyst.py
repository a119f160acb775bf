"""The warehouse as Spark SQL views, ad hoc statements over them, and sql/analyst/."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession

from scorehouse.errors import QueryRefused, ValidationError
from scorehouse.scoring.readonly import TimeTravel, inspect
from scorehouse.settings import Settings
from scorehouse.sqlfiles import render
from scorehouse.tables import Warehouse


def table_names(wh: Warehouse) -> list[str]:
    """Every Delta table under the warehouse root, by folder name."""
    if not wh.root.is_dir():
        return []
    return sorted(
        p.name
        for p in wh.root.iterdir()
        if p.is_dir() and not p.name.startswith(("_", ".")) and wh.exists(p.name)
    )


def register_views(spark: SparkSession, settings: Settings) -> list[str]:
    """Register each warehouse table (latest version) as a temp view named after it."""
    wh = Warehouse.from_settings(spark, settings)
    names = table_names(wh)
    for name in names:
        wh.read(name).createOrReplaceTempView(name)
    return names


def analyst_query(spark: SparkSession, name: str, **params: date | str) -> DataFrame:
    """Run sql/analyst/<name>.sql; tables are named by parameters (views must exist)."""
    return spark.sql(render(f"analyst/{name}", **params))


def run_sql(
    spark: SparkSession, settings: Settings, text: str, *, allow_writes: bool = False
) -> DataFrame:
    """One statement over the warehouse views: a read-only query unless `allow_writes`.

    `table VERSION AS OF n` and `table TIMESTAMP AS OF '...'` read that Delta version of a
    warehouse table (Spark cannot time-travel a view: the clause becomes a view of its own).
    """
    wh = Warehouse.from_settings(spark, settings)
    views = table_names(wh)
    found = inspect(spark, text, set(views))
    if found.refusal and not allow_writes:
        raise QueryRefused(
            f"scorehouse sql runs read-only queries; refused: {found.refusal}. "
            "Nothing was run (--allow-writes lifts this)."
        )
    register_views(spark, settings)
    travels = [t for t in found.time_travel if _view_name(t.table, views)]
    return spark.sql(_travel_in_time(wh, text, travels, views))


def _travel_in_time(
    wh: Warehouse, text: str, travels: Sequence[TimeTravel], views: Sequence[str]
) -> str:
    """Register each `table VERSION AS OF n` as view table__vN and put that in the text."""
    for travel in sorted(travels, key=lambda t: t.start, reverse=True):
        table = _view_name(travel.table, views)
        version = travel.version
        if version is None:
            version = _version_at(wh, table, travel.timestamp)
        view = f"{table}__v{version}"
        wh.read(table, version=version).createOrReplaceTempView(view)
        # Without an alias the table's own name stays usable as a qualifier (predictions.ds).
        name = f"`{view}`" if travel.aliased else f"`{view}` AS `{table}`"
        text = text[: travel.start] + name + text[travel.stop :]
    return text


def _view_name(name: str, views: Sequence[str]) -> str:
    return next((v for v in views if v.lower() == name.lower()), "")


def _version_at(wh: Warehouse, table: str, when: datetime | None) -> int:
    """The newest version of `table` committed at or before `when`."""
    assert when is not None  # inspect() refuses TIMESTAMP AS OF without a literal
    at_ms = when.timestamp() * 1000
    versions = [e["version"] for e in wh.history(table) if e["timestamp"] <= at_ms]
    if not versions:
        raise ValidationError(f"table {table} has no version committed at or before {when}")
    return int(max(versions))
