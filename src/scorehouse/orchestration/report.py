"""The markdown summary of a flow run (pure: a result dict in, markdown out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def mlflow_link(tracking_uri: str | None, experiment_id: str | None, run_id: str | None) -> str:
    """A link to the MLflow run when the tracking server speaks HTTP, else where to find it."""
    if not run_id:
        return "no MLflow run"
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        url = f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        return f"[{run_id}]({url})"
    return f"run `{run_id}` in experiment `{experiment_id}` of `{tracking_uri}`"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def steps_table(steps: Mapping[str, Mapping[str, Any]], timings: Mapping[str, float]) -> str:
    lines = ["| step | status | rows | seconds |", "| --- | --- | ---: | ---: |"]
    for name, result in steps.items():
        status = "done"
        if result.get("skipped"):
            status = f"skipped ({result.get('skip_reason') or 'already done'})"
        rows = result.get("rows", result.get("count"))
        lines.append(f"| {name} | {status} | {_fmt(rows)} | {_fmt(timings.get(name))} |")
    return "\n".join(lines)


def steps_text(steps: Mapping[str, Mapping[str, Any]], timings: Mapping[str, float]) -> str:
    """One line per step for a terminal: done or skipped (and why), rows, seconds."""
    width = max((len(name) for name in steps), default=0)
    lines = []
    for name, result in steps.items():
        rows = result.get("rows", result.get("count"))
        counted = f"{_fmt(rows)} rows" if rows is not None else ""
        if result.get("skipped"):
            status = f"skipped ({result.get('skip_reason') or 'already done'})"
        else:
            status = f"done in {_fmt(timings.get(name))} s"
        lines.append(f"  {name:<{width}}  {status}{'; ' + counted if counted else ''}")
    return "\n".join(lines)


def nightly_markdown(result: Mapping[str, Any]) -> str:
    """Counts, per-step timings, model version, drift summary and the MLflow run link."""
    steps = result.get("steps", {})
    scoring = steps.get("score", {})
    publish = steps.get("publish", {})
    warn = scoring.get("drift_warn") or []
    critical = scoring.get("drift_critical") or []
    drift = [
        f"- level: **{scoring.get('drift_level') or 'not monitored'}**",
        f"- max feature PSI: {_fmt(scoring.get('max_feature_psi'))}; "
        f"score PSI vs previous night: {_fmt(scoring.get('score_psi'))}",
        f"- at warn: {', '.join(warn) if warn else 'none'}",
        f"- at critical: {', '.join(critical) if critical else 'none'}",
    ]
    return "\n".join(
        [
            f"# nightly {result.get('ds')}",
            "",
            f"- entities scored: {_fmt(scoring.get('rows'))}",
            f"- model: {scoring.get('model_name')} v{scoring.get('model_version')}"
            + (
                f" (shadow challenger v{scoring['challenger_version']})"
                if scoring.get("challenger_version")
                else ""
            ),
            f"- MLflow: {mlflow_link(scoring.get('tracking_uri'), scoring.get('experiment_id'), scoring.get('run_id'))}",
            f"- Redis generation: `{publish.get('generation')}` ({_fmt(publish.get('count'))} scores, "
            f"{_fmt(publish.get('features_count'))} feature vectors)",
            f"- total: {_fmt(sum(result.get('timings', {}).values()))} s",
            "",
            "## Steps",
            "",
            steps_table(steps, result.get("timings", {})),
            "",
            "## Drift",
            "",
            *drift,
        ]
    )


def generic_markdown(title: str, result: Mapping[str, Any], facts: list[str]) -> str:
    """Weekly training and backfill: a few facts and the steps table."""
    return "\n".join(
        [
            f"# {title}",
            "",
            *[f"- {fact}" for fact in facts],
            "",
            "## Steps",
            "",
            steps_table(result.get("steps", {}), result.get("timings", {})),
        ]
    )
