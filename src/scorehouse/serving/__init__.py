"""Serving predictions from Redis: key contract, loader, online client, fallback, HTTP service.

Public entry points: `publish`/`rollback` (loader), `Client` and `Score` (lookups),
`ModelProvider`/`MlflowChampion`/`StaticModel` (the fallback's model), `create_app` (HTTP).
Importing this package does not import Spark; `publish` and `rollback` load it lazily.
"""

from __future__ import annotations

from typing import Any

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


def publish(*args: Any, **kwargs: Any) -> Any:
    """See `scorehouse.serving.loader.publish`."""
    from scorehouse.serving.loader import publish as _publish

    return _publish(*args, **kwargs)


def rollback(*args: Any, **kwargs: Any) -> Any:
    """See `scorehouse.serving.loader.rollback`."""
    from scorehouse.serving.loader import rollback as _rollback

    return _rollback(*args, **kwargs)
