"""Subcommand modules; importing one registers its parsers with scorehouse.cli."""

from scorehouse.commands import (
    core,  # noqa: F401
    data,  # noqa: F401
    models,  # noqa: F401
    scoring,  # noqa: F401
    serving,  # noqa: F401
    stack,  # noqa: F401
)
