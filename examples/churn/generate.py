"""Seeded data for the churn example: one CSV file per source (accounts.csv, usage.csv).

    python examples/churn/generate.py OUT_DIR --accounts 300 --days 120 --seed 7

What it simulates, day by day over `days` days ending on `end`:

- accounts: a quarter exist before the first day (the usage log starts on it), the rest
  are created across the period. Each starts on a plan (free, pro, team) with seats, a
  country (sometimes unknown) and a latent engagement level.
- usage: an account is active on a day with a probability set by its plan and its
  engagement (less at weekends). An active day has logins, sometimes reports (units:
  pages) and, on paid plans mostly, API calls (units: calls' weight).
- cancellations: a daily hazard of a few percent a month, higher on the free plan, for
  disengaged and for young accounts. Most cancellations are preceded by three to eight weeks
  of declining use; some come without warning. A cancel event ends the account's usage.
- upgrades: free → pro and pro → team, more likely for engaged accounts; an upgrade is a
  new attribute version valid from its day (more seats on team).

The same arguments give the same files byte for byte. numpy draws, pandas writes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

PLANS = ("free", "pro", "team")
COUNTRIES = ("US", "DE", "GB", "FR", "IN", "BR", "JP", "CA")
# per plan (free, pro, team)
PLAN_SHARE = (0.55, 0.33, 0.12)
ACTIVE_RATE = np.array([0.22, 0.5, 0.7])  # chance of using the product on a weekday
REPORTS_PER_DAY = np.array([0.1, 0.45, 0.8])
API_CALLS_PER_DAY = np.array([0.05, 0.9, 2.2])
CANCEL_PER_MONTH = np.array([0.06, 0.03, 0.015])
UPGRADE_PER_MONTH = np.array([0.02, 0.008, 0.0])
PRE_EXISTING = 0.25  # share of accounts created before the first day
DECLINE_SHARE = 0.85  # cancellations preceded by declining use
WEEKEND_FACTOR = 0.45


@dataclass(frozen=True)
class _Accounts:
    ids: np.ndarray  # str
    created: np.ndarray  # day index (negative: before the first day)
    plan: np.ndarray  # plan index on creation
    seats: np.ndarray
    country: np.ndarray  # str, "" for unknown
    engagement: np.ndarray  # latent multiplier, mean ~1
    cancel_day: np.ndarray  # day index of the cancel event (>= days: none)
    decline_days: np.ndarray  # days of declining use before the cancellation (0: sudden)
    upgrade_day: np.ndarray  # day index of the upgrade (>= days: none)
    upgrade_seats: np.ndarray


def _account_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """`acc-` and 10 hex digits, unique."""
    seen: dict[int, None] = {}
    while len(seen) < n:
        for value in rng.integers(0, 16**10, size=n - len(seen) + 8).tolist():
            seen.setdefault(value, None)
    return np.array([f"acc-{v:010x}" for v in list(seen)[:n]])


def _first_day(rng: np.random.Generator, daily_hazard: np.ndarray) -> np.ndarray:
    """Days (from 0) until the first success of a daily Bernoulli(hazard) process."""
    return rng.geometric(np.clip(daily_hazard, 1e-6, 1.0)) - 1


def _accounts(rng: np.random.Generator, n: int, days: int) -> _Accounts:
    before = rng.random(n) < PRE_EXISTING
    created = np.where(
        before, -rng.integers(1, 540, size=n), np.sort(rng.integers(0, days, size=n))
    )
    plan = rng.choice(3, size=n, p=PLAN_SHARE)
    seats = np.select(
        [plan == 0, plan == 1], [1, 1 + rng.poisson(1.5, size=n)], 3 + rng.geometric(0.08, size=n)
    )
    country = np.array((*COUNTRIES, ""))[
        rng.choice(
            len(COUNTRIES) + 1, size=n, p=[0.3, 0.14, 0.12, 0.1, 0.1, 0.08, 0.06, 0.05, 0.05]
        )
    ]
    engagement = rng.lognormal(-0.125, 0.5, size=n)
    # Cancellations: more on free, for disengaged accounts and for young accounts.
    age_factor = np.where(created > -90, 1.5, 1.0)
    hazard = CANCEL_PER_MONTH[plan] / 30 * age_factor * np.clip(engagement, 0.25, 4) ** -1.2
    cancel_day = np.maximum(created, 0) + 1 + _first_day(rng, hazard)
    decline_days = np.where(rng.random(n) < DECLINE_SHARE, rng.integers(21, 60, size=n), 0)
    upgrade_hazard = UPGRADE_PER_MONTH[plan] / 30 * np.clip(engagement, 0.25, 4)
    upgrade_day = np.maximum(created, 0) + 7 + _first_day(rng, upgrade_hazard)
    # An account that is already winding down does not upgrade.
    upgrade_day = np.where(
        (plan < 2) & (upgrade_day < cancel_day - decline_days), upgrade_day, days
    )
    upgrade_seats = np.where(plan == 1, seats + rng.integers(2, 10, size=n), seats)
    return _Accounts(
        _account_ids(rng, n),
        created,
        plan,
        seats,
        country,
        engagement,
        cancel_day,
        decline_days,
        upgrade_day,
        upgrade_seats,
    )


def _versions(acc: _Accounts, start: date, days: int) -> pd.DataFrame:
    created_on = [start + timedelta(days=int(d)) for d in acc.created]
    first = pd.DataFrame(
        {
            "account_id": acc.ids,
            "valid_from": created_on,
            "created_on": created_on,
            "plan": np.array(PLANS)[acc.plan],
            "seats": acc.seats,
            "country": acc.country,
        }
    )
    up = np.flatnonzero(acc.upgrade_day < days)
    upgraded = first.iloc[up].copy()
    upgraded["valid_from"] = [start + timedelta(days=int(d)) for d in acc.upgrade_day[up]]
    upgraded["plan"] = np.array(PLANS)[acc.plan[up] + 1]
    upgraded["seats"] = acc.upgrade_seats[up]
    return pd.concat([first, upgraded]).sort_values(["valid_from", "account_id"], kind="stable")


def _usage(rng: np.random.Generator, acc: _Accounts, start: date, days: int) -> pd.DataFrame:
    n = len(acc.ids)
    chunks: list[tuple[np.ndarray, ...]] = []
    for day in range(days):
        weekday = (start + timedelta(days=day)).weekday()
        plan = np.where(acc.upgrade_day <= day, acc.plan + 1, acc.plan)
        alive = (acc.created <= day) & (day < acc.cancel_day)
        # Declining use before a cancellation: the rate falls linearly to 3 %.
        to_cancel = acc.cancel_day - day
        fading = (acc.decline_days > 0) & (to_cancel <= acc.decline_days)
        fade = np.where(fading, 0.03 + 0.97 * to_cancel / np.maximum(acc.decline_days, 1), 1.0)
        rate = ACTIVE_RATE[plan] * acc.engagement * fade
        if weekday >= 5:
            rate = rate * WEEKEND_FACTOR
        active = np.flatnonzero(alive & (rng.random(n) < np.clip(rate, 0, 0.97)))
        p = plan[active]
        scale = acc.engagement[active] * fade[active]
        logins = 1 + rng.poisson(0.4 + 0.15 * np.log1p(acc.seats[active]))
        reports = rng.poisson(REPORTS_PER_DAY[p] * scale)
        calls = rng.poisson(API_CALLS_PER_DAY[p] * scale)
        # units: none for a login, pages of a report, the weight of an API call
        for kind, counts, mean_units in (
            ("login", logins, 0),
            ("report", reports, 3),
            ("api_call", calls, 25),
        ):
            who = np.repeat(active, counts)
            units = (
                (1 + rng.poisson(mean_units, size=len(who)))
                if mean_units
                else np.zeros(len(who), np.int64)
            )
            chunks.append((who, np.full(len(who), day), np.full(len(who), kind), units))
        cancelling = np.flatnonzero((acc.cancel_day == day) & (acc.created <= day))
        chunks.append(
            (
                cancelling,
                np.full(len(cancelling), day),
                np.full(len(cancelling), "cancel"),
                np.zeros(len(cancelling), dtype=np.int64),
            )
        )
    who, day_of, kind, units = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
    # Times of day: a working-hours peak; a cancel comes last in its day (no use that day).
    seconds = np.clip(rng.normal(14 * 3600, 3.5 * 3600, size=len(who)), 0, 86_000).astype(np.int64)
    seconds = np.where(kind == "cancel", 86_399, seconds)
    first = np.datetime64(datetime(start.year, start.month, start.day), "s")
    at = first + day_of.astype("timedelta64[D]") + seconds.astype("timedelta64[s]")
    order = np.lexsort((acc.ids[who], at))
    frame = pd.DataFrame(
        {
            "account_id": acc.ids[who][order],
            "event_time": pd.to_datetime(at[order]).strftime("%Y-%m-%d %H:%M:%S"),
            "event_type": kind[order],
            "units": units[order],
        }
    )
    frame.insert(0, "event_id", [f"ev-{i:010d}" for i in range(len(frame))])
    return frame


def generate(out_dir: Path, *, accounts: int, days: int, seed: int, end: date) -> dict[str, Path]:
    """Write accounts.csv and usage.csv for `accounts` accounts over the `days` days ending
    on `end` (UTC) into `out_dir`; returns source name → file."""
    if accounts < 1 or days < 1:
        raise ValueError("accounts and days must be at least 1")
    rng = np.random.default_rng(seed)
    start = end - timedelta(days=days - 1)
    acc = _accounts(rng, accounts, days)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"accounts": out_dir / "accounts.csv", "usage": out_dir / "usage.csv"}
    _versions(acc, start, days).to_csv(files["accounts"], index=False)
    _usage(rng, acc, start, days).to_csv(files["usage"], index=False)
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--end",
        type=date.fromisoformat,
        default=datetime.now(tz=UTC).date() - timedelta(days=1),
        help="last day (default: yesterday UTC)",
    )
    args = parser.parse_args(argv)
    files = generate(
        args.out_dir, accounts=args.accounts, days=args.days, seed=args.seed, end=args.end
    )
    for source, path in files.items():
        print(f"{source}: {path}")


if __name__ == "__main__":
    main()
