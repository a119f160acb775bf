"""Load `sql/*.sql` files and fill in their only parameters: dates and names (of tables,
views and columns), each name checked to be a plain identifier so that a value can never
add SQL of its own."""

from __future__ import annotations

import itertools
import re
from datetime import date
from functools import cache
from pathlib import Path
from string import Template

from pyspark.sql import DataFrame, SparkSession

from scorehouse.paths import SQL_DIR

_VIEW_IDS = itertools.count()
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@cache
def _template(path: Path) -> Template:
    return Template(path.read_text())


def sql_path(name: str) -> Path:
    """`analyst/top_customers` → sql/analyst/top_customers.sql."""
    return SQL_DIR / f"{name}.sql"


def parameters(name: str) -> list[str]:
    """The `${param}` names of sql/<name>.sql, in order of first use."""
    return _template(sql_path(name)).get_identifiers()


def render(name: str, **params: date | str) -> str:
    """The statement with `${param}` filled: dates as ISO text, names checked as identifiers."""
    return fill(_template(sql_path(name)), f"{name}.sql", **params)


def fill(template: Template, name: str, **params: date | str) -> str:
    values: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, date):
            values[key] = value.isoformat()
        elif isinstance(value, str) and _IDENTIFIER.match(value):
            values[key] = value
        else:
            raise ValueError(
                f"{name}: parameter {key}={value!r} is neither a date nor a table or column name"
            )
    try:
        return template.substitute(values)
    except KeyError as exc:
        raise ValueError(f"{name} needs parameter {exc.args[0]}") from None


def run_sql(
    spark: SparkSession, name: str, views: dict[str, DataFrame], **dates: date
) -> DataFrame:
    """Run sql/<name>.sql (see `run_statement`)."""
    return run_statement(spark, _template(sql_path(name)), f"{name}.sql", views, **dates)


def run_statement(
    spark: SparkSession, template: Template, name: str, views: dict[str, DataFrame], **dates: date
) -> DataFrame:
    """Run a statement with each DataFrame in `views` registered under a private view name.

    The template refers to inputs by parameter name (`${daily}`); the view names are
    made unique per call so that concurrent or nested statements never collide.
    """
    names: dict[str, date | str] = dict(dates)
    for param, frame in views.items():
        view = f"sh_{param}_{next(_VIEW_IDS)}"
        frame.createOrReplaceTempView(view)
        names[param] = view
    return spark.sql(fill(template, name, **names))
