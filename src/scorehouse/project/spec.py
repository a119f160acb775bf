"""The declarations of a scorehouse project: entity, sources, features, label, model.

A project is a folder of YAML files (see `scorehouse.project.load`); these models are
what the files parse into. They check the shape of each declaration; the checks that
need the whole project (names that must exist, cycles, windows) are in
`scorehouse.project.checks`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
ColumnType = Literal["int64", "int32", "double", "string", "bool", "date", "timestamp"]
KeyType = Literal["int64", "string"]
Agg = Literal[
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "active_days",
    "first",
    "last",
    "days_since_first",
    "days_since_last",
    "sum_squared_gaps",
]
# Aggregations whose state is kept from the first event on (no finite window).
LIFETIME_ONLY: frozenset[str] = frozenset(
    {"first", "days_since_first", "days_since_last", "sum_squared_gaps"}
)
# Aggregations that read a value (a column or an expression over the event row).
NEEDS_VALUE: frozenset[str] = frozenset({"sum", "mean", "min", "max", "first", "last"})
LIFETIME = "lifetime"


class _Decl(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str) -> str:
    if not NAME.match(value):
        raise ValueError(f"{value!r} is not a name: lower case letters, digits and _")
    return value


class ColumnContract(_Decl):
    """One column of a source file: its type and the rules a row must keep."""

    type: ColumnType
    nullable: bool = False
    min: float | None = None
    """Smallest value accepted (inclusive)."""
    greater_than: float | None = None
    """Values must be strictly above this."""
    max: float | None = None
    """Largest value accepted (inclusive)."""
    allowed: list[str] | None = None
    """The only values accepted (strings)."""
    not_in_future: bool = False
    """Dates and timestamps after the ingest time are refused."""
    description: str = ""


class Source(_Decl):
    """A raw table: events (append-only, partitioned by event day) or attributes
    (slowly changing: one row per version of an entity's attributes)."""

    kind: Literal["events", "attributes"]
    table: str | None = None
    """The raw table's name (default: raw_<source name>)."""
    key: str | None = None
    """The entity key column (default: the entity's key)."""
    timestamp: str | None = None
    """Events: the event time column (UTC); the event day `ds` is derived from it."""
    valid_from: str | None = None
    """Attributes: the first day a version is valid (until the next version's)."""
    known_from: str | None = None
    """Attributes: a date column before which the entity does not exist (e.g. sign-up)."""
    unique: list[str] = Field(default_factory=list)
    """Columns that identify a row; a second row with the same values is a duplicate."""
    columns: dict[str, ColumnContract]
    description: str = ""

    @model_validator(mode="after")
    def _kind_fields(self) -> Source:
        if self.kind == "events" and not self.timestamp:
            raise ValueError("an events source needs `timestamp` (its event time column)")
        if self.kind == "attributes" and not self.valid_from:
            raise ValueError("an attributes source needs `valid_from`")
        if self.kind == "events" and (self.valid_from or self.known_from):
            raise ValueError("valid_from and known_from belong to attributes sources")
        if self.kind == "attributes" and self.timestamp:
            raise ValueError("timestamp belongs to events sources")
        for name in self.columns:
            _check_name(name)
        return self


class Entity(_Decl):
    name: str
    key: str
    """The key column: the same name in every source."""
    type: KeyType = "int64"
    source: str
    """The attributes source whose versions say which entities exist on a day."""

    _name = field_validator("name", "key")(_check_name)


class Feature(_Decl):
    """One feature. Its kind follows from what it names:

    - `agg` + `source` (an events source): a windowed aggregation;
    - `source` (an attributes source) without `agg`: an attribute as of the date;
    - neither: a derived feature, `expr` over other features (and `ds`).
    `windows: [...]` declares one feature per window; `{window}` in the name and the
    description is replaced by the window's days.
    """

    name: str
    description: str = ""
    no_history: float | None
    """The value for an entity without events (null: missing, XGBoost's NaN)."""
    type: Literal["int", "double"] | None = None
    """int or double (default: what the aggregation gives)."""
    min: float | None = None
    """Checked on every build before commit (default: 0 for counts and sums, else none)."""
    max: float | None = None
    internal: bool = False
    """Computed and stored but not a model input (a helper of derived features)."""
    encoding: Literal["dictionary", "plain"] = "dictionary"
    """plain: written without a Parquet dictionary (for values nearly unique per entity)."""
    source: str | None = None
    agg: Agg | None = None
    value: str | None = None
    """Aggregations: the column or SQL expression over the event row to aggregate."""
    filter: str | None = None
    """Aggregations: a SQL condition over the event row (and `ds`, its day)."""
    window: int | Literal["lifetime"] | None = None
    windows: list[int | Literal["lifetime"]] | None = None
    scale: int | None = Field(default=None, ge=1)
    """sum/mean: values are summed as integers of 1/scale (e.g. 100: cents), so window
    sums merge exactly day by day; the feature is the sum divided by scale."""
    column: str | None = None
    """Attributes: the attribute column."""
    vocabulary: list[str] | None = None
    """Attributes: categorical codes 0, 1, ... in this order."""
    unknown: int = -1
    """Attributes with a vocabulary: the code of a value outside it (and of null)."""
    expr: str | None = None
    """Derived features: SQL over other features and `ds`. Attributes: SQL over the
    attribute columns and `ds`."""

    @field_validator("window", "windows", mode="before")
    @classmethod
    def _days(cls, value: object) -> object:
        def one(v: object) -> object:
            if isinstance(v, str) and re.fullmatch(r"\d+d", v):
                return int(v[:-1])
            return v

        return [one(v) for v in value] if isinstance(value, list) else one(value)

    @model_validator(mode="after")
    def _shape(self) -> Feature:
        if self.windows is not None and self.window is not None:
            raise ValueError("give window or windows, not both")
        if self.windows is not None and "{window}" not in self.name:
            raise ValueError("a feature with `windows` needs {window} in its name")
        for w in self.all_windows:
            if isinstance(w, int) and not 1 <= w <= 3650:
                raise ValueError(f"window {w}: between 1 and 3650 days, or lifetime")
        if self.agg is not None:
            if self.source is None:
                raise ValueError("an aggregation needs `source` (an events source)")
            if self.window is None and self.windows is None:
                raise ValueError("an aggregation needs `window` (days or lifetime)")
            if self.agg in NEEDS_VALUE and self.value is None:
                raise ValueError(f"agg {self.agg} needs `value` (a column or expression)")
            if self.agg not in NEEDS_VALUE and self.value is not None:
                raise ValueError(f"agg {self.agg} takes no `value`")
            if self.scale is not None and self.agg not in ("sum", "mean"):
                raise ValueError("`scale` applies to sum and mean")
            if self.agg in LIFETIME_ONLY and any(w != LIFETIME for w in self.all_windows):
                raise ValueError(
                    f"agg {self.agg} is kept over the lifetime only (it does not merge "
                    "over a sliding window): window: lifetime"
                )
            for field in ("column", "vocabulary", "expr"):
                if getattr(self, field) is not None:
                    raise ValueError(f"`{field}` does not apply to an aggregation")
        elif self.source is not None:
            if (self.column is None) == (self.expr is None):
                raise ValueError("an attribute feature needs `column` or `expr` (one of them)")
            if self.vocabulary is not None and self.column is None:
                raise ValueError("`vocabulary` needs `column`")
            for field in ("value", "filter", "window", "windows", "scale"):
                if getattr(self, field) is not None:
                    raise ValueError(f"`{field}` does not apply to an attribute feature")
        else:
            if self.expr is None:
                raise ValueError(
                    "a feature needs `agg` + `source` (aggregation), `source` (attribute) "
                    "or `expr` (derived)"
                )
            for field in ("value", "filter", "window", "windows", "scale", "column", "vocabulary"):
                if getattr(self, field) is not None:
                    raise ValueError(f"`{field}` does not apply to a derived feature")
        return self

    @property
    def all_windows(self) -> list[int | Literal["lifetime"]]:
        if self.windows is not None:
            return list(self.windows)
        return [] if self.window is None else [self.window]

    @property
    def kind(self) -> Literal["aggregation", "attribute", "derived"]:
        if self.agg is not None:
            return "aggregation"
        return "attribute" if self.source is not None else "derived"

    def expand(self) -> list[Feature]:
        """One feature per window of `windows` (the feature itself otherwise)."""
        if self.windows is None:
            return [self]
        out = []
        for w in self.windows:
            label = str(w)
            out.append(
                self.model_copy(
                    update={
                        "name": self.name.replace("{window}", label),
                        "description": self.description.replace("{window}", label),
                        "windows": None,
                        "window": w,
                    }
                )
            )
        return out


class Label(_Decl):
    """What is predicted, over the days (as_of, as_of + horizon] of `source` (its events
    matching `filter`): without `value`, any such event; with `value`, its sum over them
    above `greater_than` (e.g. spend over 100)."""

    source: str
    horizon_days: int = Field(ge=1, le=730)
    filter: str | None = None
    value: str | None = None
    """A column or SQL expression of the event row, summed over the horizon."""
    scale: int | None = Field(default=None, ge=1)
    """As for a sum feature: summed as whole units of 1/scale (needed unless `value` is an
    integer column)."""
    greater_than: float = Field(default=0, ge=0)
    """The label is 1 when the events (or the sum of `value`) exceed this."""
    description: str = ""

    @model_validator(mode="after")
    def _value_shape(self) -> Label:
        if self.scale is not None and self.value is None:
            raise ValueError("label: `scale` applies to a `value`")
        return self


class BtydDecl(_Decl):
    """The model features a buy-till-you-die (BG/NBD) baseline reads, all in days as of the
    row's as-of date; used when pymc-marketing (the `btyd` extra) is installed."""

    purchase_days: str
    """Days with at least one purchase, the first included (repeat purchases: this - 1)."""
    days_since_first: str
    """Days from the first purchase day to the as-of date (missing: no purchase yet)."""
    days_since_last: str
    """Days from the last purchase day to the as-of date."""


class ModelDecl(_Decl):
    name: str | None = None
    """The registered model name (default: the project's name)."""
    baseline_feature: str | None = None
    """The feature the gate's baseline ranks entities by (a model feature, e.g. the days
    since the last event of the label's kind); a new model must beat it out of time."""
    baseline_higher_is_likelier: bool = False
    """False: lower values of the baseline feature rank as likelier (recency); True: higher."""
    btyd: BtydDecl | None = None
    """A BG/NBD baseline for purchase-like labels; the gate asks a new model to beat it too."""
    params: dict[str, float | int | str] = Field(default_factory=dict)
    """XGBoost parameters over the settings' defaults."""


class Project(_Decl):
    name: str
    description: str = ""
    entity: Entity
    sources: dict[str, Source]
    features: list[Annotated[Feature, Field()]]
    label: Label | None = None
    model: ModelDecl = Field(default_factory=ModelDecl)
    owner: str = ""

    _name = field_validator("name")(_check_name)
