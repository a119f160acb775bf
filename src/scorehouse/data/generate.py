"""Seeded demo data: customers with attribute history and their transactions, made in Spark.

Every random number is a hash of (seed, stream, customer id, day, ...) — a counter-based
generator — so the output for a seed is the same whatever the partitioning, and each
partition only ever holds its own customers (10M customers never touch the driver).
The planted behaviour is described in docs/data.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession

from scorehouse.schemas import RAW_CUSTOMERS, RAW_TRANSACTIONS
from scorehouse.settings import Settings

# --- model parameters (docs/data.md explains each) -------------------------------------
SEGMENTS = ("consumer", "smb", "enterprise")
SEGMENT_P = np.array([0.72, 0.21, 0.07])
SEGMENT_RATE = np.array([1.0, 1.5, 2.2])  # purchase-rate multiplier
SEGMENT_WEEKEND = np.array([1.6, 0.6, 0.35])  # consumers buy at weekends, businesses do not
SEGMENT_QTY_EXTRA = np.array([0.6, 2.0, 6.0])  # mean items beyond the first
SEGMENT_PRICE = np.array([28.0, 55.0, 90.0])  # median unit price
SEGMENT_CHURN = np.array([1.0, 0.7, 0.4])  # churn-hazard multiplier
REGIONS = ("north", "south", "east", "west")
REGION_P = np.array([0.30, 0.25, 0.25, 0.20])
REGION_RATE = np.array([1.1, 0.9, 1.0, 1.0])
REGION_PRICE = np.array([1.05, 0.95, 1.0, 1.02])

PRE_EXISTING_SHARE = 0.7  # the rest sign up during the history
# "launch" acquisition: a business that opened with the history. Most customers sign up
# in its first months and none before it, so early as-of dates hold few, young customers
# and a split by date alone leaves little to fit on (docs/training.md).
LAUNCH_DAYS = 90
LAUNCH_SHARE = 0.85  # the rest sign up evenly over the whole history
Acquisition = Literal["steady", "launch"]
MAX_TENURE_DAYS = 3 * 365
OPT_IN_P = 0.35
OPT_IN_RATE = 1.25
BASE_RATE_MEDIAN = 0.045  # purchases per day before multipliers
BASE_RATE_SIGMA = 0.8  # lognormal spread: a few heavy buyers, many light ones
PRICE_SIGMA = 0.3
ITEM_PRICE_NOISE = 0.25
# Hidden engagement state: a persistent two-state Markov chain (the planted signal).
ENGAGED_RATE, DORMANT_RATE = 3.0, 0.35
P_WAKE, P_WAKE_OPT_IN = 0.025, 0.045  # dormant -> engaged per day; e-mails re-engage
P_LAPSE = 0.06  # engaged -> dormant per day (spells of ~17 days)
NEW_CUSTOMER_ENGAGED_P = 0.7
# Self-excitation: a purchase raises the next days' rate (bursts), decaying geometrically.
EXCITE_DECAY, EXCITE_JUMP, EXCITE_CAP = 0.7, 0.35, 2.5
# Churn: a daily hazard, much higher while dormant; churned customers never buy again.
CHURN_ENGAGED, CHURN_DORMANT = 0.0003, 0.004
CHURN_BEFORE_START = 0.0008  # per day of tenure, for customers older than the history
# Drift over the history: more purchases and higher prices as time goes on.
RATE_TREND_PER_YEAR = 0.3
INFLATION_PER_YEAR = 0.06
OPT_IN_FLIP_P = 0.15
UPGRADE_P = 0.08
# Hour-of-day profiles: consumers in the evening, businesses in office hours.
_HOURS = np.arange(24)
_CONSUMER_HOURS = (
    0.2
    + np.exp(-0.5 * ((_HOURS - 20) / 2.5) ** 2)
    + 0.5 * np.exp(-0.5 * ((_HOURS - 12.5) / 1.5) ** 2)
)
_BUSINESS_HOURS = 0.05 + np.exp(-0.5 * ((_HOURS - 12) / 2.5) ** 2)
HOUR_CDF = np.stack(
    [np.cumsum(p) / p.sum() for p in (_CONSUMER_HOURS, _BUSINESS_HOURS, _BUSINESS_HOURS)]
)

# Each task writes one Parquet file per day of the history, so its size sets the files'
# size: 20k customers a task made 183k files of ~2k rows each at 10M customers. Arrow
# batches stay small (spark.sql.execution.arrow.maxRecordsPerBatch) whatever this is.
CUSTOMERS_PER_PARTITION = 250_000
_OUTPUT_ROWS_PER_BATCH = 100_000
_NEVER = np.int64(1 << 40)  # a day index no history reaches

# Streams: one per independent random quantity.
(
    _S_PRE,
    _S_SIGNUP,
    _S_SEGMENT,
    _S_REGION,
    _S_OPT_IN,
    _S_RATE_A,
    _S_RATE_B,
    _S_PRICE_A,
    _S_PRICE_B,
    _S_FLIP,
    _S_FLIP_DAY,
    _S_UPGRADE,
    _S_UPGRADE_DAY,
    _S_CHURNED,
    _S_ENGAGED,
    _S_COUNT,
    _S_STATE,
    _S_CHURN,
    _S_HOUR,
    _S_SECOND,
    _S_QTY,
    _S_AMOUNT_A,
    _S_AMOUNT_B,
) = range(1, 24)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijective scramble of 64-bit words (wraps on overflow)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _uniform(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform floats in (0, 1) that depend only on (seed, stream, keys), element-wise."""
    h = _mix(np.array([(seed + stream * _GOLDEN) & _MASK], dtype=np.uint64))
    for key in keys:
        h = _mix(h ^ (np.asarray(key, dtype=np.int64).astype(np.uint64) + np.uint64(_GOLDEN)))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _normal(seed: int, streams: tuple[int, int], *keys: np.ndarray | int) -> np.ndarray:
    u1, u2 = _uniform(seed, streams[0], *keys), _uniform(seed, streams[1], *keys)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _poisson(rate: np.ndarray, u: np.ndarray, max_count: int = 40) -> np.ndarray:
    """Poisson draws by inverting the CDF at u (rates here are small, so few steps)."""
    p = np.exp(-rate)
    cdf = p.copy()
    count = np.zeros(rate.shape, dtype=np.int32)
    for k in range(1, max_count + 1):
        more = u > cdf
        if not more.any():
            break
        count += more
        p = p * rate / k
        cdf = cdf + p
    return count


