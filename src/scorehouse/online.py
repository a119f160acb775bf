"""The online lookup API for Python apps: `from scorehouse.online import Client`.

`Client(settings).get(entity_id)` returns a `Score` (score, source cache / fallback /
default, model version, as-of date, staleness) and never raises for a dependency fault, only
`InvalidEntityId` for an id that names no entity; `get_many` pipelines a batch. A miss is
scored by the MLflow champion, as the HTTP service and `scorehouse lookup` score it. Apps in
other languages follow docs/redis-keys.md instead (its "On a miss" says what to do then).
Importing this module loads the fallback's model code (xgboost), which the Spark-side
`scorehouse.serving` package keeps lazy.
"""

from __future__ import annotations

from scorehouse.serving.client import CircuitBreaker, Client, Score
from scorehouse.serving.fallback import MlflowChampion, ModelProvider, StaticModel
from scorehouse.serving.keys import InvalidEntityId

__all__ = [
    "CircuitBreaker",
    "Client",
    "InvalidEntityId",
    "MlflowChampion",
    "ModelProvider",
    "Score",
    "StaticModel",
]
