"""The feature registry (sql/features/registry.yaml) and the one feature-vector builder.

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
import yaml

from scorehouse.paths import SQL_DIR

REGISTRY_FILE = SQL_DIR / "features" / "registry.yaml"


@dataclass(frozen=True)
class FeatureDef:
    name: str
    type: Literal["int", "double"]
    window: str
    no_history: float | None
    source: str
    description: str
    owner: str
    min_value: float | None = 0
    max_value: float | None = None
    encoding: Literal["dictionary", "plain"] = "dictionary"


@cache
def load_registry(path: Path = REGISTRY_FILE) -> tuple[FeatureDef, ...]:
    """The public features in model-input order."""
    data = yaml.safe_load(path.read_text())
    owner = data.get("owner", "")
    features = tuple(
        FeatureDef(
            name=item["name"],
            type=item["type"],
            window=str(item["window"]),
            no_history=item["no_history"],
            source=item["source"],
            description=item["description"],
            owner=item.get("owner", owner),
            min_value=item.get("min", 0),
            max_value=item.get("max"),
            encoding=item.get("encoding", "dictionary"),
        )
        for item in data["features"]
    )
    for f in features:
        if f.encoding not in ("dictionary", "plain"):
            raise ValueError(f"{path}: {f.name}: encoding must be dictionary or plain")
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate feature names")
    return features


@cache
def plain_encoded_columns(path: Path = REGISTRY_FILE) -> tuple[str, ...]:
    """Columns of the features table written without dictionary encoding (registry.yaml)."""
    table_columns = yaml.safe_load(path.read_text()).get("plain_encoded_columns", [])
    return (*table_columns, *(f.name for f in load_registry(path) if f.encoding == "plain"))


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
