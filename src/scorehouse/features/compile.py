"""Derive the feature SQL from a project's declarations.

Every aggregation decomposes into mergeable daily partials, one rollup row per entity
and active day of an events source (count, integer sum, min, max, first/last value by
event time). A feature's *state* is what the features table keeps per entity and day
so that the next day costs one day of rollups:

- additive states (count, sum, active days) over a w-day window: add the new day,
  subtract the day leaving the window (exact: the partials are integers);
- min/max over a finite window do not merge by subtraction: the next day recomputes
  them from the window's rollups (it reads w days of that source);
- first/last day and value, and the sum of squared gaps between active days, are kept
  from the first event on (lifetime).

Four statements come out, for any declaration: the daily rollups of a source, the
entity space of a day (the attribute version valid on it), the range build (every
state from the rollups in one pass of window functions: the definition of the
point-in-time rule) and the next-day build (advances a state by one day; tested to
agree with the range build row for row). A fifth adds the public features: finishing
expressions of the aggregations, attribute encodings, and derived expressions.

The point-in-time rule: the row (entity, ds) aggregates exactly the events whose event
day is <= ds (UTC); a w-day window covers the days ds-w+1 .. ds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from scorehouse.project.checks import derived_order
from scorehouse.project.spec import LIFETIME, Feature, Project, Source

PartialKind = Literal["count", "sum", "min", "max", "first", "last"]
StateKind = Literal[
    "additive", "min", "max", "first_ds", "last_ds", "first_value", "last_value", "gapsq"
]


@dataclass(frozen=True)
class Partial:
    """One column of a source's daily rollup table."""

    source: str
    kind: PartialKind
    value: str | None
    filter: str | None
    scale: int | None
    name: str

    def sql(self, timestamp: str) -> str:
        cond = f"({self.filter})" if self.filter else None
        value = self.value if self.scale is None else f"ROUND(({self.value}) * {self.scale})"

        def only(x: str) -> str:
            return f"IF({cond}, {x}, NULL)" if cond else x

        if self.kind == "count":
            inner = f"COUNT_IF({cond})" if cond else "COUNT(*)"
            return f"CAST({inner} AS BIGINT)"
        if self.kind == "sum":
            cast = "BIGINT" if self.scale is not None else None
            total = f"SUM({only(f'({value})')})"
            return f"CAST({total} AS {cast})" if cast else total
        if self.kind in ("min", "max"):
            return f"{self.kind.upper()}({only(f'({value})')})"
        by = "MIN_BY" if self.kind == "first" else "MAX_BY"
        # ordered by event time, then value: ties at one instant resolve the same way
        # in every build
        order = f"STRUCT({timestamp}, ({value}))"
        return f"{by}({only(f'({value})')}, {only(order)})"


@dataclass(frozen=True)
class State:
    """One state column of the features table."""

    name: str
    kind: StateKind
    source: str
    window: int | None  # None: lifetime
    partial: Partial  # the rollup column it advances from
    indicator: bool = False  # additive over active days: 1 when the partial is > 0
    activity: Partial | None = None  # the count partial saying the day is active
    # first_value, gapsq: the state holding the last active day before the new one
    last_ds: str | None = None


def _digest(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:8]


def _window(feature: Feature) -> int | None:
    return None if feature.window == LIFETIME else int(feature.window)  # type: ignore[arg-type]