def _change_day(u: np.ndarray, signup_day: np.ndarray, last_day: int) -> np.ndarray:
    """A day strictly after sign-up and no later than the history's last day."""
    room = last_day - signup_day
    day = signup_day + 1 + np.floor(u * room).astype(np.int64)
    return np.where(room >= 1, day, _NEVER)


@dataclass(frozen=True)
class _Customers:
    """Static draws for a batch of customers; days are relative to the history's start."""

    ids: np.ndarray
    signup_day: np.ndarray
    segment: np.ndarray  # index into SEGMENTS at sign-up
    region: np.ndarray
    opt_in: np.ndarray  # at sign-up
    flip_day: np.ndarray  # opt-in flips from this day on (_NEVER: no flip)
    upgrade_day: np.ndarray  # segment moves up one step from this day on
    base_rate: np.ndarray
    price_level: np.ndarray
    churned_before: np.ndarray
    engaged: np.ndarray  # hidden state on the first day

    def segment_on(
        self, day: np.ndarray | int, rows: np.ndarray | slice = slice(None)
    ) -> np.ndarray:
        return self.segment[rows] + (day >= self.upgrade_day[rows])

    def opt_in_on(
        self, day: np.ndarray | int, rows: np.ndarray | slice = slice(None)
    ) -> np.ndarray:
        return self.opt_in[rows] ^ (day >= self.flip_day[rows])


