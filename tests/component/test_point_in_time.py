"""The point-in-time join against a brute-force oracle, and a leakage test."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, IntegerType, LongType, StructField, StructType

from scorehouse.features import training_set, transforms
from scorehouse.features.registry import feature_names, feature_sql, load_registry
from scorehouse.schemas import RAW_CUSTOMERS, RAW_TRANSACTIONS

BASE = date(2026, 3, 1)
LABELS = StructType(
    [
        StructField("customer_id", LongType(), False),
        StructField("as_of", DateType(), False),
        StructField("oldest_feature_ds", DateType(), False),
        StructField("label", IntegerType(), False),
    ]
)


def _snapshots(spark: SparkSession, rows: list[tuple[int, date, float | None]]) -> DataFrame:
    """A features table where every feature of a row holds `value` (null stays null)."""
    base = spark.createDataFrame(rows, "customer_id long, ds date, value double")
    return base.select(
        "customer_id", "ds", *[F.col("value").alias(name) for name in feature_names()]
    )


def _assert_matches_oracle(
    spark: SparkSession,
    snapshots: list[tuple[int, int, float | None]],
    label_rows: list[tuple[int, int, int]],
) -> None:
    """point_in_time_join on these day offsets and TTLs equals a brute-force oracle."""
    snaps = [(c, BASE + timedelta(days=d), v) for c, d, v in snapshots]
    label_data = [
        (c, BASE + timedelta(days=d), BASE + timedelta(days=d - ttl), i % 2)
        for i, (c, d, ttl) in enumerate(label_rows)
    ]
    label_data = list(
        {(r[0], r[1]): r for r in label_data}.values()
    )  # one row per (customer, as_of)
    joined = training_set.point_in_time_join(
        spark.createDataFrame(label_data, LABELS), _snapshots(spark, snaps)
    )
    got = {
        (r.customer_id, r.as_of): (r.feature_ds, r[feature_names()[0]], r.label)
        for r in joined.collect()
    }

    expected = {}
    for customer, as_of, oldest, label in label_data:
        eligible = [(ds, v) for c, ds, v in snaps if c == customer and oldest <= ds <= as_of]
        latest = max(eligible, default=None, key=lambda s: s[0])
        # The latest snapshot must also be the latest overall <= as_of: an older one
        # inside the TTL never stands in for a newer one.
        newest_any = max((ds for c, ds, _ in snaps if c == customer and ds <= as_of), default=None)
        if latest is None or latest[0] != newest_any:
            expected[(customer, as_of)] = (None, None, label)
        else:
            expected[(customer, as_of)] = (latest[0], latest[1], label)
    assert got == expected


ORACLE_SETTINGS = hyp_settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _snapshot_lists(
    days: int, ids: st.SearchStrategy[int] | None = None
) -> st.SearchStrategy[list[tuple[int, int, float | None]]]:
    return st.lists(
        st.tuples(
            ids if ids is not None else st.integers(1, 3),
            st.integers(0, days),
            st.one_of(st.none(), st.floats(-1e6, 1e6)),
        ),
        max_size=25,
        unique_by=lambda t: (t[0], t[1]),
    )


def _label_lists(
    days: int, ttl: int, ids: st.SearchStrategy[int] | None = None, max_size: int = 15
) -> st.SearchStrategy[list[tuple[int, int, int]]]:
    """Label rows (customer_id, as-of day, TTL in days)."""
    return st.lists(
        st.tuples(ids if ids is not None else st.integers(1, 4), st.integers(0, days),
                  st.integers(0, ttl)),
        min_size=1,
        max_size=max_size,
    )  # fmt: skip


@ORACLE_SETTINGS
@given(
    snapshots=_snapshot_lists(20),
    label_rows=_label_lists(22, 5),
)
def test_join_takes_latest_snapshot_within_ttl(
    spark: SparkSession,
    snapshots: list[tuple[int, int, float | None]],
    label_rows: list[tuple[int, int, int]],
) -> None:
    _assert_matches_oracle(spark, snapshots, label_rows)


@ORACLE_SETTINGS
@given(
    # Windows of up to 100 days over 150, some longer than 63 (the old bit masks' limit):
    # the bitmaps hold any window.
    snapshots=_snapshot_lists(150),
    label_rows=_label_lists(150, 100).filter(lambda rows: any(ttl >= 63 for _, _, ttl in rows)),
)
def test_join_takes_latest_snapshot_with_long_ttl(
    spark: SparkSession,
    snapshots: list[tuple[int, int, float | None]],
    label_rows: list[tuple[int, int, int]],
) -> None:
    _assert_matches_oracle(spark, snapshots, label_rows)


# Ids on both sides of the edges of Spark's bitmap buckets (32,768 ids; 0 and the
# negative ids count down from bucket 0).
EDGE_IDS = st.sampled_from([-65537, -32769, -32768, -1, 0, 1, 2, 32767, 32768, 32769, 65537])


@ORACLE_SETTINGS
@given(
    snapshots=_snapshot_lists(30, EDGE_IDS),
    label_rows=_label_lists(30, 10, EDGE_IDS),
)
def test_bitmap_join_takes_latest_snapshot_for_ids_at_bucket_edges(
    spark: SparkSession,
    monkeypatch: pytest.MonkeyPatch,
    snapshots: list[tuple[int, int, float | None]],
    label_rows: list[tuple[int, int, int]],
) -> None:
    def no_keys(*args: object) -> DataFrame:
        raise AssertionError("the key statements ran instead of the bitmaps")

    monkeypatch.setattr(training_set, "_keys_join", no_keys)
    _assert_matches_oracle(spark, snapshots, label_rows)


@ORACLE_SETTINGS
@given(
    snapshots=_snapshot_lists(150),
    label_rows=_label_lists(150, 100),
)
def test_key_statements_take_latest_snapshot(
    spark: SparkSession,
    monkeypatch: pytest.MonkeyPatch,
    snapshots: list[tuple[int, int, float | None]],
    label_rows: list[tuple[int, int, int]],
) -> None:
    monkeypatch.setattr(training_set, "_bitmap_join", lambda *args: None)
    _assert_matches_oracle(spark, snapshots, label_rows)


@ORACLE_SETTINGS
@given(
    # Ids too far apart for bitmaps: the key statements take over.
    snapshots=_snapshot_lists(20, st.sampled_from([1, 2, 1 << 40, -(1 << 45)])),
    label_rows=_label_lists(22, 5, st.sampled_from([1, 3, 1 << 40, -(1 << 45)]), max_size=10),
)
def test_join_takes_latest_snapshot_for_ids_far_apart(
    spark: SparkSession,
    snapshots: list[tuple[int, int, float | None]],
    label_rows: list[tuple[int, int, int]],
) -> None:
    _assert_matches_oracle(spark, snapshots, label_rows)


def test_labels_other_than_0_1_and_repeated_rows_are_kept_as_given(spark: SparkSession) -> None:
    as_of, oldest = date(2026, 3, 10), date(2026, 3, 7)
    snapshots = _snapshots(spark, [(1, date(2026, 3, 8), 2.5), (2, date(2026, 3, 10), 7.0)])

    def rows(labels: list[tuple[int, date, date, int]]) -> list[tuple[int, int, date | None]]:
        joined = training_set.point_in_time_join(spark.createDataFrame(labels, LABELS), snapshots)
        return sorted((r.customer_id, r.label, r.feature_ds) for r in joined.collect())

    assert rows([(1, as_of, oldest, 2), (3, as_of, oldest, 0)]) == [
        (1, 2, date(2026, 3, 8)),
        (3, 0, None),
    ]
    assert rows([(1, as_of, oldest, 1), (2, as_of, oldest, 1), (2, as_of, oldest, 1)]) == [
        (1, 1, date(2026, 3, 8)),
        (2, 1, as_of),
        (2, 1, as_of),
    ]


def _customers(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [(c, date(2025, 1, 1), date(2025, 1, 1), "consumer", "north", True) for c in (1, 2, 3)],
        RAW_CUSTOMERS,
    )


def _transactions(spark: SparkSession, rows: list[tuple[int, date, float]]) -> DataFrame:
    data = [
        (f"t{i}", c, datetime(d.year, d.month, d.day, 9), 1, a, d)
        for i, (c, d, a) in enumerate(rows)
    ]
    return spark.createDataFrame(data, RAW_TRANSACTIONS)


def _training_rows(spark: SparkSession, tx: DataFrame, as_of: list[date]) -> DataFrame:
    history = transforms.day_range(date(2025, 1, 1), date(2026, 6, 1))
    sql = feature_sql()
    daily = transforms.daily_rollups(sql, "transactions", tx, history)
    customers = _customers(spark)
    features = transforms.features_from_state(
        sql, transforms.state_for_days(sql, {"transactions": daily}, customers, as_of)
    )
    labelled = training_set.labels(daily, customers, as_of, horizon_days=30, ttl_days=0)
    return training_set.point_in_time_join(labelled, features)


def test_events_after_as_of_change_no_feature(spark: SparkSession) -> None:
    as_of = [date(2026, 2, 1), date(2026, 3, 1)]
    history = [
        (1, date(2026, 1, 5), 10.0),
        (1, date(2026, 1, 31), 4.5),
        (2, date(2026, 2, 1), 8.0),
        (3, date(2025, 6, 1), 1.0),
        (2, date(2026, 2, 20), 3.0),
    ]
    before = _training_rows(spark, _transactions(spark, history), as_of)
    # Edit an event after the first as-of date and add events after each of them.
    later = [
        (1, date(2026, 1, 5), 10.0),
        (1, date(2026, 1, 31), 4.5),
        (2, date(2026, 2, 1), 8.0),
        (3, date(2025, 6, 1), 1.0),
        (2, date(2026, 2, 20), 300.0),
        (1, date(2026, 2, 2), 500.0),
        (3, date(2026, 3, 2), 7.0),
        (2, date(2026, 4, 1), 3.0),
    ]
    after = _training_rows(spark, _transactions(spark, later), as_of)
    feature_cols = ["customer_id", "as_of", "feature_ds", *feature_names()]
    first = before.where(F.col("as_of") == as_of[0]).select(*feature_cols)
    assert sorted(first.collect()) == sorted(
        after.where(F.col("as_of") == as_of[0]).select(*feature_cols).collect()
    )
    # The label does see the future: customer 1 buys on Feb 2, inside (Feb 1, Mar 3].
    labels_after = {(r.customer_id, r.as_of): r.label for r in after.collect()}
    assert labels_after[(1, as_of[0])] == 1
    assert labels_after[(3, as_of[1])] == 1
    labels_before = {(r.customer_id, r.as_of): r.label for r in before.collect()}
    assert labels_before[(1, as_of[0])] == 0


def test_only_as_of_dates_whose_horizon_is_complete_are_sampled() -> None:
    start, end = date(2026, 1, 1), date(2026, 1, 31)
    # Raw events end on Jan 30: with a 10-day horizon the last usable as-of date is Jan 20.
    dates = training_set.as_of_dates(start, end, 7, 10, date(2026, 1, 30))
    assert dates == [date(2026, 1, 1), date(2026, 1, 8), date(2026, 1, 15)]
    assert training_set.as_of_dates(start, end, 7, 40, date(2026, 1, 30)) == []


def test_rows_without_a_snapshot_in_the_ttl_are_counted_then_dropped_or_defaulted(
    spark: SparkSession,
) -> None:
    labels = spark.createDataFrame(
        [
            (1, date(2026, 3, 10), date(2026, 3, 7), 1),  # snapshot 2 days old: kept
            (2, date(2026, 3, 10), date(2026, 3, 7), 0),  # snapshot 5 days old: stale
            (3, date(2026, 3, 10), date(2026, 3, 7), 1),  # no snapshot at all: stale
        ],
        LABELS,
    )
    snapshots = _snapshots(
        spark, [(1, date(2026, 3, 8), 2.5), (2, date(2026, 3, 5), 7.0), (3, date(2026, 3, 11), 1.0)]
    )
    joined = training_set.point_in_time_join(labels, snapshots)
    assert joined.where("feature_ds IS NULL").count() == 2

    dropped = training_set.apply_stale_policy(joined, "drop")
    assert [(r.customer_id, r.feature_ds) for r in dropped.collect()] == [(1, date(2026, 3, 8))]

    defaulted = {
        r.customer_id: r for r in training_set.apply_stale_policy(joined, "default").collect()
    }
    assert sorted(defaulted) == [1, 2, 3]
    registry = load_registry()
    for customer in (2, 3):
        row = defaulted[customer]
        assert row.feature_ds is None
        # Features with a no-history value get it; the others stay missing.
        assert {f.name: row[f.name] for f in registry} == {f.name: f.no_history for f in registry}
    assert all(defaulted[1][f.name] == 2.5 for f in registry)


def test_the_rule_on_bitmaps_takes_the_newest_snapshot_day_of_the_window() -> None:
    def bitmap(*ids: int) -> dict[int, np.ndarray]:
        words = np.zeros(512, dtype=np.int64)
        for i in ids:
            words[i >> 6] |= np.int64(1) << np.int64(i & 63)
        return {0: words}

    d1, d2, d3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)
    present = {d1: bitmap(5, 6, 70), d2: bitmap(5), d3: bitmap(8)}  # 7: no snapshot at all
    labelled = {(d3, d1): (bitmap(5, 6, 7, 70), bitmap(6)), (d2, d2): (bitmap(6), bitmap())}
    chosen, none, used = training_set._apply_rule(present, labelled, d1)
    slot = training_set.SLOT_BUCKETS  # bucket 0 on day `base`; a day later: + 2 * that
    takes = {(c[0], c[1]): (bitmap_ids(c[2]), bitmap_ids(c[3])) for c in chosen}
    assert takes == {
        (slot + 2 * slot, d3): ([5], []),  # d2, the newest of d1..d3 holding 5
        (slot, d3): ([6, 70], [6]),  # d1; 6 is labelled 1
    }
    assert [(n[0], n[1], bitmap_ids(n[2])) for n in none] == [
        (slot + 4 * slot, d1, [7]),
        (slot + 2 * slot, d2, [6]),  # window d2..d2: no snapshot of 6 on d2
    ]
    assert used == {d1, d2}


def bitmap_ids(words: list[int]) -> list[int]:
    return [w * 64 + b for w, word in enumerate(words) for b in range(64) if word >> b & 1]
