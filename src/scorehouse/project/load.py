"""Find and read a project folder.

A project is a folder holding `project.yaml` (name, entity, label, model) and, beside
it, `sources.yaml` (a mapping of source name → declaration) and `features.yaml`
(`features:` a list). Everything may also sit in `project.yaml` alone. The folder is
`--project DIR`, else `SCOREHOUSE_PROJECT`, else the current directory when it holds a
`project.yaml`, else the shipped purchase-propensity example (the local demo).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pydantic
import yaml

from scorehouse.errors import ScorehouseError
from scorehouse.paths import EXAMPLES_DIR
from scorehouse.project.spec import Feature, Project

PROJECT_FILE = "project.yaml"
PARTS = ("sources", "features")
ENV = "SCOREHOUSE_PROJECT"
DEFAULT_EXAMPLE = "purchase_propensity"


class ProjectError(ScorehouseError):
    """A declaration is wrong; the message names the file, the declaration and the problem."""

    exit_code = 2


def locate(directory: str | Path | None = None) -> Path:
    """The project folder: the argument, SCOREHOUSE_PROJECT, the current directory, the demo."""
    if directory is None:
        directory = os.environ.get(ENV) or None
    if directory is None:
        here = Path.cwd()
        directory = here if (here / PROJECT_FILE).exists() else EXAMPLES_DIR / DEFAULT_EXAMPLE
    path = Path(directory).expanduser().resolve()
    if not (path / PROJECT_FILE).is_file():
        raise ProjectError(f"{path}: not a scorehouse project (no {PROJECT_FILE})")
    return path


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path}: not valid YAML: {exc}") from None


def _raw_declarations(folder: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The merged YAML, and which file each top-level part came from."""
    data = _read(folder / PROJECT_FILE)
    if not isinstance(data, dict):
        raise ProjectError(f"{folder / PROJECT_FILE}: must be a mapping")
    origin = {key: folder / PROJECT_FILE for key in data}
    for part in PARTS:
        path = folder / f"{part}.yaml"
        if not path.exists():
            continue
        if part in data:
            raise ProjectError(f"{path}: `{part}` is declared in {PROJECT_FILE} as well")
        loaded = _read(path)
        data[part] = loaded.get(part, loaded) if isinstance(loaded, dict) else loaded
        origin[part] = path
    return data, origin


def _where(data: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """`feature NAME`, `source NAME` or the field path, for a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "features" and isinstance(loc[1], int):
        try:
            name = data["features"][loc[1]].get("name", f"#{loc[1] + 1}")
        except (IndexError, AttributeError, TypeError):
            name = f"#{loc[1] + 1}"
        rest = ".".join(str(x) for x in loc[2:])
        return f"feature {name}" + (f": {rest}" if rest else "")
    if len(loc) >= 2 and loc[0] == "sources":
        rest = ".".join(str(x) for x in loc[2:])
        return f"source {loc[1]}" + (f": {rest}" if rest else "")
    return ".".join(str(x) for x in loc)


def parse(data: dict[str, Any], origin: dict[str, Path], folder: Path) -> Project:
    try:
        return Project.model_validate(data)
    except pydantic.ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            path = origin.get(str(loc[0]) if loc else "", folder / PROJECT_FILE)
            message = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{path}: {_where(data, loc)}: {message}")
        raise ProjectError("\n".join(lines)) from None


@cache
def _load(folder: Path) -> Project:
    from scorehouse.project.checks import check_project

    data, origin = _raw_declarations(folder)
    project = parse(data, origin, folder)
    problems = check_project(project)
    if problems:
        features_file = origin.get("features", folder / PROJECT_FILE)
        # a problem of the model section names the file that declares it
        model_file = origin.get("model", folder / PROJECT_FILE)
        raise ProjectError(
            "\n".join(
                f"{model_file if p.startswith('model:') else features_file}: {p}" for p in problems
            )
        )
    return project


def load_project(directory: str | Path | None = None) -> Project:
    """The project's declarations, checked (cached per folder)."""
    return _load(locate(directory))


def features_of(project: Project) -> list[Feature]:
    """Every declared feature with `windows` expanded, in declaration order."""
    return [one for feature in project.features for one in feature.expand()]
