"""What every subcommand shares: the global options, option types, `--json` output."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any

import typer

from scorehouse.orchestration.results import jsonable
from scorehouse.settings import Settings, load_settings


@dataclass
class Globals:
    """The options given before the subcommand; `ctx.obj` of every command."""

    config: str | None = None

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config)


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_object(Globals)
    return obj if obj is not None else ctx.ensure_object(Globals)


def settings_of(ctx: typer.Context) -> Settings:
    return globals_of(ctx).settings


def iso_date(text: str) -> date:
    """YYYY-MM-DD; a bad value is reported by the option that carried it."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)") from None


def pair(item: str, form: str = "KEY=VALUE") -> tuple[str, str]:
    """`customer_id=cust_no` → ("customer_id", "cust_no"); ValueError names the expected form."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ValueError(f"{item!r}: expected {form}")
    return key.strip(), value.strip()


def pairs(items: list[str] | None, form: str = "KEY=VALUE") -> dict[str, str]:
    """Repeated `--opt KEY=VALUE` as a dict; a bad item is a usage error (exit 2)."""
    try:
        return dict(pair(item, form) for item in items or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def checked_pairs(form: str) -> Callable[[list[str] | None], list[str] | None]:
    """Option callback: a bad item is reported while parsing, naming the option."""

    def check(items: list[str] | None) -> list[str] | None:
        pairs(items, form)
        return items

    return check


Json = Annotated[
    bool,
    typer.Option(
        "--json", help="print the result as one JSON document (numbers as numbers, dates ISO)"
    ),
]


def print_json(value: Any) -> None:
    """One JSON document on stdout: dataclasses as objects, dates as ISO text, numbers as
    numbers (Decimal and numpy too; NaN and infinities as null)."""
    print(json.dumps(_typed(jsonable(value)), indent=2, allow_nan=False))


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
