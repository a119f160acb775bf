"""The model's features, as the project declares them, and the one feature-vector builder.

Batch scoring, training and the online fallback all turn feature values into model
input through `to_matrix`, so a missing value is NaN in a dense float32 matrix
everywhere: XGBoost treats 0 and missing differently between sparse and dense input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scorehouse.features.compile import FeatureSql
from scorehouse.project.load import features_of, load_project, locate
from scorehouse.schemas import EntityKey


@dataclass(frozen=True)
class FeatureDef:
    name: str
    type: Literal["int", "double"]
    window: str
    no_history: float | None
    source: str
    description: str
    owner: str
    min_value: float | None = None
    max_value: float | None = None
    encoding: Literal["dictionary", "plain"] = "dictionary"
    kind: str = "aggregation"
    definition: str = ""


@cache
def _feature_sql(folder: Path) -> FeatureSql:
    return FeatureSql(load_project(folder))


def feature_sql(project_dir: str | Path | None = None) -> FeatureSql:
    """The compiled statements of the project (see `scorehouse.project.load.locate`)."""
    return _feature_sql(locate(project_dir))


def definition(sql: FeatureSql, f: Any) -> str:
    """One line saying how a feature is computed (`features list`)."""
    if f.kind == "aggregation":
        what = f"{f.agg}({f.value})" if f.value else f.agg
        where = f" where {f.filter}" if f.filter else ""
        scale = f" (in 1/{f.scale})" if f.scale else ""
        return f"{what}{scale} of {f.source}{where} over {f.window}"
    if f.kind == "attribute":
        return (
            f"{f.source}.{f.column}" + (f" coded {f.vocabulary}" if f.vocabulary else "")
            if f.column
            else f"{f.expr} on {f.source}"
        )
    return str(f.expr)


@cache
def _registry(folder: Path) -> tuple[FeatureDef, ...]:
    sql = _feature_sql(folder)
    project = sql.project
    out = []
    for f in features_of(project):
        if f.internal:
            continue
        window = "as_of" if f.kind == "attribute" else str(f.window or "derived")
        out.append(
            FeatureDef(
                name=f.name,
                type=sql.feature_type(f) or "double",  # type: ignore[arg-type]
                window=window,
                no_history=f.no_history,
                source=f.source or "derived",
                description=f.description,
                owner=project.owner,
                min_value=f.min,
                max_value=f.max,
                encoding=f.encoding,
                kind=f.kind,
                definition=definition(sql, f),
            )
        )
    return tuple(out)


def load_registry(project_dir: str | Path | None = None) -> tuple[FeatureDef, ...]:
    """The model's features (internal ones excluded) in model-input order."""
    return _registry(locate(project_dir))


def entity_key(project_dir: str | Path | None = None) -> EntityKey:
    """The project's entity key column (name, int64 | string)."""
    entity = feature_sql(project_dir).project.entity
    return EntityKey(entity.key, entity.type)


def plain_encoded_columns(project_dir: str | Path | None = None) -> tuple[str, ...]:
    """Columns of the features table written without dictionary encoding."""
    return tuple(feature_sql(project_dir).plain_columns())


def feature_names() -> list[str]:
    return [f.name for f in load_registry()]


def no_history_vector() -> np.ndarray:
    """Model input for an entity with no features at all (a brand-new customer)."""
    return np.array(
        [np.nan if f.no_history is None else f.no_history for f in load_registry()],
        dtype=np.float32,
    ).reshape(1, -1)


def to_matrix(columns: Mapping[str, Any], names: Sequence[str] | None = None) -> np.ndarray:
    """Dense float32 matrix (rows x features) from column arrays; None/null → NaN.

    `columns` maps feature name → a 1-d array-like (numpy, pandas Series, pyarrow array).
    """
    names = list(names or feature_names())
    out = []
    for name in names:
        column = columns[name]
        if hasattr(column, "to_numpy") and not isinstance(column, np.ndarray):
            try:  # pyarrow arrays: nulls must become NaN, not an error
                column = column.to_numpy(zero_copy_only=False)
            except TypeError:
                column = column.to_numpy()
        out.append(np.asarray(column, dtype=np.float64).astype(np.float32, copy=False))
    if not out:
        return np.empty((0, 0), dtype=np.float32)
    return np.column_stack(out)


def vector_from_values(
    values: Mapping[str, float | None], names: Sequence[str] | None = None
) -> np.ndarray:
    """One row of model input from a name → value mapping (the online path)."""
    names = list(names or feature_names())
    row = [np.nan if values.get(n) is None else float(values[n]) for n in names]  # type: ignore[arg-type]
    return np.array(row, dtype=np.float32).reshape(1, -1)
