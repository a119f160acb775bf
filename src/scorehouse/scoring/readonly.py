"""What `scorehouse sql` may run, decided from Spark's own parse tree before anything runs.

A statement passes when it is one query (SELECT, WITH ... SELECT, VALUES, TABLE) or a
SHOW / DESCRIBE / EXPLAIN of one, whose every node is a known query operator and whose
every relation is a warehouse view (or a CTE of the query). Everything else is refused:
writes (INSERT, CREATE, DROP, ALTER, DELETE, UPDATE, MERGE, LOAD), session and cache
commands (SET, ADD JAR, CACHE, REFRESH, USE), scripts, TRANSFORM (runs a program),
reflect() (calls Java), and direct file reads (parquet.`/path`, read_files(...)).
Unknown operators are refused too: a Spark upgrade can add a node, never open a hole.

The parser is reached through `spark._jsparkSession.sessionState().sqlParser()`, which
PySpark does not publish; tests/component/test_sql_readonly.py pins the node names used.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyspark.errors import ParseException
from pyspark.sql import SparkSession

from scorehouse.errors import QueryRefused

# Query operators of Spark's parsed (unresolved) plans; relations and table functions are
# checked on their own below.
QUERY_NODES = frozenset(
    {
        "Aggregate",
        "Deduplicate",
        "Distinct",
        "Except",
        "Filter",
        "Generate",
        "GlobalLimit",
        "Intersect",
        "Join",
        "LateralJoin",
        "LimitAll",
        "LocalLimit",
        "LocalRelation",
        "Offset",
        "OneRowRelation",
        "PipeOperator",
        "Pivot",
        "Project",
        "Repartition",
        "RepartitionByExpression",
        "Sample",
        "Sort",
        "SubqueryAlias",
        "Tail",
        "Union",
        "UnresolvedHaving",
        "UnresolvedHint",
        "UnresolvedInlineTable",
        "UnresolvedQualify",
        "UnresolvedSubqueryColumnAliases",
        "UnresolvedTVFAliases",
        "UnresolvedWith",
        "Unpivot",
        "WithWindowDefinition",
    }
)
RELATION_NODES = frozenset({"UnresolvedRelation", "UnresolvedTableOrView"})
# Generators only: read_files() and friends read any path.
TABLE_FUNCTIONS = frozenset(
    {
        "explode",
        "explode_outer",
        "inline",
        "inline_outer",
        "json_tuple",
        "posexplode",
        "posexplode_outer",
        "range",
        "stack",
        "variant_explode",
        "variant_explode_outer",
    }
)
REFUSED_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect"})
# Spark's names for statements, as the user wrote them (for the one-line refusal).
STATEMENTS = {
    "InsertIntoStatement": "INSERT",
    "InsertIntoDir": "INSERT OVERWRITE DIRECTORY",
    "CreateTableAsSelect": "CREATE TABLE",
    "CreateTable": "CREATE TABLE",
    "CreateViewCommand": "CREATE VIEW",
    "CreateView": "CREATE VIEW",
    "DropTable": "DROP TABLE",
    "DeleteFromTable": "DELETE",
    "UpdateTable": "UPDATE",
    "MergeIntoTable": "MERGE",
    "CacheTable": "CACHE TABLE",
    "UncacheTable": "UNCACHE TABLE",
    "SetCommand": "SET",
    "AddJarsCommand": "ADD JAR",
    "LoadData": "LOAD DATA",
    "RefreshTable": "REFRESH TABLE",
    "ScriptTransformation": "TRANSFORM ... USING (runs a program)",
    "CompoundBody": "a SQL script (BEGIN ... END)",
    "UnresolvedExecuteImmediate": "EXECUTE IMMEDIATE",
}


@dataclass(frozen=True)
class TimeTravel:
    """`table VERSION AS OF n` (or TIMESTAMP AS OF) at text[start:stop] of the query."""

    table: str
    version: int | None
    timestamp: datetime | None
    start: int
    stop: int
    aliased: bool  # an alias follows; otherwise the table's own name is kept as one


@dataclass
class Inspection:
    """What the parse tree says: the first refusal (None: read-only) and any time travel."""

    refusal: str | None = None
    time_travel: list[TimeTravel] = field(default_factory=list)
    ctes: set[str] = field(default_factory=set)
    relations: list[str] = field(default_factory=list)  # single-part names, as written

    def refuse(self, why: str) -> None:
        self.refusal = self.refusal or why


def inspect(spark: SparkSession, text: str, views: set[str]) -> Inspection:
    """Parse `text` with Spark's parser (nothing runs) and check it against the rules."""
    plan = _parse(spark, text)
    found = Inspection()
    top = _name(plan)
    if top.startswith(("Show", "Describe")) or top == "ExplainCommand":
        inner = _inner_query(plan)
        if inner is not None:
            _walk(inner, None, text, found)
        for child in _seq(plan.children()):
            _check_relations_only(child, text, found)
    else:
        _walk(plan, None, text, found)
    _check_names(found, views)
    return found


def _parse(spark: SparkSession, text: str) -> Any:
    try:
        return spark._jsparkSession.sessionState().sqlParser().parsePlan(text)
    except ParseException as exc:
        first = next(line for line in str(exc).splitlines() if line.strip())
        raise QueryRefused(f"not one SQL statement that Spark can parse: {first.strip()}") from None


