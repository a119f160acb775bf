"""Nightly flow entry point: features → checks → score → publish → verify → clean-up for one date.

Run once:     python flows/nightly.py --date 2026-11-22
Deployments:  prefect.yaml (cron 02:00 UTC) points at `scorehouse.flows:nightly`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date

from scorehouse.flows import nightly


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--date", type=date.fromisoformat, default=None, help="as-of date (default: yesterday UTC)"
    )
    parser.add_argument("--config", default=None)
    parser.add_argument("--fail-on", choices=["warn", "critical"], default=None)
    parser.add_argument("--force", action="store_true", help="redo steps already current")
    args = parser.parse_args(argv)
    nightly(ds=args.date, config=args.config, fail_on=args.fail_on, force=args.force)


if __name__ == "__main__":
    main()