def _draw_customers(
    ids: np.ndarray, seed: int, days: int, acquisition: Acquisition = "steady"
) -> _Customers:
    last_day = days - 1
    u_pre = _uniform(seed, _S_PRE, ids)
    u_signup = _uniform(seed, _S_SIGNUP, ids)
    if acquisition == "launch":
        pre = np.zeros(len(ids), dtype=bool)
        early = u_pre < LAUNCH_SHARE
        signup_day = np.floor(u_signup * np.where(early, min(LAUNCH_DAYS, days), days))
    else:
        pre = u_pre < PRE_EXISTING_SHARE
        # New sign-ups grow over the history (density rising linearly).
        signup_day = np.where(
            pre, -1 - np.floor(u_signup * MAX_TENURE_DAYS), np.floor(days * np.sqrt(u_signup))
        )
    signup_day = signup_day.astype(np.int64)
    signup_day = np.minimum(signup_day, last_day)
    segment = np.searchsorted(np.cumsum(SEGMENT_P), _uniform(seed, _S_SEGMENT, ids)).astype(
        np.int64
    )
    segment = np.minimum(segment, len(SEGMENTS) - 1)
    region = np.searchsorted(np.cumsum(REGION_P), _uniform(seed, _S_REGION, ids)).astype(np.int64)
    region = np.minimum(region, len(REGIONS) - 1)
    opt_in = _uniform(seed, _S_OPT_IN, ids) < OPT_IN_P
    base_rate = BASE_RATE_MEDIAN * np.exp(
        BASE_RATE_SIGMA * _normal(seed, (_S_RATE_A, _S_RATE_B), ids)
    )
    price_level = np.exp(PRICE_SIGMA * _normal(seed, (_S_PRICE_A, _S_PRICE_B), ids))
    flips = _uniform(seed, _S_FLIP, ids) < OPT_IN_FLIP_P
    flip_day = np.where(
        flips, _change_day(_uniform(seed, _S_FLIP_DAY, ids), signup_day, last_day), _NEVER
    )
    upgrades = (segment < len(SEGMENTS) - 1) & (_uniform(seed, _S_UPGRADE, ids) < UPGRADE_P)
    upgrade_day = np.where(
        upgrades, _change_day(_uniform(seed, _S_UPGRADE_DAY, ids), signup_day, last_day), _NEVER
    )
    tenure = np.maximum(-signup_day, 0)
    churned_before = _uniform(seed, _S_CHURNED, ids) < 1.0 - np.exp(-CHURN_BEFORE_START * tenure)
    opt_at_start = opt_in ^ (flip_day <= 0)
    p_wake = np.where(opt_at_start, P_WAKE_OPT_IN, P_WAKE)
    stationary = p_wake / (p_wake + P_LAPSE)
    engaged = _uniform(seed, _S_ENGAGED, ids) < np.where(pre, stationary, NEW_CUSTOMER_ENGAGED_P)
    return _Customers(
        ids=ids,
        signup_day=signup_day,
        segment=segment,
        region=region,
        opt_in=opt_in,
        flip_day=flip_day,
        upgrade_day=upgrade_day,
        base_rate=base_rate,
        price_level=price_level,
        churned_before=churned_before,
        engaged=engaged,
    )


