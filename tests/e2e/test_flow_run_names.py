"""Every flow run is named after its dates, defaults included, so the Prefect UI's run list
reads as a calendar. Each run here stops early (a settings file that does not exist), so
no Spark starts; the name is set before the flow's body runs."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client

from scorehouse.flows import backfill, nightly, weekly_train, yesterday_utc


def _run_name(state: Any) -> str:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).name


def test_flow_runs_are_named_after_their_dates(prefect: None, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.yaml")
    yesterday = yesterday_utc().isoformat()
    runs = {
        "nightly-2026-01-15": nightly(ds=date(2026, 1, 15), config=missing, return_state=True),
        f"nightly-{yesterday}": nightly(config=missing, return_state=True),
        f"weekly-train-{yesterday}": weekly_train(config=missing, return_state=True),
        "weekly-train-2026-02-01": weekly_train(
            as_of=date(2026, 2, 1), config=missing, return_state=True
        ),
        "backfill-2026-01-01-2026-01-07": backfill(
            start=date(2026, 1, 1), end=date(2026, 1, 7), config=missing, return_state=True
        ),
        "backfill-2026-01-03-2026-01-03": backfill(
            start=date(2026, 1, 3), config=missing, return_state=True
        ),
    }
    assert {name: _run_name(state) for name, state in runs.items()} == {name: name for name in runs}
    assert all(state.is_failed() for state in runs.values())  # stopped before any step
