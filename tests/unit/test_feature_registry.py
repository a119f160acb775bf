"""The feature registry's column encodings: where they come from and what is rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorehouse.features.registry import load_registry, plain_encoded_columns

ENTRY = "{name: %s, type: double, window: 7d, no_history: null, source: s, description: d%s}"


def _registry(tmp_path: Path, *entries: str, table_columns: str = "") -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(
        f"owner: team\n{table_columns}features:\n" + "".join(f"  - {e}\n" for e in entries)
    )
    return path


def test_plain_columns_are_the_table_columns_then_the_plain_features(tmp_path: Path) -> None:
    path = _registry(
        tmp_path,
        ENTRY % ("spend", ", encoding: plain"),
        ENTRY % ("count", ""),
        ENTRY % ("ratio", ", encoding: dictionary"),
        table_columns="plain_encoded_columns: [customer_id]\n",
    )
    assert plain_encoded_columns(path) == ("customer_id", "spend")
    assert [f.encoding for f in load_registry(path)] == ["plain", "dictionary", "dictionary"]


def test_an_unknown_encoding_is_rejected_naming_the_feature(tmp_path: Path) -> None:
    path = _registry(tmp_path, ENTRY % ("spend", ", encoding: delta"))
    with pytest.raises(ValueError, match=r"registry.yaml: spend: encoding must be"):
        load_registry(path)


def test_the_shipped_registry_declares_the_key_and_the_nearly_unique_amounts() -> None:
    plain = plain_encoded_columns()
    assert plain[0] == "customer_id" and "avg_ticket_90d" in plain and "tenure_days" not in plain
