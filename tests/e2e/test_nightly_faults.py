"""The nightly path under faults: drivers killed mid-step, two runs of one night at once,
reruns of a live night after fallback traffic, and an older day published over a newer one.

Killed drivers are real processes (the CLI or a job of jobs/, with their JVM) killed with
SIGKILL as a whole process group, at the moment their first output files appear. Whether
the kill lands before or after the commit, every table must stay at a consistent version
and a rerun must give what a run without the fault gives.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from nightly_support import END, live, nightly_env
from scorehouse.data.ingest import ingest_file
from scorehouse.errors import ValidationError
from scorehouse.features import transforms
from scorehouse.features.registry import feature_sql
from scorehouse.orchestration import steps
from scorehouse.publish.generations import cleanup
from scorehouse.serving import Client, keys
from scorehouse.settings import Settings, load_settings
from scorehouse.storage.staging import STAGING_DIR
from scorehouse.storage.warehouse import Warehouse

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]


def _command(settings: Settings, argv: list[str], **env: str) -> subprocess.Popen[str]:
    """The `scorehouse` CLI (or a job file) in a process group of its own."""
    program = argv if argv[0].endswith(".py") else ["-m", "scorehouse", *argv]
    return subprocess.Popen(
        [sys.executable, *program],
        cwd=REPO,
        env={**os.environ, **nightly_env(settings.home, settings.redis.url), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _kill_when(process: subprocess.Popen[str], moment: Callable[[], bool]) -> str:
    """SIGKILL the whole process group at `moment`; "finished" if the run ended first."""
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if moment():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return "killed"
        time.sleep(0.005)
    process.wait()
    return "finished"


def _staging(wh: Warehouse, *tables: str) -> Callable[[], bool]:
    def written() -> bool:
        return any(
            path.is_file()
            for table in tables
            for path in (Path(wh.uri(table)) / STAGING_DIR).rglob("*")
        )

    return written


def _entities(wh: Warehouse, settings: Settings) -> int:
    return transforms.entities(feature_sql(), wh.read("raw_customers"), [END]).count()


def test_a_killed_ingest_commits_all_or_nothing_and_a_rerun_loads_the_file_once(
    spark: SparkSession, e2e_settings: Settings, tmp_path: Path
) -> None:
    settings = e2e_settings
    wh = Warehouse.from_settings(spark, settings)
    table = "raw_transactions"
    known = wh.read("raw_customers").where(F.col("valid_from") < END - timedelta(days=30))
    ids = [r.customer_id for r in known.select("customer_id").distinct().limit(400).collect()]
    rows = [
        f"late-{n},{ids[n % len(ids)]},{END} 0{n % 10}:00:00,1,{n % 50 + 1}" for n in range(20_000)
    ]
    path = tmp_path / "late.csv"
    path.write_text("transaction_id,customer_id,event_time,quantity,amount\n" + "\n".join(rows))
    before = wh.version(table)

    process = _command(settings, ["ingest", "transactions", str(path)])
    _kill_when(process, _staging(wh, table))

    assert wh.version(table) in (before, before + 1)
    late = wh.read(table).where(F.col("transaction_id").startswith("late-"))
    assert late.count() in (0, len(rows))
    ingest_file(spark, settings, table="transactions", path=path)
    late = wh.read(table).where(F.col("transaction_id").startswith("late-"))
    assert late.count() == late.select("transaction_id").distinct().count() == len(rows)


def test_a_killed_feature_build_leaves_the_table_whole_and_a_rerun_equals_a_clean_build(
    spark: SparkSession, e2e_settings: Settings, tmp_path: Path
) -> None:
    settings = e2e_settings
    clean_home = tmp_path / "clean"
    shutil.copytree(settings.home, clean_home)
    clean = load_settings(environ=nightly_env(clean_home))
    wh = Warehouse.from_settings(spark, settings)
    tables = settings.tables

    process = _command(settings, ["features", "--start", str(END), "--end", str(END)])
    _kill_when(process, _staging(wh, tables.features, "daily_transactions"))

    snapshot = wh.read(tables.features, partitions={"ds": [END]})
    assert snapshot.count() in (0, _entities(wh, settings))
    steps.run_step("features", settings, {"start": END}, spark)
    steps.run_step("features", clean, {"start": END}, spark)
    assertDataFrameEqual(
        wh.read(tables.features, partitions={"ds": [END]}),
        Warehouse.from_settings(spark, clean).read(tables.features, partitions={"ds": [END]}),
    )


def test_killed_scoring_and_publishing_keep_readers_on_the_last_night_and_reruns_finish(
    spark: SparkSession, e2e_settings: Settings
) -> None:
    from scorehouse.flows import nightly

    settings = e2e_settings
    wh = Warehouse.from_settings(spark, settings)
    previous = nightly(ds=END - timedelta(days=1))["publish"]["generation"]
    steps.run_step("features", settings, {"start": END}, spark)
    entities = _entities(wh, settings)

    job = str(REPO / "jobs" / "score_entities.py")
    scoring = _command(settings, [job, "--date", str(END)])
    _kill_when(scoring, _staging(wh, settings.tables.predictions))
    champion = F.col("model_role") == "champion"
    partial = wh.read(settings.tables.predictions, partitions={"ds": [END]}).where(champion)
    assert partial.count() in (0, entities)
    scored = steps.run_step("score", settings, {"ds": END}, spark)
    assert scored["rows"] == entities

    client = redis.Redis.from_url(settings.redis.url)
    ns = settings.redis.namespace
    slow = {"SCOREHOUSE_REDIS__MAX_KEYS_PER_SECOND": "300"}
    publishing = _command(settings, ["publish", "--date", str(END)], **slow)
    _kill_when(publishing, lambda: client.zcard(f"{ns}:generations") >= 2)
    assert live(settings)[:2] == (previous, END - timedelta(days=1))

    done = steps.run_step("publish", settings, {"ds": END}, spark)
    cleanup(client, ns, settings.redis.keep_generations)
    named = (k.decode().split(":") for k in client.scan_iter(match=f"{ns}:*:*"))
    generations = {parts[1] for parts in named}
    client.close()
    assert live(settings) == (done["generation"], END, entities)
    assert generations <= {done["generation"], previous}


def test_two_nightly_runs_of_one_night_at_once_give_one_result(
    spark: SparkSession, e2e_settings: Settings
) -> None:
    from scorehouse.flows import nightly

    settings = e2e_settings
    results: list[dict[str, Any]] = []
    from_prefect = threading.Thread(target=lambda: results.append(nightly(ds=END)))
    from_cli = _command(settings, ["nightly", "--date", str(END)])
    from_prefect.start()
    output, _ = from_cli.communicate(timeout=600)
    from_prefect.join(timeout=600)

    assert from_cli.returncode == 0, output[-3000:]
    assert len(results) == 1
    wh = Warehouse.from_settings(spark, settings)
    entities = _entities(wh, settings)
    predictions = wh.read(settings.tables.predictions, partitions={"ds": [END]})
    champion = predictions.where(F.col("model_role") == "champion")
    assert champion.count() == champion.select("customer_id").distinct().count() == entities
    features = wh.read(settings.tables.features, partitions={"ds": [END]})
    assert features.count() == features.select("customer_id").distinct().count() == entities
    assert live(settings)[1:] == (END, entities)


def test_a_rerun_of_a_live_night_after_fallback_lookups_changes_nothing_readers_see(
    spark: SparkSession, e2e_settings: Settings
) -> None:
    from scorehouse.flows import nightly

    settings = e2e_settings
    first = nightly(ds=END)
    generation, _, entities = live(settings)
    known = list(range(1, 51))
    with Client(settings) as app:
        before = {s.entity_id: s.score for s in app.get_many(known)}
        misses = app.get_many(range(10_000_000, 10_000_500))
    assert {s.source for s in misses} == {"fallback"}
    assert live(settings) == (generation, END, entities)  # no miss was written

    rerun = nightly(ds=END)
    assert rerun["publish"]["skipped"] and live(settings) == (generation, END, entities)
    # Forced, every step runs again: the same content is the same generation.
    forced = nightly(ds=END, force=True)
    assert not forced["steps"]["score"]["skipped"] and not forced["publish"]["skipped"]
    assert live(settings) == (first["publish"]["generation"], END, entities)
    with Client(settings) as app:
        after = {s.entity_id: s.score for s in app.get_many(known)}
    assert after == before


def test_an_older_night_is_not_published_over_a_newer_one_unless_asked(
    e2e_settings: Settings,
) -> None:
    from scorehouse.flows import nightly

    settings = e2e_settings
    older = END - timedelta(days=1)
    nightly(ds=END)
    newest = live(settings)
    with pytest.raises(Exception, match="--allow-older") as refused:
        nightly(ds=older)
    assert f"holds {END}, a newer day" in str(refused.value)
    assert live(settings) == newest
    nightly(ds=older, allow_older=True)
    assert live(settings)[1] == older


def test_a_night_that_is_not_over_is_refused_before_anything_runs(
    e2e_settings: Settings,
) -> None:
    from datetime import UTC, datetime

    from scorehouse.flows import nightly

    today = datetime.now(UTC).date()
    for day in (today, today + timedelta(days=200)):
        with pytest.raises(ValidationError, match="not complete yet"):
            nightly(ds=day)
    client = redis.Redis.from_url(e2e_settings.redis.url)
    assert client.get(keys.pointer_key(e2e_settings.redis.namespace)) is None
    client.close()