def _simulate(c: _Customers, seed: int, start: date, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Purchases per customer (rows) and day (columns), day by day through the hidden state.

    Also returns each customer's churn day (_NEVER: still alive at the end; a negative
    day: churned before the history started).
    """
    n = len(c.ids)
    counts = np.zeros((n, days), dtype=np.int32)
    engaged = c.engaged.copy()
    alive = ~c.churned_before
    churn_day = np.where(c.churned_before, np.int64(-1), _NEVER)
    excite = np.zeros(n)
    base = c.base_rate * REGION_RATE[c.region]
    first_weekday = start.weekday()
    for d in range(days):
        active = alive & (c.signup_day <= d)
        if not active.any():
            continue
        segment = c.segment_on(d)
        opt_in = c.opt_in_on(d)
        rate = (
            base
            * SEGMENT_RATE[segment]
            * np.where(opt_in, OPT_IN_RATE, 1.0)
            * np.where(engaged, ENGAGED_RATE, DORMANT_RATE)
            * (1.0 + excite)
            * (1.0 + RATE_TREND_PER_YEAR * d / 365.0)
        )
        if (first_weekday + d) % 7 >= 5:
            rate = rate * SEGMENT_WEEKEND[segment]
        rate = np.where(active, rate, 0.0)
        bought = _poisson(rate, _uniform(seed, _S_COUNT, c.ids, d))
        counts[:, d] = bought
        # Tomorrow's state; before sign-up the initial state is kept as drawn.
        excite = np.minimum(EXCITE_DECAY * excite + EXCITE_JUMP * bought, EXCITE_CAP)
        u_state = _uniform(seed, _S_STATE, c.ids, d)
        p_wake = np.where(opt_in, P_WAKE_OPT_IN, P_WAKE)
        moved = np.where(engaged, u_state >= P_LAPSE, u_state < p_wake)
        engaged = np.where(active, moved, engaged)
        hazard = SEGMENT_CHURN[segment] * np.where(engaged, CHURN_ENGAGED, CHURN_DORMANT)
        churned = active & (_uniform(seed, _S_CHURN, c.ids, d) < hazard)
        churn_day = np.where(churned, d + 1, churn_day)  # no purchase from the next day on
        alive = alive & ~churned
    return counts, churn_day


def _epoch_day(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def _customer_versions(c: _Customers, start: date) -> pa.RecordBatch:
    """One row per attribute version: sign-up, then each change (same-day changes merged)."""
    n = len(c.ids)
    idx = np.concatenate(
        [np.arange(n), np.flatnonzero(c.flip_day < _NEVER), np.flatnonzero(c.upgrade_day < _NEVER)]
    )
    day = np.concatenate(
        [c.signup_day, c.flip_day[c.flip_day < _NEVER], c.upgrade_day[c.upgrade_day < _NEVER]]
    )
    order = np.lexsort((day, idx))
    idx, day = idx[order], day[order]
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = (idx[1:] != idx[:-1]) | (day[1:] != day[:-1])
    idx, day = idx[keep], day[keep]
    start_epoch = _epoch_day(start)
    segment_names = np.array(SEGMENTS, dtype=object)
    region_names = np.array(REGIONS, dtype=object)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(c.ids[idx], pa.int64()),
            pa.array((start_epoch + day).astype(np.int32), pa.date32()),
            pa.array((start_epoch + c.signup_day[idx]).astype(np.int32), pa.date32()),
            pa.array(segment_names[c.segment_on(day, idx)], pa.string()),
            pa.array(region_names[c.region[idx]], pa.string()),
            pa.array(c.opt_in_on(day, idx), pa.bool_()),
        ],
        schema=_arrow_schema(RAW_CUSTOMERS),
    )


def _transactions(c: _Customers, counts: np.ndarray, seed: int, start: date) -> pa.RecordBatch:
    """Expand daily counts into purchases with a time of day, quantity and amount."""
    rows, day = np.nonzero(counts)
    per_cell = counts[rows, day].astype(np.int64)
    rows, day = np.repeat(rows, per_cell), np.repeat(day, per_cell).astype(np.int64)
    total = len(rows)
    first_of_cell = np.repeat(np.cumsum(per_cell) - per_cell, per_cell)
    nth = np.arange(total, dtype=np.int64) - first_of_cell
    cid = c.ids[rows]
    segment = c.segment_on(day, rows)
    hour_u = _uniform(seed, _S_HOUR, cid, day, nth)
    hour = np.empty(total, dtype=np.int64)
    for s in range(len(SEGMENTS)):  # per segment, not a rows x 24 matrix (memory)
        rows_s = segment == s
        hour[rows_s] = np.searchsorted(HOUR_CDF[s], hour_u[rows_s])
    hour = np.minimum(hour, 23)
    second = hour * 3600 + np.floor(_uniform(seed, _S_SECOND, cid, day, nth) * 3600).astype(
        np.int64
    )
    epoch_day = _epoch_day(start) + day
    micros = (epoch_day * 86_400 + second) * 1_000_000
    years = day / 365.0
    quantity = 1 + np.floor(
        -np.log(_uniform(seed, _S_QTY, cid, day, nth)) * SEGMENT_QTY_EXTRA[segment]
    ).astype(np.int64)
    unit_price = (
        SEGMENT_PRICE[segment]
        * REGION_PRICE[c.region[rows]]
        * c.price_level[rows]
        * (1.0 + INFLATION_PER_YEAR * years)
        * np.exp(ITEM_PRICE_NOISE * _normal(seed, (_S_AMOUNT_A, _S_AMOUNT_B), cid, day, nth))
    )
    amount = np.maximum(np.round(quantity * unit_price, 2), 0.01)
    event_time = pa.array(micros, pa.timestamp("us", tz="UTC"))
    transaction_id = pc.binary_join_element_wise(
        pc.cast(pa.array(cid), pa.string()),
        pc.strftime(event_time, format="%Y%m%d"),
        pc.cast(pa.array(nth), pa.string()),
        "-",
    )
    return pa.RecordBatch.from_arrays(
        [
            transaction_id,
            pa.array(cid, pa.int64()),
            event_time,
            pa.array(quantity.astype(np.int32), pa.int32()),
            pa.array(amount, pa.float64()),
            pa.array(epoch_day.astype(np.int32), pa.date32()),
        ],
        schema=_arrow_schema(RAW_TRANSACTIONS),
    )


def _arrow_schema(schema: object) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema, timezone="UTC")  # type: ignore[arg-type]


def _customers_udf(
    batches: Iterator[pa.RecordBatch],
    *,
    seed: int,
    start: date,
    days: int,
    acquisition: Acquisition,
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        ids = batch.column("id").to_numpy()
        yield _customer_versions(_draw_customers(ids, seed, days, acquisition), start)


def _transactions_udf(
    batches: Iterator[pa.RecordBatch],
    *,
    seed: int,
    start: date,
    days: int,
    acquisition: Acquisition,
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        ids = batch.column("id").to_numpy()
        customers = _draw_customers(ids, seed, days, acquisition)
        counts, _ = _simulate(customers, seed, start, days)
        out = _transactions(customers, counts, seed, start)
        for offset in range(0, out.num_rows, _OUTPUT_ROWS_PER_BATCH):
            yield out.slice(offset, _OUTPUT_ROWS_PER_BATCH)


def default_start(days: int, today: date | None = None) -> date:
    """The start date that makes a history of `days` days end yesterday (UTC)."""
    today = today or datetime.now(tz=UTC).date()
    return today - timedelta(days=days)


def generate(
    spark: SparkSession,
    *,
    customers: int,
    start: date,
    days: int,
    seed: int,
    partitions: int | None = None,
    acquisition: Acquisition = "steady",
) -> tuple[DataFrame, DataFrame]:
    """Customers (RAW_CUSTOMERS, with history) and transactions (RAW_TRANSACTIONS).

    Customer ids are 1..customers; transactions fall in [start, start + days). The result
    depends only on the arguments, never on `partitions`. `acquisition`: "steady" (most
    customers older than the history, sign-ups growing) or "launch" (most sign up in the
    history's first LAUNCH_DAYS days).
    """
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    if not 0 <= seed < 2**63:
        raise ValueError("seed must be in [0, 2**63)")
    if partitions is None:
        partitions = max(
            spark.sparkContext.defaultParallelism, math.ceil(customers / CUSTOMERS_PER_PARTITION)
        )
    ids = spark.range(1, customers + 1, numPartitions=partitions)
    customers_df = ids.mapInArrow(
        partial(_customers_udf, seed=seed, start=start, days=days, acquisition=acquisition),
        RAW_CUSTOMERS,
    )
    transactions_df = ids.mapInArrow(
        partial(_transactions_udf, seed=seed, start=start, days=days, acquisition=acquisition),
        RAW_TRANSACTIONS,
    )
    return customers_df, transactions_df


# --------------------------------------------------------------------------- I/O


@dataclass(frozen=True)
class GeneratedTables:
    """What `write_generated` committed."""

    customers_table: str
    customers_version: int
    customer_rows: int
    transactions_table: str
    transactions_version: int
    transaction_rows: int
    start: date
    end: date  # last day of the history (inclusive)


def write_generated(
    spark: SparkSession,
    settings: Settings,
    *,
    customers: int,
    start: date,
    days: int,
    seed: int,
    partitions: int | None = None,
    acquisition: Acquisition = "steady",
) -> GeneratedTables:
    """Generate and replace the raw customers and transactions tables with the result."""
    from scorehouse.errors import ValidationError
    from scorehouse.features.registry import feature_sql
    from scorehouse.storage.warehouse import Warehouse

    customers_df, transactions_df = generate(
        spark,
        customers=customers,
        start=start,
        days=days,
        seed=seed,
        partitions=partitions,
        acquisition=acquisition,
    )
    sql = feature_sql()
    if not {"transactions", "customers"} <= set(sql.project.sources):
        raise ValidationError(
            f"project {sql.project.name}: the built-in generator makes the purchase example's "
            "sources (transactions, customers); ingest your own files instead"
        )
    customers_table, transactions_table = sql.raw_table("customers"), sql.raw_table("transactions")
    wh = Warehouse.from_settings(spark, settings)
    customers_version = wh.overwrite(customers_table, customers_df)
    transactions_version = wh.overwrite(transactions_table, transactions_df, partition_by=["ds"])
    return GeneratedTables(
        customers_table=customers_table,
        customers_version=customers_version,
        customer_rows=wh.read(customers_table, version=customers_version).count(),
        transactions_table=transactions_table,
        transactions_version=transactions_version,
        transaction_rows=wh.read(transactions_table, version=transactions_version).count(),
        start=start,
        end=start + timedelta(days=days - 1),
    )
