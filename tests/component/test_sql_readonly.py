"""`scorehouse sql`: read-only queries over real Delta tables, refusals, time travel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from home_settings import home_env
from scorehouse.cli import main
from scorehouse.errors import QueryRefused
from scorehouse.scoring.analyst import run_sql
from scorehouse.settings import Settings, load_settings
from scorehouse.storage.warehouse import Warehouse

SCHEMA = "customer_id long, score double"


def _tables(spark: SparkSession, settings: Settings) -> Warehouse:
    """predictions: version 0 holds customers 1-2, version 1 adds 3; monitoring: one row."""
    wh = Warehouse.from_settings(spark, settings)
    wh.append("predictions", spark.createDataFrame([(1, 0.9), (2, 0.5)], SCHEMA))
    wh.append("predictions", spark.createDataFrame([(3, 0.1)], SCHEMA))
    wh.append("monitoring", spark.createDataFrame([(7, 0.2)], SCHEMA))
    return wh


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One warehouse for the module: refused statements must leave it as it is anyway."""
    return load_settings(environ=home_env(tmp_path_factory.mktemp("sql") / "home"))


@pytest.fixture(scope="module")
def wh(spark: SparkSession, settings: Settings) -> Warehouse:
    return _tables(spark, settings)


def test_a_query_reads_the_warehouse_views(
    spark: SparkSession, settings: Settings, wh: Warehouse
) -> None:
    out = run_sql(
        spark,
        settings,
        "WITH top AS (SELECT * FROM predictions WHERE score > 0.2) "
        "SELECT customer_id FROM top WHERE customer_id IN (SELECT customer_id FROM predictions) "
        "ORDER BY customer_id -- ; DROP TABLE predictions",
    )
    assertDataFrameEqual(out, spark.createDataFrame([(1,), (2,)], "customer_id long"))
    literal = run_sql(spark, settings, "SELECT ';DROP TABLE predictions' AS s")
    assert literal.collect()[0].s == ";DROP TABLE predictions"


READ_ONLY = [
    "SHOW TABLES",
    "DESCRIBE predictions",
    "EXPLAIN SELECT * FROM predictions",
    "VALUES (1), (2)",
    "SELECT * FROM range(3)",
    "TABLE monitoring",
]


@pytest.mark.parametrize("statement", READ_ONLY)
def test_show_describe_explain_and_values_run(
    spark: SparkSession, settings: Settings, wh: Warehouse, statement: str
) -> None:
    run_sql(spark, settings, statement).collect()


REFUSED = {
    "INSERT OVERWRITE DIRECTORY '{out}' USING parquet SELECT * FROM predictions": "INSERT OVERWRITE DIRECTORY",
    "INSERT INTO predictions VALUES (9, 0.5)": "refused: INSERT INTO predictions.",
    "WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a": "INSERT",
    "CREATE TABLE t USING parquet LOCATION '{out}' AS SELECT 1 AS x": "CREATE TABLE",
    "CREATE TEMP VIEW v AS SELECT 1": "CREATE VIEW",
    "DROP TABLE predictions": "refused: DROP TABLE predictions.",
    "ALTER TABLE predictions ADD COLUMNS (x int)": "ALTER TABLE predictions",
    "DELETE FROM predictions WHERE score > 0": "DELETE",
    "UPDATE predictions SET score = 0": "UPDATE",
    "MERGE INTO predictions p USING monitoring m ON p.customer_id = m.customer_id "
    "WHEN MATCHED THEN DELETE": "MERGE",
    "CACHE TABLE predictions": "CACHE TABLE",
    "SET spark.sql.shuffle.partitions = 1": "SET",
    "ADD JAR '{out}/x.jar'": "ADD JAR",
    "LOAD DATA LOCAL INPATH '{out}' INTO TABLE predictions": "LOAD DATA",
    "REFRESH TABLE predictions": "REFRESH TABLE",
    "SELECT 1; DROP TABLE predictions": "not one SQL statement",
    "SELECT * FROM parquet.`{warehouse}/predictions`": "direct read of parquet.`",
    "SELECT * FROM csv.`/etc/passwd`": "direct read of csv.`/etc/passwd`",
    "SELECT * FROM delta.`{warehouse}/predictions`": "direct read of delta.`",
    "SELECT * FROM read_files('{warehouse}/predictions')": "table function read_files",
    "SELECT count(*) FROM predictions WHERE customer_id IN "
    "(SELECT _c0 FROM json.`/etc/hosts`)": "direct read of json.`/etc/hosts`",
    "EXPLAIN INSERT INTO predictions SELECT * FROM predictions": "INSERT",
    "SELECT TRANSFORM(customer_id) USING 'touch {out}' FROM predictions": "TRANSFORM",
    "SELECT reflect('java.lang.System', 'exit', 0)": "reflect()",
    "SELECT * FROM spark_catalog.default.t": "direct read of spark_catalog.default.t",
    "SELECT * FROM nope": "table nope, which is no warehouse table",
    "BEGIN SELECT 1; END": "SQL script",
}


