"""The `scorehouse` command. Each subcommand parses arguments and calls one library function."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from scorehouse.errors import ScorehouseError
from scorehouse.settings import Settings, SettingsError, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML settings file (default: SCOREHOUSE_CONFIG or built-in)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scorehouse", description=__doc__)
    _add_common(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRARS:
        register(sub)
    return parser


# Subcommand registrars: each adds its parsers with `set_defaults(handler=...)`.
_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = []


def registrar(
    func: Callable[[argparse._SubParsersAction], None],
) -> Callable[[argparse._SubParsersAction], None]:
    _REGISTRARS.append(func)
    return func


def main(argv: Sequence[str] | None = None) -> int:
    from scorehouse import commands  # noqa: F401  (registers the subcommands)

    # Flows start an ephemeral Prefect server; it must not phone home.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("py4j", "urllib3", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    from scorehouse.progress import step

    try:
        # Every subcommand logs its duration (and row counts it records); a progress bar
        # of the Spark tasks is drawn while it runs when stderr is a terminal.
        quiet = args.command in _NO_PROGRESS_BAR
        with step(f"scorehouse {_step_name(args)}", show=False if quiet else None):
            return handler(args, settings)
    except ScorehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


# Servers and quick lookups: a spinner would sit under their own output for nothing.
_NO_PROGRESS_BAR = {"serve", "lookup", "config", "models", "up", "down", "deploy"}


def _step_name(args: argparse.Namespace) -> str:
    action = getattr(args, "action", None) or getattr(args, "models_command", None)
    return f"{args.command} {action}" if action else str(args.command)


if __name__ == "__main__":
    sys.exit(main())
