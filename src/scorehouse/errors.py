"""Errors whose message is the whole story for the user: the CLI prints them without a traceback."""


class ScorehouseError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 1


class ValidationError(ScorehouseError):
    """Input or output data broke a rule; the message names file/table, column and rule."""


class ConflictError(ScorehouseError):
    """A concurrent writer changed the target; nothing was committed."""


class RedisLoadError(ScorehouseError):
    """A Redis publish was refused or failed; readers still see the previous generation."""


class QueryRefused(ScorehouseError):
    """`scorehouse sql` refused a statement before running anything (not a read-only query)."""

    exit_code = 2
