"""The warehouse as Spark SQL views, and the analyst queries in sql/analyst/."""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame, SparkSession

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
