"""Subcommands of the local stack: `up`, `deploy`, `down`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from scorehouse.commands.common import Json, globals_of, print_json, settings_of
from scorehouse.settings import CONFIG_ENV

if TYPE_CHECKING:
    from scorehouse.stack import Status


def up(ctx: typer.Context, as_json: Json = False) -> None:
    """Start Redis, the Prefect server (UI) and the MLflow server (UI) in the background.

    Start Redis, then a supervisord that runs the Prefect server and the MLflow server on
    loopback (configuration, socket and logs under <home>/stack/), and wait until each
    answers. Running it again reports what already runs.
    """
    from scorehouse import stack

    settings = settings_of(ctx)
    statuses = stack.up(settings)
    where = {
        "prefect_ui": stack.prefect_url(settings),
        "mlflow_ui": stack.mlflow_url(settings),
        "state_dir": stack.state_dir(settings),
        "supervisorctl": f"{stack.bin_path('supervisorctl')} -c {stack.supervisor(settings).conf_path}",
    }
    if as_json:
        print_json({"services": statuses, **where})
        return
    _print(statuses)
    print(f"Prefect UI: {where['prefect_ui']}")
    print(f"MLflow UI:  {where['mlflow_ui']}")
    print(f"Logs:       {where['state_dir']}")
    print(f"Processes:  {where['supervisorctl']} status")
    print("Next: `scorehouse deploy` registers the scheduled flows; `scorehouse down` stops all.")


def deploy(ctx: typer.Context, as_json: Json = False) -> None:
    """Register the prefect.yaml deployments on the local server and start a worker.

    Create the work pool, register every deployment of prefect.yaml (nightly at 02:00 UTC,
    weekly_train on Sundays, backfill on demand) against the server of `scorehouse up`, and
    add a process worker per work pool to the supervisord of `scorehouse up`.
    """
    from scorehouse import stack

    settings = settings_of(ctx)
    env = dict(os.environ)
    config = globals_of(ctx).config
    if config:
        # Flow runs load their settings from the worker's environment (`config: null`).
        env[CONFIG_ENV] = str(Path(config).resolve())
    statuses = stack.deploy(settings, worker_env=env)
    if as_json:
        print_json(
            {"services": statuses, "deployments": f"{stack.prefect_url(settings)}/deployments"}
        )
        return
    _print(statuses)
    print(f"Deployments: {stack.prefect_url(settings)}/deployments")


def down(ctx: typer.Context, as_json: Json = False) -> None:
    """Stop the worker, the servers (their supervisord with them) and Redis that up/deploy started."""
    from scorehouse import stack

    statuses = stack.down(settings_of(ctx))
    if as_json:
        print_json({"services": statuses})
    else:
        _print(statuses)


def _print(statuses: Sequence[Status]) -> None:
    for s in statuses:
        pid = f"pid {s.pid}" if s.pid else ""
        print(f"  {s.name:34} {s.state:16} {pid:10} {s.url}".rstrip())
