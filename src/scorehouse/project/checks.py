"""Checks that need the whole project: names that must exist, types, cycles.

Each problem is one line naming the declaration (`feature NAME`, `source NAME`, ...)
and what is wrong; the loader prefixes the file. SQL expressions are checked for the
features they reference here, and for every column they reference by Spark's analyzer
in `scorehouse validate` (`scorehouse.features.compile_check.analyze`).
"""

from __future__ import annotations

import re
from graphlib import CycleError, TopologicalSorter

from scorehouse.project.spec import NAME, Feature, Project

_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_IDENTIFIERS = re.compile(r"`([^`]+)`|\b([A-Za-z_][A-Za-z0-9_]*)\b")
RESERVED = {"ds"}


def identifiers(expr: str) -> set[str]:
    """The names an SQL expression mentions (outside string literals), lower-cased."""
    text = _STRINGS.sub("''", expr)
    return {(a or b).lower() for a, b in _IDENTIFIERS.findall(text)}


def derived_dependencies(features: list[Feature]) -> dict[str, set[str]]:
    names = {f.name for f in features}
    return {
        f.name: (identifiers(f.expr) & names) - {f.name}
        for f in features
        if f.kind == "derived" and f.expr
    }


def derived_order(features: list[Feature]) -> list[str]:
    """Derived features, each after the ones it references (raises CycleError)."""
    deps = derived_dependencies(features)
    order = TopologicalSorter(deps).static_order()
    return [name for name in order if name in deps]


def _check_sources(project: Project) -> list[str]:
    problems = []
    entity = project.entity
    key_type = entity.type
    for name, source in project.sources.items():
        if not NAME.match(name):
            problems.append(f"source {name}: not a name (lower case letters, digits and _)")
        key = source.key or entity.key
        if key not in source.columns:
            problems.append(f"source {name}: the entity key column {key!r} is not declared")
        elif source.columns[key].type != key_type:
            problems.append(
                f"source {name}: column {key}: type {source.columns[key].type}, but the "
                f"entity {entity.name} has {key_type} keys"
            )
        wanted = {
            "timestamp": ("timestamp",),
            "valid_from": ("date",),
            "known_from": ("date",),
        }
        for field, types in wanted.items():
            column = getattr(source, field)
            if column is None:
                continue
            if column not in source.columns:
                problems.append(f"source {name}: {field} column {column!r} is not declared")
            elif source.columns[column].type not in types:
                problems.append(f"source {name}: {field} column {column!r} must be a {types[0]}")
        for column in source.unique:
            if column not in source.columns:
                problems.append(f"source {name}: unique column {column!r} is not declared")
        if "ds" in source.columns and source.kind == "events":
            problems.append(f"source {name}: `ds` is derived from the timestamp; do not declare it")
    if entity.source not in project.sources:
        problems.append(f"entity {entity.name}: source {entity.source!r} is not declared")
    elif project.sources[entity.source].kind != "attributes":
        problems.append(
            f"entity {entity.name}: source {entity.source!r} must be an attributes source"
        )
    return problems


def _check_feature(project: Project, feature: Feature) -> list[str]:
    where = f"feature {feature.name}"
    if feature.kind == "derived":
        return []
    source = project.sources.get(feature.source or "")
    if source is None:
        return [f"{where}: source {feature.source!r} is not declared"]
    if feature.kind == "aggregation" and source.kind != "events":
        return [f"{where}: agg needs an events source ({feature.source} holds attributes)"]
    if feature.agg in ("sum", "mean") and feature.scale is None:
        column = source.columns.get(feature.value or "")
        if column is None or column.type not in ("int64", "int32"):
            return [
                f"{where}: {feature.agg} of {feature.value!r} needs `scale` (window sums are "
                "kept as whole numbers so they merge exactly day by day; scale: 100 keeps "
                "cents), unless the value is an integer column"
            ]
    if feature.kind == "attribute":
        if feature.source != project.entity.source:
            return [f"{where}: attributes come from the entity's source {project.entity.source!r}"]
        if feature.column is not None and feature.column not in source.columns:
            return [f"{where}: {feature.source} has no column {feature.column!r}"]
    return []


def check_project(project: Project) -> list[str]:
    """Every problem found, one line each (empty: the project is sound)."""
    problems = _check_sources(project)
    features = [one for f in project.features for one in f.expand()]
    seen: set[str] = set()
    reserved = RESERVED | {project.entity.key}
    entity_source = project.sources.get(project.entity.source)
    if entity_source is not None:
        reserved |= set(entity_source.columns)
    for feature in features:
        if not NAME.match(feature.name):
            problems.append(
                f"feature {feature.name}: not a name (lower case letters, digits and _)"
            )
        if feature.name in seen:
            problems.append(f"feature {feature.name}: declared twice")
        if feature.name in reserved:
            problems.append(f"feature {feature.name}: the name of a key or attribute column")
        if "__" in feature.name:
            problems.append(f"feature {feature.name}: `__` is reserved for the engine's state")
        seen.add(feature.name)
        problems += _check_feature(project, feature)
    try:
        derived_order(features)
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        problems.append(f"derived features reference each other in a cycle: {cycle}")
    if not any(not f.internal for f in features):
        problems.append("no model features: every feature is internal")
    label = project.label
    if label is not None:
        if label.source not in project.sources:
            problems.append(f"label: source {label.source!r} is not declared")
        elif project.sources[label.source].kind != "events":
            problems.append(f"label: source {label.source!r} must be an events source")
        elif label.value is not None and label.scale is None:
            column = project.sources[label.source].columns.get(label.value)
            if column is None or column.type not in ("int64", "int32"):
                problems.append(
                    f"label: the sum of {label.value!r} needs `scale` (scale: 100 keeps cents), "
                    "unless the value is an integer column"
                )
    baseline = project.model.baseline_feature
    model_inputs = {f.name for f in features if not f.internal}
    if baseline is not None and baseline not in model_inputs:
        problems.append(f"model: baseline_feature {baseline!r} is not a model feature")
    btyd = project.model.btyd
    if btyd is not None:
        for field, name in btyd.model_dump().items():
            if name not in model_inputs:
                problems.append(f"model: btyd.{field} {name!r} is not a model feature")
    return problems
