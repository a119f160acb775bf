"""Weekly training flow entry point: point-in-time training set → train → champion gate.

Run once:     python flows/weekly_train.py --as-of 2026-11-22
Deployments:  prefect.yaml (cron Sunday) points at `scorehouse.flows:weekly_train`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date

from scorehouse.flows import weekly_train


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--as-of", type=date.fromisoformat, default=None, help="default: yesterday UTC"
    )
    parser.add_argument(
        "--lookback-days", type=int, default=None, help="default: features.training_lookback_days"
    )
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    weekly_train(as_of=args.as_of, lookback_days=args.lookback_days, config=args.config)


if __name__ == "__main__":
    main()
