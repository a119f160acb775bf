"""Subcommands of a project folder: `init` (scaffold one), `validate` (check it, Spark's
analyzer included) and the declared features that `features list` prints."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from scorehouse.commands.common import Json, print_json, settings_of
from scorehouse.errors import ScorehouseError
from scorehouse.paths import EXAMPLES_DIR
from scorehouse.project.load import PROJECT_FILE, ProjectError, features_of, load_project, locate

TEMPLATE = "template"  # examples/_template: the minimal commented project


def examples() -> dict[str, Path]:
    """Scaffold names → folders: the template and every shipped example."""
    found = {TEMPLATE: EXAMPLES_DIR / "_template"}
    if EXAMPLES_DIR.is_dir():
        for folder in sorted(EXAMPLES_DIR.iterdir()):
            if not folder.name.startswith("_") and (folder / PROJECT_FILE).is_file():
                found[folder.name] = folder
    return found


def scaffold(target: Path, example: str = TEMPLATE) -> list[Path]:
    """Copy an example's declarations into `target` (new or empty); returns the files.
    The project is named after the folder when the folder's name is a valid name."""
    choices = examples()
    if example not in choices:
        raise ScorehouseError(f"init: no example {example!r} (choose from {', '.join(choices)})")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScorehouseError(f"init: {target} is not empty; give a new or empty folder")
    shutil.copytree(
        choices[example], target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    name = target.resolve().name
    if re.fullmatch(r"[a-z][a-z0-9_]*", name):
        project_file = target / PROJECT_FILE
        text = re.sub(r"(?m)^name: \S+$", f"name: {name}", project_file.read_text(), count=1)
        project_file.write_text(text)
    return sorted(p for p in target.rglob("*") if p.is_file())


def init(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="new or empty folder")],
    example: Annotated[
        str,
        typer.Option(
            help=f"what to copy: {TEMPLATE} (a minimal commented project) or a shipped example "
            "(purchase_propensity, ...)"
        ),
    ] = TEMPLATE,
    as_json: Json = False,
) -> None:
    """Scaffold a project folder (project.yaml, sources.yaml, features.yaml) to edit."""
    files = scaffold(directory, example)
    folder = directory.resolve()
    if as_json:
        print_json({"project": str(folder), "example": example, "files": [str(f) for f in files]})
        return
    listed = ", ".join(str(f.relative_to(directory)) for f in files)
    print(
        f"created {folder} from {example}: {listed}\n"
        "next:\n"
        "  1. edit the declarations (reference: docs/declarations.md)\n"
        f"  2. scorehouse --project {directory} validate\n"
        f"  3. scorehouse --project {directory} ingest SOURCE FILE --map COLUMN=FILE_COLUMN\n"
        f"  4. scorehouse --project {directory} features build --start YYYY-MM-DD\n"
        f"(or export SCOREHOUSE_PROJECT={folder} once)"
    )


@dataclass(frozen=True)
class Validation:
    project: str
    ok: bool
    features: int
    model_features: int
    sources: int
    problems: list[str]


def validate_project(ctx: typer.Context) -> Validation:
    """The project's structure checks, then Spark's analyzer over its SQL."""
    try:
        folder = locate()
    except ProjectError as exc:
        return Validation("", False, 0, 0, 0, str(exc).splitlines())
    try:
        project = load_project(folder)
    except ProjectError as exc:
        return Validation(str(folder), False, 0, 0, 0, str(exc).splitlines())
    from scorehouse.features.compile_check import analyze
    from scorehouse.spark import get_spark

    problems = analyze(get_spark(settings_of(ctx), app_name="scorehouse-validate"), project, folder)
    declared = features_of(project)
    return Validation(
        str(folder),
        not problems,
        len(declared),
        sum(not f.internal for f in declared),
        len(project.sources),
        problems,
    )


def validate(ctx: typer.Context, as_json: Json = False) -> None:
    """Check the project: declarations, then every SQL expression against the declared
    columns (Spark's analyzer, no data read). Exit code 2 on problems.

    Checks the project in use: `--project DIR`, else SCOREHOUSE_PROJECT, else the current
    folder when it holds a project.yaml, else the shipped purchase example.
    """
    result = validate_project(ctx)
    if as_json:
        print_json(result)
        if not result.ok:
            raise typer.Exit(2)
        return
    if not result.ok:
        raise ProjectError("\n".join(result.problems))
    print(
        f"ok: {result.features} features ({result.model_features} model inputs), "
        f"{result.sources} sources in {result.project}"
    )


@dataclass(frozen=True)
class DeclaredFeature:
    name: str
    kind: str
    type: str
    window: str
    no_history: float | None
    internal: bool
    definition: str
    description: str
    min_value: float | None
    max_value: float | None


def declared_features() -> list[DeclaredFeature]:
    """Every declared feature of the project in use (internal ones too), windows expanded."""
    from scorehouse.features.registry import definition, feature_sql

    sql = feature_sql()
    out = []
    for f in features_of(sql.project):
        window = {"attribute": "as_of", "derived": "-"}.get(f.kind, str(f.window))
        out.append(
            DeclaredFeature(
                name=f.name,
                kind=f.kind,
                type=sql.feature_type(f) or "double",
                window=window,
                no_history=f.no_history,
                internal=f.internal,
                definition=definition(sql, f),
                description=f.description,
                min_value=f.min,
                max_value=f.max,
            )
        )
    return out


def print_features(as_json: bool) -> None:
    """`features list`: one line per declared feature, or a JSON list."""
    features = declared_features()
    if as_json:
        print_json(features)
        return
    print(f"{'name':28} {'kind':11} {'type':6} {'window':8} {'no history':10} internal definition")
    for f in features:
        no_history = "missing" if f.no_history is None else f"{f.no_history:g}"
        internal = "yes" if f.internal else "no"
        print(
            f"{f.name:28} {f.kind:11} {f.type:6} {f.window:8} {no_history:10} {internal:8} "
            f"{' '.join(f.definition.split())}"
        )
