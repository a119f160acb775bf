"""Feature snapshot retention: prune old partitions, vacuum, training sets still build."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from scorehouse.cli import main as cli_main
from scorehouse.errors import ValidationError
from scorehouse.features import transforms
from scorehouse.features.build import build_features
from scorehouse.features.retention import prune_features
from scorehouse.features.training_set import build_training_set
from scorehouse.schemas import RAW_CUSTOMERS, RAW_TRANSACTIONS
from scorehouse.settings import Settings
from scorehouse.storage.warehouse import Warehouse

FIRST = date(2026, 3, 1)
DAYS = transforms.day_range(FIRST, FIRST + timedelta(days=7))  # Mar 1..8 built
RAW_END = FIRST + timedelta(days=10)  # raw events to Mar 11: labels of as-of Mar 8 (H=2)


def _retention_settings(settings: Settings, **features: int) -> Settings:
    values = {
        "ttl_days": 1,
        "training_lookback_days": 3,
        "retention_days": 5,
        "vacuum_retention_hours": 0,
        **features,
    }
    return settings.model_copy(update={"features": settings.features.model_copy(update=values)})


@pytest.fixture
def built(spark: SparkSession, settings: Settings) -> Settings:
    """Raw data for four customers to Mar 11, snapshots of Mar 1..8 (one range build)."""
    s = _retention_settings(settings)
    wh = Warehouse.from_settings(spark, s)
    customers = [
        (1, date(2025, 12, 1), date(2025, 12, 1), "consumer", "north", True),
        (2, date(2026, 1, 15), date(2026, 1, 15), "smb", "west", False),
        (3, date(2026, 3, 3), date(2026, 3, 3), "enterprise", "east", True),  # signs up Mar 3
        (4, date(2025, 6, 1), date(2025, 6, 1), "consumer", "south", False),
    ]
    events = [
        (1, date(2026, 2, 20), 1, 12.5),
        (1, date(2026, 3, 2), 2, 30.0),
        (2, date(2026, 3, 4), 1, 99.99),
        (1, date(2026, 3, 6), 1, 5.0),
        (3, date(2026, 3, 7), 3, 45.0),
        (2, date(2026, 3, 9), 1, 10.0),
        (4, date(2026, 3, 10), 2, 8.0),
        (1, date(2026, 3, 11), 1, 2.5),
    ]
    wh.overwrite("raw_customers", spark.createDataFrame(customers, RAW_CUSTOMERS))
    tx = [
        (f"t{i}", c, datetime(d.year, d.month, d.day, 10), q, a, d)
        for i, (c, d, q, a) in enumerate(events)
    ]
    wh.overwrite(
        "raw_transactions", spark.createDataFrame(tx, RAW_TRANSACTIONS), partition_by=["ds"]
    )
    build = build_features(spark, s, days=DAYS)
    assert build.mode == "range" and build.days == 8
    return s


def _partition_dirs(wh: Warehouse, table: str) -> list[str]:
    return sorted(p.name for p in Path(wh.uri(table)).glob("ds=*") if any(p.iterdir()))


def test_prune_keeps_exactly_the_retention_and_training_still_builds(
    spark: SparkSession, built: Settings
) -> None:
    wh = Warehouse.from_settings(spark, built)
    kept = DAYS[3:]  # retention 5 days ending Mar 8: Mar 4..8
    before = wh.read("features", ds_between=(kept[0], kept[-1])).cache()
    before.count()
    training_before = build_training_set(
        spark, built, DAYS[4], DAYS[-1], horizon_days=2, every_days=1
    )
    rows_before = wh.read(built.tables.training_set).cache()
    rows_before.count()

    pruned = prune_features(spark, built)

    assert pruned.removed_days == DAYS[:3]
    assert pruned.keep_from == kept[0]
    assert pruned.kept_days == 5
    assert pruned.vacuumed_files == 6  # two files per removed day (shuffle partitions = 2)
    assert wh.partition_values("features") == kept
    # Vacuum at 0 hours: the removed days' files are gone from disk, not only from the log.
    assert _partition_dirs(wh, "features") == [f"ds={d}" for d in kept]
    assertDataFrameEqual(wh.read("features"), before)

    # As-of dates Mar 5..8 with ttl 1 need snapshots from Mar 4: all retained, none rebuilt.
    training_after = build_training_set(
        spark, built, DAYS[4], DAYS[-1], horizon_days=2, every_days=1
    )
    assert wh.partition_values("features") == kept
    assert training_after.as_of_dates == training_before.as_of_dates == DAYS[4:]
    assert (training_after.rows, training_after.positives) == (
        training_before.rows,
        training_before.positives,
    )
    assertDataFrameEqual(wh.read(built.tables.training_set), rows_before)

    again = prune_features(spark, built)  # nothing left to remove or delete
    assert (again.removed_days, again.vacuumed_files) == ([], 0)
    assert wh.partition_values("features") == kept
    # One data commit for the first prune (vacuums only add VACUUM START/END entries).
    operations = [h["operation"] for h in wh.history("features")]
    assert operations.count("WRITE") == 1 and operations[-1] == "CREATE TABLE"


def test_prune_inside_the_training_lookback_is_refused(
    spark: SparkSession, built: Settings
) -> None:
    wh = Warehouse.from_settings(spark, built)
    version = wh.version("features")
    with pytest.raises(ValidationError) as err:
        prune_features(spark, built, retention_days=4)
    message = str(err.value)
    assert "features prune refused for table features" in message
    assert "training lookback" in message and "keep at least 5 days" in message
    assert wh.version("features") == version
    assert wh.partition_values("features") == DAYS


def test_prune_as_of_after_the_newest_snapshot_is_refused(
    spark: SparkSession, built: Settings
) -> None:
    with pytest.raises(ValidationError, match="after the newest snapshot of features"):
        prune_features(spark, built, as_of=DAYS[-1] + timedelta(days=30))
    assert Warehouse.from_settings(spark, built).partition_values("features") == DAYS


def test_cli_dry_run_lists_the_days_and_removes_nothing(
    spark: SparkSession, built: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "retention.yaml"
    config.write_text(
        f"home: {built.home}\nwarehouse: {built.warehouse}\nspark:\n  profile: test\n"
        "features:\n  ttl_days: 1\n  training_lookback_days: 3\n  retention_days: 5\n"
    )
    code = cli_main(["--config", str(config), "features", "prune", "--keep-days", "6", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert '"removed_days": [\n    "2026-03-01",\n    "2026-03-02"\n  ]' in out
    assert '"dry_run": true' in out
    assert Warehouse.from_settings(spark, built).partition_values("features") == DAYS

    code = cli_main(["--config", str(config), "features", "prune", "--keep-days", "3"])
    assert code == 1
    assert "keep at least 5 days" in capsys.readouterr().err


def test_a_snapshot_of_a_day_not_over_does_not_move_the_prune_window(
    spark: SparkSession, built: Settings
) -> None:
    future = datetime.now(UTC).date() + timedelta(days=30)
    build_features(spark, built, days=[future])  # as `nightly --allow-incomplete` would
    pruned = prune_features(spark, built, dry_run=True)
    assert pruned.as_of == DAYS[-1]
    with pytest.raises(ValidationError, match=f"as-of {future} is not a complete day"):
        prune_features(spark, built, as_of=future, dry_run=True)
