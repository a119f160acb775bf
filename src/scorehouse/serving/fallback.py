"""The online fallback's model side: where the champion booster comes from, and scoring.

Scoring goes through `features.registry` only: a vector read from Redis is decoded to the
same float32 values batch scoring fed the booster, and a customer with no stored features
gets `no_history_vector()`; both are scored with `inplace_predict(missing=NaN)` on a dense
float32 matrix, as batch scoring does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import xgboost as xgb

from scorehouse.features.registry import no_history_vector
from scorehouse.serving import keys
from scorehouse.settings import Settings

log = logging.getLogger(__name__)


class ModelProvider(Protocol):
    """Where the fallback gets its model: `current()` returns (version, booster) or raises."""

    def current(self) -> tuple[str, xgb.Booster]: ...


@dataclass(frozen=True)
class StaticModel:
    """A fixed booster (tests, benchmarks, or a service pinned to one version)."""

    version: str
    booster: xgb.Booster

    def current(self) -> tuple[str, xgb.Booster]:
        return self.version, self.booster


class MlflowChampion:
    """The booster behind an MLflow alias, reloaded when the alias moves to another version.

    The alias is looked up at most every `check_interval_s`; loading goes through
    `scorehouse.training.registry.load_model` (native XGBoost, no Spark, cached per version).
    """

    def __init__(
        self, settings: Settings, alias: str = "champion", check_interval_s: float = 30.0
    ) -> None:
        self.settings = settings
        self.alias = alias
        self.check_interval_s = check_interval_s
        self._loaded: tuple[str, xgb.Booster] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def current(self) -> tuple[str, xgb.Booster]:
        now = time.monotonic()
        if self._loaded is not None and now - self._checked < self.check_interval_s:
            return self._loaded
        with self._lock:
            if self._loaded is None or now - self._checked >= self.check_interval_s:
                from scorehouse.training import registry

                version = registry.alias_version(self.settings, self.alias)
                if version is None:
                    raise LookupError(
                        f"no {self.alias!r} version of model {self.settings.model.name!r}"
                    )
                if self._loaded is None or self._loaded[0] != version:
                    model = registry.load_model(self.settings, alias=self.alias)
                    log.info("fallback model %s v%s loaded", model.name, model.version)
                    self._loaded = (model.version, model.booster)
                self._checked = now
        assert self._loaded is not None
        return self._loaded


def feature_matrix(
    raw_vectors: Sequence[bytes | str | None],
    n_features: int,
    no_history: np.ndarray | None = None,
) -> np.ndarray:
    """Model input rows for the misses: stored vector, or the no-history vector when absent.

    Rows are written into one preallocated C-contiguous float32 array, which
    `inplace_predict` reads without a copy; `no_history` saves rebuilding that vector from
    the registry on every miss.
    """
    out = np.empty((len(raw_vectors), n_features), dtype=np.float32)
    for n, raw in enumerate(raw_vectors):
        if raw is None:
            if no_history is None:
                no_history = no_history_vector()
            out[n] = no_history[0]
        else:
            out[n] = keys.decode_features(raw, n_features)[0]
    return out


def predict(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """Probabilities, exactly as batch scoring computes them."""
    return np.asarray(booster.inplace_predict(matrix, missing=np.nan), dtype=np.float64)
