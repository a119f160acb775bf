"""Subcommands of the nightly path: demo, features, training-set, score, nightly."""

from __future__ import annotations

import argparse

from scorehouse.cli import registrar
from scorehouse.settings import Settings


@registrar
def _register(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="print the effective settings (secrets masked)")
    config.set_defaults(handler=_show_config)


def _show_config(args: argparse.Namespace, settings: Settings) -> int:
    print(settings.model_dump_json(indent=2))
    return 0