@pytest.mark.parametrize(("statement", "construct"), REFUSED.items())
def test_writes_sessions_commands_and_file_reads_are_refused_before_anything_runs(
    spark: SparkSession,
    settings: Settings,
    wh: Warehouse,
    tmp_path: Path,
    statement: str,
    construct: str,
) -> None:
    out = tmp_path / "out"
    text = statement.format(out=out, warehouse=settings.warehouse)
    before = {t: wh.version(t) for t in ("predictions", "monitoring")}
    with pytest.raises(QueryRefused) as refused:
        run_sql(spark, settings, text)
    message = str(refused.value)
    assert construct in message, message
    assert "\n" not in message
    assert "--allow-writes" in message or message.startswith("not one SQL statement")
    assert {t: wh.version(t) for t in before} == before
    assert not out.exists()
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"


def test_cli_refuses_the_reported_overwrite_with_one_line_and_exit_code_2(
    spark: SparkSession,
    settings: Settings,
    wh: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in home_env(settings.home).items():
        monkeypatch.setenv(key, value)
    monitoring = settings.warehouse / "monitoring"
    statement = f"INSERT OVERWRITE DIRECTORY '{monitoring}' USING parquet SELECT 1 AS x"
    assert main(["sql", statement]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: scorehouse sql runs read-only queries")
    assert "INSERT OVERWRITE DIRECTORY" in err[0]
    assert (monitoring / "_delta_log").is_dir() and wh.read("monitoring").count() == 1


def test_allow_writes_runs_any_statement(
    spark: SparkSession, settings: Settings, wh: Warehouse, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    run_sql(
        spark,
        settings,
        f"INSERT OVERWRITE DIRECTORY '{out}' USING parquet SELECT * FROM predictions",
        allow_writes=True,
    )
    assert spark.read.parquet(str(out)).count() == 3


def test_version_as_of_reads_that_delta_version(
    spark: SparkSession, settings: Settings, wh: Warehouse
) -> None:
    def ids(text: str) -> list[int]:
        return sorted(r[0] for r in run_sql(spark, settings, text).collect())

    assert ids("SELECT customer_id FROM predictions VERSION AS OF 0") == [1, 2]
    assert ids("SELECT predictions.customer_id FROM predictions VERSION AS OF 1") == [1, 2, 3]
    assert ids(
        "SELECT p.customer_id FROM predictions VERSION AS OF 1 AS p "
        "LEFT ANTI JOIN predictions FOR SYSTEM_VERSION AS OF '0' q USING (customer_id)"
    ) == [3]
    assert ids("SELECT customer_id FROM predictions") == [1, 2, 3]


def test_timestamp_as_of_reads_the_version_then_current(
    spark: SparkSession, tmp_path: Path
) -> None:
    settings = load_settings(environ=home_env(tmp_path / "home"))
    wh = _tables(spark, settings)
    time.sleep(0.01)
    cut = time.time()
    time.sleep(0.01)
    wh.append("predictions", spark.createDataFrame([(4, 0.3)], SCHEMA))
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(cut)) + f".{int(cut % 1 * 1e6):06d}"
    text = f"SELECT count(*) AS n FROM predictions TIMESTAMP AS OF '{at}'"
    assert run_sql(spark, settings, text).collect()[0].n == 3


def test_time_travel_on_an_unknown_table_or_a_missing_version_is_one_line(
    spark: SparkSession, settings: Settings, wh: Warehouse
) -> None:
    with pytest.raises(QueryRefused, match="time travel on nope, which is no warehouse table"):
        run_sql(spark, settings, "SELECT * FROM nope VERSION AS OF 1")
    with pytest.raises(Exception, match="table predictions has no version 9"):
        run_sql(spark, settings, "SELECT * FROM predictions VERSION AS OF 9")


# The guard reads Spark's parse tree through an API PySpark does not publish. These are the
# node names it relies on: an upgrade that renames one fails here, not silently in the guard.
PARSED_NODES = {
    "SELECT * FROM t": ["Project", "UnresolvedRelation"],
    "INSERT OVERWRITE DIRECTORY '/x' USING parquet SELECT 1": [
        "InsertIntoDir",
        "Project",
        "OneRowRelation",
    ],
    "WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a": [
        "UnresolvedWith",
        "InsertIntoStatement",
        "Project",
        "UnresolvedRelation",
        "SubqueryAlias",
        "Project",
        "OneRowRelation",
    ],
    "SELECT * FROM read_files('/x')": ["Project", "UnresolvedTableValuedFunction"],
    "SELECT * FROM t VERSION AS OF 3": ["Project", "RelationTimeTravel"],
    "SELECT 1 FROM t WHERE x IN (SELECT y FROM u)": [
        "Project",
        "Filter",
        "UnresolvedRelation",
        "Project",
        "UnresolvedRelation",
    ],
    "SET a = 1": ["SetCommand"],
    "EXPLAIN SELECT 1": ["ExplainCommand"],
}


@pytest.mark.parametrize(("statement", "nodes"), PARSED_NODES.items())
def test_spark_parse_tree_has_the_nodes_the_guard_relies_on(
    spark: SparkSession, statement: str, nodes: list[str]
) -> None:
    from scorehouse.scoring import readonly

    plan = readonly._parse(spark, statement)

    def names(node: object) -> list[str]:
        return [readonly._name(node)] + [n for c in readonly._children(node) for n in names(c)]

    assert names(plan) == nodes
