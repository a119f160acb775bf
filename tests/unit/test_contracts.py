"""The pandera schemas generated from source declarations: real pandera schemas, the raw
tables' schemas derived from them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandera.polars as pa
import polars as pl
import pytest

from scorehouse.data.contracts import (
    ALLOWED,
    BEFORE_KNOWN_FROM,
    GREATER_THAN,
    MAX,
    NOT_IN_FUTURE,
    contract_for,
    pandera_schema,
)
from scorehouse.errors import ValidationError
from scorehouse.project.load import load_project
from scorehouse.schemas import RAW_CUSTOMERS, RAW_TRANSACTIONS

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def failures(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> list[tuple[int, str | None, str]]:
    """(row index, column, check name) of every failure pandera reports."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        out = []
        for case in err.failure_cases.iter_rows(named=True):
            column, number = case["column"], case["check_number"]
            if case["schema_context"] == "DataFrameSchema":  # a row rule: no one column
                column = None
            if number is None:
                name = case["check"]
            elif column is None:
                name = schema.checks[number].name
            else:
                name = schema.columns[column].checks[number].name
            out.append((case["index"], column, name))
        return sorted(out, key=lambda x: (x[0], str(x[1]), x[2]))
    return []


def test_declared_rules_become_named_pandera_checks() -> None:
    schema = pandera_schema(load_project(), "transactions", now=NOW)
    assert list(schema.columns) == [
        "transaction_id",
        "customer_id",
        "event_time",
        "quantity",
        "amount",
    ]
    quantity = schema.columns["quantity"]
    assert quantity.dtype.type == pl.Int32 and not quantity.nullable
    assert [(c.name, c.statistics) for c in quantity.checks] == [
        (GREATER_THAN, {"min_value": 0.0}),
        (MAX, {"max_value": 1_000_000.0}),
    ]
    assert [(c.name, c.statistics) for c in schema.columns["event_time"].checks] == [
        (NOT_IN_FUTURE, {"max_value": NOW})
    ]
    assert schema.unique == ["transaction_id"]


def test_the_schema_validates_a_polars_frame() -> None:
    schema = pandera_schema(load_project(), "transactions", now=NOW)
    frame = pl.DataFrame(
        {
            "transaction_id": ["a", "b", "c", "a", None],
            "customer_id": [1, 2, 3, 4, 5],
            "event_time": [datetime(2026, 5, 1, tzinfo=UTC)] * 2
            + [datetime(2026, 7, 1, tzinfo=UTC)]
            + [datetime(2026, 5, 1, tzinfo=UTC)] * 2,
            "quantity": pl.Series([1, 0, 2, 3, 2_000_000], dtype=pl.Int32),
            "amount": [1.0, 2.0, 3.0, 4.0, -1.0],
        },
        schema_overrides={"event_time": pl.Datetime("us", "UTC")},
    )
    assert failures(schema, frame) == [
        (0, None, "multiple_fields_uniqueness"),
        (1, "quantity", GREATER_THAN),
        (2, "event_time", NOT_IN_FUTURE),
        (3, None, "multiple_fields_uniqueness"),
        (4, "amount", GREATER_THAN),
        (4, "quantity", MAX),
        (4, "transaction_id", "not_nullable"),
    ]
    assert failures(schema, frame.slice(0, 1)) == []


def test_attributes_check_allowed_values_and_versions_before_known_from() -> None:
    schema = pandera_schema(load_project(), "customers", now=NOW)
    frame = pl.DataFrame(
        {
            "customer_id": [1, 1, 2],
            "valid_from": [date(2025, 1, 1), date(2024, 12, 31), date(2025, 1, 1)],
            "signup_date": [date(2025, 1, 1)] * 3,
            "segment": ["smb", "smb", "retail"],
            "region": ["north", None, "north"],
            "email_opt_in": [True, None, False],
        }
    )
    assert failures(schema, frame) == [(1, None, BEFORE_KNOWN_FROM), (2, "segment", ALLOWED)]
    assert schema.unique == ["customer_id", "valid_from"]


def test_raw_table_schemas_are_derived_from_the_declarations() -> None:
    project = load_project()
    assert contract_for(project, "transactions").table_schema == RAW_TRANSACTIONS
    assert contract_for(project, "customers").table_schema == RAW_CUSTOMERS
    assert contract_for(project, "customers").defaults == {"valid_from": "signup_date"}


def test_an_undeclared_source_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match=r"unknown source 'orders'.*transactions, customers"):
        contract_for(load_project(), "orders")
