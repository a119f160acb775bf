"""The `scorehouse` command. Each subcommand parses arguments and calls one library function."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from scorehouse.commands import core, data, flows, models, project, scoring, serving, stack
from scorehouse.commands.common import Globals, settings_of
from scorehouse.errors import ScorehouseError
from scorehouse.settings import SettingsError

app = typer.Typer(
    name="scorehouse",
    help="Batch prediction warehouse: point-in-time features, training, nightly scoring "
    "into Delta, serving from Redis.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# (name, function, help panel): the whole command surface in one table.
_COMMANDS: list[tuple[str, Callable[..., None], str]] = [
    ("generate", data.generate, "Data"),
    ("ingest", data.ingest, "Data"),
    ("retract", data.retract, "Data"),
    ("features", core.features, "Features and training"),
    ("training-set", core.training_set, "Features and training"),
    ("train", models.train, "Features and training"),
    ("backtest", models.backtest, "Features and training"),
    ("score", scoring.score, "Scoring and serving"),
    ("sql", scoring.sql, "Scoring and serving"),
    ("publish", serving.publish, "Scoring and serving"),
    ("lookup", serving.lookup, "Scoring and serving"),
    ("serve", serving.serve, "Scoring and serving"),
    ("nightly", flows.nightly, "Flows"),
    ("weekly-train", flows.weekly_train, "Flows"),
    ("backfill", flows.backfill, "Flows"),
    ("demo", flows.demo, "Flows"),
    ("init", project.init, "Setup"),
    ("validate", project.validate, "Setup"),
    ("config", core.show_config, "Setup"),
    ("up", stack.up, "Setup"),
    ("deploy", stack.deploy, "Setup"),
    ("down", stack.down, "Setup"),
]
# `lookup 1 -5`: an id that starts with "-" is an id (the key rule answers it), not an option.
_CONTEXT: dict[str, dict[str, Any]] = {"lookup": {"ignore_unknown_options": True}}
for _name, _function, _panel in _COMMANDS:
    app.command(_name, rich_help_panel=_panel, context_settings=_CONTEXT.get(_name))(_function)
app.add_typer(models.app, name="models", rich_help_panel="Features and training")

SPARK_LOG_LEVEL_ENV = "SCOREHOUSE_SPARK__LOG_LEVEL"
PROJECT_ENV = "SCOREHOUSE_PROJECT"
# Servers and quick lookups: a spinner would sit under their own output for nothing.
_NO_PROGRESS_BAR = {"serve", "lookup", "config", "models", "up", "down", "deploy", "init"}


@app.callback()
def _global_options(
    ctx: typer.Context,
    config: Annotated[
        str | None, typer.Option(help="YAML settings file (default: SCOREHOUSE_CONFIG or built-in)")
    ] = None,
    project_dir: Annotated[
        Path | None,
        typer.Option(
            "--project",
            metavar="DIR",
            help="project folder (default: SCOREHOUSE_PROJECT, else the current folder when "
            "it holds a project.yaml, else the shipped purchase example)",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="debug logging, and Spark's INFO lines")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("py4j", "urllib3", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if verbose and SPARK_LOG_LEVEL_ENV not in os.environ:
        # Through the environment, so the flows' settings and spark-submit's jobs see it too.
        os.environ[SPARK_LOG_LEVEL_ENV] = "INFO"
        ctx.call_on_close(lambda: os.environ.pop(SPARK_LOG_LEVEL_ENV, None))
    if project_dir is not None:
        # Through the environment, so spark-submit's jobs and the flows' tasks read the
        # same project; an absolute path, since they may run from another folder.
        _set_env(ctx, PROJECT_ENV, str(project_dir.expanduser().resolve()))
    ctx.obj = Globals(config=config)


def _set_env(ctx: typer.Context, name: str, value: str) -> None:
    """Set for this command (and its child processes), restored when it ends."""
    before = os.environ.get(name)
    os.environ[name] = value

    def restore() -> None:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before

    ctx.call_on_close(restore)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code. Expected failures print one `error:` line."""
    # Flows start an ephemeral Prefect server; it must not phone home.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Its first start on a new PREFECT_HOME migrates a database: on a host whose page cache
    # a large backfill had just emptied, that took longer than Prefect's default 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    command = typer.main.get_command(app)
    assert isinstance(command, TyperGroup)
    _time_each_step(command, ())
    args = _global_options_first(sys.argv[1:] if argv is None else argv)
    try:
        # Standalone: typer prints usage errors and help itself and always exits.
        command.main(args=args, prog_name="scorehouse")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except ScorehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        code = code or 1
    return code


def _time_each_step(group: TyperGroup, path: tuple[str, ...]) -> None:
    """Wrap every leaf command: settings loaded first (a bad file is one line), then the
    run is a `progress.step` (duration and row counts logged, a Spark bar on a terminal)."""
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            _time_each_step(command, (*path, name))
        else:
            command.invoke = _stepped(command.invoke, (*path, name))  # type: ignore[method-assign,assignment]


def _stepped(invoke: Callable[[Any], Any], path: tuple[str, ...]) -> Callable[[Any], Any]:
    from scorehouse.progress import step

    show = False if path[0] in _NO_PROGRESS_BAR else None

    def run(ctx: typer.Context) -> Any:
        action = ctx.params.get("action")
        name = " ".join((*path, action) if action else path)
        settings_of(ctx)
        broken = False
        with step(f"scorehouse {name}", show=show):
            try:
                result = invoke(ctx)
                sys.stdout.flush()
            except BrokenPipeError:  # `scorehouse features list | head -1`
                broken = True
        if broken:
            _drop_stdout()
            raise typer.Exit(1)
        return result

    return run


def _global_options_first(argv: Sequence[str]) -> list[str]:
    """`--config FILE`, `--project DIR` and `-v` given after the subcommand, moved in front
    of it."""
    front: list[str] = []
    rest: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == "--":
            rest.extend(items[i:])
            break
        if item in ("-v", "--verbose") or item.startswith(("--config=", "--project=")):
            front.append(item)
        elif item in ("--config", "--project") and i + 1 < len(items):
            front.extend(items[i : i + 2])
            i += 1
        else:
            rest.append(item)
        i += 1
    return front + rest


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def _drop_stdout() -> None:
    """The reader went away: send what is left to /dev/null, so that the flush at exit
    raises no second BrokenPipeError."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
