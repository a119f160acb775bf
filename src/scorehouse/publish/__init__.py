"""Publishing predictions into Redis, packaged by where each part runs.

- `plan`: the driver's side of the load (content, server checks, task shares, `LoadSpec`);
- `writer`: what each Spark load task runs (RESP writes, rate limit, latency guard);
- `generations`: the pointer, the generations' registry and removal, the publish lock;
- `sequence`: `publish` (one `PublishRequest`), `publish_date`, `verify`.

Names are resolved on first use: the load tasks import this package on every executor
(to unpickle a `LoadSpec`), and the publish sequence's imports are the driver's.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scorehouse.publish.generations import cleanup, live_generation, rollback
    from scorehouse.publish.sequence import PublishRequest, publish, publish_date

__all__ = ["PublishRequest", "cleanup", "live_generation", "publish", "publish_date", "rollback"]

_LAZY = {
    "PublishRequest": "scorehouse.publish.sequence",
    "publish": "scorehouse.publish.sequence",
    "publish_date": "scorehouse.publish.sequence",
    "cleanup": "scorehouse.publish.generations",
    "live_generation": "scorehouse.publish.generations",
    "rollback": "scorehouse.publish.generations",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
