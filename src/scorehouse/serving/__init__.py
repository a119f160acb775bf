"""Serving predictions from Redis, what apps import: key contract, online client, fallback,
HTTP service, connection, generation info. Publishing into Redis is `scorehouse.publish`.

Public entry points: `Client` and `Score` (lookups), `ModelProvider`/`MlflowChampion`/
`StaticModel` (the fallback's model), `create_app` (HTTP). Names are resolved on first use:
the publish's Spark tasks import this package (keys, connection) on every executor, and
importing the client would pull in xgboost and scikit-learn there (seconds per Python
worker on a busy host) for nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scorehouse.serving.client import CircuitBreaker, Client, Score
    from scorehouse.serving.fallback import MlflowChampion, ModelProvider, StaticModel

__all__ = [
    "CircuitBreaker",
    "Client",
    "MlflowChampion",
    "ModelProvider",
    "Score",
    "StaticModel",
]

_LAZY = {
    "CircuitBreaker": "scorehouse.serving.client",
    "Client": "scorehouse.serving.client",
    "Score": "scorehouse.serving.client",
    "MlflowChampion": "scorehouse.serving.fallback",
    "ModelProvider": "scorehouse.serving.fallback",
    "StaticModel": "scorehouse.serving.fallback",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
