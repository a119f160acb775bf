"""Backfill flow entry point: features and/or predictions for a date range, with the
nightly's steps; optionally publish the last day to Redis.

Run once:     python flows/backfill.py --start 2026-11-01 --end 2026-11-22 --what both
Deployments:  prefect.yaml points at `flows/backfill.py:backfill` (run by hand).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date

from scorehouse.flows import backfill


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, default=None, help="default: start")
    parser.add_argument("--what", choices=["features", "predictions", "both"], default="both")
    parser.add_argument("--publish-last", action="store_true", help="publish the last day")
    parser.add_argument("--fail-on", choices=["warn", "critical"], default=None)
    parser.add_argument("--force", action="store_true", help="redo days already current")
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    backfill(
        start=args.start,
        end=args.end,
        what=args.what,
        publish_last=args.publish_last,
        config=args.config,
        fail_on=args.fail_on,
        force=args.force,
    )


if __name__ == "__main__":
    main()
