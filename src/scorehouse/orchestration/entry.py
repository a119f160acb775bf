"""The command line of a step: what jobs/run_step.py (the one file spark-submit runs for
every flow step) and the named jobs/*.py call.

    spark-submit ... jobs/run_step.py score --date 2026-06-30 \
        [--config scorehouse.yaml] [--result-json result.json]

The options come from the step's work and skip functions (a parameter `every_days` is
`--every-days`, or the name in the step's `flags`); the result dict is written with
--result-json, and a failure writes what failed and whether it was bad data.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
import typing
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from scorehouse.orchestration.results import job_result
from scorehouse.orchestration.steps import STEPS, Step, done_line, run_step

# The types a step's parameters use, read from the command line.
_READERS: dict[Any, Callable[[str], Any]] = {date: date.fromisoformat, int: int, float: float,
                                             str: str}  # fmt: skip


def plain_type(annotation: Any) -> tuple[Any, bool]:
    """(the type, whether it is a list) of `T`, `T | None` or `list[T] | None`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], True
    return annotation, False


def step_parameters(step: Step) -> dict[str, inspect.Parameter]:
    """The parameters of the step's work and skip, past (spark, settings) and (settings)."""
    found: dict[str, inspect.Parameter] = {}
    for function, skip in ((step.work, 2), (step.skip, 1)):
        if function is not None:
            found.update(list(inspect.signature(function).parameters.items())[skip:])
    if step.skip is not None:
        found["force"] = inspect.Parameter("force", inspect.Parameter.KEYWORD_ONLY, default=False)
    return found


def parser(name: str) -> argparse.ArgumentParser:
    step = STEPS[name]
    described = argparse.ArgumentParser(
        prog=name, description=(inspect.getdoc(step.work) or name).splitlines()[0]
    )
    described.add_argument(
        "--config", help="settings YAML (default: SCOREHOUSE_CONFIG or built-in)"
    )
    described.add_argument("--result-json", help="write the step's result here as JSON")
    hints = {**typing.get_type_hints(step.work)}
    if step.skip is not None:
        hints.update(typing.get_type_hints(step.skip))
    for pname, parameter in step_parameters(step).items():
        flag = "--" + step.flags.get(pname, pname).replace("_", "-")
        kind, many = plain_type(hints.get(pname, bool))
        required = parameter.default is inspect.Parameter.empty
        if kind is bool:
            described.add_argument(flag, dest=pname, action="store_true")
        else:
            described.add_argument(
                flag, dest=pname, type=_READERS[kind], required=required,
                action="append" if many else "store", default=None if required else parameter.default,
            )  # fmt: skip
    return described


def main(argv: Sequence[str] | None = None) -> None:
    """`<step> [options]`: run the step with the settings of --config and print its line."""
    from scorehouse.settings import load_settings

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in STEPS:
        raise SystemExit(f"usage: run_step.py {{{','.join(STEPS)}}} [options]")
    name, options = args[0], vars(parser(args[0]).parse_args(args[1:]))
    config, result_json = options.pop("config"), options.pop("result_json")
    with job_result(result_json) as result:
        result.update(run_step(name, load_settings(config), options))
    print(done_line(name, result))
