"""Subcommand modules; importing one registers its parsers with scorehouse.cli."""

from scorehouse.commands import core  # noqa: F401
from scorehouse.commands import data  # noqa: F401
from scorehouse.commands import models  # noqa: F401
from scorehouse.commands import scoring  # noqa: F401
from scorehouse.commands import serving  # noqa: F401
