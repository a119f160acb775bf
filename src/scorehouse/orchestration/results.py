"""The result a job hands back to its flow step: a JSON object written with --result-json."""

from __future__ import annotations

import contextlib
import json
import os
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from scorehouse.errors import ValidationError


def jsonable(value: Any) -> Any:
    """Plain JSON values: dataclasses → dicts, dates → ISO text, tuples → lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def write_result(path: str | Path, result: Mapping[str, Any]) -> None:
    """Write atomically, so a reader never sees half a file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(jsonable(result), sort_keys=True, default=str))
    os.replace(tmp, target)


def read_result(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a job result must be a JSON object")
    return data


@contextlib.contextmanager
def job_result(path: str | None) -> Iterator[dict[str, Any]]:
    """Collects a job's result and writes it to `path` (when given) on the way out.

    On failure the file says what failed and whether it was bad data (not worth a retry),
    and the exception goes on, so the job still exits non-zero.
    """
    result: dict[str, Any] = {}
    try:
        yield result
    except BaseException as exc:
        if path:
            write_result(
                path,
                {
                    "error": f"{type(exc).__name__}: {exc}",
                    "error_type": type(exc).__name__,
                    "data_error": isinstance(exc, ValidationError),
                    "traceback": traceback.format_exc(limit=20),
                },
            )
        raise
    if path:
        write_result(path, result)