class FeatureSql:
    """The statements of one project; build with `FeatureSql(project)`."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.features = [one for f in project.features for one in f.expand()]
        self.key = project.entity.key
        self.entity_source: Source = project.sources[project.entity.source]
        self._partials: dict[tuple[object, ...], Partial] = {}
        self._states: dict[tuple[object, ...], State] = {}
        self.finish: dict[str, str] = {}  # feature name -> expression over the state
        for feature in self.features:
            if feature.kind == "aggregation":
                self.finish[feature.name] = self._aggregation(feature)
        _ = self.label_partial  # a rollup column of its own (before the partials are listed)

    # --- declarations -> partials and states --------------------------------------

    def _partial(
        self, source: str, kind: PartialKind, value: str | None, filt: str | None, scale: int | None
    ) -> Partial:
        sig = (source, kind, value, filt, scale)
        if sig not in self._partials:
            self._partials[sig] = Partial(
                source, kind, value, filt, scale, f"{kind}_{_digest(*sig)}"
            )
        return self._partials[sig]

    def _state(
        self,
        name_hint: str,
        kind: StateKind,
        partial: Partial,
        window: int | None,
        **extra: object,
    ) -> State:
        indicator = bool(extra.get("indicator", False))
        sig = (kind, partial.name, window, indicator)
        if sig not in self._states:
            activity = self._partial(partial.source, "count", None, partial.filter, None)
            last_ds = None
            if kind in ("gapsq", "first_value"):
                last_ds = self._state(f"{name_hint}_last", "last_ds", activity, None).name
            self._states[sig] = State(
                name_hint, kind, partial.source, window, partial, indicator, activity, last_ds
            )
        return self._states[sig]

    def _aggregation(self, f: Feature) -> str:
        src, w, filt, scale = f.source or "", _window(f), f.filter, f.scale
        hidden = f"__{f.name}"
        # a state may carry the feature's own name only where the feature is the state
        # as it is; a cast to double makes a new column, which must not share the name
        own = hidden if self.feature_type(f) == "double" else f.name
        count = self._partial(src, "count", None, filt, None)
        if f.agg == "count":
            return self._state(own, "additive", count, w).name
        if f.agg == "active_days":
            return self._state(own, "additive", count, w, indicator=True).name
        if f.agg in ("sum", "mean"):
            total = self._state(
                hidden if f.agg == "mean" or scale else own,
                "additive",
                self._partial(src, "sum", f.value, filt, scale),
                w,
            ).name
            if f.agg == "sum":
                return total if scale is None else f"{total} / {scale}D"
            n = self._state(f"{hidden}_n", "additive", count, w).name
            return f"IF({n} > 0, {total} / ({scale or 1}D * {n}), NULL)"
        if f.agg in ("min", "max"):
            partial = self._partial(src, f.agg, f.value, filt, None)
            return self._state(own, f.agg, partial, w).name
        if f.agg in ("first", "last"):
            partial = self._partial(src, f.agg, f.value, filt, None)
            value = self._state(hidden, f"{f.agg}_value", partial, None).name  # type: ignore[arg-type]
            if f.agg == "first" or w is None:
                return value
            day = self._state(f"{hidden}_day", "last_ds", count, None).name
            return f"IF(DATEDIFF(ds, {day}) < {w}, {value}, NULL)"
        if f.agg in ("days_since_first", "days_since_last"):
            kind: StateKind = "first_ds" if f.agg == "days_since_first" else "last_ds"
            return f"DATEDIFF(ds, {self._state(hidden, kind, count, None).name})"
        if f.agg == "sum_squared_gaps":
            return self._state(own, "gapsq", count, None).name
        raise AssertionError(f.agg)

    # --- what the tables hold ----------------------------------------------------

    def raw_table(self, source: str) -> str:
        """The raw table of a source: its declared `table`, else raw_<source>."""
        return self.project.sources[source].table or f"raw_{source}"

    def rollup_table(self, source: str) -> str:
        """The daily rollups of an events source (kept for the whole history)."""
        return f"daily_{source}"

    @cached_property
    def label_partial(self) -> Partial | None:
        """The rollup column the label sums over its horizon: the day's matching events,
        or the day's sum of the label's `value`."""
        label = self.project.label
        if label is None:
            return None
        if label.value is not None:
            return self._partial(label.source, "sum", label.value, label.filter, label.scale)
        return self._partial(label.source, "count", None, label.filter, None)

    @cached_property
    def states(self) -> list[State]:
        return list(self._states.values())

    @cached_property
    def event_sources(self) -> list[str]:
        """Events sources some feature aggregates, in declaration order."""
        used = {s.source for s in self.states}
        return [name for name in self.project.sources if name in used]

    @cached_property
    def rollup_sources(self) -> list[str]:
        """Events sources with daily rollups: those of the features and the label's."""
        used = {p.source for p in self._partials.values()}
        return [name for name in self.project.sources if name in used]

    def partials(self, source: str) -> list[Partial]:
        return sorted(
            (p for p in self._partials.values() if p.source == source), key=lambda p: p.name
        )

    @cached_property
    def attributes(self) -> list[str]:
        """The entity source's columns carried on every row (besides key and valid_from)."""
        skip = {self.key, self.entity_source.valid_from}
        return [c for c in self.entity_source.columns if c not in skip]

    def leaving_days(self, source: str) -> list[int]:
        """Offsets (days before ds) of the rollups the next-day build reads for `source`:
        0 (the new day), each additive window's leaving day, every day of a min/max window."""
        offsets = {0}
        for s in self.states:
            if s.source != source or s.window is None:
                continue
            if s.kind == "additive":
                offsets.add(s.window)
            elif s.kind in ("min", "max"):
                offsets |= set(range(s.window))
        return sorted(offsets)

    @cached_property
    def fingerprint(self) -> str:
        """Changes whenever the rollup or state definitions change (tables must be rebuilt)."""
        parts = sorted(repr(p) for p in self._partials.values())
        parts += sorted(repr(s) for s in self.states)
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]

    # --- statements ---------------------------------------------------------------

    def daily_sql(self, source: str) -> str:
        """Rollups of ${events} (one source) for the days of ${days}."""
        ts = self.project.sources[source].timestamp or "ds"
        key = self.project.sources[source].key or self.key
        columns = ",\n  ".join(f"{p.sql(ts)} AS {p.name}" for p in self.partials(source))
        # the day list is tiny and its size unknown to Spark: broadcast it, or Spark
        # shuffles the raw events instead; a semi join keeps `ds` unambiguous in filters
        return (
            f"SELECT /*+ BROADCAST(d) */\n  {key} AS {self.key},\n  ds,\n  {columns}\n"
            f"FROM ${{events}} t\nLEFT SEMI JOIN ${{days}} d ON t.ds = d.ds\n"
            f"GROUP BY {key}, ds"
        )

    def entities_sql(self) -> str:
        """Every entity known on each day of ${days}, with the attribute version valid on it."""
        src = self.entity_source
        attrs = ", ".join(f"v.{a}" for a in self.attributes)
        known = f"\n AND v.{src.known_from} <= d.ds" if src.known_from else ""
        return f"""WITH versions AS (
  SELECT {self.key}, {", ".join(self.attributes)}, {src.valid_from} AS valid_from,
         LEAD({src.valid_from}) OVER (PARTITION BY {self.key} ORDER BY {src.valid_from}) AS valid_to
  FROM ${{attributes}}
)
SELECT /*+ BROADCAST(d) */ v.{self.key}, d.ds, {attrs}
FROM versions v
JOIN ${{days}} d
  ON v.valid_from <= d.ds
 AND (v.valid_to IS NULL OR d.ds < v.valid_to){known}"""

    def _range_expr(self, s: State) -> str:
        active = f"IF({s.activity.name} > 0, ds, NULL)" if s.activity else "ds"
        frame = f"w{s.window}" if s.window is not None else "lifetime"
        p = s.partial.name
        if s.kind == "additive":
            x = f"IF({p} > 0, 1, 0)" if s.indicator else p
            return f"CAST(COALESCE(SUM({x}) OVER {frame}, 0) AS BIGINT)"
        if s.kind in ("min", "max"):
            return f"{s.kind.upper()}({p}) OVER {frame}"
        if s.kind == "first_ds":
            return f"MIN({active}) OVER lifetime"
        if s.kind == "last_ds":
            return f"MAX({active}) OVER lifetime"
        if s.kind in ("first_value", "last_value"):
            by = "MIN_BY" if s.kind == "first_value" else "MAX_BY"
            return f"{by}({p}, {active}) OVER lifetime"
        return f"CAST(COALESCE(SUM(gap_{s.activity.name}) OVER lifetime, 0) AS BIGINT)"  # type: ignore[union-attr]

    def range_sql(self) -> str:
        """Every state of every entity on each day of ${days}, from ${entities} and the
        rollups of each source (${daily_<source>}, up to the last day) in one pass."""
        key = self.key
        partial_cols = [p.name for s in self.event_sources for p in self.partials(s)]
        gap_cols = sorted(
            {s.activity.name for s in self.states if s.kind == "gapsq" and s.activity}
        )
        activity = []
        for src in self.event_sources:
            mine = {p.name for p in self.partials(src)}
            cols = [c if c in mine else f"NULL AS {c}" for c in partial_cols]
            # squared gap from the previous active day (of the same filter)
            gaps = [
                f"IF({g} > 0, CAST(POW(DATEDIFF(ds, LAST_VALUE(IF({g} > 0, ds, NULL), TRUE) OVER "
                f"(PARTITION BY {key} ORDER BY ds ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)), 2) AS BIGINT), NULL) AS gap_{g}"
                if g in mine
                else f"CAST(NULL AS BIGINT) AS gap_{g}"
                for g in gap_cols
            ]
            activity.append(
                f"  SELECT {key}, ds, {', '.join(cols + gaps)}, FALSE AS is_output, "
                + ", ".join(f"NULL AS {a}" for a in self.attributes)
                + f"\n  FROM ${{daily_{src}}}\n  WHERE ds <= (SELECT MAX(ds) FROM ${{days}})"
            )
        outputs = (
            f"  SELECT {key}, ds, "
            + ", ".join(
                [f"NULL AS {c}" for c in partial_cols] + [f"NULL AS gap_{g}" for g in gap_cols]
            )
            + ", TRUE AS is_output, "
            + ", ".join(self.attributes)
            + "\n  FROM ${entities}"
        )
        windows = sorted({s.window for s in self.states if s.window is not None})
        frames = [
            f"w{w} AS (PARTITION BY {key} ORDER BY UNIX_DATE(ds) RANGE BETWEEN {w - 1} PRECEDING AND CURRENT ROW)"
            for w in windows
        ]
        frames.append(
            f"lifetime AS (PARTITION BY {key} ORDER BY UNIX_DATE(ds) RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
        )
        states = ",\n    ".join(f"{self._range_expr(s)} AS {s.name}" for s in self.states)
        timeline = "\n  UNION ALL\n".join([*activity, outputs])
        window_clause = ",\n    ".join(frames)
        return f"""WITH timeline AS (
{timeline}
),
windowed AS (
  SELECT {key}, ds, is_output, {", ".join(self.attributes)},
    {states}
  FROM timeline
  WINDOW
    {window_clause}
)
SELECT {key}, ds, {", ".join(self.attributes)}, {", ".join(s.name for s in self.states)}
FROM windowed
WHERE is_output"""

    def _next_expr(self, s: State, ds: str) -> str:
        t, gone_days = f"t_{s.source}", f"l_{s.source}"
        p = s.partial.name
        active = f"{t}.{s.activity.name} > 0" if s.activity else "FALSE"
        if s.kind == "additive":
            new = f"IF({t}.{p} > 0, 1, 0)" if s.indicator else f"COALESCE({t}.{p}, 0)"
            gone = f" - COALESCE({gone_days}.{s.name}, 0)" if s.window is not None else ""
            return f"CAST(COALESCE(e.{s.name}, 0) + {new}{gone} AS BIGINT)"
        if s.kind in ("min", "max"):
            if s.window is not None:
                return f"{gone_days}.{s.name}"
            pick = "LEAST" if s.kind == "min" else "GREATEST"  # both skip nulls
            return f"{pick}(e.{s.name}, {t}.{p})"
        if s.kind == "first_ds":
            return f"COALESCE(e.{s.name}, IF({active}, {ds}, NULL))"
        if s.kind == "last_ds":
            return f"IF({active}, {ds}, e.{s.name})"
        if s.kind == "first_value":
            return f"IF({active} AND e.{s.last_ds} IS NULL, {t}.{p}, e.{s.name})"
        if s.kind == "last_value":
            return f"IF({active}, {t}.{p}, e.{s.name})"
        return (
            f"CAST(COALESCE(e.{s.name}, 0) + IF({active} AND e.{s.last_ds} IS NOT NULL, "
            f"POW(DATEDIFF({ds}, e.{s.last_ds}), 2), 0) AS BIGINT)"
        )

    def _leaving_expr(self, s: State, ds: str) -> str | None:
        if s.window is None or s.kind not in ("additive", "min", "max"):
            return None
        p = s.partial.name
        if s.kind == "additive":
            x = f"IF({p} > 0, 1, 0)" if s.indicator else p
            return f"SUM(CASE WHEN ds = DATE_SUB({ds}, {s.window}) THEN {x} ELSE 0 END) AS {s.name}"
        # recomputed over the window's days: min/max do not merge by subtraction
        inside = f"ds > DATE_SUB({ds}, {s.window})"
        return f"{s.kind.upper()}(IF({inside}, {p}, NULL)) AS {s.name}"

    def next_day_sql(self) -> str:
        """The states on ${ds} from those of the day before (${previous_state}), the
        rollups of the days `leaving_days` names (${daily_<source>}) and the attribute
        versions (${attributes}; only those that start on ${ds} are used).

        The entity space of ${ds} is the day before's, changed only for the entities with
        a version starting on ${ds} (or known from ${ds}): for everyone else the version
        valid on ${ds} is the one valid the day before. Every input but the previous
        state is small and broadcast, so the previous state is streamed once, never
        shuffled: the cost grows with the entity count, not with the history."""
        key, src = self.key, self.entity_source
        ds = "DATE '${ds}'"
        known_col = src.known_from
        starts = f"{src.valid_from} = {ds}" + (f" OR {known_col} = {ds}" if known_col else "")
        known_ok = f" AND v.{known_col} <= {ds}" if known_col else ""
        carried_ok = f" AND c.v.{known_col} <= {ds}" if known_col else ""
        attrs = self.attributes
        states = self.state_columns()
        parts = [
            f"changed_ids AS (\n  SELECT DISTINCT {key} FROM ${{attributes}} WHERE {starts}\n)",
            # the version valid on ds: the newest starting on or before it (max_by skips
            # the null ordering values of versions that start later)
            f"changed AS (\n  SELECT /*+ BROADCAST(i) */ c.{key},\n"
            f"    MAX_BY(STRUCT({', '.join(f'c.{a}' for a in attrs)}),\n"
            f"           IF(c.{src.valid_from} <= {ds}, c.{src.valid_from}, NULL)) AS v\n"
            f"  FROM ${{attributes}} c\n  LEFT SEMI JOIN changed_ids i ON c.{key} = i.{key}\n"
            f"  GROUP BY c.{key}\n)",
            f"known AS (\n  SELECT {key}, {', '.join(f'v.{a}' for a in attrs)}\n"
            f"  FROM changed WHERE v IS NOT NULL{known_ok}\n)",
            f"carried AS (\n  SELECT /*+ BROADCAST(c) */ p.{key},\n    "
            + ",\n    ".join(f"IF(c.{key} IS NULL, p.{a}, c.v.{a}) AS {a}" for a in attrs)
            + (",\n    " + ", ".join(f"p.{s}" for s in states) if states else "")
            + f"\n  FROM ${{previous_state}} p\n  LEFT JOIN changed c ON p.{key} = c.{key}\n"
            f"  WHERE c.{key} IS NULL OR (c.v IS NOT NULL{carried_ok})\n)",
            f"carried_changed AS (\n  SELECT /*+ BROADCAST(i) */ p.{key}\n"
            f"  FROM ${{previous_state}} p\n  LEFT SEMI JOIN changed_ids i ON p.{key} = i.{key}\n)",
            f"entities AS (\n  SELECT * FROM carried\n  UNION ALL\n"
            f"  SELECT /*+ BROADCAST(o) */ k.{key}, {', '.join(f'k.{a}' for a in attrs)}"
            + "".join(f", NULL AS {s}" for s in states)
            + f"\n  FROM known k\n  LEFT ANTI JOIN carried_changed o ON k.{key} = o.{key}\n)",
        ]
        joins, hints = [], []
        for source in self.event_sources:
            cols = ", ".join(p.name for p in self.partials(source))
            parts.append(
                f"t_{source} AS (\n  SELECT {key}, {cols} FROM ${{daily_{source}}} WHERE ds = {ds}\n)"
            )
            joins.append(f"LEFT JOIN t_{source} ON t_{source}.{key} = e.{key}")
            hints.append(f"BROADCAST(t_{source})")
            leaving = [
                x for s in self.states if s.source == source if (x := self._leaving_expr(s, ds))
            ]
            offsets = [o for o in self.leaving_days(source) if o > 0]
            if leaving:
                days = ", ".join([ds, *(f"DATE_SUB({ds}, {o})" for o in offsets)])
                parts.append(
                    f"l_{source} AS (\n  SELECT {key},\n    "
                    + ",\n    ".join(leaving)
                    + f"\n  FROM ${{daily_{source}}}\n  WHERE ds IN ({days})\n  GROUP BY {key}\n)"
                )
                joins.append(f"LEFT JOIN l_{source} ON l_{source}.{key} = e.{key}")
                # a few days of rollups are small; a min/max window's days may not be
                if len(offsets) <= 8:
                    hints.append(f"BROADCAST(l_{source})")
        exprs = ",\n  ".join(f"{self._next_expr(s, ds)} AS {s.name}" for s in self.states)
        return (
            "WITH "
            + ",\n".join(parts)
            + f"\nSELECT /*+ {', '.join(hints)} */\n  e.{key},\n  {ds} AS ds,\n  "
            + "".join(f"e.{a},\n  " for a in attrs)
            + exprs
            + "\nFROM entities e\n"
            + "\n".join(joins)
        )

    def labels_sql(self) -> str:
        """One row per entity known on each as-of date of ${as_of_dates} (from
        ${entities}), labelled 1 when the label's rollup column in ${daily} sums to more
        than `greater_than` over the days (as_of, horizon_end]: strictly after the as-of
        date (without a `value`: any matching event)."""
        if self.label_partial is None:
            raise ValueError(f"project {self.project.name} declares no label")
        assert self.project.label is not None
        key, total = self.key, self.label_partial.name
        # the rollups hold whole units of 1/scale: compare in the same units
        above = self.project.label.greater_than * (self.project.label.scale or 1)
        return f"""SELECT
  e.{key},
  a.as_of,
  a.oldest_feature_ds,
  CAST(COALESCE(SUM(d.{total}), 0) > CAST({above!r} AS DOUBLE) AS INT) AS label
FROM ${{as_of_dates}} a
JOIN ${{entities}} e
  ON e.ds = a.as_of
LEFT JOIN ${{daily}} d
  ON d.{key} = e.{key}
 AND d.ds > a.as_of
 AND d.ds <= a.horizon_end
GROUP BY e.{key}, a.as_of, a.oldest_feature_ds"""

    # --- the public features ------------------------------------------------------

    def attribute_expr(self, f: Feature) -> str:
        """An attribute feature's expression over the attribute columns (and `ds`)."""
        if f.expr is not None:
            return f"({f.expr})"
        if f.vocabulary is None:
            return str(f.column)
        cases = " ".join(f"WHEN '{v}' THEN {i}" for i, v in enumerate(f.vocabulary))
        return f"CASE {f.column} {cases} ELSE {f.unknown} END"

    def feature_type(self, f: Feature) -> str | None:
        """int, double, or None (the expression's own type) when neither declared nor implied."""
        if f.type is not None:
            return f.type
        if f.kind == "attribute":
            return "int" if f.vocabulary is not None else None
        if f.kind == "derived":
            return None
        if f.agg in (
            "count",
            "active_days",
            "days_since_first",
            "days_since_last",
            "sum_squared_gaps",
        ):
            return "int"
        if f.agg == "mean" or f.scale is not None:
            return "double"
        column = self.project.sources[f.source or ""].columns.get(f.value or "")
        return "int" if column is not None and column.type in ("int64", "int32") else "double"

    def typed(self, f: Feature, expr: str) -> str:
        """`expr` cast to the feature's declared or implied type."""
        kind = self.feature_type(f)
        if kind == "double":
            return f"CAST({expr} AS DOUBLE)"
        if kind == "int" and expr != f.name:
            return f"CAST({expr} AS BIGINT)" if f.kind == "aggregation" else f"CAST({expr} AS INT)"
        return expr

    def features_sql(self) -> str:
        """${state} with the features added: aggregations finished, attributes encoded,
        derived expressions in dependency order (one projection per level)."""
        first = []
        for f in self.features:
            if f.kind == "aggregation":
                expr = self.finish[f.name]
                if expr != f.name or self.feature_type(f) == "double":
                    first.append(f"{self.typed(f, expr)} AS {f.name}")
            elif f.kind == "attribute":
                first.append(f"{self.typed(f, self.attribute_expr(f))} AS {f.name}")
        by_name = {f.name: f for f in self.features}
        level: dict[str, int] = {}
        from scorehouse.project.checks import derived_dependencies

        deps = derived_dependencies(self.features)
        for name in derived_order(self.features):
            level[name] = 1 + max((level.get(d, 0) for d in deps[name]), default=0)
        sql = "SELECT s.*" + "".join(f",\n  {e}" for e in first) + "\nFROM ${state} s"
        for depth in range(1, max(level.values(), default=0) + 1):
            names = [n for n in level if level[n] == depth]
            exprs = ",\n  ".join(
                f"{self.typed(by_name[n], f'({by_name[n].expr})')} AS {n}" for n in names
            )
            sql = f"SELECT *,\n  {exprs}\nFROM (\n{sql}\n) level{depth}"
        return sql

    def state_columns(self) -> list[str]:
        return [s.name for s in self.states]

    def plain_columns(self) -> list[str]:
        """Written without a Parquet dictionary: the key, plain features and their states."""
        from scorehouse.project.checks import identifiers

        out = [self.key]
        for f in self.features:
            if f.encoding == "plain":
                out.append(f.name)
                refs = identifiers(self.finish.get(f.name, "")) & set(self.state_columns())
                out += sorted(r for r in refs if r.startswith("__"))
        return list(dict.fromkeys(out))
