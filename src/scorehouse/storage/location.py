"""Where the warehouse and its tables are on disk, from settings alone (no Spark)."""

from __future__ import annotations

from pathlib import Path

from scorehouse.settings import Settings


def warehouse_root(root: str | Path) -> Path:
    """The local folder of a warehouse root (`file://` allowed; other schemes are refused)."""
    text = str(root).removeprefix("file://")
    if "://" in text:
        raise ValueError(f"warehouse root {root!r}: only local paths are supported")
    return Path(text).expanduser().resolve()


def table_uri(settings: Settings, table: str) -> str:
    """The folder of `table` under `settings.warehouse`, as Warehouse.uri gives it."""
    return str(warehouse_root(settings.warehouse) / table)
