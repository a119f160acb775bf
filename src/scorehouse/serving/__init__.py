"""Serving predictions from Redis: key contract, loader, online client, fallback, HTTP service.

Public entry points: `publish`/`rollback` (loader), `Client` and `Score` (lookups),
`ModelProvider`/`MlflowChampion`/`StaticModel` (the fallback's model), `create_app` (HTTP).
Names are resolved on first use: the loader's Spark tasks import this package on every
executor, and importing the client would pull in xgboost and scikit-learn there (seconds
per Python worker on a busy host) for nothing.
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
    "publish",
    "rollback",
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


def publish(*args: Any, **kwargs: Any) -> Any:
    """See `scorehouse.serving.loader.publish`."""
    from scorehouse.serving.loader import publish as _publish

    return _publish(*args, **kwargs)


def rollback(*args: Any, **kwargs: Any) -> Any:
    """See `scorehouse.serving.loader.rollback`."""
    from scorehouse.serving.loader import rollback as _rollback

    return _rollback(*args, **kwargs)
