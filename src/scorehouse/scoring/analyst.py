"""The warehouse as Spark SQL views, ad hoc statements over them, and sql/analyst/."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from scorehouse.errors import QueryRefused, ValidationError
from scorehouse.features.registry import feature_sql
from scorehouse.paths import SQL_DIR
from scorehouse.project.load import features_of
from scorehouse.scoring.readonly import TimeTravel, inspect
from scorehouse.settings import Settings
from scorehouse.sqlfiles import parameters, render
from scorehouse.storage.warehouse import Warehouse


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
    """Run sql/analyst/<name>.sql; tables are named by parameters (views must exist), and
    the active project's names (`project_parameters`) fill those `params` leaves out."""
    defaults = _project_defaults(parameters(f"analyst/{name}"))
    return spark.sql(render(f"analyst/{name}", **{**defaults, **params}))


PROJECT_PARAMETERS = ("entity_key", "segment")


def _project_defaults(needed: Sequence[str]) -> dict[str, str]:
    # A query without project columns runs even where the project cannot be loaded.
    if not set(needed) & set(PROJECT_PARAMETERS):
        return {}
    return {k: v for k, v in project_parameters().items() if k in needed}


def project_parameters(project_dir: str | Path | None = None) -> dict[str, str]:
    """The names a project gives the shipped queries, so that one query serves every
    project: `entity_key`, its key column, and `segment`, the attribute column that its
    first categorical feature (an attribute with a vocabulary) encodes, when it has one."""
    project = feature_sql(project_dir).project
    values = {"entity_key": project.entity.key}
    categorical = [f.column for f in features_of(project) if f.kind == "attribute" and f.vocabulary]
    if categorical and categorical[0]:
        values["segment"] = categorical[0]
    return values


def analyst_names() -> list[str]:
    """The shipped queries: sql/analyst/*.sql by name."""
    return sorted(p.stem for p in (SQL_DIR / "analyst").glob("*.sql"))


def run_analyst_file(
    spark: SparkSession,
    settings: Settings,
    name: str,
    params: Mapping[str, str],
    *,
    allow_writes: bool = False,
) -> DataFrame:
    """Run a shipped query (`top_customers`, `top_customers.sql` or
    `sql/analyst/top_customers.sql`) over the warehouse views, under `run_sql`'s read-only
    rule. A value in YYYY-MM-DD form fills a date parameter, any other a name (of a table or
    column). Left out, a table parameter is the warehouse table of that name (as
    `settings.tables` names it) and a project parameter the active project's
    (`project_parameters`)."""
    query = _analyst_name(name)
    needed = parameters(f"analyst/{query}")
    unknown = sorted(set(params) - set(needed))
    if unknown:
        raise ValidationError(
            f"{query}.sql has no parameter {', '.join(unknown)}; it takes {', '.join(needed)}"
        )
    views = table_names(Warehouse.from_settings(spark, settings))
    configured = settings.tables.model_dump()
    tables = {p: configured.get(p, p) for p in needed}
    values: dict[str, date | str] = {p: t for p, t in tables.items() if t in views}
    values.update(_project_defaults(needed))
    values.update({key: _date_or_name(value) for key, value in params.items()})
    try:
        text = render(f"analyst/{query}", **values)
    except ValueError as exc:
        raise ValidationError(f"{exc} (it takes {', '.join(needed)})") from None
    return run_sql(spark, settings, text, allow_writes=allow_writes)


def _analyst_name(name: str) -> str:
    stem = name.removesuffix(".sql").rsplit("/", 1)[-1]
    shipped = analyst_names()
    if stem in shipped and (name in (stem, f"{stem}.sql") or name.endswith(f"analyst/{stem}.sql")):
        return stem
    raise ValidationError(f"no shipped query {name!r}; sql/analyst/ holds {', '.join(shipped)}")


def _date_or_name(value: str) -> date | str:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return value


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
