"""A brute-force oracle: every feature recomputed directly from raw events with pandas.

Written independently of the feature engine: no rollups, no state, just the purchase
example's declarations (examples/purchase_propensity/features.yaml) applied to the events
whose date is <= the as-of date.
"""

from __future__ import annotations

import itertools
import math
from datetime import date, timedelta

import pandas as pd

WINDOWS = (7, 30, 90, 365)
SEGMENTS = {"consumer": 0, "smb": 1, "enterprise": 2}
REGIONS = {"north": 0, "south": 1, "east": 2, "west": 3}


def attributes_as_of(customers: pd.DataFrame, customer_id: int, ds: date) -> pd.Series | None:
    versions = customers[(customers.customer_id == customer_id) & (customers.valid_from <= ds)]
    if versions.empty or versions.signup_date.iloc[0] > ds:
        return None
    return versions.sort_values("valid_from").iloc[-1]


def oracle_features(customers: pd.DataFrame, transactions: pd.DataFrame, ds: date) -> list[dict]:
    """One dict per customer known on ds: the registry features, computed from scratch."""
    rows = []
    for customer_id in sorted(customers.customer_id.unique()):
        attrs = attributes_as_of(customers, customer_id, ds)
        if attrs is None:
            continue
        events = transactions[(transactions.customer_id == customer_id) & (transactions.ds <= ds)]
        row: dict = {"customer_id": int(customer_id), "ds": ds}
        for w in WINDOWS:
            window = events[events.ds > ds - timedelta(days=w)]
            cents = sum(round(a * 100) for a in window.amount)
            row[f"txn_count_{w}d"] = len(window)
            row[f"active_days_{w}d"] = window.ds.nunique()
            row[f"spend_{w}d"] = cents / 100.0
            row[f"quantity_{w}d"] = int(window.quantity.sum())
            row[f"avg_ticket_{w}d"] = cents / 100.0 / len(window) if len(window) else None
        w90 = events[events.ds > ds - timedelta(days=90)]
        w30 = events[events.ds > ds - timedelta(days=30)]
        cents90 = sum(round(a * 100) for a in w90.amount)
        cents30 = sum(round(a * 100) for a in w30.amount)
        row["spend_trend_30_90"] = cents30 * 3.0 / cents90 if cents90 > 0 else None
        row["txn_trend_30_90"] = len(w30) * 3.0 / len(w90) if len(w90) else None
        weekend = sum(1 for d in w90.ds if d.weekday() >= 5)
        row["weekend_share_90d"] = weekend / len(w90) if len(w90) else None
        days = sorted(set(events.ds))
        row["lifetime_txn_count"] = len(events)
        row["lifetime_active_days"] = len(days)
        row["days_since_last_purchase"] = (ds - days[-1]).days if days else None
        row["days_since_first_purchase"] = (ds - days[0]).days if days else None
        gaps = [(b - a).days for a, b in itertools.pairwise(days)]
        if gaps:
            mean = sum(gaps) / len(gaps)
            row["interpurchase_mean_days"] = mean
            row["interpurchase_std_days"] = math.sqrt(
                sum((g - mean) ** 2 for g in gaps) / len(gaps)
            )
        else:
            row["interpurchase_mean_days"] = None
            row["interpurchase_std_days"] = None
        row["tenure_days"] = (ds - attrs.signup_date).days
        row["segment_code"] = SEGMENTS.get(attrs.segment, -1)
        row["region_code"] = REGIONS.get(attrs.region, -1)
        row["email_opt_in_flag"] = int(bool(attrs.email_opt_in))
        rows.append(row)
    return rows