def _inner_query(plan: Any) -> Any | None:
    """The query of EXPLAIN / DESCRIBE QUERY (a field, not a child, of those commands)."""
    name = _name(plan)
    if name == "ExplainCommand":
        return plan.logicalPlan()
    if name == "DescribeQueryCommand":
        return plan.plan()
    return None


def _walk(plan: Any, parent: Any | None, text: str, found: Inspection) -> None:
    name = _name(plan)
    if name == "RelationTimeTravel":
        found.time_travel.append(_time_travel(plan, parent, text, found))
        _check_relation(plan.relation(), text, found)
        return
    if name in RELATION_NODES:
        _check_relation(plan, text, found)
    elif name == "UnresolvedTableValuedFunction":
        function = ".".join(_seq(plan.name()))
        if function.lower() not in TABLE_FUNCTIONS:
            found.refuse(f"table function {function}(...) (it can read any file)")
    elif name == "UnresolvedWith":
        found.ctes |= {pair._1().lower() for pair in _seq(plan.cteRelations())}
    elif name not in QUERY_NODES:
        found.refuse(_statement(name, plan, text))
    for expression in _seq(plan.expressions()):
        _check_functions(expression, found)
    for child in _children(plan):
        _walk(child, plan, text, found)


def _children(plan: Any) -> Iterator[Any]:
    """Children, CTE definitions and subqueries in expressions: every plan in the tree."""
    yield from _seq(plan.children())
    inner = _seq(plan.innerChildren())  # Spark's default: the subqueries; CTEs for WITH
    yield from inner
    yield from (s for s in _seq(plan.subqueries()) if s not in inner)


def _check_relations_only(plan: Any, text: str, found: Inspection) -> None:
    # SHOW / DESCRIBE name tables as children: only the names matter there.
    if _name(plan) in RELATION_NODES:
        _check_relation(plan, text, found)
    for child in _seq(plan.children()):
        _check_relations_only(child, text, found)


def _check_relation(plan: Any, text: str, found: Inspection) -> None:
    parts = _seq(plan.multipartIdentifier())
    if len(parts) > 1:
        found.refuse(f"direct read of {_snippet(plan, text)} (only the warehouse views)")
    else:
        found.relations.append(str(parts[0]))


def _check_names(found: Inspection, views: set[str]) -> None:
    """Relations must be views or CTEs; checked after the walk has seen every CTE."""
    known = {v.lower() for v in views}
    for travel in found.time_travel:
        if travel.table.lower() not in known:
            found.refuse(f"time travel on {travel.table}, which is no warehouse table")
    for name in found.relations:
        if name.lower() not in known | found.ctes:
            tables = ", ".join(sorted(views)) or "none yet"
            found.refuse(f"table {name}, which is no warehouse table (tables: {tables})")


def _check_functions(expression: Any, found: Inspection) -> None:
    if _name(expression) == "UnresolvedFunction":
        function = ".".join(_seq(expression.nameParts()))
        if function.lower() in REFUSED_FUNCTIONS:
            found.refuse(f"{function}() (it calls Java methods)")
    for child in _seq(expression.children()):
        _check_functions(child, found)


def _time_travel(plan: Any, parent: Any | None, text: str, found: Inspection) -> TimeTravel:
    relation = plan.relation()
    parts = _seq(relation.multipartIdentifier())
    version = _option(plan.version())
    timestamp = _option(plan.timestamp())
    when = None
    if timestamp is not None:
        when = _literal_timestamp(timestamp)
        if when is None:
            found.refuse("TIMESTAMP AS OF with anything but a timestamp literal")
    if version is not None and not str(version).isdigit():
        found.refuse(f"VERSION AS OF {version} (a table version is a whole number)")
    return TimeTravel(
        table=str(parts[-1]),
        version=int(version) if version is not None and str(version).isdigit() else None,
        timestamp=when,
        start=_option(relation.origin().startIndex()),
        stop=_option(plan.origin().stopIndex()) + 1,
        aliased=parent is not None and _name(parent) == "SubqueryAlias",
    )


def _literal_timestamp(expression: Any) -> datetime | None:
    if _name(expression) != "Literal":
        return None
    try:
        when = datetime.fromisoformat(str(expression.value().toString()))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)  # the session is UTC


def _statement(name: str, plan: Any, text: str) -> str:
    what, snippet = STATEMENTS.get(name) or name, _snippet(plan, text)
    return snippet if snippet.upper().startswith(what) else f"{what} ({snippet})"


def _snippet(plan: Any, text: str, width: int = 60) -> str:
    start, stop = _option(plan.origin().startIndex()), _option(plan.origin().stopIndex())
    piece = text[start : stop + 1] if start is not None and stop is not None else text
    piece = " ".join(piece.split())
    return piece if len(piece) <= width else piece[: width - 3] + "..."


def _name(node: Any) -> str:
    return str(node.getClass().getSimpleName()).rstrip("$")


def _seq(seq: Any) -> list[Any]:
    return [seq.apply(i) for i in range(seq.size())]


def _option(option: Any) -> Any:
    return option.get() if option.isDefined() else None
