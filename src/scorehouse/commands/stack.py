"""Subcommands of the local stack: `up`, `deploy`, `down`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scorehouse.cli import registrar
from scorehouse.settings import CONFIG_ENV, Settings

if TYPE_CHECKING:
    from scorehouse.stack import Status


@registrar
def _register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser(
        "up",
        help="start Redis, the Prefect server (UI) and the MLflow server (UI) in the background",
        description="Start Redis, the Prefect server and the MLflow server on loopback, each in "
        "the background with a PID file and a log under <home>/stack/, and wait until each "
        "answers. Running it again reports what already runs.",
    )
    up.set_defaults(handler=_up)

    deploy = sub.add_parser(
        "deploy",
        help="register the prefect.yaml deployments on the local server and start a worker",
        description="Create the work pool, register every deployment of prefect.yaml (nightly "
        "at 02:00 UTC, weekly_train on Sundays, backfill on demand) against the server of "
        "`scorehouse up`, and start a process worker in the background.",
    )
    deploy.set_defaults(handler=_deploy)

    down = sub.add_parser(
        "down", help="stop the worker, the servers and Redis that up/deploy started"
    )
    down.set_defaults(handler=_down)


def _print(statuses: Sequence[Status]) -> None:
    for s in statuses:
        pid = f"pid {s.pid}" if s.pid else ""
        print(f"  {s.name:34} {s.state:16} {pid:10} {s.url}".rstrip())


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse import stack

    _print(stack.up(settings))
    print(f"Prefect UI: {stack.prefect_url(settings)}")
    print(f"MLflow UI:  {stack.mlflow_url(settings)}")
    print(f"Logs and PID files: {stack.state_dir(settings)}")
    print("Next: `scorehouse deploy` registers the scheduled flows; `scorehouse down` stops all.")
    return 0


def _deploy(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse import stack

    env = dict(os.environ)
    if args.config:
        # Flow runs load their settings from the worker's environment (`config: null`).
        env[CONFIG_ENV] = str(Path(args.config).resolve())
    _print(stack.deploy(settings, worker_env=env))
    print(f"Deployments: {stack.prefect_url(settings)}/deployments")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse import stack

    _print(stack.down(settings))
    return 0
